"""Cosine k-nearest neighbours over item vectors: faiss's exact inner-product search against an IVF index
(socialfeat.stats.retrieval.ivf_index) at several probe counts, on a ladder of item counts, with the IVF
neighbours' recall@k against exact.

    python benchmarks/neighbours.py [--items 20000 50000 200000 1000000] [--spread 0.7 1.5] [--probes 8 16 32 64]

Prints one JSON line per size and probe count: the index's build seconds, search seconds per 1,000 queries
for each, recall@k, and the projected seconds of an all-against-all search (every item a query, as label
precision and the latent-neighbour analysis ask), build included.
"""

import argparse
import json
import os
import platform
import time

import faiss
import numpy as np

from socialfeat.stats.retrieval import ivf_index, normalise


def clustered_vectors(items: int, dim: int, spread: float, seed: int) -> np.ndarray:
    """Unit item vectors around items / 1000 (at least 50) centres, as learnt features are: neighbours are
    meaningful, not uniform noise, and the clusters grow with the catalogue. `spread`: the noise around a
    centre, per dimension, against the centres' 1 (the larger, the harder for an IVF index)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(50, items // 1000), dim))
    labels = rng.integers(0, len(centres), items)
    return normalise(centres[labels] + spread * rng.normal(size=(items, dim)))


def _timed(function):
    started = time.perf_counter()
    value = function()
    return value, time.perf_counter() - started


def measure(items: int, queries: int, *, dim: int, k: int, spread: float, probes: list[int]) -> list[dict]:
    vectors = clustered_vectors(items, dim, spread, seed=items)
    asked = vectors[np.random.default_rng(0).choice(items, queries, replace=False)]
    (_, exact), exact_seconds = _timed(lambda: faiss.knn(asked, vectors, k, metric=faiss.METRIC_INNER_PRODUCT))
    index, build_seconds = _timed(lambda: ivf_index(vectors))
    common = {"items": items, "queries": queries, "dim": dim, "k": k, "spread": spread, "lists": index.nlist}
    exact_per_1k = 1000 * exact_seconds / queries
    rows = []
    for probe_count in probes:
        index.nprobe = probe_count
        (_, found), seconds = _timed(lambda: index.search(asked, k))
        recall = np.mean([len(np.intersect1d(a, b)) for a, b in zip(found, exact)]) / k
        ivf_per_1k = 1000 * seconds / queries
        rows.append(
            common
            | {
                "probes": probe_count,
                "exact_seconds_per_1k_queries": round(exact_per_1k, 4),
                "ivf_build_seconds": round(build_seconds, 2),
                "ivf_seconds_per_1k_queries": round(ivf_per_1k, 4),
                "recall_at_k": round(float(recall), 4),
                "all_against_all_exact_seconds": round(exact_per_1k * items / 1000, 1),
                "all_against_all_ivf_seconds": round(build_seconds + ivf_per_1k * items / 1000, 1),
                "cpus": os.cpu_count(),
                "machine": platform.machine(),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, nargs="+", default=[20_000, 50_000, 200_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--probes", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--spread", type=float, nargs="+", default=[0.7, 1.5])
    args = parser.parse_args()
    for spread in args.spread:
        for items in args.items:
            queries = min(args.queries, items)
            for row in measure(items, queries, dim=args.dim, k=args.k, spread=spread, probes=args.probes):
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
