"""Popularity filters and seeded splits: items into tr / te, tr's entries into train / validation."""

import logging
from dataclasses import dataclass

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


@dataclass
class Survivors:
    """What the popularity filters keep: a view is kept when its user and its item both survive."""

    users: np.ndarray  # bool, by user code
    items: np.ndarray  # bool, by item code
    passes: int
    views: int  # the views the filters saw (those of allowed items), with the users and items in them
    users_present: int
    items_present: int

    def kept(self, user_codes: np.ndarray, item_codes: np.ndarray) -> np.ndarray:
        return self.users[user_codes] & self.items[item_codes]

    def report(self, kept_views: int, kept_users: int, kept_items: int) -> dict:
        """The filter's report, given how many views, users and items the kept views hold."""
        return {
            "filter/users_removed": self.users_present - kept_users,
            "filter/items_removed": self.items_present - kept_items,
            "filter/interactions_removed": self.views - kept_views,
            "filter/passes": self.passes,
        }


def _counts(sweep, survivors: Survivors, users: int = 0, items: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Views per user code and per item code (arrays of `users` and `items` counts; 0: not counted) among
    those `survivors` keep, over one sweep of the log."""
    user_counts, item_counts = np.zeros(users, np.int64), np.zeros(items, np.int64)
    for user_codes, item_codes in sweep():
        kept = survivors.kept(user_codes, item_codes)
        if users:
            user_counts += np.bincount(user_codes[kept], minlength=users)
        if items:
            item_counts += np.bincount(item_codes[kept], minlength=items)
    return user_counts, item_counts


def popularity_survivors(sweep, *, n_users: int, n_items: int, cfg: FilterConfig, allowed=None) -> Survivors:
    """The users and items that pass the popularity filters ([min, max] interactions, until nothing changes or
    once), counted over the views of `allowed` items (a mask by item code; every item when None). sweep()
    yields the log's (user codes, item codes) a chunk at a time; it is called twice a pass and nothing is
    held per view, so the log may stay on disk."""
    items = np.ones(n_items, bool) if allowed is None else np.asarray(allowed, bool).copy()
    survivors = Survivors(np.ones(n_users, bool), items, passes=0, views=0, users_present=0, items_present=0)
    while True:
        survivors.passes += 1
        first = survivors.passes == 1
        user_counts, item_counts = _counts(sweep, survivors, users=n_users if first else 0, items=n_items)
        if first:
            survivors.views = int(item_counts.sum())
            survivors.users_present = int(np.count_nonzero(user_counts))
            survivors.items_present = int(np.count_nonzero(item_counts))
        survivors.items &= _in_range(item_counts, cfg.min_item_interactions, cfg.max_item_interactions)
        user_counts, _ = _counts(sweep, survivors, users=n_users)
        survivors.users &= _in_range(user_counts, cfg.min_user_interactions, cfg.max_user_interactions)
        kept = int(user_counts[survivors.users].sum())
        if kept == item_counts.sum() or not cfg.until_stable or not kept:
            break
    if not kept:
        raise EmptyAfterFilter(
            f"the popularity filters left no interactions: users need {cfg.min_user_interactions}.."
            f"{cfg.max_user_interactions} and items {cfg.min_item_interactions}..{cfg.max_item_interactions} "
            f"interactions (filter.* keys); the data had {survivors.users_present} users and "
            f"{survivors.items_present} items with {survivors.views} interactions"
        )
    return survivors


def popularity_mask(user_codes: np.ndarray, item_codes: np.ndarray, cfg: FilterConfig) -> tuple[np.ndarray, dict]:
    """The views kept by the popularity filters (a mask over the codes of their users and items) and the
    filter's report."""
    n_users, n_items = int(user_codes.max(initial=-1)) + 1, int(item_codes.max(initial=-1)) + 1
    survivors = popularity_survivors(lambda: [(user_codes, item_codes)], n_users=n_users, n_items=n_items, cfg=cfg)
    kept = survivors.kept(user_codes, item_codes)
    present = [int(np.count_nonzero(np.bincount(codes[kept]))) for codes in (user_codes, item_codes)]
    return kept, survivors.report(int(kept.sum()), *present)


def test_item_mask(n_items: int, test_fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of the te items: round(n * fraction) of them (at least one), chosen by seed."""
    n_test = min(n_items - 1, max(1, round(n_items * test_fraction)))
    mask = np.zeros(n_items, bool)
    mask[np.random.default_rng([seed, 0]).permutation(n_items)[:n_test]] = True
    return mask


VALIDATION_STREAM = 1  # the seed stream of the entries' validation draws


def validation_mask(n_entries: int, val_fraction: float, seed: int, stream: int = VALIDATION_STREAM) -> np.ndarray:
    """Boolean mask of the entries held out for validation (each with probability val_fraction)."""
    return np.random.default_rng([seed, stream]).random(n_entries) < val_fraction


FOLDS = ("train", "val", "test")  # the `fold` column's categories, in code order


def item_parts(item_ids: pd.Index, cfg: SplitConfig) -> tuple[np.ndarray, pd.DataFrame]:
    """(which of the sorted `item_ids` are te, the items with their `part`: tr or te)."""
    test_items = test_item_mask(len(item_ids), cfg.test_fraction, cfg.seed)
    return test_items, pd.DataFrame({"item_id": item_ids, "part": np.where(test_items, "te", "tr")})


class Folds:
    """Each entry's fold, dealt a batch of entries at a time: te items' entries are 'test', and tr's are
    'val' by one validation_mask draw each, in entry order (the same draws however the entries are batched)."""

    def __init__(self, test_items: np.ndarray, cfg: SplitConfig):
        self.test_items, self.val_fraction = test_items, cfg.val_fraction
        self.draws = np.random.default_rng([cfg.seed, VALIDATION_STREAM])
        self.entries = np.zeros(len(FOLDS), np.int64)

    def of(self, item_codes: np.ndarray) -> np.ndarray:
        """The folds (int8 codes into FOLDS) of a batch of entries, by their items' codes (indices into the
        sorted item ids)."""
        in_test = self.test_items[item_codes]
        fold = np.where(in_test, FOLDS.index("test"), FOLDS.index("train")).astype(np.int8)
        in_tr = np.flatnonzero(~in_test)
        fold[in_tr[self.draws.random(len(in_tr)) < self.val_fraction]] = FOLDS.index("val")
        self.entries += np.bincount(fold, minlength=len(FOLDS))
        return fold

    def counts(self) -> dict:
        counts = {"split/tr_items": int((~self.test_items).sum()), "split/te_items": int(self.test_items.sum())}
        return counts | {f"split/{name}_entries": int(n) for name, n in zip(FOLDS, self.entries)}


def split_interactions(interactions: pd.DataFrame, cfg: SplitConfig) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(interactions with a `fold` column in train / val / test, items with a `part` tr / te, counts).

    te items' interactions are fold 'test' and never reach the factorisation. Rows find their item's part by
    its int code, not by a join on the string ids (which held several copies of the log at once)."""
    item_codes, item_ids = sorted_codes(interactions["item_id"])
    test_items, items = item_parts(item_ids, cfg)
    folds = Folds(test_items, cfg)
    # a categorical (a byte a row, written as its strings): a string column took ~10 bytes a row
    fold = pd.Categorical.from_codes(folds.of(item_codes), categories=FOLDS)
    frame = interactions.reset_index(drop=True).assign(fold=fold)
    return frame, items, folds.counts()


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
