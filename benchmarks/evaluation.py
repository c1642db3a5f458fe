"""The evaluate stage's computation (socialfeat.evaluation.suite.evaluate: retrieval with Jaccard, linear
probes, the latent reference set) on a ladder of synthetic sizes, each in a fresh process: seconds, how
far its peak RSS rises above the inputs it is given, and the growth exponents against the previous size.

    python benchmarks/evaluation.py [--sizes 20000:5000000 60000:16800000 200000:50000000] [--dim 128]

Items carry 128-d vectors clustered by one of 50 planted labels (the probe's target), 10% of them te; views pick
items with Zipf-like popularity and users uniformly. Ids are integers (a real log's string ids cost the
reader, not this stage). Two image feature sets are scored, as `cnn` and `random_cnn`, and latent
factors for the tr items as the reference set. The log is random, so the Jaccard numbers measure cost,
not quality. One JSON line per size; `one_probe_seconds` times one feature set's probe again, alone.
"""

import argparse
import gc
import json
import math
import multiprocessing
import os
import platform
import time

import numpy as np
import pandas as pd
import psutil

from socialfeat.evaluation.probes import linear_probe
from socialfeat.evaluation.suite import evaluate, viewers_of
from socialfeat.memory import peak_rss_mib, reset_peak_rss

LABELS = 50  # the probe's classes: a fixed set of categories, as styles or genres are


def _rss_mib() -> float:
    return psutil.Process().memory_info().rss / 2**20


def _inputs(items: int, views: int, dim: int, seed: int):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, LABELS, items)
    centres = rng.normal(size=(labels.max() + 1, dim))
    vectors = (centres[labels] + 1.5 * rng.normal(size=(items, dim))).astype(np.float32)
    popularity = 1.0 / np.arange(1, items + 1) ** 0.8
    interactions = pd.DataFrame(
        {
            "user_id": rng.integers(0, max(1, views // 50), views),
            "item_id": rng.choice(items, views, p=popularity / popularity.sum()),
        }
    ).drop_duplicates()
    ids = np.arange(items)
    parts = pd.Series(np.where(rng.random(items) < 0.1, "te", "tr"), index=ids)
    sets = {"cnn": (ids, vectors), "random_cnn": (ids, rng.normal(size=(items, dim)).astype(np.float32))}
    tr = ids[parts.to_numpy() == "tr"]
    references = {"latent": (tr, vectors[tr] + rng.normal(size=(len(tr), dim)).astype(np.float32))}
    return sets, interactions, parts, pd.Series([[int(label)] for label in labels], index=ids), references


def _one(items: int, views: int, dim: int, queue) -> None:
    sets, interactions, parts, labels, references = _inputs(items, views, dim, seed=0)
    gc.collect()
    before = _rss_mib()  # the inputs, held
    reset_peak_rss()  # so that the peak read after is evaluate's, not the inputs' making
    started = time.perf_counter()
    metrics, _, _ = evaluate(sets, viewers_of(interactions), parts, None, labels, seed=0, references=references)
    seconds = time.perf_counter() - started
    started = time.perf_counter()
    linear_probe(sets["cnn"][1], labels.tolist(), seed=0)
    queue.put(
        {
            "items": items,
            "views": len(interactions),
            "dim": dim,
            "seconds": round(seconds, 1),
            "one_probe_seconds": round(time.perf_counter() - started, 1),
            "peak_rss_added_mib": round(peak_rss_mib() - before),
            "inputs_rss_mib": round(before),
            "jaccard@10/cnn": round(metrics["retrieval/cnn/jaccard@10"], 5),
            "jaccard@10/random_cnn": round(metrics["retrieval/random_cnn/jaccard@10"], 5),
            "probe/cnn/accuracy": round(metrics["probe/cnn/accuracy"], 4),
            "probe/random_cnn/accuracy": round(metrics["probe/random_cnn/accuracy"], 4),
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
        }
    )


def _exponent(new: dict, old: dict | None, field: str, by: str) -> float | None:
    if old is None or old[field] <= 0 or new[field] <= 0:
        return None
    return round(math.log(new[field] / old[field]) / math.log(new[by] / old[by]), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["20000:5000000", "60000:16800000", "200000:50000000"])
    parser.add_argument("--dim", type=int, default=128)
    args = parser.parse_args()
    previous = None
    for size in args.sizes:
        items, views = (int(part) for part in size.split(":"))
        queue = multiprocessing.get_context("spawn").Queue()
        process = multiprocessing.get_context("spawn").Process(target=_one, args=(items, views, args.dim, queue))
        process.start()
        row = queue.get()
        process.join()
        row["seconds_exponent_in_views"] = _exponent(row, previous, "seconds", "views")
        row["rss_exponent_in_items"] = _exponent(row, previous, "peak_rss_added_mib", "items")
        print(json.dumps(row), flush=True)
        previous = row


if __name__ == "__main__":
    main()
