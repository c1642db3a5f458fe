"""The CNN stages of collaborative feature learning: train on pseudo classes, then extract features."""
import logging
import os
import time
import zlib

import numpy as np
import pandas as pd
import torch

from socialfeat import artifacts
from socialfeat.config import FeaturesConfig, TrainingConfig
from socialfeat.data.reader import Dataset
from socialfeat.features.extract import write_features
from socialfeat.features.quality import label_precision

log = logging.getLogger(__name__)


class NoImagesError(ValueError):
    """No item that the stage needs has a decodable image."""


def _holdout(item_ids: pd.Series, fraction: float) -> np.ndarray:
    """A stable slice of items (by id hash, so it does not move when K or the seed changes)."""
    return np.array([zlib.crc32(str(i).encode()) % 10_000 < fraction * 10_000 for i in item_ids])


def _targets(cfg: TrainingConfig, classes: pd.DataFrame, factors_dir: str):
    """(labels, regression targets or None, number of outputs) for the configured objective."""
    labels = classes["pseudo_class"].to_numpy()
    if cfg.objective == "pseudo_class":
        return labels, None, int(labels.max()) + 1
    factors = np.load(os.path.join(factors_dir, "item_factors.npy"))
    factors = factors / np.maximum(np.linalg.norm(factors, axis=1, keepdims=True), 1e-12)
    return labels, factors, factors.shape[1]


def train_stage(dataset: Dataset, kmeans_dir: str, factors_dir: str, cfg: TrainingConfig, tmp: str,
                checkpoints: str | None = None) -> dict:
    """Train the CNN on the pseudo classes; Ray Train's checkpoints go to `checkpoints` (a URI all nodes
    reach) when given, else into the stage."""
    from socialfeat.distributed.data import image_dataset
    from socialfeat.distributed.train import fit_cnn

    classes = pd.read_parquet(os.path.join(kmeans_dir, "pseudo_classes.parquet"))
    labels, targets, outputs = _targets(cfg, classes, factors_dir)
    holdout = _holdout(classes["item_id"], cfg.holdout_fraction)
    column = dataset.image_column

    def images(mask):
        return image_dataset(dataset.root, column, classes["item_id"][mask], cfg.image_size, labels[mask],
                             None if targets is None else targets[mask]).drop_columns(["item_id"]).materialize()

    train_ds, holdout_ds = images(~holdout), images(holdout)
    train_rows, holdout_rows = train_ds.count(), holdout_ds.count()
    if train_rows == 0:
        raise NoImagesError(f"none of the {int((~holdout).sum())} training items has a decodable image in "
                            f"{dataset.root}; the CNN has nothing to learn from (see `socialfeat data check`)")
    weights = None
    if cfg.class_balanced and cfg.objective == "pseudo_class":
        counts = np.bincount(labels, minlength=outputs).astype(np.float64)
        weights = (counts.sum() / np.maximum(counts, 1) / outputs).tolist()
    started = time.perf_counter()
    state, history = fit_cnn(train_ds, holdout_ds, cfg, outputs, train_rows, weights, os.path.join(tmp, "ray"), "cnn",
                             checkpoints)
    torch.save({"model": state["model"], "model_name": cfg.model, "num_outputs": outputs, "tap": cfg.tap},
               os.path.join(tmp, "model.pt"))
    artifacts.write_json(os.path.join(tmp, "history.json"), history)
    last = history[-1]
    return {"train/images": train_rows + holdout_rows,
            "train/images_undecodable": int(len(classes) - train_rows - holdout_rows),
            "train/epochs": last["epoch"], "train/loss": last["train_loss"], "train/holdout_top1": last["holdout_top1"],
            "train/holdout_top5": last["holdout_top5"], "train/seconds": time.perf_counter() - started,
            "train/resumed": int(any(h["resumed"] for h in history))}


def _item_images(dataset: Dataset, size: int):
    """(items with an image, a Ray Dataset of them decoded at `size`)."""
    from socialfeat.distributed.data import image_dataset

    items = dataset.items[dataset.items["image_ref"].notna()]
    return items, image_dataset(dataset.root, dataset.image_column, items["item_id"], size)


def features_stage(dataset: Dataset, train_dir: str, cfg: FeaturesConfig, tmp: str) -> dict:
    """Features of every item with an image: tr, te and the items the popularity filters dropped
    (a user wants every image embedded; only factorisation needs the filters)."""
    from socialfeat.distributed.inference import extract

    saved = torch.load(os.path.join(train_dir, "model.pt"), map_location="cpu", weights_only=False)
    training = TrainingConfig(**artifacts.read_json(os.path.join(train_dir, "manifest.json"))["config"])
    items, images = _item_images(dataset, training.image_size)
    images = images.materialize()  # read once, embedded by every variant
    labels = dataset.items.set_index("item_id")["labels"] if "labels" in dataset.items else None
    result = {"features/items": images.count(), "features/undecodable": int(len(items) - images.count())}
    variants = {"cnn": saved["model"]} | ({"random_cnn": None} if cfg.random_cnn else {})
    for name, state in variants.items():
        item_ids, vectors = extract(images, saved["model_name"], saved["num_outputs"], state, saved["tap"],
                                    training.crop_size, training.seed, cfg.batch_size, cfg.concurrency,
                                    training.use_gpu)
        write_features(os.path.join(tmp, f"features_{name}.parquet"), item_ids, vectors)
        if labels is not None:
            item_labels = labels.reindex(item_ids).tolist()
            result[f"features/{name}/label_precision@{cfg.neighbours}"] = label_precision(vectors, item_labels,
                                                                                         cfg.neighbours)
        result[f"features/{name}/dim"] = int(vectors.shape[1])
    os.replace(os.path.join(tmp, "features_cnn.parquet"), os.path.join(tmp, "features.parquet"))
    return result


def weights_features(dataset: Dataset, weights_path: str, training: TrainingConfig, cfg: FeaturesConfig,
                     out_path: str) -> int:
    """Features from a user's weights file for `training.model` (at `training.tap`) -> out_path; rows written."""
    from socialfeat.distributed.inference import extract
    from socialfeat.evaluation.external import load_weights

    state, outputs = load_weights(weights_path, training.model)
    _, images = _item_images(dataset, training.image_size)
    item_ids, vectors = extract(images, training.model, outputs, state, training.tap, training.crop_size,
                                training.seed, cfg.batch_size, cfg.concurrency, training.use_gpu)
    write_features(out_path, item_ids, vectors)
    return len(item_ids)
