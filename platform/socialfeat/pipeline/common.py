"""Stages every method shares: the dataset's counts, the popularity filters and the tr / te item split."""

import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from socialfeat import artifacts
from socialfeat.data import codes
from socialfeat.data.check import dataset_counts
from socialfeat.data.splits import popularity_mask, split_interactions
from socialfeat.memory import release_arrow
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
    dataset = ctx.dataset(log_as="codes")  # validates every table; the log as codes, once a run
    codes.write_codes(dataset.log, pa.array(dataset.items["item_id"], pa.string()), tmp)
    return {f"data/{k}": v for k, v in dataset_counts(dataset).items()}


def _rows_with_image(ctx: StageContext, views, item_ids) -> np.ndarray | None:
    """The views of items with an image, under filter.require_image; None for every view."""
    if not ctx.cfg.filter.require_image:
        return None
    items = ctx.dataset().items
    has_image = pd.Index(item_ids).isin(items.loc[items["image_ref"].notna(), "item_id"])
    return None if has_image.all() else np.flatnonzero(has_image[views.item])


def _filter(ctx: StageContext, tmp: str) -> dict:
    views, item_ids = codes.read_codes(ctx.path("data"))
    rows = _rows_with_image(ctx, views, item_ids)
    # every view: the log's own columns, no copy (a row list and two copied columns took ~16 bytes a view)
    users, items = (views.user, views.item) if rows is None else (views.user[rows], views.item[rows])
    kept, report = popularity_mask(users, items, ctx.cfg.filter)
    del users, items
    rows = np.flatnonzero(kept) if rows is None else rows[kept]
    codes.write_views(views, item_ids, rows, os.path.join(tmp, "interactions.parquet"))
    return report | {
        "filter/users": int(np.count_nonzero(np.bincount(views.user[rows]))),
        "filter/items": int(np.count_nonzero(np.bincount(views.item[rows]))),
        "filter/interactions": len(rows),
    }


def view_log(path: str, columns: list[str] | None = None) -> pd.DataFrame:
    """A stage's view log (`columns` of it) with its string columns as dictionaries (pandas categoricals): a
    code a view and each distinct string once, never a string a view."""
    names = pq.read_schema(path).names if columns is None else columns
    coded = [name for name in names if name in ("user_id", "item_id", "fold")]
    frame = pq.read_table(path, columns=names, read_dictionary=coded).to_pandas()
    release_arrow()
    return frame


def _split(ctx: StageContext, tmp: str) -> dict:
    frame, items, counts = split_interactions(view_log(ctx.path("filter", "interactions.parquet")), ctx.cfg.split)
    artifacts.write_parquet(frame, os.path.join(tmp, "interactions.parquet"))
    items.to_parquet(os.path.join(tmp, "items.parquet"), index=False)
    return counts


DATA = Stage("data", (), (), _data, outputs=codes.OUTPUTS, metrics=DATA_METRICS)
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
