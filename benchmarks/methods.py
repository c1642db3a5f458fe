"""The four methods side by side, as README quotes them: each method's local experiment on the built-in synthetic
data repeated over seeds (`socialfeat run experiments/<m>_local.yaml --seeds N`), then `socialfeat compare` of
the four (means over seeds, tests paired by seed); with --movielens, the methods sweep on the MovieLens sample
(`search_spaces/methods_movielens.yaml`, one trial per method, intervals and paired tests over the te queries).

    python benchmarks/methods.py [--seeds 3] [--out DIR] [--movielens DATA_DIR]

Prints the Markdown tables README shows and one JSON line per method and setting (append them to
benchmarks/results/methods-<machine>-<date>.jsonl): each common metric's mean, sd and per-seed values (or
value and interval), the seconds.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METHODS = ("cfl", "words", "hashtags", "comparative")
FAMILIES = ("retrieval", "probe", "coldstart", "features")  # the evaluation every method shares
COMMON = (  # what every method's features are measured by, and the baselines measured beside them
    "retrieval/*/jaccard@10",
    "retrieval/*/owner_viewed@100",
    "probe/*/accuracy",
    "coldstart/*/auc",
    "features/*/label_precision@10",
    "run/stage_seconds",
)


def socialfeat(*args: str) -> str:
    """Run the CLI in a fresh process (as a user would); its stdout, or its error and exit."""
    done = subprocess.run([sys.executable, "-m", "socialfeat", *args], capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        sys.exit(f"socialfeat {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout


def compare(dirs: list[str]) -> str:
    patterns = [item for pattern in COMMON for item in ("--metric", pattern)]
    return socialfeat("compare", *dirs, *patterns, "--format", "markdown")


def synthetic(out: str, seeds: int) -> list[dict]:
    lines, dirs = [], []
    for method in METHODS:
        run_dir = os.path.join(out, method)
        started = time.perf_counter()
        socialfeat("run", f"experiments/{method}_local.yaml", "--out", run_dir, "--seeds", str(seeds))
        summary = json.load(open(os.path.join(run_dir, "seeds.json")))["metrics"]
        common = {k: v for k, v in summary.items() if k.split("/")[0] in FAMILIES}
        lines.append(
            {"data": "synthetic", "method": method, "seeds": seeds, "seconds": time.perf_counter() - started}
            | {"metrics": {k: {f: v[f] for f in ("mean", "sd", "values")} for k, v in common.items()}}
        )
        dirs.append(run_dir)
    print(f"## Synthetic data, each method's *_local.yaml, {seeds} seeds\n\n{compare(dirs)}\n")
    return lines


def movielens(out: str, data: str) -> list[dict]:
    sweep = os.path.join(out, "movielens")
    space = os.path.join(ROOT, "search_spaces", "methods_movielens.yaml")
    socialfeat("sweep", space, "--data", data, "--out", sweep, "--samples", "4")
    print(f"## MovieLens sample, search_spaces/methods_movielens.yaml (one trial per method)\n\n{compare([sweep])}\n")
    lines = []
    for trial in sorted(os.listdir(os.path.join(sweep, "trials"))):
        run_dir = os.path.join(sweep, "trials", trial)
        metrics = json.load(open(os.path.join(run_dir, "metrics.json")))
        method = json.load(open(os.path.join(run_dir, "run.json")))["method"]
        kept = {k: v for k, v in metrics.items() if k.split("/")[0] in FAMILIES}
        lines.append({"data": "movielens", "method": method, "trial": trial, "metrics": kept})
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", help="where the runs go (default: a temporary directory)")
    parser.add_argument("--movielens", help="an imported MovieLens sample (socialfeat data import-movielens)")
    args = parser.parse_args()
    out = args.out or tempfile.mkdtemp(prefix="socialfeat-methods-")
    machine = {"machine": platform.node(), "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d")}
    lines = synthetic(out, args.seeds) + (movielens(out, args.movielens) if args.movielens else [])
    for line in lines:
        print(json.dumps(machine | line))


if __name__ == "__main__":
    main()
