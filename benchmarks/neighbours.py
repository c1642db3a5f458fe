"""Cosine k-nearest neighbours over item vectors: the numpy blocked matrix product the evaluation used before
against faiss's exact inner-product search (socialfeat.stats.retrieval.cosine_neighbours), on a ladder of
item counts, with the agreement of their neighbour lists.

    python benchmarks/neighbours.py [--items 10000 50000 200000] [--queries 2000] [--dim 64] [--k 10]

Prints one JSON line per size: seconds of each, the speed-up, and the fraction of the numpy top k that faiss
returns (ties and float rounding may swap equal-scored neighbours).
"""

import argparse
import json
import os
import platform
import time

import numpy as np

from socialfeat.stats.ranking import top_k
from socialfeat.stats.retrieval import cosine_neighbours, normalise


def numpy_neighbours(queries: np.ndarray, database: np.ndarray, k: int, block: int = 1024) -> np.ndarray:
    """The previous implementation: a block of queries times every database vector, then a partial sort."""
    q, d = normalise(queries), normalise(database)
    return np.concatenate([top_k(q[start : start + block] @ d.T, k) for start in range(0, len(q), block)])


def clustered_vectors(items: int, dim: int, seed: int) -> np.ndarray:
    """Item vectors around 50 centres, as learnt features are: neighbours are meaningful, not uniform noise."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(50, dim))
    return (centres[rng.integers(0, 50, items)] + 0.7 * rng.normal(size=(items, dim))).astype(np.float32)


def measure(items: int, queries: int, dim: int, k: int) -> dict:
    vectors = clustered_vectors(items, dim, seed=items)
    asked = vectors[:queries]
    started = time.perf_counter()
    before = numpy_neighbours(asked, vectors, k)
    numpy_seconds = time.perf_counter() - started
    started = time.perf_counter()
    now = cosine_neighbours(asked, vectors, k)
    faiss_seconds = time.perf_counter() - started
    agreement = np.mean([len(set(a) & set(b)) / k for a, b in zip(before, now)])
    return {
        "items": items,
        "queries": queries,
        "dim": dim,
        "k": k,
        "numpy_seconds": round(numpy_seconds, 3),
        "faiss_seconds": round(faiss_seconds, 3),
        "speedup": round(numpy_seconds / faiss_seconds, 2),
        "top_k_agreement": round(float(agreement), 5),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, nargs="+", default=[10_000, 50_000, 200_000])
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    for items in args.items:
        print(json.dumps(measure(items, min(args.queries, items), args.dim, args.k)), flush=True)


if __name__ == "__main__":
    main()
