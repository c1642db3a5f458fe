"""The factorisation stages: tr entries with sampled negatives, then factors and their validation metrics."""

import logging
import time

import numpy as np
import pandas as pd
import scipy.sparse as sp

from socialfeat.config import FactorizationConfig, SamplingConfig, SplitConfig
from socialfeat.data.splits import sorted_codes
from socialfeat.factorization import engines, metrics
from socialfeat.factorization.entry_file import FOLDS, entry_groups, write_entries
from socialfeat.factorization.sampling import log_popularity_weights, negative_blocks, negatives_wanted
from socialfeat.memory import release_arrow
from socialfeat.stats.retrieval import cosine_neighbours, jaccard_at_ranks, random_jaccard

log = logging.getLogger(__name__)


def _tr_positives(interactions: pd.DataFrame) -> tuple[tuple, pd.Index, pd.Index]:
    """tr's positives as ((users, items, is_val) codes, user ids, item ids), through masks on the split's
    dictionaries: no copy of the log frame."""
    tr = (interactions["fold"] != "test").to_numpy()
    positive_users, users = sorted_codes(interactions["user_id"], tr)
    positive_items, items = sorted_codes(interactions["item_id"], tr)
    return (positive_users, positive_items, (interactions["fold"] == "val").to_numpy()[tr]), users, items


def _counts(positive_users: np.ndarray, n_users: int, n_items: int, negatives: int, ratio: float) -> dict:
    wanted = negatives_wanted(np.bincount(positive_users, minlength=n_users), n_items, ratio)
    return {
        "sampling/positives": len(positive_users),
        "sampling/negatives": int(negatives),
        "sampling/users": n_users,
        "sampling/items": n_items,
        "sampling/users_without_negatives": int((wanted == 0).sum()),
    }


def _negative_blocks(positives: tuple, n_items: int, sampling: SamplingConfig, blocks):
    users, items = positives[:2]
    weights = log_popularity_weights(np.bincount(items, minlength=n_items))
    return blocks(users, items, n_items, weights, sampling.ratio, sampling.seed)


def write_sampled_entries(
    interactions: pd.DataFrame, sampling: SamplingConfig, split: SplitConfig, path: str, blocks=negative_blocks
) -> tuple[pd.Index, pd.Index, dict]:
    """sampled_entries written to `path` a block of users at a time (entry_file), never gathered into one
    frame; the same rows in the same order. Returns the id maps and counts."""
    positives, users, items = _tr_positives(interactions)
    del interactions  # the caller passes the log in: the sampling holds its codes alone
    release_arrow()  # the log's columns were Arrow's buffers, which its pool would keep
    negative_blocks = _negative_blocks(positives, len(items), sampling, blocks)
    negatives = write_entries(path, entry_groups(positives, negative_blocks, split.val_fraction, split.seed))
    return users, items, _counts(positives[0], len(users), len(items), negatives, sampling.ratio)


def sampled_entries(
    interactions: pd.DataFrame, sampling: SamplingConfig, split: SplitConfig, blocks=negative_blocks
) -> tuple[pd.DataFrame, pd.Index, pd.Index, dict]:
    """tr's observed entries: positives (value 1, fold from the split) and log-popularity negatives
    (value 0, split train / val with the same fraction); with the id maps and counts."""
    positives, users, items = _tr_positives(interactions)
    negative_blocks = _negative_blocks(positives, len(items), sampling, blocks)
    users_of, items_of, values_of, is_val_of = zip(
        *entry_groups(positives, negative_blocks, split.val_fraction, split.seed)
    )
    entries = pd.DataFrame(
        {
            "user": np.concatenate(users_of),
            "item": np.concatenate(items_of),
            "value": np.concatenate([np.full(len(u), v, np.float32) for u, v in zip(users_of, values_of)]),
            "fold": pd.Categorical.from_codes(np.concatenate(is_val_of).astype(np.int8), categories=FOLDS),
        }
    )
    negatives = len(entries) - len(positives[0])
    return entries, users, items, _counts(positives[0], len(users), len(items), negatives, sampling.ratio)


def _matrix(users: np.ndarray, items: np.ndarray, shape) -> sp.csr_matrix:
    return sp.csr_matrix((np.ones(len(users), np.float32), (users, items)), shape=shape)


def validation_entries(entries: pd.DataFrame) -> pd.DataFrame:
    """The `fold == "val"` rows' user, item and value."""
    return entries.loc[(entries["fold"] == "val").to_numpy(), ["user", "item", "value"]]


def _positives(entries: pd.DataFrame, fold: str) -> tuple[np.ndarray, np.ndarray]:
    """(users, items) of a fold's positive entries, through masks: no copy of the entries frame."""
    kept = (entries["fold"] == fold).to_numpy() & (entries["value"].to_numpy() > 0)
    return entries["user"].to_numpy()[kept], entries["item"].to_numpy()[kept]


def validation_scores(user_factors, item_factors, val: pd.DataFrame) -> dict:
    scores = metrics.entry_scores(user_factors, item_factors, val["user"].to_numpy(), val["item"].to_numpy())
    return {
        "rmse": metrics.rmse(scores, val["value"].to_numpy()),
        "pr": metrics.pair_error(val["user"].to_numpy(), scores, val["value"].to_numpy() > 0),
    }


def evaluate(user_factors, item_factors, entries: pd.DataFrame, cfg: FactorizationConfig) -> dict:
    """mf/... and mf/popularity/... metrics on the validation entries."""
    shape = (len(user_factors), len(item_factors))
    val = validation_entries(entries)
    seen, held_out = _matrix(*_positives(entries, "train"), shape), _matrix(*_positives(entries, "val"), shape)
    popularity = np.asarray(seen.sum(axis=0)).ravel()
    candidates = np.flatnonzero(np.asarray(held_out.sum(axis=1)).ravel() > 0)
    rng = np.random.default_rng(cfg.seed)
    users = np.sort(rng.choice(candidates, min(len(candidates), cfg.eval_max_users), replace=False))
    result = {f"mf/{k}": v for k, v in validation_scores(user_factors, item_factors, val).items()}
    mf_block = lambda members: user_factors[members] @ item_factors.T  # noqa: E731
    result.update({f"mf/{k}": v for k, v in metrics.ranking_metrics(mf_block, seen, held_out, users).items()})
    pop_scores = popularity[val["item"].to_numpy()].astype(np.float64)
    result["mf/popularity/pr"] = metrics.pair_error(val["user"].to_numpy(), pop_scores, val["value"].to_numpy() > 0)
    pop_block = lambda members: np.broadcast_to(popularity, (len(members), len(popularity)))  # noqa: E731
    result.update(
        {f"mf/popularity/{k}": v for k, v in metrics.ranking_metrics(pop_block, seen, held_out, users).items()}
    )
    return result


def pr_samples(user_factors, item_factors, entries: pd.DataFrame, user_ids: np.ndarray) -> dict:
    """Per-user values of mf/pr and mf/popularity/pr on the validation entries (for their intervals)."""
    val = validation_entries(entries)
    users, positive = val["user"].to_numpy(), val["value"].to_numpy() > 0
    popularity = np.bincount(_positives(entries, "train")[1], minlength=len(item_factors))
    model = metrics.entry_scores(user_factors, item_factors, users, val["item"].to_numpy())
    samples = {}
    for name, scores in (("mf/pr", model), ("mf/popularity/pr", popularity[val["item"].to_numpy()].astype(float))):
        members, values = metrics.pair_error_by_user(users, scores, positive)
        samples[name] = (user_ids[members], values)
    return samples


def neighbour_metrics(item_factors, entries: pd.DataFrame, item_labels: np.ndarray | None, k: int, seed: int) -> dict:
    """The paper's Fig. 4 analysis: do items close in latent space share viewers (and styles)?"""
    positive = entries["value"].to_numpy() > 0
    shape = (len(item_factors), int(entries["user"].max()) + 1)
    item_users = _matrix(entries["item"].to_numpy()[positive], entries["user"].to_numpy()[positive], shape)
    queries = np.arange(len(item_factors))
    neighbours = cosine_neighbours(item_factors, item_factors, k, exclude_self=True)
    curve = jaccard_at_ranks(item_users, queries, neighbours)
    result = {
        f"mf/latent_jaccard@{k}": float(curve[-1]),
        "mf/latent_jaccard@1": float(curve[0]),
        f"mf/random_jaccard@{k}": random_jaccard(item_users, queries, 20000, seed),
    }
    if item_labels is not None:
        result[f"mf/latent_label_precision@{k}"] = float((item_labels[neighbours] == item_labels[:, None]).mean())
        _, label_counts = np.unique(item_labels, return_counts=True)
        result[f"mf/random_label_precision@{k}"] = float(((label_counts / len(item_labels)) ** 2).sum())
    return result


def factorize(entries: pd.DataFrame, n_users: int, n_items: int, cfg: FactorizationConfig, on_epoch=None):
    """(user_factors, item_factors, per-epoch history, fit seconds) from the train entries."""
    train = engines.Entries.train_of(entries, n_users, n_items)
    return fit_entries(train, validation_entries(entries), cfg, on_epoch)


def fit_entries(train: engines.Entries, val: pd.DataFrame, cfg: FactorizationConfig, on_epoch=None):
    """factorize's fit from its train entries and validation rows (the sampled frame need not be held)."""
    history, started = [], time.perf_counter()

    def record(epoch, user_factors, item_factors):
        scores = validation_scores(user_factors, item_factors, val) | {
            "epoch": epoch + 1,
            "seconds": time.perf_counter() - started,
        }
        history.append(scores)
        log.info("factorization epoch %d: rmse %.4f pr %.4f", epoch + 1, scores["rmse"], scores["pr"])
        if on_epoch:
            on_epoch(scores)

    user_factors, item_factors = engines.fit(train, cfg, record)
    return user_factors, item_factors, history, time.perf_counter() - started
