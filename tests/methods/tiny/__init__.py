"""A test-only method, to show that a method is a folder and one registry line: items' own labels as classes,
the shared train and features stages, no behaviour at all."""

import os

import numpy as np
import pandas as pd

from socialfeat.methods.cfl.tasks import PseudoClassTask
from socialfeat.pipeline.common import DATA
from socialfeat.pipeline.features import features_stage
from socialfeat.pipeline.train import TRAIN_FILES, holdout_mask, train_metrics, train_task
from socialfeat.stages import Method, Stage

from .config import Config


def _classes(ctx, tmp: str) -> dict:
    items = ctx.dataset().items
    labelled = items[items["labels"].map(lambda v: v is not None and len(v) > 0)]
    pick = 0 if ctx.cfg.tiny.label == "first" else -1
    names = sorted({labels[pick] for labels in labelled["labels"]})
    classes = labelled["labels"].map(lambda v: names.index(v[pick])).to_numpy(np.int64)
    pd.DataFrame({"item_id": labelled["item_id"], "label": classes}).to_parquet(os.path.join(tmp, "classes.parquet"))
    return {"classes/count": len(names)}


def _train(ctx, tmp: str) -> dict:
    classes = pd.read_parquet(os.path.join(ctx.path("classes"), "classes.parquet"))
    rows = pd.DataFrame({"item": classes["item_id"], "label": classes["label"]})
    task = PseudoClassTask(int(classes["label"].max()) + 1)
    return train_task(ctx, tmp, task, rows, holdout_mask(classes["item_id"], ctx.cfg.training.holdout_fraction))


CLASSES_METRICS = ("classes/count",)
METHOD = Method(
    name="tiny",
    description="supervised on the items' first labels (a test-only method)",
    stages=(
        DATA,
        Stage(
            "classes", ("data",), ("tiny.label",), _classes, outputs=("classes.parquet",), metrics=("classes/count",)
        ),
        Stage(
            "train",
            ("classes", "data"),
            ("training",),
            _train,
            outputs=TRAIN_FILES,
            metrics=train_metrics("top1", "top5"),
            trains=True,
            images=True,
        ),
        features_stage("train"),
    ),
    config=Config,
    tasks=lambda cfg: {"label_class": PseudoClassTask(cfg.data.synth.styles)},
    task=lambda cfg: PseudoClassTask(cfg.data.synth.styles),
)
