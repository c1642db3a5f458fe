"""Ranking metrics shared by every method: each takes ranked item lists and the relevant sets."""

import numpy as np


def hits_at_k(ranked: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """users x k boolean: is the item at each rank relevant? `relevant` is users x items boolean."""
    return np.take_along_axis(relevant, ranked, axis=1)


def precision_at_k(hits: np.ndarray) -> np.ndarray:
    return hits.mean(axis=1)


def recall_at_k(hits: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    return hits.sum(axis=1) / np.maximum(n_relevant, 1)


def ndcg_at_k(hits: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    discounts = 1.0 / np.log2(np.arange(2, hits.shape[1] + 2))
    dcg = (hits * discounts).sum(axis=1)
    ideal = np.cumsum(discounts)[np.minimum(n_relevant, hits.shape[1]) - 1]
    return np.where(n_relevant > 0, dcg / np.where(n_relevant > 0, ideal, 1.0), 0.0)


def average_precision(hits: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    """AP over the ranked list (divided by min(k, relevant) so a perfect top-k scores 1)."""
    cumulative = np.cumsum(hits, axis=1) / np.arange(1, hits.shape[1] + 1)
    return (cumulative * hits).sum(axis=1) / np.maximum(np.minimum(n_relevant, hits.shape[1]), 1)


def accuracy_at_k(hits: np.ndarray) -> np.ndarray:
    """1 where any of the top k is relevant."""
    return hits.any(axis=1).astype(np.float64)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of each row's k highest scores, best first."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def mis_ordered_fraction(positive_scores: np.ndarray, negative_scores: np.ndarray) -> float:
    """Fraction of (positive, negative) pairs where the negative scores higher (ties count half)."""
    if not len(positive_scores) or not len(negative_scores):
        return float("nan")
    negatives = np.sort(negative_scores)
    below = np.searchsorted(negatives, positive_scores, side="left")
    at_or_below = np.searchsorted(negatives, positive_scores, side="right")
    above = len(negatives) - at_or_below
    return float((above + 0.5 * (at_or_below - below)).sum() / (len(positive_scores) * len(negatives)))
