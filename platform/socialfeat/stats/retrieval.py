"""Neighbours by cosine similarity and the Jaccard overlap of their viewer sets (Fang et al. Fig. 4/5)."""

import logging
from dataclasses import dataclass

import faiss
import numba
import numpy as np
import scipy.sparse as sp

log = logging.getLogger(__name__)
# Exact search costs queries x database vector pairs: past EXACT_PAIRS (200k items against each other, about
# a minute on 2 cores) an IVF index probing IVF_PROBES lists answers instead, 4x faster at 200k and 10x at
# 1M items; recall@10 0.985-1.000 on clustered vectors, far less where noise swamps the clusters, which is why
# it is reported (benchmarks/neighbours.py, benchmarks/results/neighbours-ivf-*).
EXACT_PAIRS = 200_000 * 200_000
IVF_PROBES = 16
RECALL_QUERIES = 1000  # queries whose IVF neighbours are checked against exact search


def normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


@dataclass(frozen=True)
class Found:
    """Neighbour indices (queries x k, best first); when an IVF index found them, the queries checked against
    exact search (a seeded sample) and each one's recall@k."""

    indices: np.ndarray
    checked: np.ndarray | None = None
    recall_by_query: np.ndarray | None = None

    @property
    def recall(self) -> float | None:
        return None if self.recall_by_query is None else float(self.recall_by_query.mean())

    def recall_samples(self, prefix: str, query_ids: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """{prefix/search_recall@k: (the checked queries' ids, their recall)} when an IVF index answered, else {}."""
        if self.checked is None:
            return {}
        return {f"{prefix}/search_recall@{self.indices.shape[1]}": (query_ids[self.checked], self.recall_by_query)}


def neighbour_search(queries: np.ndarray, database: np.ndarray, k: int, exclude_self: bool = False) -> Found:
    """queries x k indices into `database` by cosine similarity, best first: faiss's exact inner-product search
    of the unit vectors (blocked BLAS and a heap per query: memory in the block, not in queries x database),
    or an IVF index past EXACT_PAIRS query-database pairs. `exclude_self`: queries are database[0..], and a query
    is never its own neighbour."""
    k = min(k, len(database) - exclude_self)
    if k <= 0 or not len(queries):
        return Found(np.zeros((len(queries), max(k, 0)), np.int64))
    queries, database = normalise(queries), normalise(database)
    if len(queries) * len(database) <= EXACT_PAIRS:
        return Found(_exact(queries, database, k, exclude_self))
    return _approximate(queries, database, k, exclude_self)


def _approximate(queries: np.ndarray, database: np.ndarray, k: int, exclude_self: bool) -> Found:
    """IVF neighbours of unit vectors, with the recall of a seeded sample of queries against exact search."""
    _, found = ivf_index(database).search(queries, k + exclude_self)
    found = _without_self(found, k) if exclude_self else found.astype(np.int64)
    short = np.flatnonzero((found < 0).any(axis=1))  # the probed lists held fewer than k vectors: ask exactly
    if len(short):
        found[short] = _exact(queries[short], database, k, exclude_self, positions=short)
    checked = np.sort(np.random.default_rng(0).choice(len(queries), min(len(queries), RECALL_QUERIES), replace=False))
    exact = _exact(queries[checked], database, k, exclude_self, positions=checked)
    result = Found(found, checked, np.array([len(np.intersect1d(a, b)) / k for a, b in zip(found[checked], exact)]))
    log.info("IVF search over %d vectors: recall@%d %.3f against exact (sampled)", len(database), k, result.recall)
    return result


def cosine_neighbours(queries: np.ndarray, database: np.ndarray, k: int, exclude_self: bool = False) -> np.ndarray:
    """The indices of neighbour_search."""
    return neighbour_search(queries, database, k, exclude_self).indices


def _exact(queries: np.ndarray, database: np.ndarray, k: int, exclude_self: bool, positions=None) -> np.ndarray:
    """Exact top k by inner product; `positions`: the queries' own indices in the database (exclude_self) when
    they are not 0.."""
    _, found = faiss.knn(queries, database, k + exclude_self, metric=faiss.METRIC_INNER_PRODUCT)
    return _without_self(found, k, positions) if exclude_self else found.astype(np.int64)


def ivf_index(database: np.ndarray, probes: int | None = None) -> faiss.Index:
    """An inverted-file index of the unit vectors `database` in ~4 sqrt(N) lists, trained on a seeded sample
    of them, that probes `probes` (default IVF_PROBES) lists per query."""
    lists = int(4 * np.sqrt(len(database)))
    dim = database.shape[1]
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, lists, faiss.METRIC_INNER_PRODUCT)
    sample = np.random.default_rng(0).choice(len(database), min(len(database), 64 * lists), replace=False)
    index.cp.seed = 0
    index.train(database[np.sort(sample)])
    index.add(database)
    index.nprobe = probes or IVF_PROBES
    return index


def _without_self(found: np.ndarray, k: int, positions=None) -> np.ndarray:
    """The first k of each row that are not the row's own index, `positions` (default 0..; a duplicate vector
    may outrank itself)."""
    own = found == (np.arange(len(found)) if positions is None else positions)[:, None]
    own[:, -1] |= ~own.any(axis=1)  # self not among the k + 1 (ties): drop the last instead
    return found[~own].reshape(len(found), k).astype(np.int64)


@numba.njit(parallel=True, cache=True)
def _shared_by_query(indptr, indices, queries, neighbours, columns: int, threads: int):
    """counts[n, r]: how many column indices row queries[n] shares with row neighbours[n, r] of a CSR structure.
    Each query's row is marked in a bitmap of the columns (1.8M users in 225 KB, so the marks stay in cache),
    each neighbour's row counted against it, and the marks cleared for the next query."""
    counts = np.zeros(neighbours.shape, np.int64)
    for thread in numba.prange(threads):
        marks = np.zeros((columns + 63) // 64, np.uint64)
        for n in range(thread, len(queries), threads):  # interleaved: popular queries spread over the threads
            own = indices[indptr[queries[n]] : indptr[queries[n] + 1]]
            for column in own:
                marks[column >> 6] |= np.uint64(1) << np.uint64(column & 63)
            for r in range(neighbours.shape[1]):
                row, shared = neighbours[n, r], 0
                for column in indices[indptr[row] : indptr[row + 1]]:
                    shared += (marks[column >> 6] >> np.uint64(column & 63)) & np.uint64(1)
                counts[n, r] = shared
            for column in own:
                marks[column >> 6] = 0
    return counts


@numba.njit(parallel=True, cache=True)
def _rows_holding(indptr, indices, rows, columns):
    """For each n, how many of the CSR rows rows[n, :] hold column columns[n] (sorted rows)."""
    counts = np.zeros(len(rows), np.int64)
    for n in numba.prange(len(rows)):
        for row in rows[n]:
            held = indices[indptr[row] : indptr[row + 1]]
            at = np.searchsorted(held, columns[n])
            counts[n] += at < len(held) and held[at] == columns[n]
    return counts


def _viewer_sets(item_users: sp.csr_matrix) -> sp.csr_matrix:
    """`item_users` with only its positive entries, each row's user indices ascending and distinct: what the
    kernels below read (a copy only where the matrix is not so already)."""
    if not item_users.has_canonical_format:
        item_users = item_users.copy()
        item_users.sum_duplicates()
    if (item_users.data <= 0).any():
        item_users = sp.csr_matrix(item_users > 0)
        item_users.sort_indices()
    return item_users


def jaccard_pairs(item_users: sp.csr_matrix, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Jaccard index of the viewer sets of items left[n] and right[n]."""
    return jaccard_by_query(item_users, left, np.asarray(right).reshape(-1, 1)).ravel()


def viewed_among(item_users: sp.csr_matrix, ranked: np.ndarray, users: np.ndarray) -> np.ndarray:
    """For each n, how many of the items ranked[n, :] user users[n] viewed."""
    viewers = _viewer_sets(item_users)
    ranked, users = np.asarray(ranked, np.int64), np.asarray(users, np.int64)
    return _rows_holding(viewers.indptr, viewers.indices, ranked, users).astype(np.float64)


def jaccard_by_query(item_users: sp.csr_matrix, queries: np.ndarray, neighbours: np.ndarray) -> np.ndarray:
    """queries x k: Jaccard of each query's viewer set and its neighbour's at each rank 1..k."""
    viewers = _viewer_sets(item_users)
    sizes = np.diff(viewers.indptr).astype(np.float32)  # float32 arithmetic, as the values have always been
    queries, neighbours = np.asarray(queries, np.int64), np.asarray(neighbours, np.int64)
    shared = _shared_by_query(
        viewers.indptr, viewers.indices, queries, neighbours, viewers.shape[1], numba.get_num_threads()
    )
    intersection = shared.astype(np.float32)
    union = sizes[queries][:, None] + sizes[neighbours] - intersection
    return np.where(union > 0, intersection / np.maximum(union, 1), 0.0)


def jaccard_at_ranks(item_users: sp.csr_matrix, queries: np.ndarray, neighbours: np.ndarray) -> np.ndarray:
    """Mean Jaccard of query and neighbour viewer sets at each rank 1..k (the paper's curve)."""
    return jaccard_by_query(item_users, queries, neighbours).mean(axis=0)


def random_jaccard(item_users: sp.csr_matrix, candidates: np.ndarray, pairs: int, seed: int) -> float:
    """The expected Jaccard of two distinct random items: what a ranking that knows nothing gets."""
    rng = np.random.default_rng(seed)
    left, right = rng.choice(candidates, pairs), rng.choice(candidates, pairs)
    distinct = left != right
    return float(jaccard_pairs(item_users, left[distinct], right[distinct]).mean())
