"""Ray tasks and Ray Data around the pure cores: negative sampling sharded over blocks of users, and image rows."""

import itertools
import os
from collections import deque

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray
from ray.data import DataContext
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy

from socialfeat.data import schema
from socialfeat.data.images import ImagePolicy, item_image_bytes
from socialfeat.errors import UserError
from socialfeat.evaluation.baselines import baseline_features
from socialfeat.factorization.sampling import USERS_PER_BLOCK, blocks_of, sample_block
from socialfeat.vision.decode import load_image

# Ray 2.60 leaves a worker idle between two tasks of an operator held at its CPU budget (~0.05 s, and
# 0.2-0.3 s with the operator reservation, measured on 2 CPUs), so a decode task should be seconds of work:
# each CPU gets at least DECODE_TASKS_PER_CPU of them, of MIN to MAX items (a 72 px JPEG decode is ~0.4 ms).
DECODE_TASKS_PER_CPU, MIN_ITEMS_PER_TASK, MAX_ITEMS_PER_TASK = 2, 64, 2048
ITEM_SLOT = "item_slot"  # a block's column: each item row's index among the items a dataset names
READ_ROWS = 1024  # item rows (with their images) a read task holds from a row group at a time
READ_TASK_ROWS = 8192  # rows of consecutive row groups one read task reads (its pieces land when it ends)


def items_per_decode_task(items: int, cpus: float) -> int:
    """How many items one decode task takes, for `items` to decode on `cpus` CPUs: as many tasks as whole
    rounds of the CPUs take, of equal size, so that no CPU decodes a last task alone while the others wait."""
    slots = max(1, round(cpus))
    tasks = max(slots * DECODE_TASKS_PER_CPU, -(-items // MAX_ITEMS_PER_TASK))
    tasks = -(-tasks // slots) * slots
    return int(min(MAX_ITEMS_PER_TASK, max(MIN_ITEMS_PER_TASK, -(-items // tasks))))


def decode_task_sizes(items: int, cpus: float) -> np.ndarray:
    """The items of each decode task, in order: items_per_decode_task each, the last task what is left."""
    per_task = items_per_decode_task(items, cpus)
    return np.diff(np.minimum(np.arange(-(-items // per_task) + 1) * per_task, items))


# A sweep trial's placement group (Tune captures its child tasks there) holds ~0 CPUs: these tasks run
# outside it, as Ray Data's own do
OUTSIDE_TRIAL = PlacementGroupSchedulingStrategy(placement_group=None)


@ray.remote(scheduling_strategy=OUTSIDE_TRIAL)
def _sample_one_block(users, items, n_items, weights, ratio, seed, block):
    return sample_block(users, items, n_items, weights, ratio, seed, block)


def negative_blocks_sharded(
    users: np.ndarray,
    items: np.ndarray,
    n_items: int,
    weights: np.ndarray,
    ratio: float,
    seed: int,
    users_per_block: int = USERS_PER_BLOCK,
    in_flight: int | None = None,
):
    """sampling.negative_blocks with each block of users sampled by a Ray task that is sent that block's
    positives alone (not every positive to mask); the blocks come back in block order. At most `in_flight`
    blocks (default: two per CPU of the cluster) are out at once, so that the blocks' positives and negatives
    are never all in memory and the object store together."""
    shared_weights = ray.put(weights)

    def sample(block: int, rows: np.ndarray):
        return _sample_one_block.remote(users[rows], items[rows], n_items, shared_weights, ratio, seed, block)

    waiting = blocks_of(users, users_per_block)
    limit = in_flight or max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
    pending = deque(sample(*block) for block in itertools.islice(waiting, limit))
    while pending:
        sampled = ray.get(pending.popleft())
        pending.extend(sample(*block) for block in itertools.islice(waiting, 1))
        yield sampled


def row_columns(rows: pd.DataFrame, image_columns: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The pass-through columns of an image-row table as arrays: numbers as they are, float vectors
    stacked (N x D), variable-length int lists padded with -1 (N x longest), anything else as objects."""
    columns = {}
    for name in rows.columns.difference(image_columns, sort=False):
        values = rows[name]
        first = next((v for v in values if v is not None), None)
        if not isinstance(first, (list, tuple, np.ndarray)):
            columns[name] = values.to_numpy()
            continue
        lists = [np.asarray(v if v is not None else []) for v in values]
        if all(lst.dtype.kind == "f" for lst in lists if len(lst)):
            if len({len(lst) for lst in lists}) != 1:
                raise UserError(f"image rows: column {name!r} holds float vectors of different lengths")
            columns[name] = np.stack(lists).astype(np.float32)
            continue
        padded = np.full((len(lists), max(map(len, lists), default=0)), -1, np.int64)
        for row, lst in enumerate(lists):
            padded[row, : len(lst)] = lst
        columns[name] = padded
    return columns


def _stored_bytes(root, column: str, stored) -> bytes:
    """An item's encoded image from its `column` value: the bytes themselves or a path under the policy's root."""
    return item_image_bytes(root, stored, None) if column == "image" else item_image_bytes(root, None, stored)


def _decoded(root, column: str, stored, size: int):

    return None if stored is None else load_image(_stored_bytes(root, column, stored), size)


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The indices starts[0]..starts[0]+counts[0]-1, then those of the next range, and so on."""
    return np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())


def _rows_of_items(batch: dict, root, column: str, size: int, image_column: str, lookup_ref) -> dict:
    """Decode each item of a batch of item rows once and emit every row that names it (the rows of slot s
    are positions[offsets[s]:offsets[s + 1]]); rows whose image is missing or undecodable are dropped."""

    lookup = ray.get(lookup_ref)  # arrays of numbers and bytes only: read in place, whatever their size
    images, slots = np.empty((len(batch[column]), size, size, 3), np.uint8), []
    for slot, stored in zip(batch[ITEM_SLOT], batch[column]):
        image = _decoded(root, column, stored, size)
        if image is not None:
            images[len(slots)] = image
            slots.append(slot)
    images, slots = images[: len(slots)], np.asarray(slots, np.int64)
    starts = lookup["offsets"][slots]
    counts = lookup["offsets"][slots + 1] - starts
    positions = lookup["positions"][_ranges(starts, counts)]
    out = {image_column: images if (counts == 1).all() else np.repeat(images, counts, axis=0)}
    return out | {name: _picked(values, positions) for name, values in lookup["columns"].items()}


def _no_images(size: int) -> np.ndarray:
    return np.zeros((0, size, size, 3), np.uint8)


def _shareable(values: np.ndarray) -> np.ndarray:
    """A pass-through column a task can read in place: strings as UTF-8 bytes (numpy "S"), since an array of
    Python objects is unpickled whole by every task that reads it; anything else as it is."""
    if values.dtype == object and len(values) and all(isinstance(v, str) for v in values):
        return np.char.encode(values.astype(str), "utf-8")
    return values


def _picked(values: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Rows `positions` of a shared pass-through column, strings back as Python str objects."""
    if values.dtype.kind == "S":
        return np.char.decode(values[positions], "utf-8").astype(object)
    return values[positions]


NODE_ID_LABEL = "ray.io/node-id"  # a label Ray gives every node


def _this_node() -> NodeAffinitySchedulingStrategy:
    """Tasks pinned to the caller's node, where the dataset's files are."""
    return NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)


@ray.remote
def _has_image(path: str, group: int, column: str) -> np.ndarray:
    """Which rows of a row group hold an image, read by a task: the images never reach the driver."""
    images = pq.ParquetFile(path).read_row_group(group, columns=[column]).column(0)
    return pc.is_valid(images).to_numpy(zero_copy_only=False)


def _with_image(files: list[pq.ParquetFile], paths: list[str], groups: list[tuple], column: str) -> list:
    """Per (file, row group) of `groups`: which rows hold an image. By the group's null count where it
    settles it (none or all null: no bytes read), else by a task on this node reading the group's `column`."""
    here = _this_node()
    found = []
    for number, group in groups:
        metadata = files[number].metadata.row_group(group)
        stats = metadata.column(files[number].schema_arrow.get_field_index(column)).statistics
        if stats is not None and stats.has_null_count and stats.null_count in (0, metadata.num_rows):
            found.append(np.full(metadata.num_rows, stats.null_count == 0))
        else:
            found.append(_has_image.options(scheduling_strategy=here).remote(paths[number], group, column))
    reads = [n for n, f in enumerate(found) if isinstance(f, ray.ObjectRef)]
    for n, read in zip(reads, ray.get([found[n] for n in reads])):
        found[n] = read
    return found


def _named_rows(files: list[pq.ParquetFile], paths: list[str], column: str, named: list) -> np.ndarray:
    """The item rows that name an item in `named` and have an image, in file and row order: one
    (file, row group, row within it, the item's index in `named`) per row. The driver reads the item ids
    and the groups' null counts, never the images."""
    groups = [
        (number, group) for number, parquet in enumerate(files) for group in range(parquet.metadata.num_row_groups)
    ]
    ids = [files[number].read_row_group(group, columns=["item_id"]).column(0) for number, group in groups]
    if not ids:
        return np.zeros((0, 4), np.int64)
    every_id = pa.chunked_array([chunk for column in ids for chunk in column.chunks], ids[0].type)
    slots = pc.index_in(every_id, value_set=pa.array(named))  # one call: `named` hashed once, not once a group
    where, start = [], 0
    for (number, group), group_ids, with_image in zip(groups, ids, _with_image(files, paths, groups, column)):
        here = slots.slice(start, len(group_ids))
        start += len(group_ids)
        rows = np.flatnonzero(pc.is_valid(here).to_numpy(zero_copy_only=False) & with_image)
        found = here.take(rows).to_numpy().astype(np.int64)
        where.append(np.stack([np.full(len(rows), number), np.full(len(rows), group), rows, found], axis=1))
    return np.concatenate(where) if where else np.zeros((0, 4), np.int64)


def _runs(keys: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of each run of equal rows in `keys`."""
    cuts = np.flatnonzero(np.any(np.diff(keys, axis=0) != 0, axis=1)) + 1 if len(keys) else np.zeros(0, int)
    bounds = [0, *cuts.tolist(), len(keys)]
    return list(zip(bounds[:-1], bounds[1:]))


def _read_tasks(files: list[pq.ParquetFile], where: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of `where`'s rows that one read task reads: runs of whole row groups of one file, of
    at most READ_TASK_ROWS rows in all (at least one group). One task a small group cost ~16 ms a group
    of scheduling, on a CPU the decoders wait for (~1.6 s for 98 groups of 2,048 rows on 2 CPUs)."""
    tasks = []
    for file_start, file_end in _runs(where[:, :1]):
        parquet, start, held = files[where[file_start, 0]], file_start, 0
        for group_start, _ in _runs(where[file_start:file_end, 1:2]):
            rows = parquet.metadata.row_group(int(where[file_start + group_start, 1])).num_rows
            if held and held + rows > READ_TASK_ROWS:
                tasks.append((start, file_start + group_start))
                start, held = file_start + group_start, 0
            held += rows
        tasks.append((start, file_end))
    return tasks


def _pieces(path: str, groups: list[int], column: str, rows: np.ndarray, slots: np.ndarray, sizes: list[int]):
    """Rows `rows` (ascending, counted across `groups` read one after the other) of a file's row groups,
    item_id and the image column with ITEM_SLOT (each item's index in the named items), yielded in pieces
    of `sizes` rows. The groups are streamed in batches, and no further than the last piece: a reader holds
    a batch and a piece however large the groups."""
    reader = pq.ParquetFile(path).iter_batches(READ_ROWS, row_groups=groups, columns=["item_id", column])
    parts, start, ends, piece = [], 0, np.cumsum(sizes), 0
    for batch in reader:
        low, high = np.searchsorted(rows, [start, start + batch.num_rows])
        table, kept = pa.Table.from_batches([batch]), rows[low:high] - start
        parts.append(table if len(kept) == batch.num_rows else table.take(kept))  # all kept: no copy
        start += batch.num_rows
        while piece < len(sizes) and ends[piece] <= high:
            held, done = pa.concat_tables(parts), sizes[piece]
            # a slice is stored without the rest of its buffers (Ray's Arrow serialisation truncates them)
            yield held.slice(0, done).append_column(ITEM_SLOT, pa.array(slots[ends[piece] - done : ends[piece]]))
            parts, piece = [held.slice(done)], piece + 1
        if piece == len(sizes):
            return


@ray.remote
def _read_pieces(path: str, groups: list[int], column: str, rows: np.ndarray, slots: np.ndarray, sizes: list[int]):
    yield from _pieces(path, groups, column, rows=rows, slots=slots, sizes=sizes)


def _read_rows(path: str, groups: list[int], column: str, rows: np.ndarray, slots: np.ndarray) -> pa.Table:
    """One read of _block_reads: the rows as one table."""
    return next(_pieces(path, groups, column, rows=rows, slots=slots, sizes=[len(rows)]))


def _group_rows(files: list[pq.ParquetFile], where: np.ndarray) -> tuple[list[int], np.ndarray]:
    """The row groups that `where`'s rows (of one file) are in, and the rows counted across those groups."""
    groups = np.unique(where[:, 1])
    group_rows = [files[where[0, 0]].metadata.row_group(int(g)).num_rows for g in groups]
    before = np.cumsum([0, *group_rows[:-1]])  # per group: the rows of the groups before it
    return groups.tolist(), where[:, 2] + before[np.searchsorted(groups, where[:, 1])]


def _block_reads(files: list[pq.ParquetFile], paths: list[str], where: np.ndarray, column: str, sizes: np.ndarray):
    """Per block (blocks of `sizes` rows of `where`, in order), what its decode task reads itself: the
    arguments of _pieces for each file the block's rows are in (without sizes: one piece)."""
    blocks, ends = [], np.cumsum(sizes)
    for first, end in zip(ends - sizes, ends):
        block = where[first:end]
        reads = []
        for start, stop in _runs(block[:, :1]):
            groups, rows = _group_rows(files, block[start:stop])
            reads.append((paths[block[start, 0]], groups, column, rows, block[start:stop, 3]))
        blocks.append(reads)
    return blocks


def _read_by_tasks(files: list[pq.ParquetFile], paths: list[str], where: np.ndarray, column: str, sizes: np.ndarray):
    """Per block (blocks of `sizes` rows of `where`, in order), the object refs of its pieces, read by tasks
    on this node: each row group once, by the task of its run of groups (_read_tasks), in pieces that fall
    in one block each."""
    block_of = np.searchsorted(np.cumsum(sizes), np.arange(len(where)), side="right")
    here = _this_node()
    pieces_of_block: list[list] = [[] for _ in sizes]
    for start, end in _read_tasks(files, where):
        groups, rows = _group_rows(files, where[start:end])
        pieces = [(start + a, start + b) for a, b in _runs(block_of[start:end, None])]
        refs = _read_pieces.options(num_returns=len(pieces), scheduling_strategy=here).remote(
            paths[where[start, 0]], groups, column, rows, where[start:end, 3], [b - a for a, b in pieces]
        )
        for (a, _), ref in zip(pieces, refs if len(pieces) > 1 else [refs]):
            pieces_of_block[block_of[a]].append(ref)
    return pieces_of_block


def _one_node() -> bool:
    """Whether the cluster has one live node, so that every task sees this node's files."""
    return sum(node["Alive"] for node in ray.nodes()) == 1


def _named_item_blocks(root: str, files: list[pq.ParquetFile], column: str, named: list) -> list:
    """The rows of the item files (items.parquet or its shards, in order) that name an item in `named` and
    have an image, in blocks of decode_task_sizes: a block is one decode task's work. The cuts run across
    row groups and shards (the blocks, and so a seeded run, do not depend on how the items were sharded or
    grouped). On one node each decode task reads its own rows (_block_reads): the images never enter the
    object store and are read no sooner than they are decoded. On several, tasks on this node, where the
    dataset's files are, read them for decoders anywhere (_read_by_tasks). No image passes through the
    driver."""
    paths = [os.path.join(root, name) for name in schema.table_files(root, schema.ITEMS)]
    where = _named_rows(files, paths, column, named)
    sizes = decode_task_sizes(len(where), ray.cluster_resources().get("CPU", 1))
    blocks = _block_reads if _one_node() else _read_by_tasks
    return blocks(files, paths, where, column=column, sizes=sizes)


def _on_item_block(batch: dict, work, fn_kwargs: dict) -> dict:
    """work(the item rows of this task's block, **fn_kwargs), the block's rows read by the task or its
    pieces fetched."""
    block = list(batch["block"][0])
    if isinstance(block[0], ray.ObjectRef):
        items = pa.concat_tables(ray.get(block))
    else:
        items = pa.concat_tables([_read_rows(*read) for read in block])
    return work({name: items.column(name).to_numpy() for name in items.column_names}, **fn_kwargs)


def _over_item_blocks(blocks: list, work, fn_kwargs: dict):
    """A Ray Dataset of work(block's item rows as numpy columns, **fn_kwargs) over blocks from
    _named_item_blocks, one task a block, in block order. Each task reads or fetches its own block, so the
    first decode starts when the first block is read, and the driver waits for none of the reads."""
    # A task's one row holds its own block's reads or refs: one list of every block's refs, shared, cost each
    # task ~10 ms to unpickle at 100 blocks, and grows with the blocks. They are stored as pickled objects
    # (Ray's default for what Arrow cannot hold), said here so that Ray Data does not warn of it.
    DataContext.get_current().enable_fallback_to_arrow_object_ext_type = True
    tasks = ray.data.from_items([{"block": block} for block in blocks], override_num_blocks=len(blocks))
    # One map and no other operator to reserve CPUs for: Ray 2.60's reservation started the second decode
    # task ~1 s after the first and left each worker 0.2-0.3 s idle between tasks (the context is this
    # dataset's own copy, inherited by what derives from it).
    tasks.context.op_resource_reservation_enabled = False
    reads_files = bool(blocks) and not isinstance(blocks[0][0], ray.ObjectRef)  # then on this node, with the files
    return tasks.map_batches(
        _on_item_block,
        batch_format="numpy",
        batch_size=None,
        fn_kwargs={"work": work, "fn_kwargs": fn_kwargs},
        # Ray Data takes no scheduling_strategy past Ray 2.63; the node-id label pins as hard node affinity does
        label_selector={NODE_ID_LABEL: ray.get_runtime_context().get_node_id()} if reads_files else None,
    )


def _baseline_batch(batch: dict, root, column: str) -> dict:
    """The image baselines (colour histogram, pixels) of one block of item rows, decoded one at a time."""
    encoded = [_stored_bytes(root, column, stored) for stored in batch[column]]
    return {"item_id": batch["item_id"]} | baseline_features(encoded)


def item_baselines(root, column: str, item_ids) -> dict[str, np.ndarray]:
    """baseline_features of `item_ids` (each with a decodable image), in their order: the item rows read and
    decoded by Ray tasks, the driver gathering only the feature vectors (never the images' bytes)."""
    policy, ids = ImagePolicy.of(root), pd.Index(item_ids)
    files = schema.parquet_files(policy.root, schema.ITEMS)
    blocks = _named_item_blocks(policy.root, files, column=column, named=list(ids))
    found, parts = [], {}
    if blocks:
        features = _over_item_blocks(blocks, _baseline_batch, {"root": policy, "column": column})
        for batch in features.iter_batches(batch_format="numpy", batch_size=None):
            found.append(batch.pop("item_id"))
            for name, vectors in batch.items():
                parts.setdefault(name, []).append(vectors)
    order = pd.Index(np.concatenate(found) if found else []).get_indexer(ids)
    if (order < 0).any():
        raise UserError(f"image baselines: {int((order < 0).sum())} item(s) have no image, e.g. {ids[order < 0][0]!r}")
    return {name: np.concatenate(vectors)[order] for name, vectors in parts.items()}


def _row_lookup(rows: pd.DataFrame, image_column: str) -> tuple[list, dict]:
    """The distinct items of `rows[image_column]` (in order of first appearance), and what a decode task
    needs to emit their rows: the row positions grouped by item (offsets into positions, per item slot)
    and the pass-through columns, all arrays a task reads in place."""
    codes, items = pd.factorize(rows[image_column])  # a missing id: code -1, sorted first and left out
    positions = np.argsort(codes, kind="stable")[np.count_nonzero(codes < 0) :]
    counts = np.bincount(codes[codes >= 0], minlength=len(items))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    columns = {name: _shareable(values) for name, values in row_columns(rows, (image_column,)).items()}
    return list(items), {"offsets": offsets, "positions": positions, "columns": columns}


def _single_image_rows(root, column: str, rows: pd.DataFrame, image_column: str, size: int):

    policy = ImagePolicy.of(root)  # workers read images by the policy of the dataset, never by a bare path
    items, lookup = _row_lookup(rows, image_column)
    files = schema.parquet_files(policy.root, schema.ITEMS)
    blocks = _named_item_blocks(policy.root, files, column=column, named=items)
    if not blocks:
        return ray.data.from_numpy(_no_images(size)).rename_columns({"data": image_column})
    fn_kwargs = {"root": policy, "column": column, "size": size, "image_column": image_column}
    return _over_item_blocks(blocks, _rows_of_items, fn_kwargs | {"lookup_ref": ray.put(lookup)})


@ray.remote(scheduling_strategy=OUTSIDE_TRIAL)
def _slots_of(block: dict) -> np.ndarray:
    return block["slot"]


def _gather_rows(batch: dict, image_columns: tuple[str, ...], size: int, lookup_ref) -> dict:
    """Rows by position, each image column filled from the decoded items' blocks in the object store (each
    batch reads only the blocks its items are in); rows missing an image dropped."""

    lookup = ray.get(lookup_ref)
    positions = batch["id"]
    where = {c: lookup["where"][c][positions] for c in image_columns}  # (block, row within it) per row
    keep = np.logical_and.reduce([w[:, 0] >= 0 for w in where.values()])
    needed = np.unique(np.concatenate([w[keep, 0] for w in where.values()]))
    blocks = dict(zip(needed.tolist(), ray.get([lookup["blocks"][b] for b in needed])))
    out = {
        c: np.stack([blocks[b]["item"][r] for b, r in w[keep].tolist()]) if keep.any() else _no_images(size)
        for c, w in where.items()
    }
    return out | {name: values[positions[keep]] for name, values in lookup["columns"].items()}


def _multi_image_rows(root, column: str, rows: pd.DataFrame, image_columns: tuple[str, ...], size: int):
    """Decode each named item once into the object store (the decoded items stay there as blocks, never one
    driver array: 12 KB an image at 64 px, 23 GB for 1.9M images), then build the rows from those blocks."""

    items = pd.Index(pd.unique(np.concatenate([rows[c].to_numpy() for c in image_columns])))
    table = pd.DataFrame({"item": items, "slot": np.arange(len(items))})
    blocks = _single_image_rows(root, column, table, "item", size).to_numpy_refs()
    where = np.full((len(items), 2), -1, np.int64)  # per item: its block and its row there (-1: no image)
    for block, slots in enumerate(ray.get([_slots_of.remote(ref) for ref in blocks])):
        where[slots] = np.stack([np.full(len(slots), block), np.arange(len(slots))], axis=1)
    lookup = {
        "blocks": blocks,
        "columns": row_columns(rows, image_columns),
        "where": {c: where[items.get_indexer(rows[c])] for c in image_columns},
    }
    return ray.data.range(len(rows)).map_batches(
        _gather_rows,
        batch_format="numpy",
        batch_size=256,
        fn_kwargs={"image_columns": tuple(image_columns), "size": size, "lookup_ref": ray.put(lookup)},
    )


def image_rows(root, column: str, rows: pd.DataFrame, image_columns: tuple[str, ...] = ("item",), size: int = 64):
    """A Ray Dataset of training rows (`root`: the dataset directory or its ImagePolicy): each of
    `image_columns` (item ids in `rows`) becomes that item's image
    (S x S x 3 uint8, decoded in parallel from the dataset's items.parquet), every other column passes
    through (see row_columns). Rows with a missing or undecodable image are left out. Blocks keep one order
    run to run, so a seeded training run is reproducible."""
    rows = rows.reset_index(drop=True)
    if len(image_columns) == 1:
        dataset = _single_image_rows(root, column, rows, image_columns[0], size)
    else:
        dataset = _multi_image_rows(root, column, rows, tuple(image_columns), size)
    # the context is this dataset's own copy (Ray 2.60), inherited by what is derived from it
    dataset.context.execution_options.preserve_order = True
    return dataset
