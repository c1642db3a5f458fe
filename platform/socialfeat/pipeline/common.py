"""Stages every method shares: the dataset's counts, the popularity filters and the tr / te item split."""

import os

import numpy as np
import pandas as pd

from socialfeat import artifacts
from socialfeat.data.check import dataset_counts
from socialfeat.data.splits import filter_by_popularity, split_interactions
from socialfeat.stages import Stage, StageContext

DATA_METRICS = (
    "data/users",
    "data/items*",
    "data/interactions",
    "data/density",
    "data/*tags",
    "data/social_links",
    "data/comments",
    "data/distinct_labels",
    "data/*_removed",  # what the reader dropped (Dataset.handled)
)


def _data(ctx: StageContext, tmp: str) -> dict:
    return {f"data/{k}": v for k, v in dataset_counts(ctx.dataset()).items()}


def _filter(ctx: StageContext, tmp: str) -> dict:
    interactions, items = ctx.dataset().interactions, ctx.dataset().items
    if ctx.cfg.filter.require_image:
        with_image = interactions["item_id"].isin(items.loc[items["image_ref"].notna(), "item_id"]).to_numpy()
        interactions = interactions if with_image.all() else interactions[with_image]  # no copy of a whole log
    kept, report = filter_by_popularity(interactions, ctx.cfg.filter)
    artifacts.write_parquet(kept, os.path.join(tmp, "interactions.parquet"))
    return report | {
        "filter/users": int(kept["user_id"].nunique()),
        "filter/items": int(kept["item_id"].nunique()),
        "filter/interactions": len(kept),
    }


def _split(ctx: StageContext, tmp: str) -> dict:
    frame, items, counts = split_interactions(
        pd.read_parquet(ctx.path("filter", "interactions.parquet")), ctx.cfg.split
    )
    artifacts.write_parquet(frame, os.path.join(tmp, "interactions.parquet"))
    items.to_parquet(os.path.join(tmp, "items.parquet"), index=False)
    return counts


DATA = Stage("data", (), (), _data, metrics=DATA_METRICS)
FILTER = Stage(
    "filter",
    ("data",),
    ("filter",),
    _filter,
    outputs=("interactions.parquet",),
    metrics=("filter/passes", "filter/interactions*", "filter/items*", "filter/users*"),
)
SPLIT = Stage(
    "split",
    ("filter",),
    ("split",),
    _split,
    outputs=("interactions.parquet", "items.parquet"),
    metrics=("split/tr_items", "split/te_items", "split/*_entries"),
)


def single_labels(ctx: StageContext, item_ids: pd.Series) -> np.ndarray | None:
    """Each item's label when every item has exactly one (the synthetic styles), else None."""
    items = ctx.dataset().items
    if "labels" not in items:
        return None
    labels = items.set_index("item_id")["labels"].reindex(item_ids)
    if not labels.map(lambda v: v is not None and len(v) == 1).all():
        return None
    return labels.map(lambda v: v[0]).to_numpy()
