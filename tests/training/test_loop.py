"""The task-agnostic loop without Ray: it trains whatever task it is given, and image towers cut at taps."""

import io
import os

import numpy as np
import pandas as pd
import torch
from PIL import Image

from socialfeat.methods.cfl.tasks import PseudoClassTask
from socialfeat.training.loop import evaluate, make_optimizer, train_one_epoch
from socialfeat.training.task import epoch_metric_names, stage_metric
from socialfeat.vision.backbones import DIMS, at_tap, backbone, build, embed, tower_of

CPU = torch.device("cpu")


def _styles_and_images(synth_dir, size=32):
    items = pd.read_parquet(os.path.join(synth_dir, "items.parquet"))
    images = np.stack(
        [np.asarray(Image.open(io.BytesIO(b)).convert("RGB").resize((size, size))) for b in items["image"]]
    )
    styles = items["labels"].str[0].astype("category").cat.codes.to_numpy()
    return images, styles


def test_plain_torch_loop_learns_styles_without_ray(synth_dir):
    images, styles = _styles_and_images(synth_dir)
    torch.manual_seed(0)
    task = PseudoClassTask(int(styles.max()) + 1)
    model = task.build(*backbone("small"))
    optimizer = make_optimizer(model, "adamw", 3e-3, 1e-4, 0.9)
    batches = [
        {"item": torch.from_numpy(images[i : i + 32]), "label": torch.from_numpy(styles[i : i + 32])}
        for i in range(0, 320, 32)
    ]
    held = [{"item": torch.from_numpy(images[320:]), "label": torch.from_numpy(styles[320:])}]
    before = evaluate(model, task, held, CPU, 28)
    for _ in range(8):
        train_one_epoch(model, task, batches, optimizer, None, CPU, 28)
    after = evaluate(model, task, held, CPU, 28)
    assert after["loss"] < before["loss"] and after["top1"] > 2.0 / (styles.max() + 1)
    assert after["examples"] == len(images) - 320 and after["top5"] >= after["top1"]


def test_towers_cut_at_their_taps_match_the_whole_networks():
    torch.manual_seed(0)
    for name, size in (("small", 28), ("alexnet", 64), ("resnet18", 32)):
        model = build(name, 7).eval()
        x = torch.rand(2, 3, size, size)
        tap = "fc6" if name == "alexnet" else "penultimate"
        tower = at_tap(tower_of(model, name), name, tap)
        assert tower(x).shape == (2, DIMS[name]) and torch.equal(tower(x), embed(model, name, tap, x))
    fresh, dim = backbone("alexnet")
    assert dim == 4096 and len(at_tap(fresh, "alexnet", "fc6")) < len(at_tap(fresh, "alexnet", "fc7"))


def test_epoch_metric_names_follow_the_task():
    names = epoch_metric_names(PseudoClassTask(8))
    assert names[0] == "epoch" and "holdout_loss_vs_chance" in names and "holdout_top5" in names
    assert stage_metric("train_loss") == "train/loss" and stage_metric("holdout_top1") == "train/holdout_top1"
