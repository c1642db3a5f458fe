"""Jaccard of viewer sets over item pairs (socialfeat.stats.retrieval.jaccard_by_query) at the evaluation's
shape: every item queries its `--neighbours` neighbours, on a random view log.

    python benchmarks/jaccard.py [--items 60000] [--users 300000] [--views 16800000]

Prints one JSON line: the log's size, the pairs, seconds, and the process's peak RSS before and after (the
view matrix itself is built first, so the growth is what the Jaccard computation holds).
"""

import argparse
import json
import os
import platform
import resource
import time

import numba
import numpy as np
import scipy.sparse as sp

from socialfeat.stats import retrieval


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def view_matrix(items: int, users: int, views: int, seed: int) -> sp.csr_matrix:
    """items x users, ones where a user viewed an item; item popularity is skewed (Zipf-like) as in real logs."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, items + 1) ** 0.8
    item = rng.choice(items, views, p=popularity / popularity.sum()).astype(np.int32)
    user = rng.integers(0, users, views, dtype=np.int32)
    matrix = sp.csr_matrix((np.ones(views, np.float32), (item, user)), shape=(items, users))
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=60_000)
    parser.add_argument("--users", type=int, default=300_000)
    parser.add_argument("--views", type=int, default=16_800_000)
    parser.add_argument("--neighbours", type=int, default=100)
    args = parser.parse_args()
    matrix = view_matrix(args.items, args.users, args.views, seed=0)
    rng = np.random.default_rng(1)
    queries = np.arange(args.items)
    neighbours = rng.integers(0, args.items, (args.items, args.neighbours))
    retrieval.jaccard_by_query(matrix, queries[:2], neighbours[:2])  # numba's compilation or cache load
    before = _peak_rss_mib()
    started = time.perf_counter()
    values = retrieval.jaccard_by_query(matrix, queries, neighbours)
    seconds = time.perf_counter() - started
    row = {
        "items": args.items,
        "users": args.users,
        "views": int(matrix.nnz),
        "pairs": int(neighbours.size),
        "threads": numba.get_num_threads(),
        "seconds": round(seconds, 1),
        "mean_jaccard": round(float(values.mean()), 6),
        "peak_rss_mib_before": round(before),
        "peak_rss_mib_after": round(_peak_rss_mib()),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
    }
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
