"""The dataset's cache key covers what stages read: dataset.yaml, and the image files image_path names for
the stages that read images (issue 31)."""

import os
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import SHRINK
from socialfeat.cli import main
from socialfeat.data import keys
from socialfeat.data.reader import UndeclaredImages, read_dataset
from socialfeat.methods import load_config, named
from socialfeat.stages import Stage, StageContext, plan_keys

SMALL = [*SHRINK, "training.epochs=1", "training.batch_size=32", "training.image_size=32", "training.crop_size=28"]


def _with_image_files(synth_dir: str, out: str) -> str:
    """The synthetic dataset with its embedded images written out as files named by image_path."""
    shutil.copytree(synth_dir, out)
    items = pd.read_parquet(os.path.join(out, "items.parquet"))
    os.makedirs(os.path.join(out, "img"))
    for item_id, data in zip(items["item_id"], items["image"]):
        with open(os.path.join(out, "img", f"{item_id}.jpg"), "wb") as handle:
            handle.write(data)
    items = items.drop(columns="image").assign(image_path=[f"img/{i}.jpg" for i in items["item_id"]])
    items.to_parquet(os.path.join(out, "items.parquet"), index=False)
    return out


def _stage_lines(captured: str) -> dict[str, str]:
    return {words[0]: words[1] for words in (line.split() for line in captured.splitlines() if line.startswith("  "))}


@pytest.mark.slow
def test_a_redrawn_image_recomputes_the_stages_that_read_images_and_no_other(ray_session, synth_dir, tmp_path, capsys):
    data = _with_image_files(synth_dir, str(tmp_path / "data"))
    run = ["run", "--data", data, "--out", str(tmp_path / "run"), "--until", "train"]
    run += [arg for setting in SMALL for arg in ("--set", setting)]
    assert main(run) == 0
    capsys.readouterr()
    first = pd.read_parquet(os.path.join(data, "items.parquet"))["image_path"].iloc[0]
    Image.fromarray(np.full((32, 32, 3), 250, np.uint8)).save(os.path.join(data, first))  # redrawn
    assert main(run) == 0
    lines = _stage_lines(capsys.readouterr().out)
    assert {name for name, state in lines.items() if state == "computed"} == {"train"}  # features follow it
    assert {"data", "filter", "split", "sampling", "factorization", "kmeans"} <= {
        name for name, state in lines.items() if state == "reused"
    }


def test_dataset_yaml_is_part_of_the_dataset_key_and_images_key_only_image_stages(synth_dir, tmp_path):
    data = _with_image_files(synth_dir, str(tmp_path / "data"))
    before = keys.dataset_fingerprint(data), keys.images_fingerprint(data)
    with open(os.path.join(data, "dataset.yaml"), "w") as handle:
        handle.write("allow_external_images: true\n")
    assert keys.dataset_fingerprint(data) != before[0]
    os.remove(os.path.join(data, "img", os.listdir(os.path.join(data, "img"))[0]))  # an image gone
    assert keys.images_fingerprint(data) != before[1]
    method, cfg = named("cfl"), load_config(None, ["method=cfl"])
    planned, redrawn = plan_keys(method, cfg, "d", images_key="a"), plan_keys(method, cfg, "d", images_key="b")
    moved = {name for name in planned if planned[name] != redrawn[name]}
    assert moved == {"train", "features", "rounds", "evaluate", "coldstart"}  # what reads images, what follows


def test_a_stage_reading_images_it_does_not_declare_fails_loudly(synth_dir):
    peek = Stage("peek", ("data",), (), lambda ctx, tmp: {})
    ctx = StageContext(cfg=load_config(None, []), out="", store=None, stage=peek)
    ctx._shared["dataset"] = read_dataset(synth_dir)
    assert len(ctx.dataset().items) > 0  # tables are fine
    with pytest.raises(UndeclaredImages, match="stage 'peek' read the dataset's images"):
        assert ctx.dataset().images is not None  # the read raises
