"""Every factorisation engine at the same d on one split of MovieLens and of a >= 5M-interaction
synthetic log: fit seconds, seconds per epoch, peak RSS, mf/pr, mf/auc, mf/ndcg@10; one JSON line each.

    python benchmarks/factorization.py [--movielens DIR] [--synthetic DIR] [--dim 64] [--engines als,sgd,...]
        [--repeats 3]

Each engine runs in a fresh process so its peak RSS is its own; with --repeats N the engines take
turns N times (so a noisy neighbour on a shared VM hits them alike) and the summary compares
medians. seconds_per_epoch is the fit's wall time (setup included) over its epochs;
epoch_seconds_median leaves the setup out. Datasets are made in a temporary directory when not
given (MovieLens from ../shared/data/movielens-posters).
"""

import argparse
import json
import multiprocessing
import os
import resource
import sys
import tempfile
import time

import numpy as np
import pandas as pd

from socialfeat.config import FactorizationConfig, FilterConfig, SamplingConfig, SplitConfig, SynthConfig
from socialfeat.data.reader import read_dataset
from socialfeat.data.splits import filter_by_popularity, split_interactions
from socialfeat.factorization import engines
from socialfeat.factorization.mf import evaluate, sampled_entries

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "movielens-posters")
# Per engine: the settings each is at its best with on these data (lambda conventions differ).
SETTINGS = {
    "als": {"reg": 5.0},  # on a CPU: 3 warm-started CG steps per row update (cg_steps), numba
    "als_cg2": {"reg": 5.0, "cg_steps": 2},
    "als_exact": {"reg": 5.0, "cg_steps": 0},  # the exact batched solve in torch (what a GPU runs)
    "sgd": {"reg": 5.0, "learning_rate": 0.05},
    "implicit_als": {"reg": 1.0},
    "implicit_bpr": {"reg": 0.01, "learning_rate": 0.01},
}


def _entries(dataset_dir: str, posters_only: bool, work: str) -> str:
    """One split with sampled negatives, saved as Parquet for the engine processes."""
    dataset = read_dataset(dataset_dir)
    interactions = dataset.interactions
    if posters_only:
        interactions = interactions[
            interactions["item_id"].isin(dataset.items.loc[dataset.items["image_ref"].notna(), "item_id"])
        ]
    kept, _ = filter_by_popularity(interactions, FilterConfig())
    split, _, _ = split_interactions(kept, SplitConfig())
    entries, users, items, _ = sampled_entries(split, SamplingConfig(), SplitConfig())
    path = os.path.join(work, f"entries-{os.path.basename(dataset_dir)}.parquet")
    entries.to_parquet(path)
    return path


def _run_engine(path: str, engine: str, dim: int, epochs: int, queue) -> None:
    entries = pd.read_parquet(path)
    n_users, n_items = int(entries["user"].max()) + 1, int(entries["item"].max()) + 1
    data = engines.Entries.train_of(entries, n_users, n_items)
    cfg = FactorizationConfig(
        engine="als" if engine.startswith("als") else engine,
        dim=dim,
        epochs=epochs * (7 if engine == "implicit_bpr" else 1),
        **SETTINGS[engine],
    )
    if engine == "sgd" or engine.startswith("als"):  # compile (or load) the numba kernel outside the timing
        engines.fit(
            engines.Entries(data.users[:100], data.items[:100], data.values[:100], n_users, n_items),
            cfg.model_copy(update={"epochs": 1}),
        )
    stamps = []
    started = time.perf_counter()
    user_factors, item_factors = engines.fit(data, cfg, on_epoch=lambda *_: stamps.append(time.perf_counter()))
    seconds = time.perf_counter() - started
    epoch_seconds = np.diff(stamps)  # the first epoch's start is not observable apart from the setup
    metrics = evaluate(user_factors, item_factors, entries, cfg)
    import torch

    on_gpu = engine.startswith("als") and torch.cuda.is_available()
    device = torch.cuda.get_device_name() if on_gpu else f"cpu x{os.cpu_count()}"
    queue.put(
        {
            "engine": engine,
            "device": device,
            "dim": dim,
            "epochs": cfg.epochs,
            **SETTINGS[engine],
            **({"cg_steps": cfg.cg_steps} if engine.startswith("als") else {}),
            "train_entries": len(data.values),
            "users": n_users,
            "items": n_items,
            "fit_seconds": round(seconds, 3),
            "seconds_per_epoch": round(seconds / cfg.epochs, 4),
            "epoch_seconds_median": round(float(np.median(epoch_seconds)), 4) if len(epoch_seconds) else None,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "mf/pr": round(metrics["mf/pr"], 4),
            "mf/auc": round(metrics["mf/auc"], 4),
            "mf/ndcg@10": round(metrics["mf/ndcg@10"], 4),
            "mf/popularity/pr": round(metrics["mf/popularity/pr"], 4),
        }
    )


def bench(name: str, path: str, *, engine_names: list[str], dim: int, epochs: int, repeats: int) -> list[dict]:
    context = multiprocessing.get_context("spawn")
    records = []
    for repeat in range(repeats):
        for engine in engine_names:
            queue = context.Queue()
            process = context.Process(target=_run_engine, args=(path, engine, dim, epochs, queue))
            process.start()
            record = {"dataset": name, **queue.get(), "repeat": repeat}
            process.join()
            print(json.dumps(record), flush=True)
            records.append(record)
    return records


def _median(records: list[dict], engine: str, key: str) -> float:
    return float(np.median([r[key] for r in records if r["engine"] == engine]))


def summarize(records: list[dict]) -> dict:
    """Per dataset: als against implicit's ALS (medians over repeats) and against the exact solve."""
    summary = {"summary": True, "repeats": max(r["repeat"] for r in records) + 1}
    for dataset in sorted({r["dataset"] for r in records}):
        runs = [r for r in records if r["dataset"] == dataset]
        engines_run = {r["engine"] for r in runs}
        if {"als", "implicit_als"} <= engines_run:
            for key, label in (("seconds_per_epoch", ""), ("epoch_seconds_median", "_setup_excluded")):
                ratio = _median(runs, "als", key) / _median(runs, "implicit_als", key)
                summary[f"{dataset}/als_epoch_over_implicit_als_iteration{label}"] = round(ratio, 2)
        if {"als", "als_exact"} <= engines_run:
            difference = _median(runs, "als", "mf/pr") - _median(runs, "als_exact", "mf/pr")
            summary[f"{dataset}/als_mf_pr_minus_exact"] = round(difference, 4)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--movielens", help="an imported MovieLens dataset (default: import the shared sample)")
    parser.add_argument("--synthetic", help="a synthetic dataset of >= 5M interactions (default: generate one)")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--engines", default="als,als_exact,sgd,implicit_als,implicit_bpr")
    parser.add_argument("--repeats", type=int, default=3, help="turns each engine takes (fresh processes)")
    parser.add_argument("--skip-synthetic", action="store_true")
    parser.add_argument("--skip-movielens", action="store_true", help="e.g. on a GPU box without ../shared")
    args = parser.parse_args()
    settings = {"engine_names": args.engines.split(","), "dim": args.dim, "repeats": args.repeats}
    with tempfile.TemporaryDirectory() as work:
        records = []
        if not args.skip_movielens:
            movielens = args.movielens
            if movielens is None:
                from socialfeat.data.importers import import_movielens

                movielens = os.path.join(work, "movielens")
                import_movielens(f"{SHARED}/ratings.csv", f"{SHARED}/movies.csv", f"{SHARED}/posters", movielens)
            entries = _entries(movielens, True, work)
            records += bench("movielens-posters", entries, **settings, epochs=15)
        if not args.skip_synthetic:
            synthetic = args.synthetic
            if synthetic is None:
                from socialfeat.data.synthetic import generate

                synthetic = os.path.join(work, "synthetic")
                generate(SynthConfig(users=100_000, items=20_000, mean_views=60, image_size=16), synthetic)
            entries = _entries(synthetic, False, work)
            records += bench("synthetic-5M", entries, **settings, epochs=args.epochs)
    summary = summarize(records)
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    sys.exit(main())
