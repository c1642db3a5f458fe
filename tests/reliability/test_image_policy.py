"""Image references from an untrusted dataset: confined to its directory, bounded in size and kind, never fatal."""

import os
import time

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from socialfeat.cli import main
from socialfeat.data.check import image_census
from socialfeat.data.images import ImagePolicy, decode_rgb, item_image_bytes
from socialfeat.data.reader import DatasetError, read_dataset


def _dataset(root, paths: list[str], meta: str | None = None) -> str:
    os.makedirs(root, exist_ok=True)
    items = pd.DataFrame({"item_id": [f"i{n}" for n in range(len(paths))], "image_path": paths})
    items.to_parquet(os.path.join(root, "items.parquet"))
    pd.DataFrame({"user_id": "u", "item_id": items["item_id"]}).to_parquet(os.path.join(root, "interactions.parquet"))
    if meta is not None:
        with open(os.path.join(root, "dataset.yaml"), "w") as handle:
            handle.write(meta)
    return str(root)


def _jpeg(path) -> None:
    Image.fromarray(np.full((8, 8, 3), 120, np.uint8)).save(path)


def test_rows_naming_files_outside_the_dataset_are_rejected_by_the_reader(tmp_path):
    secret = tmp_path / "secret.jpg"
    _jpeg(secret)
    rows = ["ok.jpg", "../secret.jpg", str(secret), "s3://127.0.0.1:9/bucket/x.jpg", "http://example.com/x.jpg"]
    root = _dataset(tmp_path / "d", rows)
    _jpeg(tmp_path / "d" / "ok.jpg")
    with pytest.raises(DatasetError) as failure:
        read_dataset(root)
    messages = failure.value.violations
    assert len(messages) == 4 and all("column 'image_path' at row" in m for m in messages)
    assert "row 1" in messages[0] and "leaves the dataset directory" in messages[0]
    assert "row 2" in messages[1] and "allow_external_images" in messages[1]
    # the opt-in lets absolute paths in, but a URI only under the storage the dataset came from
    opted = _dataset(tmp_path / "e", rows[2:], meta="allow_external_images: true\n")
    with pytest.raises(DatasetError) as failure:
        read_dataset(opted)
    assert [m.split(" (")[0] for m in failure.value.violations] == [
        "items.parquet: column 'image_path' at row 1",
        "items.parquet: column 'image_path' at row 2",
    ]
    own_storage = _dataset(tmp_path / "g", rows[3:4], meta="allow_external_images: true\n")
    assert read_dataset(own_storage, source="s3://127.0.0.1:9/bucket") is not None
    dataset = read_dataset(_dataset(tmp_path / "f", [str(secret)], meta="allow_external_images: true\n"))
    assert decode_rgb(item_image_bytes(dataset.images, None, str(secret))) is not None


def test_files_that_are_not_plain_images_are_refused_without_blocking_and_counted(tmp_path):
    root = tmp_path / "d"
    (root / "img").mkdir(parents=True)
    _jpeg(root / "img" / "ok.jpg")
    os.mkfifo(root / "img" / "fifo.jpg")  # reading it would block for ever
    with open(root / "img" / "big.jpg", "wb") as handle:
        handle.truncate(4 << 20)
    os.symlink(tmp_path / "outside.jpg", root / "img" / "link.jpg")
    _jpeg(tmp_path / "outside.jpg")
    os.symlink("loop.jpg", root / "img" / "loop.jpg")
    (root / "img" / "empty.jpg").write_bytes(b"")
    paths = ["img/ok.jpg", "img/fifo.jpg", "img/big.jpg", "img/link.jpg", "img/loop.jpg", "img/" + "x" * 300]
    dataset = read_dataset(_dataset(root, paths + ["img/empty.jpg", "img/missing.jpg"]), max_bytes=1 << 20)
    started = time.monotonic()
    census = image_census(dataset)
    assert time.monotonic() - started < 10
    counts = census["counts"]
    assert (counts["images_found"], counts["images_refused"]) == (1, 5)
    assert (counts["images_undecodable"], counts["images_missing"]) == (1, 1)  # a zero-byte file is undecodable
    reasons = " | ".join(census["refused"])
    for expected in (
        "not a regular file",
        "over images.max_bytes",
        "out of the dataset",
        "too many levels",
        "too long",
    ):
        assert expected in reasons.lower().replace("symbolic link out", "out"), (expected, reasons)
    assert item_image_bytes(dataset.images, None, "img/fifo.jpg") is None


def test_data_check_names_each_refused_image(tmp_path, capsys):
    root = tmp_path / "d"
    (root / "img").mkdir(parents=True)
    os.mkfifo(root / "img" / "fifo.jpg")
    assert main(["data", "check", _dataset(root, ["img/fifo.jpg"])]) == 0
    captured = capsys.readouterr()
    assert (
        "images_refused" in captured.out and "refused image: item i0: img/fifo.jpg: not a regular file" in captured.err
    )


def test_16_bit_and_float_greyscale_keep_their_tones():
    gradient = (np.tile(np.arange(64), (64, 1)) * 1000).astype(np.uint16)  # 0 .. 63,000 of 65,535
    for image in (
        Image.fromarray(gradient),
        Image.fromarray(gradient.astype(np.int32)),
        Image.fromarray(gradient / 65535.0),
    ):
        path_bytes = _encoded(image)
        pixels = np.asarray(decode_rgb(path_bytes))[0, :, 0].astype(int)
        expected = np.rint(np.arange(64) * 1000 / 257).astype(int)
        assert np.abs(pixels - expected).max() <= 1, image.mode


def _encoded(image: Image.Image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG" if image.mode.startswith("I;16") else "TIFF")
    return buffer.getvalue()


def test_the_policy_of_a_directory_reads_its_dataset_yaml(tmp_path):
    root = _dataset(tmp_path / "d", ["a.jpg"], meta="allow_external_images: true\n")
    assert ImagePolicy.of(root).allow_external and not ImagePolicy.of(str(tmp_path)).allow_external
