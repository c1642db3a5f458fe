"""Iterative pseudo classes (clustering.rounds): round r >= 2 clusters the tr items on [the previous round's
CNN features, their latent factors] into K pseudo classes and trains the CNN again from the previous round's
tower (a fresh head, as DeepCluster does); each round is a cached stage of its own, keyed by the one before."""

import dataclasses
import os

import numpy as np
import pandas as pd

from socialfeat import artifacts
from socialfeat.clustering.kmeans import kmeans, nmi
from socialfeat.config import ConfigError
from socialfeat.errors import UserError
from socialfeat.features.encoder import load_encoder
from socialfeat.features.extract import read_sets, write_sets
from socialfeat.features.quality import label_precision
from socialfeat.methods.cfl.stages import kmeans_settings
from socialfeat.methods.cfl.tasks import make_task
from socialfeat.pipeline.common import single_labels
from socialfeat.pipeline.features import item_images
from socialfeat.pipeline.train import holdout_mask, train_task
from socialfeat.stages import StageContext
from socialfeat.stats import significance


def check_rounds(cfg) -> dict:
    """Refuse R > 1 for the latent objectives, which have no classes to re-cluster (before any work)."""
    if cfg.clustering.rounds > 1 and cfg.training.objective != "pseudo_class":
        raise ConfigError(
            f"clustering.rounds = {cfg.clustering.rounds} needs training.objective: pseudo_class "
            f"(got {cfg.training.objective}): later rounds re-cluster into pseudo classes"
        )
    return {}


@dataclasses.dataclass(frozen=True)
class Previous:
    """What a round starts from: the round before it (round 1: the kmeans, train and features stages)."""

    classes: str  # pseudo_classes.parquet
    model: str  # model.pt
    features: str  # the directory whose feature sets hold "cnn"


def _previous(ctx: StageContext, number: int) -> Previous:
    if number == 2:
        return Previous(
            ctx.path("kmeans", "pseudo_classes.parquet"), ctx.path("train", "model.pt"), ctx.path("features")
        )
    name = f"round{number - 1}"
    return Previous(ctx.path(name, "pseudo_classes.parquet"), ctx.path(name, "model.pt"), ctx.path(name))


def _cluster_input(ctx: StageContext, previous: Previous) -> tuple[np.ndarray, np.ndarray]:
    """(tr item ids, [w_f * unit CNN features, w_l * unit factors]) in the factorisation's item order."""
    items = pd.read_parquet(ctx.path("factorization", "items.parquet"))["item_id"].to_numpy()
    ids, vectors = read_sets(previous.features)["cnn"]
    rows = pd.Index(ids).get_indexer(items)
    if (rows < 0).any():
        raise UserError(f"{int((rows < 0).sum())} tr items have no CNN features: they have no decodable image")

    def unit(x: np.ndarray) -> np.ndarray:
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    weights = ctx.cfg.clustering
    factors = np.load(ctx.path("factorization", "item_factors.npy"))
    joined = np.hstack([weights.feature_weight * unit(vectors[rows]), weights.factor_weight * unit(factors)])
    return items, joined.astype(np.float32)


def _embed(ctx: StageContext, encoder_dir: str) -> tuple[np.ndarray, np.ndarray]:
    """Every item with an image through the encoder a round saved."""
    # the Ray layer loads when the stage runs: a method's graph loads without Ray
    from socialfeat.distributed.inference import extract

    spec, state = load_encoder(encoder_dir)
    _, images = item_images(ctx, spec["image_size"])
    training, features = ctx.cfg.training, ctx.cfg.features
    return extract(
        images,
        spec,
        state,
        training.seed,
        features.batch_size,
        features.concurrency,
        training.use_gpu,
        progress=ctx.progress,
    )


def compute_round(ctx: StageContext, tmp: str, number: int) -> dict:
    """Round `number`: re-cluster on the previous round's features and factors, train again, embed."""
    prefix, previous = f"rounds/r{number}", _previous(ctx, number)
    items, joined = _cluster_input(ctx, previous)
    classes, _, _ = kmeans(joined, kmeans_settings(ctx.cfg.clustering))
    before = pd.read_parquet(previous.classes).set_index("item_id")["pseudo_class"].reindex(items).to_numpy()
    pd.DataFrame({"item_id": items, "pseudo_class": classes}).to_parquet(
        os.path.join(tmp, "pseudo_classes.parquet"), index=False
    )
    result = {f"{prefix}/nmi_previous": nmi(classes, before)}
    truth = single_labels(ctx, items)
    if truth is not None:
        result[f"{prefix}/nmi"] = nmi(classes, truth)
    model = artifacts.load_tensors(previous.model)
    tower = {name: value for name, value in model.items() if name.startswith("backbone.")}
    rows = pd.DataFrame({"item": items, "label": classes.astype(np.int64)})
    task = make_task("pseudo_class", int(classes.max()) + 1, 0)
    quiet = dataclasses.replace(ctx, tune_objectives=None)  # a sweep's epochs are the first round's
    holdout = holdout_mask(items, ctx.cfg.training.holdout_fraction)
    trained = train_task(
        quiet, tmp, task, rows, holdout, stage=f"round{number}", initial=tower, epochs=ctx.cfg.clustering.round_epochs
    )
    result |= {f"{prefix}/{name.removeprefix('train/')}": v for name, v in trained.items()}
    return result | _round_features(ctx, tmp, prefix)


def _round_features(ctx: StageContext, tmp: str, prefix: str) -> dict:
    """The round's encoder (saved in `tmp`) over every item with an image, as the set "cnn"."""
    ids, vectors = _embed(ctx, tmp)
    write_sets(tmp, {"cnn": (ids, vectors)})
    items = ctx.dataset().items
    if "labels" not in items:
        return {}
    labels = items.set_index("item_id")["labels"].reindex(ids).tolist()
    samples = label_precision(prefix, ids, vectors, labels=labels, k=ctx.cfg.features.neighbours)
    return significance.means(samples) | significance.record(tmp, samples, ctx.cfg.training.seed)


def rounds(ctx: StageContext, tmp: str) -> dict:
    """Rounds 2..R, each a cached stage (`roundN`) the engine ran before this one; their features become the
    sets cnn_r2 .. cnn_rR."""
    metrics, sets, samples = {}, {}, {}
    for number in range(2, ctx.cfg.clustering.rounds + 1):
        result = ctx.results[f"round{number}"]
        metrics |= result.metrics
        sets[f"cnn_r{number}"] = read_sets(result.path)["cnn"]
        samples |= significance.read_samples(result.path)
    write_sets(tmp, sets)
    # the rounds' per-query values kept here too: a run that reuses this stage lists it, not the rounds
    significance.write_samples(tmp, {name: (v.index.to_numpy(), v.to_numpy()) for name, v in samples.items()})
    return metrics | _last_round(ctx, metrics)


def _last_round(ctx: StageContext, metrics: dict) -> dict:
    """rounds/last/...: the last round's label precision and its interval, whatever R (round 1's when R = 1),
    so a sweep over clustering.rounds has one objective to compare."""
    name = f"label_precision@{ctx.cfg.features.neighbours}"
    rounds = ctx.cfg.clustering.rounds
    source = ctx.results["features"].metrics if rounds == 1 else metrics
    prefix = "features/cnn" if rounds == 1 else f"rounds/r{rounds}"
    return {
        f"rounds/last/{name}{suffix}": source[f"{prefix}/{name}{suffix}"]
        for suffix in ("", "/ci_low", "/ci_high")
        if f"{prefix}/{name}{suffix}" in source
    }
