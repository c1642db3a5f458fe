"""The shared train stage: a table of image rows and a task in; the encoder artefact, the trained model's
weights and the per-epoch history out."""

import logging
import os
import time
import zlib

import numpy as np
import pandas as pd
import torch

from socialfeat import artifacts
from socialfeat.errors import UserError
from socialfeat.features.encoder import encoder_spec, load_encoder, save_encoder
from socialfeat.stages import StageContext
from socialfeat.training.task import Task, stage_metric
from socialfeat.vision.backbones import TAPS, at_tap, backbone

log = logging.getLogger(__name__)
TRAIN_FILES = ("encoder.pt", "encoder.json", "model.pt", "history.json", "task.json")  # what train_task writes


def train_metrics(*task_metrics: str, prefix: str = "train") -> tuple[str, ...]:
    """The names a stage that trains reports: the loop's own, and each of its tasks' epoch metrics on the
    training and holdout images (`task_metrics`: every task's the method offers; the contract test checks)."""
    own = ("epochs", "loss", "holdout_loss", "holdout_loss_vs_chance", "seconds", "worker_peak_rss_mib")
    own += ("images", "images_undecodable", "resumed", "resumed_epoch")
    return tuple(f"{prefix}/{name}" for name in (*own, *task_metrics, *(f"holdout_{m}" for m in task_metrics)))


def task_record(task: Task) -> dict:
    """What a trained task was (task.json): its class, image columns and per-epoch metrics."""
    return {
        "task": type(task).__name__,
        "image_columns": list(task.image_columns),
        "epoch_metrics": list(task.epoch_metrics),
    }


class NoImagesError(UserError):
    """No item that the stage needs has a decodable image."""


def holdout_mask(item_ids: pd.Series, fraction: float) -> np.ndarray:
    """A stable slice of items (by id hash, so it does not move when K or the seed changes)."""
    return np.array([zlib.crc32(str(i).encode()) % 10_000 < fraction * 10_000 for i in item_ids])


def _image_datasets(ctx: StageContext, task: Task, rows: pd.DataFrame, holdout: np.ndarray):
    # the Ray layer loads when the stage runs: a method's graph loads without Ray
    from socialfeat.distributed.data import image_rows

    dataset, size = ctx.dataset(), ctx.cfg.training.image_size

    def images(part: pd.DataFrame):
        return image_rows(dataset.images, dataset.image_column, part, task.image_columns, size).materialize()

    train_ds, holdout_ds = images(rows[~holdout]), images(rows[holdout])
    if train_ds.count() == 0:
        raise NoImagesError(
            f"none of the {int((~holdout).sum())} training rows has a decodable image in "
            f"{dataset.root}; the CNN has nothing to learn from (see `socialfeat data check`)"
        )
    return train_ds, holdout_ds


def train_task(
    ctx: StageContext,
    tmp: str,
    task: Task,
    rows: pd.DataFrame,
    holdout: np.ndarray,
    stage: str = "train",
    initial: dict | None = None,
    epochs: int | None = None,
) -> dict:
    """Train `task` on `rows` (its image columns name items; `holdout` marks the rows held out for the
    per-epoch holdout metrics) as the stage `stage`, from `initial` weights if given, for `epochs` (None:
    training.epochs): encoder.pt /
    encoder.json, model.pt and history.json go to `tmp`, the trainer's checkpoints to where a retry of this
    stage finds them."""
    # the Ray layer loads when the stage runs: a method's graph loads without Ray
    from socialfeat.distributed.train import fit

    cfg = ctx.cfg.training
    if epochs is not None:
        cfg = cfg.model_copy(update={"epochs": epochs})
    train_ds, holdout_ds = _image_datasets(ctx, task, rows, holdout)
    train_rows, holdout_rows = train_ds.count(), holdout_ds.count()
    started = time.perf_counter()
    state, history = fit(
        train_ds,
        holdout_ds,
        task,
        cfg,
        train_rows,
        ctx.checkpoints(stage),
        "cnn",
        tune_objectives=ctx.tune_objectives,
        progress=ctx.progress,
        initial=initial,
    )
    model = task.build(*backbone(cfg.model))
    model.load_state_dict(state["model"])
    save_encoder(
        tmp,
        at_tap(task.encoder(model), cfg.model, cfg.tap),
        encoder_spec(cfg.model, cfg.tap, cfg.image_size, cfg.crop_size),
    )
    torch.save(state["model"], os.path.join(tmp, "model.pt"))  # the head too: a plain state dict
    artifacts.write_json(os.path.join(tmp, "history.json"), history)
    artifacts.write_json(os.path.join(tmp, "task.json"), task_record(task))
    last = {stage_metric(k): v for k, v in history[-1].items() if k not in ("epoch", "resumed", "started_at_epoch")}
    return last | {
        "train/images": train_rows + holdout_rows,
        "train/images_undecodable": int(len(rows) - train_rows - holdout_rows),
        "train/epochs": history[-1]["epoch"],
        "train/seconds": time.perf_counter() - started,
        "train/resumed": int(any(h["resumed"] for h in history)),
        "train/resumed_epoch": history[-1]["started_at_epoch"],
    }


def tower_outputs(ctx: StageContext, item_ids, stage: str = "train") -> tuple[np.ndarray, np.ndarray, dict]:
    """(the items embedded, the trained tower's outputs for them: what the task's head reads, the trained
    model's state dict) of the model that the stage `stage` trained."""
    # the Ray layer loads when the stage runs: a method's graph loads without Ray
    from socialfeat.distributed.inference import (
        extract,
        item_images,
    )

    spec, _ = load_encoder(ctx.path(stage))
    model = artifacts.load_tensors(ctx.path(stage, "model.pt"))
    tower = {k.removeprefix("backbone."): v for k, v in model.items() if k.startswith("backbone.")}
    whole = spec | {"tap": TAPS[spec["architecture"]][-1]}  # the tower's output feeds the head
    dataset, training = ctx.dataset(), ctx.cfg.training
    images = item_images(dataset.images, dataset.image_column, item_ids, spec["image_size"])
    found, vectors = extract(
        images, whole, tower, training.seed, ctx.cfg.features.batch_size, ctx.cfg.features.concurrency, training.use_gpu
    )
    return found, vectors, model


def trained_model(ctx: StageContext, task: Task, state: dict) -> torch.nn.Module:
    """The model `task` builds on the run's backbone, with the trained weights `state`, in eval mode."""

    model = task.build(*backbone(ctx.cfg.training.model))
    model.load_state_dict(state)
    return model.eval()
