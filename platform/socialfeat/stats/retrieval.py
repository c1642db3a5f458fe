"""Neighbours by cosine similarity and the Jaccard overlap of their viewer sets (Fang et al. Fig. 4/5)."""

import faiss
import numpy as np
import scipy.sparse as sp


def normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def cosine_neighbours(queries: np.ndarray, database: np.ndarray, k: int, exclude_self: bool = False) -> np.ndarray:
    """queries x k indices into `database` by cosine similarity, best first: faiss's exact inner-product search
    of the unit vectors (blocked BLAS and a heap per query: memory in the block, not in queries x database).
    `exclude_self`: queries are database[0..], and a query is never its own neighbour."""
    k = min(k, len(database) - exclude_self)
    if k <= 0 or not len(queries):
        return np.zeros((len(queries), max(k, 0)), np.int64)
    index = faiss.IndexFlatIP(database.shape[1])
    index.add(normalise(database))
    _, found = index.search(normalise(queries), k + exclude_self)
    return _without_self(found, k) if exclude_self else found.astype(np.int64)


def _without_self(found: np.ndarray, k: int) -> np.ndarray:
    """The first k of each row that are not the row's own index (a duplicate vector may outrank itself)."""
    own = found == np.arange(len(found))[:, None]
    own[:, -1] |= ~own.any(axis=1)  # self not among the k + 1 (ties): drop the last instead
    return found[~own].reshape(len(found), k).astype(np.int64)


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
