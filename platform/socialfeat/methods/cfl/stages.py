"""The stages of collaborative feature learning (Fang et al. 2015): log-popularity negatives, regularised
matrix factorisation, k-means pseudo classes and the CNN trained on them."""

import os

import numpy as np
import pandas as pd

from socialfeat.clustering.kmeans import KMeans, kmeans, nmi
from socialfeat.methods.cfl.tasks import make_task
from socialfeat.pipeline.common import single_labels
from socialfeat.pipeline.train import holdout_mask, train_task
from socialfeat.stages import StageContext


def kmeans_settings(clustering) -> KMeans:
    """The k-means core's settings from the keys the stage declares (a view of the clustering section)."""
    return KMeans(clustering.k, clustering.iterations, clustering.normalize, clustering.whiten, clustering.seed)


def clusters(ctx: StageContext, tmp: str) -> dict:
    items = pd.read_parquet(ctx.path("factorization", "items.parquet"))
    factors = np.load(ctx.path("factorization", "item_factors.npy"))
    labels, centroids, result = kmeans(factors, kmeans_settings(ctx.cfg.clustering))
    pd.DataFrame({"item_id": items["item_id"], "pseudo_class": labels}).to_parquet(
        os.path.join(tmp, "pseudo_classes.parquet"), index=False
    )
    np.save(os.path.join(tmp, "centroids.npy"), centroids)
    truth = single_labels(ctx, items["item_id"])
    if truth is not None:
        result["kmeans/nmi"] = nmi(labels, truth)
    return result


def unit_factors(ctx: StageContext) -> np.ndarray:
    """The tr items' latent factors scaled to unit length (the latent tasks' targets)."""
    factors = np.load(ctx.path("factorization", "item_factors.npy"))
    return (factors / np.maximum(np.linalg.norm(factors, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def train(ctx: StageContext, tmp: str) -> dict:
    """The CNN on the pseudo classes (or regressing the latent factors): one row per tr item."""
    cfg = ctx.cfg.training
    classes = pd.read_parquet(ctx.path("kmeans", "pseudo_classes.parquet"))
    labels = classes["pseudo_class"].to_numpy().astype(np.int64)
    rows = pd.DataFrame({"item": classes["item_id"], "label": labels})
    factors = None if cfg.objective == "pseudo_class" else unit_factors(ctx)
    if factors is not None:
        rows["target"] = list(factors)
    weights = None
    if cfg.class_balanced and cfg.objective == "pseudo_class":
        counts = np.bincount(labels, minlength=int(labels.max()) + 1).astype(np.float64)
        weights = (counts.sum() / np.maximum(counts, 1) / len(counts)).tolist()
    task = make_task(cfg.objective, int(labels.max()) + 1, 0 if factors is None else factors.shape[1], weights)
    return train_task(ctx, tmp, task, rows, holdout_mask(classes["item_id"], cfg.holdout_fraction))


def latent_reference(ctx: StageContext) -> dict:
    """The latent factors as a reference feature set: what the CNN's features try to reach."""
    ids = pd.read_parquet(ctx.path("factorization", "items.parquet"))["item_id"].to_numpy()
    return {"latent": (ids, np.load(ctx.path("factorization", "item_factors.npy")))}
