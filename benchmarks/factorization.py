"""Every factorisation engine at the same d on one split of MovieLens and of a >= 5M-interaction
synthetic log: fit seconds, seconds per epoch, peak RSS, mf/pr, mf/auc, mf/ndcg@10; one JSON line each.

    python benchmarks/factorization.py [--movielens DIR] [--synthetic DIR] [--dim 64] [--engines als,sgd,...]

Each engine runs in a fresh process so its peak RSS is its own. Datasets are made in a temporary
directory when not given (MovieLens from ../shared/data/movielens-posters).
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
    train = entries[entries["fold"] == "train"]
    data = engines.Entries(
        train["user"].to_numpy(np.int32),
        train["item"].to_numpy(np.int32),
        train["value"].to_numpy(np.float32),
        n_users,
        n_items,
    )
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
    started = time.perf_counter()
    user_factors, item_factors = engines.fit(data, cfg)
    seconds = time.perf_counter() - started
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
            "train_entries": len(train),
            "users": n_users,
            "items": n_items,
            "fit_seconds": round(seconds, 3),
            "seconds_per_epoch": round(seconds / cfg.epochs, 4),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "mf/pr": round(metrics["mf/pr"], 4),
            "mf/auc": round(metrics["mf/auc"], 4),
            "mf/ndcg@10": round(metrics["mf/ndcg@10"], 4),
            "mf/popularity/pr": round(metrics["mf/popularity/pr"], 4),
        }
    )


def bench(name: str, path: str, engine_names: list[str], dim: int, epochs: int) -> list[dict]:
    context = multiprocessing.get_context("spawn")
    records = []
    for engine in engine_names:
        queue = context.Queue()
        process = context.Process(target=_run_engine, args=(path, engine, dim, epochs, queue))
        process.start()
        record = {"dataset": name, **queue.get()}
        process.join()
        print(json.dumps(record), flush=True)
        records.append(record)
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--movielens", help="an imported MovieLens dataset (default: import the shared sample)")
    parser.add_argument("--synthetic", help="a synthetic dataset of >= 5M interactions (default: generate one)")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--engines", default="als,als_exact,sgd,implicit_als,implicit_bpr")
    parser.add_argument("--skip-synthetic", action="store_true")
    parser.add_argument("--skip-movielens", action="store_true", help="e.g. on a GPU box without ../shared")
    args = parser.parse_args()
    engine_names = args.engines.split(",")
    with tempfile.TemporaryDirectory() as work:
        records = []
        if not args.skip_movielens:
            movielens = args.movielens
            if movielens is None:
                from socialfeat.data.importers import import_movielens

                movielens = os.path.join(work, "movielens")
                import_movielens(f"{SHARED}/ratings.csv", f"{SHARED}/movies.csv", f"{SHARED}/posters", movielens)
            records += bench("movielens-posters", _entries(movielens, True, work), engine_names, args.dim, 15)
        if not args.skip_synthetic:
            synthetic = args.synthetic
            if synthetic is None:
                from socialfeat.data.synthetic import generate

                synthetic = os.path.join(work, "synthetic")
                generate(SynthConfig(users=100_000, items=20_000, mean_views=60, image_size=16), synthetic)
            records += bench("synthetic-5M", _entries(synthetic, False, work), engine_names, args.dim, args.epochs)
    summary = {"summary": True}
    for dataset in {r["dataset"] for r in records}:
        by_engine = {r["engine"]: r for r in records if r["dataset"] == dataset}
        if "als" in by_engine and "implicit_als" in by_engine:
            summary[f"{dataset}/als_epoch_over_implicit_als_iteration"] = round(
                by_engine["als"]["seconds_per_epoch"] / by_engine["implicit_als"]["seconds_per_epoch"], 2
            )
        if "als" in by_engine and "als_exact" in by_engine:
            summary[f"{dataset}/als_mf_pr_minus_exact"] = round(
                by_engine["als"]["mf/pr"] - by_engine["als_exact"]["mf/pr"], 4
            )
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    sys.exit(main())
