"""Sharded datasets: tables as folders of Parquet files read as their single-file form, every violation
named by shard file and the row within it (tests/distributed/test_image_rows.py decodes both forms alike,
tests/methods/test_contract.py runs every method on shards)."""

import os

import pandas as pd
import pytest

from socialfeat.cli import main
from socialfeat.config import SynthConfig
from socialfeat.data import keys, schema
from socialfeat.data.reader import DatasetError, read_dataset
from socialfeat.data.synthetic import generate, write_contract

SMALL = {"users": 120, "items": 90, "image_size": 24, "styles": 3}
TABLES = ("interactions", "items", "tags", "social", "comments")


@pytest.fixture(scope="module")
def both_forms(tmp_path_factory) -> tuple[str, str]:
    root = tmp_path_factory.mktemp("forms")
    single, sharded = str(root / "single"), str(root / "sharded")
    generate(SynthConfig(**SMALL), single)
    generate(SynthConfig(**SMALL, shards=4), sharded)
    return single, sharded


def test_synth_shards_every_table_and_reads_back_as_the_single_file(both_forms):
    single, sharded = both_forms
    assert sorted(os.listdir(os.path.join(sharded, "items"))) == [f"part-0000{i}.parquet" for i in range(4)]
    assert not os.path.exists(os.path.join(sharded, "items.parquet"))
    one, many = read_dataset(single), read_dataset(sharded)
    for table in TABLES:
        pd.testing.assert_frame_equal(getattr(one, table), getattr(many, table))
    assert keys.dataset_fingerprint(single) != keys.dataset_fingerprint(sharded)  # the bytes are keyed
    assert schema.read_columns(sharded, schema.ITEMS, ["item_id"]).num_rows == SMALL["items"]


def test_image_bytes_are_stored_uncompressed_and_the_other_columns_in_snappy(both_forms):
    # JPEG and PNG bytes do not shrink: Snappy on them only slows every read of the images
    for root in both_forms:
        for parquet in schema.parquet_files(root, schema.ITEMS):
            group = parquet.metadata.row_group(0)
            codecs = {group.column(c).path_in_schema: group.column(c).compression for c in range(group.num_columns)}
            assert codecs.pop("image") == "UNCOMPRESSED"
            assert codecs and set(codecs.values()) == {"SNAPPY"}


def _sharded(root, interactions: pd.DataFrame, items: pd.DataFrame) -> str:
    os.makedirs(root)
    write_contract(str(root), interactions, items, shards=3)
    return str(root)


def _views(n: int) -> pd.DataFrame:
    return pd.DataFrame({"user_id": [f"u{i % 7}" for i in range(n)], "item_id": [f"i{i % 5}" for i in range(n)]})


def _items() -> pd.DataFrame:
    return pd.DataFrame({"item_id": [f"i{i}" for i in range(5)], "image_path": [f"{i}.jpg" for i in range(5)]})


def test_an_unknown_item_is_named_by_its_shard_and_the_row_within_it(tmp_path, capsys):
    views = _views(30)
    views.loc[24, "item_id"] = "nowhere"  # 30 rows in three shards of 10: the third shard's row 4
    root = _sharded(tmp_path / "ds", views, _items())
    expected = (
        "interactions/part-00002.parquet: column 'item_id' names 1 item(s) absent from items.parquet, "
        "first at row 4 ('nowhere')"
    )
    with pytest.raises(DatasetError) as error:
        read_dataset(root)
    assert error.value.violations == [expected]
    assert main(["data", "check", root]) == 1
    assert expected in capsys.readouterr().err


def test_a_null_a_repeated_id_and_a_mistyped_shard_are_named_by_shard(tmp_path):
    items = pd.concat([_items(), _items().iloc[[0]]], ignore_index=True)  # 6 rows: shards of 2, i0 again last
    root = _sharded(tmp_path / "a", _views(30), items)
    views = pd.read_parquet(os.path.join(root, "interactions", "part-00001.parquet"))
    views.loc[3, "user_id"] = None  # the contract's writer refuses a null id, as a user's exporter may not
    views.to_parquet(os.path.join(root, "interactions", "part-00001.parquet"))
    with pytest.raises(DatasetError) as error:
        read_dataset(root)
    assert "interactions/part-00001.parquet: column 'user_id' is null in 1 row(s), first at row 3" in str(error.value)
    assert "items/part-00002.parquet: column 'item_id' repeats in 1 row(s), first at row 1 ('i0')" in str(error.value)
    root = _sharded(tmp_path / "b", _views(30), _items())
    pd.DataFrame({"user_id": [1], "item_id": ["i0"]}).to_parquet(
        os.path.join(root, "interactions", "part-00003.parquet")
    )
    with pytest.raises(DatasetError, match="interactions/part-00003.parquet: column 'user_id' has type int64"):
        read_dataset(root)


def test_a_table_in_both_forms_or_in_neither_is_refused(tmp_path):
    root = _sharded(tmp_path / "ds", _views(30), _items())
    os.makedirs(tmp_path / "one")
    write_contract(str(tmp_path / "one"), _views(30), _items())
    os.replace(tmp_path / "one" / "items.parquet", os.path.join(root, "items.parquet"))
    with pytest.raises(DatasetError, match="both items.parquet and a folder items/ of shards"):
        read_dataset(root)
    os.remove(os.path.join(root, "items.parquet"))
    for shard in os.listdir(os.path.join(root, "items")):
        os.remove(os.path.join(root, "items", shard))
    with pytest.raises(DatasetError, match=r"items.parquet: required file is missing .* a folder items/"):
        read_dataset(root)


def test_data_check_scans_the_log_batch_by_batch_and_counts_as_the_reader(both_forms, tmp_path, monkeypatch):
    import socialfeat.data.reader as reader
    from socialfeat.data.check import dataset_counts

    monkeypatch.setattr(reader, "SCAN_ROWS", 1000)  # several batches a file
    single, sharded = both_forms
    held = dataset_counts(read_dataset(single))
    for root in (single, sharded):
        scanned, problems = reader.read_dataset_lenient(root, log_as="codes")
        assert (
            not problems
            and scanned.interactions is None
            and scanned.log is not None
            and dataset_counts(scanned) == held
            and scanned.side.frames == {}  # counted, not held beside the log
        )
    repeated = pd.concat([_views(30), _views(30).iloc[:4]], ignore_index=True)  # 4 repeats, in the last shard
    scanned, problems = reader.read_dataset_lenient(_sharded(tmp_path / "dup", repeated, _items()), log_as="codes")
    assert not problems and dataset_counts(scanned)["interactions"] == 30
    assert dataset_counts(scanned)["duplicate_interactions_removed"] == 4
    monkeypatch.setattr(reader, "SCAN_ROWS", 4)
    root = _sharded(tmp_path / "null", _views(30), _items())
    for shard in sorted(os.listdir(os.path.join(root, "interactions")))[1:]:
        os.remove(os.path.join(root, "interactions", shard))  # one file of 10 rows: three batches
    views = pd.read_parquet(os.path.join(root, "interactions", "part-00000.parquet"))
    views.loc[9, "item_id"] = None
    views.to_parquet(os.path.join(root, "interactions", "part-00000.parquet"))
    _, problems = reader.read_dataset_lenient(root, log_as="codes")
    assert problems[0] == "interactions/part-00000.parquet: column 'item_id' is null in 1 row(s), first at row 9"


def test_the_log_read_in_small_batches_is_the_log_read_whole(both_forms, tmp_path, monkeypatch):
    """User codes are made batch by batch (each batch's new ids appended to the map): decoded, they give the
    frame one batch gives; a repeated (user, item) keeps its last row."""
    import pyarrow as pa

    import socialfeat.data.reader as reader

    single, sharded = both_forms
    whole = read_dataset(single).interactions
    monkeypatch.setattr(reader, "SCAN_ROWS", 97)  # many batches a shard, ids repeating across them
    coded = read_dataset(sharded, log_as="codes")
    assert coded.interactions is None and coded.log.user.dtype == "int32" and len(coded.log.users) > 50
    pd.testing.assert_frame_equal(reader.log_frame(coded.log, pa.array(coded.items["item_id"], pa.string())), whole)
    repeated = pd.concat([_views(30), _views(30).iloc[:4]], ignore_index=True)
    repeated["value"] = [1.0] * 30 + [2.0] * 4
    kept = read_dataset(_sharded(tmp_path / "repeated", repeated, _items())).interactions
    assert kept["value"].tolist() == [1.0] * 26 + [2.0] * 4  # each pair's last row, where it stood
    last = repeated.drop_duplicates(["user_id", "item_id"], keep="last").reset_index(drop=True)
    assert kept[["user_id", "item_id"]].equals(last[["user_id", "item_id"]])


def test_synth_draws_styles_and_writes_views_in_blocks_as_it_did_whole(tmp_path, monkeypatch):
    import socialfeat.data.synthetic as synthetic

    cfg = SynthConfig(**SMALL, shards=2)
    generate(cfg, str(tmp_path / "whole"))
    monkeypatch.setattr(synthetic, "STYLE_BLOCK", 100)
    monkeypatch.setattr(synthetic, "WRITE_ROWS", 333)
    generate(cfg, str(tmp_path / "blocks"))
    for table in TABLES:
        whole, blocks = (read_dataset(str(tmp_path / name)) for name in ("whole", "blocks"))
        pd.testing.assert_frame_equal(getattr(whole, table), getattr(blocks, table))
    first = pd.read_parquet(tmp_path / "blocks" / "interactions" / "part-00000.parquet")
    assert len(first) > 333  # the shard was written in several row groups
