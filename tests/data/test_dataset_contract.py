"""The validating reader and `data check` on broken datasets: each violation named, each image case handled."""

import io
import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from socialfeat.cli import main
from socialfeat.data.check import image_census
from socialfeat.data.images import decode_rgb
from socialfeat.data.reader import DatasetError, read_dataset
from socialfeat.data.synthetic import write_contract


def _image_file(path, mode: str, fmt: str) -> None:
    colour = {"L": 128, "CMYK": (0, 255, 255, 0), "RGBA": (255, 0, 0, 0), "RGB": (0, 0, 255)}[mode]
    Image.new(mode, (20, 30), colour).save(path, format=fmt)


def _small_dataset(root, interactions=None, items=None) -> str:
    os.makedirs(root, exist_ok=True)
    interactions = (
        interactions
        if interactions is not None
        else pd.DataFrame({"user_id": ["u1", "u1", "u2"], "item_id": ["a", "b", "a"], "value": [1.0, 1.0, 1.0]})
    )
    items = items if items is not None else pd.DataFrame({"item_id": ["a", "b"], "image_path": ["a.jpg", "b.jpg"]})
    write_contract(root, interactions, items)
    return str(root)


def test_missing_directory(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        read_dataset(str(tmp_path / "nowhere"))
    assert main(["data", "check", str(tmp_path / "nowhere")]) == 1


def test_missing_and_wrongly_typed_columns(tmp_path, capsys):
    root = tmp_path / "d"
    os.makedirs(root)
    pq.write_table(pa.table({"user_id": [1, 2], "item": ["a", "b"]}), root / "interactions.parquet")
    pq.write_table(pa.table({"item_id": ["a", "b"], "image_path": ["a.jpg", "b.jpg"]}), root / "items.parquet")
    with pytest.raises(DatasetError) as error:
        read_dataset(str(root))
    messages = error.value.violations
    assert any("interactions.parquet" in m and "'item_id' is missing" in m for m in messages)
    assert any("interactions.parquet" in m and "'user_id' has type int64, expected string" in m for m in messages)
    assert main(["data", "check", str(root)]) == 1
    assert "expected string" in capsys.readouterr().err


def test_empty_interactions(tmp_path):
    root = _small_dataset(
        tmp_path / "d", pd.DataFrame({"user_id": pd.Series([], dtype=str), "item_id": pd.Series([], dtype=str)})
    )
    with pytest.raises(DatasetError, match="interactions.parquet: has no rows"):
        read_dataset(root)


def test_duplicates_are_removed_and_counted(tmp_path):
    frame = pd.DataFrame(
        {"user_id": ["u1", "u1", "u1", "u2"], "item_id": ["a", "a", "b", "a"], "value": [1.0, 3.0, 1.0, 1.0]}
    )
    dataset = read_dataset(_small_dataset(tmp_path / "d", frame))
    assert len(dataset.interactions) == 3
    assert dataset.handled["duplicate_interactions_removed"] == 1
    kept = dataset.interactions.query("user_id == 'u1' and item_id == 'a'")["value"]
    assert kept.tolist() == [3.0]  # the last row of a duplicate wins


def test_unknown_items_are_named_with_their_row(tmp_path):
    frame = pd.DataFrame({"user_id": ["u1", "u1", "u2"], "item_id": ["a", "zzz", "a"]})
    with pytest.raises(DatasetError, match=r"absent from items.parquet, first at row 1 \('zzz'\)"):
        read_dataset(_small_dataset(tmp_path / "d", frame))


def test_nan_values_and_null_ids_name_rows(tmp_path):
    root = _small_dataset(tmp_path / "d")
    pq.write_table(
        pa.table({"user_id": ["u1", None, "u2"], "item_id": ["a", "b", "a"], "value": [1.0, 1.0, np.nan]}),
        os.path.join(root, "interactions.parquet"),
    )
    with pytest.raises(DatasetError) as error:
        read_dataset(root)
    text = str(error.value)
    assert "'user_id' is null in 1 row(s), first at row 1" in text
    assert "'value' is null, NaN or infinite in 1 row(s), first at row 2" in text


def test_image_census_counts_every_case(tmp_path, capsys):
    root = tmp_path / "d"
    os.makedirs(root)
    _image_file(root / "grey.jpg", "L", "JPEG")
    _image_file(root / "cmyk.jpg", "CMYK", "JPEG")
    _image_file(root / "alpha.png", "RGBA", "PNG")
    _image_file(root / "ok.jpg", "RGB", "JPEG")
    (root / "empty.jpg").write_bytes(b"")
    (root / "corrupt.jpg").write_bytes((root / "ok.jpg").read_bytes()[:40])
    paths = ["grey.jpg", "cmyk.jpg", "alpha.png", "ok.jpg", "empty.jpg", "corrupt.jpg", "gone.jpg", None]
    items = pd.DataFrame({"item_id": [f"i{n}" for n in range(len(paths))], "image_path": paths})
    interactions = pd.DataFrame({"user_id": ["u"] * len(paths), "item_id": items["item_id"]})
    _small_dataset(root, interactions, items)
    counts = image_census(read_dataset(str(root)))["counts"]
    assert counts["images_found"] == 4 and counts["images_missing"] == 1
    assert counts["images_undecodable"] == 2 and counts["items_without_image"] == 1
    assert counts["images_converted_from_L"] == 1 and counts["images_converted_from_CMYK"] == 1
    assert counts["images_converted_from_RGBA"] == 1
    assert main(["data", "check", str(root)]) == 0
    assert "images_undecodable" in capsys.readouterr().out


def test_decode_converts_to_rgb_and_composites_alpha_on_white():
    buffer = io.BytesIO()
    Image.new("RGBA", (4, 4), (255, 0, 0, 0)).save(buffer, format="PNG")
    image = decode_rgb(buffer.getvalue())
    assert image.mode == "RGB" and image.getpixel((0, 0)) == (255, 255, 255)
    buffer = io.BytesIO()
    Image.new("L", (4, 4), 77).save(buffer, format="PNG")
    assert decode_rgb(buffer.getvalue()).getpixel((1, 1)) == (77, 77, 77)
    assert decode_rgb(b"") is None and decode_rgb(b"not an image") is None


def test_synthetic_dataset_passes_check(synth_dir, capsys):
    assert main(["data", "check", synth_dir, "--json"]) == 0
    out = capsys.readouterr().out
    assert '"images_found": 400' in out and '"images_undecodable": 0' in out


def test_comments_are_read_counted_and_unknown_items_named(synth_dir, tmp_path):
    import shutil

    from socialfeat.data.check import dataset_counts
    from socialfeat.data.reader import DatasetError, read_dataset

    dataset = read_dataset(synth_dir)
    assert dataset.comments is not None and dataset_counts(dataset)["comments"] == len(dataset.comments) > 0
    assert dataset.comments["item_id"].isin(dataset.items["item_id"]).all()
    broken = tmp_path / "broken"
    shutil.copytree(synth_dir, broken)
    comments = dataset.comments.copy()
    comments.loc[3, "item_id"] = "no-such-item"
    comments.to_parquet(broken / "comments.parquet")
    with pytest.raises(DatasetError, match=r"comments.parquet: column 'item_id' names 1 item\(s\) absent .* row 3"):
        read_dataset(str(broken))


def test_text_that_is_not_utf8_is_refused_naming_file_and_column(tmp_path):
    root = _small_dataset(tmp_path / "d")
    items = pq.read_table(os.path.join(root, "items.parquet"))
    text = pa.array([b"caf\xe9 \xff", b"ok"], pa.binary())  # Latin-1 bytes: not UTF-8, so not a Parquet string
    pq.write_table(items.append_column("text", text), os.path.join(root, "items.parquet"))
    with pytest.raises(DatasetError, match="items.parquet: column 'text' has type binary, expected string"):
        read_dataset(root)
