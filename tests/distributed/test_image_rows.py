"""Image rows on Ray Data: one or more image columns decoded from items.parquet, other columns passed through."""

import io
import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from socialfeat.config import SynthConfig
from socialfeat.data import schema
from socialfeat.data.reader import read_dataset
from socialfeat.data.synthetic import generate
from socialfeat.distributed import data as distributed_data
from socialfeat.distributed.data import (
    MIN_ITEMS_PER_TASK,
    _named_rows,
    _read_tasks,
    _row_lookup,
    decode_task_sizes,
    image_rows,
    item_baselines,
    items_per_decode_task,
    row_columns,
)
from socialfeat.errors import UserError
from socialfeat.evaluation.baselines import baseline_features


def _dataset(tmp_path, colours: dict, name: str = "data", row_group_size: int | None = None) -> str:
    """items.parquet with one solid-colour PNG per item (None: a corrupt image), in row groups of
    `row_group_size` rows (default: one group)."""
    encoded = []
    for colour in colours.values():
        if colour is None:
            encoded.append(b"not an image")
            continue
        buffer = io.BytesIO()
        Image.new("RGB", (20, 12), colour).save(buffer, format="PNG")
        encoded.append(buffer.getvalue())
    root = str(tmp_path / name)
    os.makedirs(root)
    table = pa.table({"item_id": list(colours), "image": encoded})
    pq.write_table(table, os.path.join(root, "items.parquet"), row_group_size=row_group_size)
    return root


COLOURS = {"a": (255, 0, 0), "b": (0, 255, 0), "c": (0, 0, 255), "bad": None}


def _rows(dataset) -> list[dict]:
    return sorted(dataset.take_all(), key=lambda row: int(row["label"]))


def test_single_image_rows_repeat_items_and_pass_columns_through(ray_session, tmp_path):
    root = _dataset(tmp_path, COLOURS)
    rows = pd.DataFrame(
        {
            "item": ["a", "b", "a", "bad", "c"],
            "label": np.arange(5),
            "target": [np.full(3, n, np.float32) for n in range(5)],
            "words": [[1], [2, 3], [], [4], [5, 6, 7]],
            "name": ["ä0", "b1", "a2", "x3", "c4"],
        }
    )
    out = _rows(image_rows(root, "image", rows, ("item",), 8))
    assert [r["name"] for r in out] == ["ä0", "b1", "a2", "c4"]  # strings pass through as they were
    assert [int(r["label"]) for r in out] == [0, 1, 2, 4]  # the corrupt image's row is left out
    colour_of = {tuple(r["item"][4, 4]): int(r["label"]) for r in out}
    assert colour_of[(0, 0, 255)] == 4 and out[0]["item"].shape == (8, 8, 3)
    assert all(np.array_equal(out[n]["item"][0, 0], COLOURS[item]) for n, item in enumerate("aba"))
    assert [r["target"][0] for r in out] == [0, 1, 2, 4]
    assert [list(r["words"]) for r in out] == [[1, -1, -1], [2, 3, -1], [-1, -1, -1], [5, 6, 7]]  # padded


def test_a_single_row_group_is_decoded_by_several_tasks_in_item_order(ray_session, tmp_path):
    colours = {f"i{n:03d}": (n, 255 - n, 7) for n in range(4 * MIN_ITEMS_PER_TASK)}
    colours["i005"] = None  # undecodable
    root = _dataset(tmp_path, colours)  # one row group, read by Ray Data as one block
    rows = pd.DataFrame({"item": list(reversed(colours)), "label": np.arange(len(colours))})
    dataset = image_rows(root, "image", rows, ("item",), 8).materialize()
    assert dataset.num_blocks() == 4  # 256 items on 2 CPUs: about two tasks per CPU
    labels = [int(row["label"]) for row in dataset.take_all()]
    # blocks come back in items.parquet order, each block's rows in the order of the rows table
    expected = [len(colours) - 1 - n for n in range(len(colours)) if n != 5]
    assert labels == expected
    assert items_per_decode_task(10, cpus=2) == MIN_ITEMS_PER_TASK
    assert items_per_decode_task(2048 * 128, cpus=64) == items_per_decode_task(10**9, cpus=2) == 2048
    assert items_per_decode_task(23544, cpus=2) == 1962  # 12 equal tasks, six a CPU, not 11.5 of 2048
    assert decode_task_sizes(23544, cpus=2).tolist() == [1962] * 12
    assert decode_task_sizes(300, cpus=2).tolist() == [75] * 4 and decode_task_sizes(100, cpus=2).tolist() == [64, 36]


@pytest.mark.parametrize("read_by", ["decode tasks", "read tasks"])
def test_items_in_many_row_groups_are_those_of_one_group(ray_session, tmp_path, monkeypatch, read_by):
    colours = {f"i{n:03d}": (n, 255 - n, 7) for n in range(150)}
    colours["i031"] = None  # undecodable
    grouped = _dataset(tmp_path, colours, "grouped", row_group_size=7)  # 22 groups
    whole = _dataset(tmp_path, colours, "whole")
    # decode tasks read their own rows on one node, read tasks on this node read them for a cluster of several
    monkeypatch.setattr(distributed_data, "_one_node", lambda: read_by == "decode tasks")
    monkeypatch.setattr(distributed_data, "READ_TASK_ROWS", 20)  # a read task takes two groups of 7
    # the third group: none named; of the others, four items in five
    named = [name for n, name in enumerate(colours) if not 14 <= n < 21 and n % 5]
    rows = pd.DataFrame({"item": named[::-1], "label": np.arange(len(named))})
    files = schema.parquet_files(grouped, schema.ITEMS)
    tasks = _read_tasks(files, _named_rows(files, [f"{grouped}/items.parquet"], "image", named))
    assert len(tasks) == 10  # 20 named groups of 7 rows two to a task, the last 3 rows with the last two
    one, many = (image_rows(root, "image", rows, ("item",), 6).take_all() for root in (whole, grouped))
    assert len(one) == len(many) == len(named) - 1  # the corrupt image's row is left out
    for a, b in zip(one, many):
        assert a["label"] == b["label"] and np.array_equal(a["item"], b["item"])
    assert all(np.array_equal(r["item"][2, 2], colours[named[::-1][int(r["label"])]]) for r in many)


def test_rows_without_an_image_are_found_by_tasks_the_driver_reading_no_image(ray_session, tmp_path, monkeypatch):
    colours = {f"i{n:02d}": (n, 9, 9) for n in range(40)}
    missing = {12, 15, 16, *range(20, 30), 38}  # groups of 10: none, some, all and one missing
    root = _dataset(tmp_path, colours, row_group_size=10)
    table = pq.read_table(os.path.join(root, "items.parquet"))
    images = [None if n in missing else image for n, image in enumerate(table["image"].to_pylist())]
    table = table.set_column(1, "image", pa.array(images, pa.binary()))
    pq.write_table(table, os.path.join(root, "items.parquet"), row_group_size=10)
    read_row_group = pq.ParquetFile.read_row_group

    def ids_only(parquet, group, columns=None, **kwargs):
        assert columns == ["item_id"], f"the driver read {columns} of row group {group}"
        return read_row_group(parquet, group, columns=columns, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", ids_only)  # the driver's; tasks run elsewhere
    rows = pd.DataFrame({"item": list(colours), "label": np.arange(40)})
    out = _rows(image_rows(root, "image", rows, ("item",), 4))
    assert [int(r["label"]) for r in out] == [n for n in range(40) if n not in missing]
    assert all(r["item"][1, 1, 0] == int(r["label"]) for r in out)


def test_rows_of_two_images_and_a_bag(ray_session, tmp_path):
    root = _dataset(tmp_path, COLOURS)
    rows = pd.DataFrame(
        {
            "positive": ["a", "b", "c", "a"],
            "negative": ["b", "c", "a", "bad"],
            "bag": [np.eye(2, dtype=np.float32)[n % 2] for n in range(4)],
            "label": np.arange(4),
        }
    )
    out = _rows(image_rows(root, "image", rows, ("positive", "negative"), 6))
    assert [int(r["label"]) for r in out] == [0, 1, 2]
    for row, (positive, negative) in zip(out, [("a", "b"), ("b", "c"), ("c", "a")]):
        assert np.array_equal(row["positive"][3, 3], COLOURS[positive])
        assert np.array_equal(row["negative"][3, 3], COLOURS[negative])
    assert [list(r["bag"]) for r in out] == [[1, 0], [0, 1], [1, 0]]


def test_rows_of_two_images_read_items_from_every_decoded_block(ray_session, tmp_path):
    colours = {f"i{n:03d}": (n, 255 - n, 7) for n in range(4 * MIN_ITEMS_PER_TASK)}  # decoded in 4 blocks
    colours["i009"] = None  # undecodable: its rows are left out
    root = _dataset(tmp_path, colours)
    names = list(colours)
    pairs = [(names[n], names[(n * 97 + 31) % len(names)]) for n in range(len(names))]  # across blocks
    rows = pd.DataFrame({"positive": [p for p, _ in pairs], "negative": [n for _, n in pairs], "label": range(256)})
    out = _rows(image_rows(root, "image", rows, ("positive", "negative"), 6))
    expected = [n for n, pair in enumerate(pairs) if "i009" not in pair]
    assert [int(r["label"]) for r in out] == expected
    for row in out:
        positive, negative = pairs[int(row["label"])]
        assert np.array_equal(row["positive"][2, 2], colours[positive])
        assert np.array_equal(row["negative"][2, 2], colours[negative])


def test_the_lookup_a_decode_task_reads_holds_no_python_objects():
    # every decode task reads the lookup: arrays of numbers and bytes are read in place, while Python
    # objects (a dict of ids, an array of str) would be unpickled whole by each task, O(items) per task
    rows = pd.DataFrame({"item": ["b", "a", None, "b", "c", "a"], "id": ["p", "q", "r", "s", "t", "u"]})
    items, lookup = _row_lookup(rows, "item")
    arrays = [lookup["offsets"], lookup["positions"], *lookup["columns"].values()]
    assert all(isinstance(a, np.ndarray) and a.dtype != object for a in arrays)
    assert items == ["b", "a", "c"]  # in order of first appearance; the row naming no item is left out
    rows_of = [lookup["positions"][lookup["offsets"][s] : lookup["offsets"][s + 1]].tolist() for s in range(3)]
    assert rows_of == [[0, 3], [1, 5], [4]]


def test_ragged_float_vectors_are_named():
    with pytest.raises(ValueError, match="column 'target' holds float vectors of different lengths"):
        row_columns(pd.DataFrame({"item": ["a", "b"], "target": [np.ones(2), np.ones(3)]}), ("item",))


def test_an_extraction_whose_actor_dies_is_run_again(ray_session, tmp_path):
    import ray

    from socialfeat.distributed.inference import again_if_an_actor_dies

    class CrashOnce:  # defined here so that workers get it by value (the test module is not importable there)
        """A pool actor whose process dies on its first batch of the run (a marker file remembers it)."""

        def __init__(self, marker: str):
            self.marker = marker

        def __call__(self, batch):
            if not os.path.exists(self.marker):
                open(self.marker, "w").close()
                os._exit(1)
            return batch

    marker, runs = str(tmp_path / "crashed"), []

    def work():
        runs.append(1)
        pool = ray.data.range(30, override_num_blocks=3).map_batches(
            CrashOnce, fn_constructor_kwargs={"marker": marker}, concurrency=1, max_restarts=0
        )
        return sorted(row["id"] for row in pool.take_all())

    assert again_if_an_actor_dies(work) == list(range(30)) and len(runs) == 2
    os.remove(marker)
    with pytest.raises(ray.exceptions.RayActorError):
        again_if_an_actor_dies(work, attempts=1)


def test_image_rows_of_a_sharded_dataset_are_those_of_the_single_file(ray_session, tmp_path):
    small = {"users": 120, "items": 90, "image_size": 24, "styles": 3}
    single, sharded = str(tmp_path / "single"), str(tmp_path / "sharded")
    generate(SynthConfig(**small), single)
    generate(SynthConfig(**small, shards=4), sharded)
    rows = pd.DataFrame({"item": read_dataset(single).items["item_id"][::-2], "label": np.arange(45)})
    one, many = (image_rows(root, "image", rows, ("item",), 24).take_all() for root in (single, sharded))
    assert len(one) == len(many) == 45
    for a, b in zip(one, many):  # the same rows in the same order: a seeded training run is the same
        assert a["label"] == b["label"] and np.array_equal(a["item"], b["item"])


def test_image_baselines_by_tasks_are_those_of_the_stored_bytes_in_the_asked_order(ray_session, tmp_path):
    small = {"users": 120, "items": 300, "image_size": 24, "styles": 3}
    sharded = str(tmp_path / "sharded")
    generate(SynthConfig(**small, shards=3), sharded)
    items = read_dataset(sharded).items
    ids = items["item_id"].to_numpy()[::-1][: 2 * MIN_ITEMS_PER_TASK + 7]  # several tasks, reversed order
    found = item_baselines(sharded, "image", ids)
    stored = schema.read_columns(sharded, schema.ITEMS, ["item_id", "image"]).to_pandas().set_index("item_id")
    stored = stored["image"].reindex(ids)
    expected = baseline_features(list(stored))
    assert set(found) == {"color_hist", "pixels"} and len(found["pixels"]) == len(ids)
    for name in expected:
        assert np.array_equal(found[name], expected[name]), name
    with pytest.raises(UserError, match="no image"):
        item_baselines(sharded, "image", [*ids[:3], "no-such-item"])
