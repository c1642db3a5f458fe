"""Neighbours by cosine similarity and the Jaccard overlap of their viewer sets (Fang et al. Fig. 4/5)."""

import numpy as np
import scipy.sparse as sp

from socialfeat.stats.ranking import top_k


def normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def cosine_neighbours(
    queries: np.ndarray, database: np.ndarray, k: int, exclude_self: bool = False, block: int = 1024
) -> np.ndarray:
    """queries x k indices into `database` by cosine similarity, in blocks to bound memory."""
    q, d = normalise(queries), normalise(database)
    result = []
    for start in range(0, len(q), block):
        scores = q[start : start + block] @ d.T
        if exclude_self:
            rows = np.arange(scores.shape[0])
            scores[rows, rows + start] = -np.inf
        result.append(top_k(scores, k))
    return np.concatenate(result) if result else np.zeros((0, k), np.int64)


def jaccard_pairs(item_users: sp.csr_matrix, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Jaccard index of the viewer sets of items left[n] and right[n]."""
    binary = (item_users > 0).astype(np.float32).tocsr()
    sizes = np.asarray(binary.sum(axis=1)).ravel()
    intersection = np.asarray(binary[left].multiply(binary[right]).sum(axis=1)).ravel()
    union = sizes[left] + sizes[right] - intersection
    return np.where(union > 0, intersection / np.maximum(union, 1), 0.0)


def jaccard_by_query(item_users: sp.csr_matrix, queries: np.ndarray, neighbours: np.ndarray) -> np.ndarray:
    """queries x k: Jaccard of each query's viewer set and its neighbour's at each rank 1..k."""
    k = neighbours.shape[1]
    return jaccard_pairs(item_users, np.repeat(queries, k), neighbours.ravel()).reshape(-1, k)


def jaccard_at_ranks(item_users: sp.csr_matrix, queries: np.ndarray, neighbours: np.ndarray) -> np.ndarray:
    """Mean Jaccard of query and neighbour viewer sets at each rank 1..k (the paper's curve)."""
    return jaccard_by_query(item_users, queries, neighbours).mean(axis=0)


def random_jaccard(item_users: sp.csr_matrix, candidates: np.ndarray, pairs: int, seed: int) -> float:
    """The expected Jaccard of two distinct random items: what a ranking that knows nothing gets."""
    rng = np.random.default_rng(seed)
    left, right = rng.choice(candidates, pairs), rng.choice(candidates, pairs)
    distinct = left != right
    return float(jaccard_pairs(item_users, left[distinct], right[distinct]).mean())
