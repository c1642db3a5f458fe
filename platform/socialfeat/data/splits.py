"""Popularity filters and seeded splits: items into tr / te, tr's entries into train / validation."""

import logging

import numpy as np
import pandas as pd

from socialfeat.config import FilterConfig, SplitConfig
from socialfeat.errors import UserError

log = logging.getLogger(__name__)


class EmptyAfterFilter(UserError):
    """The popularity filters removed every user or item."""


def _in_range(counts: np.ndarray, low: int, high: int) -> np.ndarray:
    return (counts >= low) & (counts <= high)


def filter_by_popularity(interactions: pd.DataFrame, cfg: FilterConfig) -> tuple[pd.DataFrame, dict]:
    """Drop users and items outside [min, max] interactions, until nothing changes (or once)."""
    kept, report = popularity_mask(
        pd.factorize(interactions["user_id"])[0], pd.factorize(interactions["item_id"])[0], cfg
    )
    return interactions[kept].reset_index(drop=True), report


def _present(codes: np.ndarray) -> int:
    return int(np.count_nonzero(np.bincount(codes))) if len(codes) else 0


def popularity_mask(user_codes: np.ndarray, item_codes: np.ndarray, cfg: FilterConfig) -> tuple[np.ndarray, dict]:
    """The views kept by the popularity filters (a mask over the codes of their users and items) and the
    filter's report. Counted with bincount over the codes: each pass copies nothing of the log."""
    kept, passes = np.ones(len(user_codes), bool), 0
    n_users, n_items = int(user_codes.max(initial=-1)) + 1, int(item_codes.max(initial=-1)) + 1
    while True:
        passes += 1
        item_counts = np.bincount(item_codes[kept], minlength=n_items)
        now = kept & _in_range(item_counts, cfg.min_item_interactions, cfg.max_item_interactions)[item_codes]
        user_counts = np.bincount(user_codes[now], minlength=n_users)
        now &= _in_range(user_counts, cfg.min_user_interactions, cfg.max_user_interactions)[user_codes]
        changed = now.sum() != kept.sum()
        kept = now
        if not changed or not cfg.until_stable or not kept.any():
            break
    users, items = _present(user_codes), _present(item_codes)
    report = {
        "filter/users_removed": users - _present(user_codes[kept]),
        "filter/items_removed": items - _present(item_codes[kept]),
        "filter/interactions_removed": int(len(user_codes) - kept.sum()),
        "filter/passes": passes,
    }
    if not kept.any():
        raise EmptyAfterFilter(
            f"the popularity filters left no interactions: users need {cfg.min_user_interactions}.."
            f"{cfg.max_user_interactions} and items {cfg.min_item_interactions}..{cfg.max_item_interactions} "
            f"interactions (filter.* keys); the data had {users} users and "
            f"{items} items with {len(user_codes)} interactions"
        )
    return kept, report


def test_item_mask(n_items: int, test_fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of the te items: round(n * fraction) of them (at least one), chosen by seed."""
    n_test = min(n_items - 1, max(1, round(n_items * test_fraction)))
    mask = np.zeros(n_items, bool)
    mask[np.random.default_rng([seed, 0]).permutation(n_items)[:n_test]] = True
    return mask


def validation_mask(n_entries: int, val_fraction: float, seed: int, stream: int = 1) -> np.ndarray:
    """Boolean mask of the entries held out for validation (each with probability val_fraction)."""
    return np.random.default_rng([seed, stream]).random(n_entries) < val_fraction


FOLDS = ("train", "val", "test")  # the `fold` column's categories, in code order


def split_interactions(interactions: pd.DataFrame, cfg: SplitConfig) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(interactions with a `fold` column in train / val / test, items with a `part` tr / te, counts).

    te items' interactions are fold 'test' and never reach the factorisation. Rows find their item's part by
    its int code, not by a join on the string ids (which held several copies of the log at once)."""
    item_codes, item_ids = sorted_codes(interactions["item_id"])
    test_items = test_item_mask(len(item_ids), cfg.test_fraction, cfg.seed)
    items = pd.DataFrame({"item_id": item_ids, "part": np.where(test_items, "te", "tr")})
    in_test = test_items[item_codes]
    fold = np.where(in_test, FOLDS.index("test"), FOLDS.index("train")).astype(np.int8)
    in_tr = np.flatnonzero(~in_test)
    fold[in_tr[validation_mask(len(in_tr), cfg.val_fraction, cfg.seed)]] = FOLDS.index("val")
    # a categorical (a byte a row, written as its strings): a string column took ~10 bytes a row
    frame = interactions.reset_index(drop=True).assign(fold=pd.Categorical.from_codes(fold, categories=FOLDS))
    counts = {"split/tr_items": int((~test_items).sum()), "split/te_items": int(test_items.sum())}
    counts.update({f"split/{name}_entries": int((fold == code).sum()) for code, name in enumerate(FOLDS)})
    return frame, items, counts


def sorted_codes(column: pd.Series, rows: np.ndarray | None = None) -> tuple[np.ndarray, pd.Index]:
    """(each row's contiguous int id, the ids' strings in sorted order) of a string-id column, or of the `rows`
    (a boolean mask) of it. A categorical column (the Parquet dictionary, read as such) is never expanded to a
    Python string per row: only its distinct strings are sorted."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        codes, labels = column.cat.codes.to_numpy(), column.cat.categories.to_numpy()
        codes = codes if rows is None else codes[rows]
    else:
        codes, labels = pd.factorize(column if rows is None else column[rows])
    present = np.unique(codes)
    order = present[np.argsort(labels[present], kind="stable")]
    rank = np.full(len(labels), -1, np.int32)
    rank[order] = np.arange(len(order), dtype=np.int32)
    return rank[codes], pd.Index(labels[order])
