"""The stages of collaborative feature learning (Fang et al. 2015): log-popularity negatives, regularised
matrix factorisation, k-means pseudo classes and the CNN trained on them."""

import os

import numpy as np
import pandas as pd

from socialfeat import artifacts, console
from socialfeat.clustering.kmeans import kmeans, nmi
from socialfeat.evaluation import significance
from socialfeat.evaluation.coldstart import Factors
from socialfeat.factorization.mf import evaluate, factorize, neighbour_metrics, pr_samples, sampled_entries
from socialfeat.factorization.sampling import sample_negatives
from socialfeat.methods.cfl.tasks import make_task
from socialfeat.methods.common import single_labels
from socialfeat.stages import StageContext
from socialfeat.training.stage import holdout_mask, train_task


def sampling(ctx: StageContext, tmp: str) -> dict:
    cfg = ctx.cfg
    interactions = pd.read_parquet(ctx.path("split", "interactions.parquet"))
    sampler = sample_negatives
    if len(interactions) >= cfg.sampling.ray_min_positives:
        from socialfeat.distributed.data import sample_negatives_sharded as sampler
    entries, users, items, counts = sampled_entries(interactions, cfg.sampling, cfg.split, sampler)
    entries.to_parquet(os.path.join(tmp, "entries.parquet"), index=False)
    pd.DataFrame({"user_id": users}).to_parquet(os.path.join(tmp, "users.parquet"), index=False)
    pd.DataFrame({"item_id": items}).to_parquet(os.path.join(tmp, "items.parquet"), index=False)
    return counts


def sampling_config(cfg) -> dict:
    return cfg.sampling.model_dump(exclude={"ray_min_positives"}) | {"val_fraction": cfg.split.val_fraction}


def factorization(ctx: StageContext, tmp: str) -> dict:
    cfg = ctx.cfg.factorization
    entries = pd.read_parquet(ctx.path("sampling", "entries.parquet"))
    users = pd.read_parquet(ctx.path("sampling", "users.parquet"))
    items = pd.read_parquet(ctx.path("sampling", "items.parquet"))
    with console.bar(cfg.epochs, "factorization", ctx.progress, unit="epoch") as bar:

        def show(scores: dict) -> None:
            bar.update(1)
            bar.set_postfix(rmse=f"{scores['rmse']:.3f}", pr=f"{scores['pr']:.3f}")

        user_factors, item_factors, history, seconds = factorize(entries, len(users), len(items), cfg, show)
    np.save(os.path.join(tmp, "user_factors.npy"), user_factors)
    np.save(os.path.join(tmp, "item_factors.npy"), item_factors)
    users.to_parquet(os.path.join(tmp, "users.parquet"), index=False)
    items.to_parquet(os.path.join(tmp, "items.parquet"), index=False)
    artifacts.write_json(os.path.join(tmp, "history.json"), history)
    result = evaluate(user_factors, item_factors, entries, cfg)
    labels = single_labels(ctx, items["item_id"])
    result |= neighbour_metrics(item_factors, entries, labels, cfg.neighbours, cfg.seed)
    samples = pr_samples(user_factors, item_factors, entries, users["user_id"].to_numpy())
    result |= significance.record(tmp, samples, cfg.seed)
    return result | {"mf/fit_seconds": seconds, "mf/epochs": len(history)}


def kmeans_config(cfg) -> dict:
    """The first round's clustering: later rounds' settings do not move its key (nor the CNN's after it)."""
    return cfg.clustering.model_dump(exclude={"rounds", "feature_weight", "factor_weight"})


def clusters(ctx: StageContext, tmp: str) -> dict:
    items = pd.read_parquet(ctx.path("factorization", "items.parquet"))
    labels, centroids, result = kmeans(np.load(ctx.path("factorization", "item_factors.npy")), ctx.cfg.clustering)
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


def factors(ctx: StageContext) -> Factors:
    """The factorisation of the tr view log, for cold start."""
    users = pd.read_parquet(ctx.path("factorization", "users.parquet"))["user_id"].to_numpy()
    items = pd.read_parquet(ctx.path("factorization", "items.parquet"))["item_id"].to_numpy()
    user_factors = np.load(ctx.path("factorization", "user_factors.npy"))
    item_factors = np.load(ctx.path("factorization", "item_factors.npy"))
    return Factors(users, user_factors, items, item_factors, ctx.cfg.factorization.reg)
