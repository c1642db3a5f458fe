"""Stages every method shares: the dataset's counts, the popularity filters and the tr / te item split."""

import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from socialfeat import artifacts
from socialfeat.data import codes
from socialfeat.data.check import dataset_counts
from socialfeat.data.lookup import IdLookup
from socialfeat.data.splits import FOLDS, Folds, item_parts, popularity_survivors
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


def _items_with_image(ctx: StageContext, item_ids: pa.Array) -> np.ndarray | None:
    """Under filter.require_image, which items (by code) have an image; None for every item."""
    if not ctx.cfg.filter.require_image:
        return None
    items = ctx.dataset().items
    has_image = pd.Index(item_ids).isin(items.loc[items["image_ref"].notna(), "item_id"])
    return None if has_image.all() else has_image


def _kept_views(data: str, survivors, kept: dict):
    """The log's views that `survivors` keep, a row group of codes at a time, counted into `kept` as they pass."""
    for group in codes.log_groups(data):
        rows = survivors.kept(group["user"], group["item"])
        views = {name: values[rows] for name, values in group.items()}
        kept["views"] += len(views["user"])
        kept["users"][views["user"]] = True
        kept["items"][views["item"]] = True
        yield views


def _filter(ctx: StageContext, tmp: str) -> dict:
    # the log stays on disk: each pass reads its code columns a row group at a time
    data = ctx.path("data")
    users, item_ids = codes.read_ids(data)
    survivors = popularity_survivors(
        lambda: ((group["user"], group["item"]) for group in codes.log_groups(data, ["user", "item"])),
        n_users=len(users),
        n_items=len(item_ids),
        cfg=ctx.cfg.filter,
        allowed=_items_with_image(ctx, item_ids),
    )
    kept = {"views": 0, "users": np.zeros(len(users), bool), "items": np.zeros(len(item_ids), bool)}
    codes.write_views(_kept_views(data, survivors, kept), users, item_ids, os.path.join(tmp, "interactions.parquet"))
    counts = (kept["views"], int(kept["users"].sum()), int(kept["items"].sum()))
    return survivors.report(*counts) | dict(zip(("filter/interactions", "filter/users", "filter/items"), counts))


def view_log(path: str, columns: list[str] | None = None) -> pd.DataFrame:
    """A stage's view log (`columns` of it) with its string columns as dictionaries (pandas categoricals): a
    code a view and each distinct string once, never a string a view. Read a column at a time, each column's
    Arrow copy let go before the next is read (the whole table's copy beside the frame was the sampling
    stage's peak)."""
    names = pq.read_schema(path).names if columns is None else columns
    frame = {}
    for name in names:
        coded = [name] if name in ("user_id", "item_id", "fold") else None
        frame[name] = pq.read_table(path, columns=[name], read_dictionary=coded).column(name).to_pandas()
        release_arrow()
    return pd.DataFrame(frame, copy=False)


def _distinct_items(path: str) -> pa.Array:
    """The item ids a view log names, sorted."""
    source = pq.ParquetFile(path)
    distinct = [
        source.read_row_group(group, columns=["item_id"]).column(0).unique() for group in range(source.num_row_groups)
    ]
    every = pa.chunked_array(distinct, pa.string()).unique() if distinct else pa.array([], pa.string())
    return every.take(pc.sort_indices(every))  # by UTF-8 bytes: the order of Python's str comparison


def _with_folds(path: str, item_ids: pa.Array, folds: Folds):
    """The view log at `path` a row group at a time, each view with its fold (written as its string);
    `item_ids` are the log's sorted item ids."""
    source, items, names, schema = pq.ParquetFile(path), IdLookup(item_ids), pa.array(FOLDS), None
    for group in range(source.num_row_groups):
        views = source.read_row_group(group)
        fold = folds.of(items.find(views.column("item_id").combine_chunks()))
        views = views.append_column("fold", names.take(fold))
        schema = schema or artifacts.pandas_schema(views)  # the file split_interactions' frame writes
        yield views.cast(schema)


def _split(ctx: StageContext, tmp: str) -> dict:
    # the log is read, split and written a row group at a time: the stage holds per-item arrays and one group
    path = ctx.path("filter", "interactions.parquet")
    item_ids = _distinct_items(path)
    test_items, items = item_parts(pd.Index(item_ids.to_numpy(zero_copy_only=False)), ctx.cfg.split)
    folds = Folds(test_items, ctx.cfg.split)
    artifacts.write_tables(_with_folds(path, item_ids, folds), os.path.join(tmp, "interactions.parquet"))
    items.to_parquet(os.path.join(tmp, "items.parquet"), index=False)
    return folds.counts()


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
