"""k-means into pseudo classes: socialfeat's kmeans (faiss underneath, plus normalisation and
re-seeding) against a bare faiss.Kmeans at the same iterations, and K = 200 vs K = 5000 scaling.

    python benchmarks/clustering.py [--n 200000] [--dim 100] [--iterations 10]

Prints one JSON line per measurement and a summary line.
"""

import argparse
import json
import os
import time

import numpy as np

from socialfeat.clustering.kmeans import KMeans, kmeans, prepare


def _clustered_points(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """Points around 3,000 random centres, like item factors of a real log."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((3000, dim)).astype(np.float32)
    return centres[rng.integers(0, 3000, n)] + 0.5 * rng.standard_normal((n, dim)).astype(np.float32)


def _time_ours(points, k, iterations) -> dict:
    started = time.perf_counter()
    _, _, metrics = kmeans(points, KMeans(k=k, iterations=iterations))
    return {
        "seconds": time.perf_counter() - started,
        "inertia": metrics["kmeans/inertia"],
        "empty_reseeded": metrics["kmeans/empty_reseeded"],
    }


def _time_faiss(points, k, iterations) -> dict:
    import faiss

    x = prepare(points, KMeans(k=k))  # the same normalised input
    started = time.perf_counter()
    model = faiss.Kmeans(
        x.shape[1],
        k,
        niter=iterations,
        seed=0,
        verbose=False,
        min_points_per_centroid=1,
        max_points_per_centroid=max(256, len(x) // k + 1),
    )
    model.train(x)
    _, labels = model.index.search(x, 1)
    return {"seconds": time.perf_counter() - started, "inertia": float(model.obj[-1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=100)
    parser.add_argument("--iterations", type=int, default=10)
    args = parser.parse_args()
    points = _clustered_points(args.n, args.dim)
    common = {"n": args.n, "dim": args.dim, "iterations": args.iterations, "cpus": os.cpu_count()}
    results = {}
    for name, k, timer in (
        ("socialfeat", 2000, _time_ours),
        ("faiss", 2000, _time_faiss),
        ("socialfeat", 200, _time_ours),
        ("socialfeat", 5000, _time_ours),
    ):
        record = {"impl": name, "k": k, **common, **timer(points, k, args.iterations)}
        results[(name, k)] = record
        print(json.dumps(record), flush=True)
    print(
        json.dumps(
            {
                "summary": True,
                "k2000_time_over_faiss": round(
                    results[("socialfeat", 2000)]["seconds"] / results[("faiss", 2000)]["seconds"], 3
                ),
                "k5000_time_over_k200": round(
                    results[("socialfeat", 5000)]["seconds"] / results[("socialfeat", 200)]["seconds"], 2
                ),
            }
        )
    )


if __name__ == "__main__":
    main()
