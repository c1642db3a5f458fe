"""Validation metrics of a factorisation: RMSE and PR on observed entries, ranking on unseen items."""

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from socialfeat.stats.ranking import hits_at_k, mis_ordered_fraction, ndcg_at_k, precision_at_k, top_k

ScoreBlock = Callable[[np.ndarray], np.ndarray]  # user indices -> users x items scores


ENTRIES_PER_BLOCK = 1 << 18


def entry_scores(
    user_factors: np.ndarray, item_factors: np.ndarray, users: np.ndarray, items: np.ndarray
) -> np.ndarray:
    """x_j . y_i of each entry (j, i), a block of entries at a time: gathering every entry's two factor rows
    at once held 2 x entries x d floats (5 GB for 10M validation entries at d = 64), each epoch."""
    scores = np.empty(len(users), np.result_type(user_factors, item_factors))
    for start in range(0, len(users), ENTRIES_PER_BLOCK):
        block = slice(start, start + ENTRIES_PER_BLOCK)
        scores[block] = np.einsum("ij,ij->i", user_factors[users[block]], item_factors[items[block]])
    return scores


def rmse(scores: np.ndarray, values: np.ndarray) -> float:
    return float(np.sqrt(np.mean((scores - values) ** 2)))


def pair_error(users: np.ndarray, scores: np.ndarray, positive: np.ndarray) -> float:
    """The paper's PR: per user, the fraction of (held-out positive, sampled negative) pairs in the
    wrong order (ties count half), averaged over users who have both; 0.5 is random."""
    _, per_user = pair_error_by_user(users, scores, positive)
    return float(np.mean(per_user)) if len(per_user) else float("nan")


PAIR_ENTRIES_PER_BLOCK = 1 << 22  # entries ranked at once by pair_error_by_user: bounds its sort arrays


def pair_error_by_user(users: np.ndarray, scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(users with both positives and negatives, each one's PR): the per-query values of pair_error. Users are
    taken in blocks of about PAIR_ENTRIES_PER_BLOCK entries (a user's value reads only that user's entries, in
    their order), so the ranking arrays hold one block: ~70 bytes an entry, 1.8 GB at 26M entries, at once."""
    counts = np.bincount(users)
    cuts = np.searchsorted(np.cumsum(counts), np.arange(PAIR_ENTRIES_PER_BLOCK, len(users), PAIR_ENTRIES_PER_BLOCK))
    edges = np.unique(np.concatenate([[0], cuts + 1, [len(counts)]]))
    if len(edges) <= 2:
        return _pair_error_block(users, scores, positive)
    found, values = [], []
    for low, high in zip(edges[:-1], edges[1:]):
        rows = (users >= low) & (users < high)
        block_users, block_values = _pair_error_block(users[rows], scores[rows], positive[rows])
        found.append(block_users)
        values.append(block_values)
    return np.concatenate(found), np.concatenate(values)


def _pair_error_block(users: np.ndarray, scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    _, ranks = np.unique(scores, return_inverse=True)
    keys = users.astype(np.int64) * (len(scores) + 1) + ranks
    n_users = int(users.max()) + 1
    negative_keys = np.sort(keys[~positive])
    negative_counts = np.bincount(users[~positive], minlength=n_users)
    negative_end = np.cumsum(negative_counts)
    positive_users, positive_keys = users[positive], keys[positive]
    left = np.searchsorted(negative_keys, positive_keys, side="left")
    right = np.searchsorted(negative_keys, positive_keys, side="right")
    wrong = (negative_end[positive_users] - right) + 0.5 * (right - left)
    per_user_wrong = np.bincount(positive_users, weights=wrong, minlength=n_users)
    positive_counts = np.bincount(positive_users, minlength=n_users)
    both = np.flatnonzero((positive_counts > 0) & (negative_counts > 0))
    return both, per_user_wrong[both] / (positive_counts[both] * negative_counts[both])


SCORES_PER_BLOCK = 1 << 24


def ranking_metrics(
    score_block: ScoreBlock,
    seen: sp.csr_matrix,
    held_out: sp.csr_matrix,
    users: np.ndarray,
    k: int = 10,
    block: int | None = None,
) -> dict:
    """precision@k, ndcg@k and AUC of held-out positives ranked against every item the user has not seen.
    Users are scored `block` at a time (by default as many as keep a block's scores near 128 MB: 256 rows of
    1.9M items' float64 scores were 3.9 GB)."""
    block = block or max(1, min(256, SCORES_PER_BLOCK // max(1, seen.shape[1])))
    precision, ndcg, auc = [], [], []
    for start in range(0, len(users), block):
        members = users[start : start + block]
        scores = np.array(score_block(members), dtype=np.float64)
        seen_mask = seen[members].toarray() > 0
        relevant = held_out[members].toarray() > 0
        scores[seen_mask] = -np.inf
        hits = hits_at_k(top_k(scores, k), relevant)
        n_relevant = relevant.sum(axis=1)
        precision.append(precision_at_k(hits))
        ndcg.append(ndcg_at_k(hits, n_relevant))
        negatives = ~seen_mask & ~relevant
        auc.extend(1.0 - mis_ordered_fraction(row[rel], row[neg]) for row, rel, neg in zip(scores, relevant, negatives))
    return {
        f"precision@{k}": float(np.mean(np.concatenate(precision))),
        f"ndcg@{k}": float(np.mean(np.concatenate(ndcg))),
        "auc": float(np.nanmean(auc)),
    }
