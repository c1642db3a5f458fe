"""The one validating reader of the dataset contract: every violation named by file, column and row."""

import bisect
import logging
import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from socialfeat.data import schema
from socialfeat.data.images import EXTERNAL_KEY, MAX_BYTES, ImagePolicy, reference_problem
from socialfeat.data.lookup import IdLookup
from socialfeat.errors import UserError
from socialfeat.memory import release_arrow

log = logging.getLogger(__name__)


class DatasetError(UserError):
    """The dataset breaks the contract; `violations` holds one message per problem."""

    def __init__(self, violations: list[str]):
        self.violations = list(violations)
        super().__init__("\n".join(self.violations))


class UndeclaredImages(RuntimeError):
    """A stage read image files without declaring it: a bug in the method, not in the user's input."""


@dataclass
class Dataset:
    """A validated dataset in memory; image bytes stay on disk until a stage asks for them."""

    root: str
    interactions: pd.DataFrame | None  # user_id, item_id, value (float32), timestamp (int64, optional)
    items: pd.DataFrame  # item_id, owner_id, text, labels, image_ref: "embedded" | path | None
    side: "SideTables | None" = None  # tags, social and comments, read when a stage asks for them
    meta: dict = field(default_factory=dict)
    handled: dict = field(default_factory=dict)  # contract deviations fixed on read, with counts
    source: str | None = None  # the storage URI the dataset was fetched from (None: a local directory)
    max_bytes: int = MAX_BYTES  # images.max_bytes
    images_refused_for: str | None = None  # a stage that may not read images (it does not declare them)
    log: "Log | None" = None  # the interactions as codes (read_dataset(log_as="codes")), where not a frame

    @property
    def images(self) -> ImagePolicy:
        """What this dataset's image references may name (see ImagePolicy)."""
        if self.images_refused_for is not None:
            raise UndeclaredImages(
                f"stage {self.images_refused_for!r} read the dataset's images, which it does not declare "
                "(Stage(..., images=True)): its cache key would not see an image change"
            )
        return ImagePolicy(os.path.abspath(self.root), self.meta.get(EXTERNAL_KEY) is True, self.source, self.max_bytes)

    @property
    def tags(self) -> pd.DataFrame | None:
        return self.side.get(schema.TAGS)

    @property
    def social(self) -> pd.DataFrame | None:
        return self.side.get(schema.SOCIAL)

    @property
    def comments(self) -> pd.DataFrame | None:
        return self.side.get(schema.COMMENTS)

    @property
    def image_column(self) -> str | None:
        columns = schema.table_schema(self.root, schema.ITEMS).names
        return "image" if "image" in columns else ("image_path" if "image_path" in columns else None)


@dataclass(frozen=True)
class Place:
    """Where a table's rows came from: its files (one, or the shards of its folder) and the row of the read
    frame each file starts at, so that a violation names the file and the row within it."""

    name: str  # the table: items.parquet
    files: tuple[str, ...] = ()
    starts: tuple[int, ...] = (0,)

    def of(self, row: int) -> tuple[str, int]:
        """(file, row within it) of a row of the read frame."""
        if not self.files:
            return self.name, row
        shard = bisect.bisect_right(self.starts, row) - 1
        return self.files[shard], row - self.starts[shard]


def _type_violations(table: str, file: str, arrow_schema: pa.Schema) -> list[str]:
    """Missing required columns and columns whose stored type the contract does not accept, in one of the
    files of `table`."""
    expected = schema.SCHEMAS[table]
    problems = [
        f"{file}: required column '{c}' is missing (found: {', '.join(arrow_schema.names) or 'none'})"
        for c in schema.REQUIRED[table]
        if c not in arrow_schema.names
    ]
    for column in expected:
        if column.name not in arrow_schema.names:
            continue
        want, got = schema.kind_of(column.type), schema.kind_of(arrow_schema.field(column.name).type)
        if got not in schema.ACCEPTS[want]:
            problems.append(
                f"{file}: column '{column.name}' has type {arrow_schema.field(column.name).type}, expected {want}"
            )
    return problems


def _first_at(place: Place, rows: np.ndarray) -> tuple[str, str]:
    """The file to name for rows of the read frame (the first one's), and ' at row R' within it."""
    file, row = place.of(int(rows[0]))
    return file, f"first at row {row}"


def _null_violations(place: Place, frame: pd.DataFrame, columns) -> list[str]:
    problems = []
    for column in columns:
        missing = np.flatnonzero(frame[column].isna().to_numpy())
        if len(missing):
            file, at = _first_at(place, missing)
            problems.append(f"{file}: column '{column}' is null in {len(missing)} row(s), {at}")
    return problems


def _readable_columns(root: str, name: str, file: str, problems: list[str], columns=None) -> list[str] | None:
    """The contract's columns (or `columns`) that one file of table `name` holds; None, with its problems
    named, when the file is not Parquet or breaks the contract's types."""
    try:
        arrow_schema = pq.read_schema(os.path.join(root, file))
    except (pa.ArrowInvalid, OSError) as error:
        problems.append(f"{file}: not a readable Parquet file ({error})")
        return None
    type_problems = _type_violations(name, file, arrow_schema)
    problems.extend(type_problems)
    if type_problems:
        return None
    return [c for c in (columns or schema.SCHEMAS[name].names) if c in arrow_schema.names]


def _read_table(root: str, name: str, problems: list[str], columns=None) -> tuple[pd.DataFrame | None, Place]:
    """A table's rows across its files, each file's schema checked against the contract and named."""
    files, frames, starts = schema.table_files(root, name), [], [0]
    for file in files:
        wanted = _readable_columns(root, name, file, problems, columns)
        if wanted is None:
            continue
        frames.append(pq.read_table(os.path.join(root, file), columns=wanted).to_pandas())
        starts.append(starts[-1] + len(frames[-1]))
    place = Place(name, tuple(files), tuple(starts[:-1]))
    if len(frames) < len(files) or not files:
        return None, place
    return (frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)), place


SCAN_ROWS = 1 << 20  # interactions validated and encoded at a time
MAX_SCAN_PROBLEMS = 20  # each batch names its own violations: a bad exporter would print thousands


@dataclass
class Log:
    """The interaction log as codes, never as strings: each view's user (a row of `users`) and item (a row of
    the items table), its value and timestamp; repeated (user, item) rows removed, keeping the last."""

    user: np.ndarray  # int32
    item: np.ndarray  # int32
    users: pa.Array  # the user ids, by code
    value: np.ndarray  # float32; 1.0 where the table has no value column
    timestamp: np.ndarray | None  # int64, where the table has timestamps
    duplicates: int = 0

    def __len__(self) -> int:
        return len(self.user)


class _Codes:
    """User ids coded in order of first appearance across batches: only the distinct ids are held."""

    def __init__(self):
        self.known = IdLookup()

    @property
    def ids(self) -> pa.Array:
        return self.known.ids

    def encode(self, ids: pa.Array) -> np.ndarray:
        encoded = pc.dictionary_encode(ids)
        mapping = self.known.find(encoded.dictionary)
        new = mapping < 0
        mapping[new] = len(self.known.ids) + np.arange(int(new.sum()), dtype=np.int32)
        if new.any():
            self.known.add(encoded.dictionary.filter(pa.array(new)))
        return mapping[encoded.indices.to_numpy(zero_copy_only=False)]


def _rows_where(place: Place, mask: np.ndarray, what: str, found: list[str]) -> None:
    """One violation for the rows of a batch where `mask` holds: how many, the first's file and row."""
    rows = np.flatnonzero(mask)
    if len(rows):
        file, at = _first_at(place, rows)
        found.append(f"{file}: {what} in {len(rows)} row(s), {at}")


def _string_ids(batch: pa.RecordBatch, column: str, place: Place, found: list[str]) -> pa.Array:
    ids = batch.column(column)
    if ids.null_count:
        _rows_where(place, ids.is_null().to_numpy(zero_copy_only=False), f"column '{column}' is null", found)
    return pc.fill_null(ids.cast(pa.string()), "")


def _batch_values(batch: pa.RecordBatch, place: Place, found: list[str]) -> np.ndarray:
    if "value" not in batch.schema.names:
        return np.ones(len(batch), np.float32)
    values = batch.column("value").cast(pa.float64()).to_numpy(zero_copy_only=False)
    _rows_where(place, ~np.isfinite(values), "column 'value' is null, NaN or infinite", found)
    return values.astype(np.float32)


def _batch_timestamps(batch: pa.RecordBatch, place: Place, found: list[str]) -> np.ndarray:
    if "timestamp" not in batch.schema.names:
        found.append(f"{place.files[0]}: column 'timestamp' is missing, which the table's first file has")
        return np.zeros(len(batch), np.int64)
    stamps = batch.column("timestamp")
    if stamps.null_count:
        _rows_where(place, stamps.is_null().to_numpy(zero_copy_only=False), "column 'timestamp' is null", found)
    return pc.fill_null(stamps, 0).cast(pa.int64()).to_numpy()


def _batch_items(batch: pa.RecordBatch, place: Place, items: IdLookup, found: list[str]) -> np.ndarray:
    ids = _string_ids(batch, "item_id", place, found)
    encoded = pc.dictionary_encode(ids)  # a batch names each item many times: look each up once
    rows = items.find(encoded.dictionary)[encoded.indices.to_numpy(zero_copy_only=False)]
    valid = batch.column("item_id").is_valid().to_numpy(zero_copy_only=False)
    unknown = np.flatnonzero((rows < 0) & valid)
    if len(unknown):
        file, at = _first_at(place, unknown)
        what = f"column 'item_id' names {len(unknown)} item(s) absent from {schema.ITEMS}"
        found.append(f"{file}: {what}, {at} ('{ids[int(unknown[0])]}')")
    return np.maximum(rows, 0)


def _log_batches(root: str, found: list[str]):
    """(place, batch) over the interaction files, SCAN_ROWS rows at a time, each file's types checked."""
    name = schema.INTERACTIONS
    for file in schema.table_files(root, name):
        wanted = _readable_columns(root, name, file, found)
        if wanted is None:
            continue
        start = 0
        for batch in pq.ParquetFile(os.path.join(root, file)).iter_batches(batch_size=SCAN_ROWS, columns=wanted):
            yield Place(name, (file,), (-start,)), batch
            start += len(batch)


def _without_duplicates(views: Log, n_items: int) -> Log:
    """The log with each repeated (user, item) row but the last removed, counted in `duplicates`."""
    pairs = lambda: views.user.astype(np.int64) * max(1, n_items) + views.item  # noqa: E731
    ordered = pairs()
    ordered.sort()  # in place: the pairs held once, not beside a sorted copy
    views.duplicates = int(np.count_nonzero(ordered[1:] == ordered[:-1]))
    del ordered
    if not views.duplicates:
        return views
    log.warning(
        "%s: %d duplicate (user_id, item_id) rows removed, keeping the last of each",
        schema.INTERACTIONS,
        views.duplicates,
    )
    keep = ~pd.Series(pairs()).duplicated(keep="last").to_numpy()
    stamps = None if views.timestamp is None else views.timestamp[keep]
    return Log(views.user[keep], views.item[keep], views.users, views.value[keep], stamps, views.duplicates)


def _log_rows(root: str) -> int:
    """The interaction files' rows, from their footers (0 for a file that cannot be read: its problem is named
    when it is scanned)."""
    rows = 0
    for file in schema.table_files(root, schema.INTERACTIONS):
        try:
            rows += pq.ParquetFile(os.path.join(root, file)).metadata.num_rows
        except (pa.ArrowInvalid, OSError):
            pass
    return rows


class _LogColumns:
    """The log's columns, allocated once at the size the footers give and filled a batch at a time: a log
    gathered in batches and joined took twice its size, and the allocator kept the batches' pages."""

    def __init__(self, rows: int, has_timestamps: bool):
        self.user, self.item = np.empty(rows, np.int32), np.empty(rows, np.int32)
        self.value = np.empty(rows, np.float32)
        self.timestamp = np.empty(rows, np.int64) if has_timestamps else None
        self.filled = 0

    def next_rows(self, count: int) -> slice:
        self.filled += count
        return slice(self.filled - count, self.filled)

    def log(self, users: pa.Array) -> Log:
        rows = slice(0, self.filled)
        stamps = None if self.timestamp is None else self.timestamp[rows]
        return Log(self.user[rows], self.item[rows], users, self.value[rows], stamps)


def read_log(root: str, items: pa.Array, problems: list[str]) -> Log | None:
    """The interaction files validated and encoded SCAN_ROWS rows at a time (`items`: the items table's ids,
    whose rows the item codes are); None, with every violation in `problems`, when they break the contract.
    Memory: the distinct user ids and about 20 bytes a view, never the log as strings."""
    found: list[str] = []  # this table's violations, capped below; `problems` may hold others already
    users, known_items, log_columns = _Codes(), IdLookup(items), None
    for place, batch in _log_batches(root, found):
        log_columns = log_columns or _LogColumns(_log_rows(root), "timestamp" in batch.schema.names)
        at = log_columns.next_rows(len(batch))
        log_columns.user[at] = users.encode(_string_ids(batch, "user_id", place, found))
        log_columns.item[at] = _batch_items(batch, place, known_items, found)
        log_columns.value[at] = _batch_values(batch, place, found)
        if log_columns.timestamp is not None:
            log_columns.timestamp[at] = _batch_timestamps(batch, place, found)
    if not found and (log_columns is None or not log_columns.filled):
        found.append(f"{schema.INTERACTIONS}: has no rows; at least one interaction is needed")
    if len(found) > MAX_SCAN_PROBLEMS:
        found[MAX_SCAN_PROBLEMS:] = [
            f"{schema.INTERACTIONS}: ... and {len(found) - MAX_SCAN_PROBLEMS} more problems like these"
        ]
    problems.extend(found)
    if found:
        return None
    release_arrow()  # the batches read
    views = log_columns.log(users.ids)
    return _without_duplicates(views, len(items))


def log_frame(log: Log, items: pa.Array) -> pd.DataFrame:
    """The log as the contract's frame of string ids: user_id, item_id, value (float32), timestamp."""
    columns = {"user_id": log.users.take(log.user), "item_id": items.take(log.item), "value": log.value}
    if log.timestamp is not None:
        columns["timestamp"] = log.timestamp
    return pa.table(columns).to_pandas()


def _clean_items(frame: pd.DataFrame, place: Place, problems: list[str]) -> pd.DataFrame:
    problems.extend(_null_violations(place, frame, ("item_id",)))
    duplicated = np.flatnonzero(frame["item_id"].duplicated().to_numpy())
    if len(duplicated):
        file, at = _first_at(place, duplicated)
        problems.append(
            f"{file}: column 'item_id' repeats in {len(duplicated)} row(s), {at} "
            f"('{frame['item_id'].iloc[duplicated[0]]}')"
        )
    return frame


def _unknown_item_violations(place: Place, frame: pd.DataFrame, known: pd.Index) -> list[str]:
    unknown = np.flatnonzero(~frame["item_id"].isin(known).to_numpy())
    if not len(unknown):
        return []
    file, at = _first_at(place, unknown)
    return [
        f"{file}: column 'item_id' names {len(unknown)} item(s) absent from {schema.ITEMS}, "
        f"{at} ('{frame['item_id'].iloc[unknown[0]]}')"
    ]


def _null_label_violations(labels: pa.ChunkedArray, place: Place) -> list[str]:
    """A null inside a labels list (an empty list or a null list is fine: no labels)."""
    labels = labels.combine_chunks()
    inner_null = np.flatnonzero(labels.flatten().is_null().to_numpy(zero_copy_only=False))
    if not len(inner_null):
        return []
    rows = pa.compute.list_parent_indices(labels).to_numpy()[inner_null]
    file, at = _first_at(place, rows)
    return [f"{file}: column 'labels' holds a null label in {len(set(rows))} row(s), {at}"]


def _has_bytes(root: str) -> np.ndarray:
    """Whether each item row holds image bytes, read a batch of rows at a time: the bytes stay on disk, and
    never sit in memory all at once."""
    flags = [
        pc.is_valid(batch.column(0)).to_numpy(zero_copy_only=False)
        for parquet in schema.parquet_files(root, schema.ITEMS)
        for batch in parquet.iter_batches(columns=["image"], batch_size=4096)
    ]
    return np.concatenate(flags) if flags else np.zeros(0, bool)


def _item_frame(root: str, problems: list[str]) -> tuple[pd.DataFrame | None, Place]:
    """items.parquet without the image bytes: `image_ref` says where each image is, or None."""
    columns = ["item_id", "owner_id", "text", "labels", "image_path"]
    items, place = _read_table(root, schema.ITEMS, problems, columns)  # names a file that is not Parquet
    if items is None:
        return None, place
    names = schema.table_schema(root, schema.ITEMS).names
    if "image" not in names and "image_path" not in names:
        problems.append(f"{schema.ITEMS}: needs an 'image' (binary) or an 'image_path' (string) column")
    if "labels" in names:
        problems.extend(_null_label_violations(schema.read_columns(root, schema.ITEMS, ["labels"])["labels"], place))
    if "image" in names:
        items["image_ref"] = np.where(_has_bytes(root), "embedded", None)
    elif "image_path" in items:
        items["image_ref"] = items["image_path"]
    else:
        items["image_ref"] = None
    return _clean_items(items.drop(columns=["image_path"], errors="ignore"), place, problems), place


def _optional(root: str, name: str, problems: list[str], known: pd.Index) -> pd.DataFrame | None:
    if not schema.has_table(root, name):
        return None
    frame, place = _read_table(root, name, problems)
    if frame is None:
        return None
    problems.extend(_null_violations(place, frame, schema.REQUIRED[name]))
    if name in (schema.TAGS, schema.COMMENTS):
        problems.extend(_unknown_item_violations(place, frame, known))
    if name == schema.SOCIAL:
        bad = np.flatnonzero(~frame["kind"].isin(schema.SOCIAL_KINDS).to_numpy())
        if len(bad):
            file, at = _first_at(place, bad)
            problems.append(
                f"{file}: column 'kind' must be one of {schema.SOCIAL_KINDS}; "
                f"{len(bad)} row(s) are not, {at} ('{frame['kind'].iloc[bad[0]]}')"
            )
    return frame


def _without_self_links(social: pd.DataFrame, handled: dict) -> pd.DataFrame:
    """A user who befriends themself says nothing about taste: such rows are dropped and counted."""
    self_links = (social["kind"] == "friend") & (social["user_id"] == social["other_id"])
    handled["social_self_links_removed"] = int(self_links.sum())
    if self_links.any():
        log.warning("%s: %d friend rows link a user to themself: removed", schema.SOCIAL, int(self_links.sum()))
    return social[~self_links].reset_index(drop=True)


def _side_counts(name: str, frame: pd.DataFrame | None) -> dict[str, int]:
    rows = 0 if frame is None else len(frame)
    if name == schema.TAGS:
        return {"tags": rows, "distinct_tags": 0 if frame is None else int(frame["tag"].nunique())}
    return {"social_links": rows} if name == schema.SOCIAL else {"comments": rows}


class SideTables:
    """A dataset's tags, social and comments tables (None where absent), each read and validated when first
    asked for and held until forget(): a run drops them after each stage, so they sit in memory only while a
    stage that reads them runs (tags and comments grow with the log)."""

    NAMES = (schema.TAGS, schema.SOCIAL, schema.COMMENTS)

    def __init__(self, root: str, known_items: pd.Index, handled: dict):
        self.root, self.known_items, self.handled = root, known_items, handled
        self.frames: dict[str, pd.DataFrame | None] = {}
        self.counts: dict[str, int] = {}  # each table's counts, taken when it is read (see counted)

    def _read(self, name: str, problems: list[str]) -> pd.DataFrame | None:
        frame = _optional(self.root, name, problems, self.known_items)
        return _without_self_links(frame, self.handled) if name == schema.SOCIAL and frame is not None else frame

    def read_all(self, problems: list[str], keep: bool = True) -> None:
        """Read every table now, their violations into `problems`, and count them; `keep`: hold the frames
        (a run's data stage wants only the counts, and holding them beside the log doubled its peak)."""
        for name in self.NAMES:
            frame = self._read(name, problems)
            self.counts.update(_side_counts(name, frame))
            if keep:
                self.frames[name] = frame

    def counted(self) -> dict[str, int]:
        """tags, distinct_tags, social_links and comments: as read_all counted them, else from the tables."""
        for name in self.NAMES:
            if not set(_side_counts(name, None)) <= set(self.counts):
                self.counts.update(_side_counts(name, self.get(name)))
        return dict(self.counts)

    def get(self, name: str) -> pd.DataFrame | None:
        if name not in self.frames:
            problems: list[str] = []
            frame = self._read(name, problems)
            if problems:
                raise DatasetError(problems)
            self.frames[name] = frame
        return self.frames[name]

    def forget(self) -> None:
        self.frames.clear()


def _read_meta(root: str, problems: list[str]) -> dict:
    path = os.path.join(root, schema.META)
    if not os.path.exists(path):
        return {}
    try:
        meta = yaml.safe_load(open(path)) or {}
    except yaml.YAMLError as error:
        problems.append(f"{schema.META}: not valid YAML ({error})")
        return {}
    if not isinstance(meta, dict):
        problems.append(f"{schema.META}: must be a mapping with name, source and counts")
        return {}
    if EXTERNAL_KEY in meta and not isinstance(meta[EXTERNAL_KEY], bool):
        problems.append(f"{schema.META}: '{EXTERNAL_KEY}' must be true or false (got {meta[EXTERNAL_KEY]!r})")
    return meta


def _reference_violations(items: pd.DataFrame, place: Place, meta: dict, source: str | None) -> list[str]:
    """image_path rows that name something outside the dataset without dataset.yaml's opt-in."""
    paths = items["image_ref"]
    named = paths.notna() & (paths != "embedded") if "image_ref" in items else pd.Series(False, index=items.index)
    problems = []
    for row in np.flatnonzero(named.to_numpy()):
        reason = reference_problem(paths.iloc[row], meta.get(EXTERNAL_KEY) is True, source)
        if reason:
            file, at = place.of(int(row))
            problems.append(f"{file}: column 'image_path' at row {at} ({paths.iloc[row]!r}) {reason}")
    if len(problems) > 5:
        problems = problems[:5] + [f"{schema.ITEMS}: ... and {len(problems) - 5} more image_path rows like these"]
    return problems


def _layout_violations(root: str) -> list[str]:
    """A table stored both ways, or a required one stored neither way."""
    problems = [
        f"{name}: both {name} and a folder {schema.shard_folder(name)}/ of shards are in {root}; keep one"
        for name in schema.SCHEMAS
        if os.path.isfile(os.path.join(root, name)) and os.path.isdir(os.path.join(root, schema.shard_folder(name)))
    ]
    return problems + [
        f"{name}: required file is missing from {root} (or a folder {schema.shard_folder(name)}/ of Parquet shards)"
        for name in (schema.INTERACTIONS, schema.ITEMS)
        if not schema.has_table(root, name)
    ]


def _interactions(root: str, items: pd.DataFrame, log_as: str, problems: list[str], handled: dict):
    """(frame or None, Log or None) of the interaction files as `log_as` asks: "frame", "codes" or "skip"."""
    if log_as == "skip":
        return None, None
    item_ids = pa.array(items["item_id"], pa.string())
    views = read_log(root, item_ids, problems)
    if views is None:
        return None, None
    handled["duplicate_interactions_removed"] = views.duplicates
    return (log_frame(views, item_ids), None) if log_as == "frame" else (None, views)


def read_dataset_lenient(
    root: str, source: str | None = None, log_as: str = "frame"
) -> tuple[Dataset | None, list[str]]:
    """The dataset and every contract violation found (the dataset is None when it cannot be read).
    `log_as`: the interactions held as a frame of string ids ("frame"), as codes in `Dataset.log` ("codes":
    a run's data stage, `data check`), or not read at all ("skip": the stages after the data stage)."""
    if not os.path.isdir(root):
        return None, [f"{root}: dataset directory does not exist"]
    problems = _layout_violations(root)
    if problems:
        return None, problems
    handled: dict = {}
    items, item_place = _item_frame(root, problems)
    if items is None:
        return None, problems
    side = SideTables(root, pd.Index(items["item_id"]), handled)
    if log_as == "codes":  # validated and counted first, and not held: the log's peak is not on top of theirs
        side.read_all(problems, keep=False)
    interactions, views = _interactions(root, items, log_as, problems, handled)
    if log_as == "frame":
        side.read_all(problems)
    meta = _read_meta(root, problems)
    problems.extend(_reference_violations(items, item_place, meta, source))
    dataset = Dataset(root, interactions, items, side, meta, handled, source, log=views)
    return dataset, problems


def read_dataset(root: str, source: str | None = None, max_bytes: int = MAX_BYTES, log_as: str = "frame") -> Dataset:
    """The validated dataset at `root` (fetched from `source`, a storage URI, if any), its interactions
    held as `log_as` says (read_dataset_lenient); raises DatasetError listing every violation."""
    dataset, problems = read_dataset_lenient(root, source, log_as)
    if problems:
        raise DatasetError(problems)
    dataset.max_bytes = max_bytes
    return dataset
