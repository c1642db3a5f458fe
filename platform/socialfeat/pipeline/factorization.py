"""The shared factorisation stages: tr's observed entries with log-popularity negatives (Fang et al. 2015,
per user 2x positives), regularised matrix factorisation into d latent dimensions, and the factors they hold
(what cfl clusters and what every method's cold start regresses onto)."""

import os

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from socialfeat import artifacts, console
from socialfeat.evaluation.coldstart import Factors
from socialfeat.factorization.engines import Entries
from socialfeat.factorization.entry_file import read_entries
from socialfeat.factorization.mf import evaluate, fit_entries, neighbour_metrics, pr_samples, write_sampled_entries
from socialfeat.factorization.sampling import negative_blocks
from socialfeat.memory import check_fits, factor_bytes, release_arrow
from socialfeat.pipeline.common import single_labels, view_log
from socialfeat.stages import Stage, StageContext
from socialfeat.stats import significance


def split_log(path: str) -> pd.DataFrame:
    """The split's view log: its ids and folds as dictionaries (view_log)."""
    return view_log(path, ["user_id", "item_id", "fold"])


def sampling(ctx: StageContext, tmp: str) -> dict:
    cfg = ctx.cfg
    log_path = ctx.path("split", "interactions.parquet")
    blocks = negative_blocks
    if pq.ParquetFile(log_path).metadata.num_rows >= cfg.sampling.ray_min_positives:
        # the Ray layer loads when the stage runs: a method's graph loads without Ray
        from socialfeat.distributed.data import negative_blocks_sharded as blocks
    entries = os.path.join(tmp, "entries.parquet")
    users, items, counts = write_sampled_entries(split_log(log_path), cfg.sampling, cfg.split, entries, blocks)
    pd.DataFrame({"user_id": users}).to_parquet(os.path.join(tmp, "users.parquet"), index=False)
    pd.DataFrame({"item_id": items}).to_parquet(os.path.join(tmp, "items.parquet"), index=False)
    return counts


def _fit(ctx: StageContext, n_users: int, n_items: int, show):
    """The factorisation's fit from the train and validation entries, read as such (never the whole file)."""
    path = ctx.path("sampling", "entries.parquet")
    train, val = Entries.of(read_entries(path, "train"), n_users, n_items), read_entries(path, "val")
    release_arrow()
    return fit_entries(train, val, ctx.cfg.factorization, show)


def factorization(ctx: StageContext, tmp: str) -> dict:
    cfg = ctx.cfg.factorization
    users = pd.read_parquet(ctx.path("sampling", "users.parquet"))
    items = pd.read_parquet(ctx.path("sampling", "items.parquet"))
    check_fits("factorization.dim", cfg.dim, factor_bytes(len(users), len(items), cfg.dim), "the factors")
    with console.bar(cfg.epochs, "factorization", ctx.progress, unit="epoch") as bar:

        def show(scores: dict) -> None:
            bar.update(1)
            bar.set_postfix(rmse=f"{scores['rmse']:.3f}", pr=f"{scores['pr']:.3f}")

        user_factors, item_factors, history, seconds = _fit(ctx, len(users), len(items), show)
    np.save(os.path.join(tmp, "user_factors.npy"), user_factors)
    np.save(os.path.join(tmp, "item_factors.npy"), item_factors)
    users.to_parquet(os.path.join(tmp, "users.parquet"), index=False)
    items.to_parquet(os.path.join(tmp, "items.parquet"), index=False)
    artifacts.write_json(os.path.join(tmp, "history.json"), history)
    entries = read_entries(ctx.path("sampling", "entries.parquet"), "evaluated")
    release_arrow()
    result = evaluate(user_factors, item_factors, entries, cfg)
    labels = single_labels(ctx, items["item_id"])
    result |= neighbour_metrics(item_factors, entries, labels, cfg.neighbours, cfg.seed)
    samples = pr_samples(user_factors, item_factors, entries, users["user_id"].to_numpy())
    result |= significance.record(tmp, samples, cfg.seed)
    return result | {"mf/fit_seconds": seconds, "mf/epochs": len(history)}


def factors(ctx: StageContext) -> Factors:
    """The factorisation of the tr view log (cold start regresses item features onto its item factors)."""
    users = pd.read_parquet(ctx.path("factorization", "users.parquet"))["user_id"].to_numpy()
    items = pd.read_parquet(ctx.path("factorization", "items.parquet"))["item_id"].to_numpy()
    user_factors = np.load(ctx.path("factorization", "user_factors.npy"))
    item_factors = np.load(ctx.path("factorization", "item_factors.npy"))
    return Factors(users, user_factors, items, item_factors, ctx.cfg.factorization.reg)


MF_METRICS = (
    "mf/pr",
    "mf/rmse",
    "mf/auc",
    "mf/epochs",
    "mf/fit_seconds",
    "mf/ndcg@*",
    "mf/precision@*",
    "mf/latent_jaccard@*",
    "mf/latent_label_precision@*",
    "mf/random_jaccard@*",
    "mf/random_label_precision@*",
    "mf/popularity/pr",
    "mf/popularity/auc",
    "mf/popularity/ndcg@*",
    "mf/popularity/precision@*",
)
SAMPLING = Stage(
    "sampling",
    ("split",),
    ("sampling", "split.val_fraction", "split.seed"),
    sampling,
    outputs=("entries.parquet", "users.parquet", "items.parquet"),
    unkeyed=("sampling.ray_min_positives",),
    metrics=("sampling/users*", "sampling/items", "sampling/positives", "sampling/negatives"),
)
FACTORIZATION = Stage(
    "factorization",
    ("sampling",),
    ("factorization",),
    factorization,
    outputs=("user_factors.npy", "item_factors.npy", "users.parquet", "items.parquet", "history.json")
    + ("samples.parquet?",),
    metrics=MF_METRICS,
    key_metrics=("mf/pr", "mf/popularity/pr"),
)
