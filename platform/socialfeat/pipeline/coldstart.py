"""The cold-start stage of every method: a ridge map from each feature set to the latent factors of the
shared factorisation, scored by ranking the te items (which the factorisation never saw) for their viewers."""

import os

import pandas as pd

from socialfeat import artifacts
from socialfeat.evaluation.coldstart import recall_samples
from socialfeat.pipeline.common import view_log
from socialfeat.pipeline.evaluate import input_sets
from socialfeat.pipeline.factorization import factors
from socialfeat.report_html import coldstart_figures
from socialfeat.stages import Stage, StageContext
from socialfeat.stats import significance


def _coldstart(ctx: StageContext, tmp: str, inputs: tuple[str, ...]) -> dict:
    interactions = view_log(ctx.path("split", "interactions.parquet"), ["user_id", "item_id"])
    parts = pd.read_parquet(ctx.path("split", "items.parquet")).set_index("item_id")["part"]
    sets = input_sets(ctx, inputs)
    ids = sets["cnn"][0]  # every set holds the items the encoder embedded
    te_ids = ids[parts.reindex(ids).to_numpy() == "te"]
    cfg = ctx.cfg
    samples, curves = recall_samples(
        sets, interactions, factors(ctx), te_ids, seed=cfg.split.seed, max_users=cfg.evaluation.coldstart_max_users
    )
    artifacts.write_json(os.path.join(tmp, "curves.json"), curves)
    return significance.means(samples) | significance.record(tmp, samples, cfg.split.seed)


def coldstart_stage(sets: tuple[str, ...] = ()) -> Stage:
    """Cold start after `evaluate`: every feature set of `features`, `evaluate` and `sets` is regressed onto
    the `factorization` stage's item factors and scored."""
    inputs = ("split", "features", "evaluate", "factorization", *sets)
    return Stage(
        "coldstart",
        inputs,
        ("split.seed", "factorization.reg", "evaluation.coldstart_max_users"),
        lambda ctx, tmp: _coldstart(ctx, tmp, tuple(name for name in inputs if name not in ("split", "factorization"))),
        outputs=("curves.json", "samples.parquet?"),
        metrics=("coldstart/*/auc", "coldstart/*/recall@*"),
        report=coldstart_figures,
        key_metrics=("coldstart/cnn/auc", "coldstart/random_cnn/auc", "coldstart/oracle/auc", "coldstart/*/auc"),
    )
