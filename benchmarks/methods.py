"""The four methods side by side, as README quotes them: each method's local experiment on the built-in synthetic
data repeated over seeds (`socialfeat run experiments/<m>_local.yaml --seeds N`), then `socialfeat compare` of
the four (means over seeds, tests paired by seed); with --movielens, the same with each method's
`experiments/<m>_movielens.yaml` on the imported MovieLens sample.

    python benchmarks/methods.py [--seeds 3] [--out DIR] [--movielens DATA_DIR] [--methods comparative,...]

Prints the Markdown tables README shows and one JSON line per method and setting (append them to
benchmarks/results/methods-<machine>-<date>.jsonl): each metric's mean, sd and per-seed values, the seconds.
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
KEPT = ("retrieval", "probe", "coldstart", "features", "mf", "words", "hashtags", "comparative", "run")
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


def over_seeds(out: str, seeds: int, setting: str, *, methods: tuple[str, ...], extra: tuple[str, ...] = ()):
    """Each method's `experiments/<m>_<setting>.yaml` run over `seeds` seeds; its compare table printed."""
    lines, dirs = [], []
    for method in methods:
        run_dir = os.path.join(out, setting, method)
        started = time.perf_counter()
        socialfeat("run", f"experiments/{method}_{setting}.yaml", "--out", run_dir, "--seeds", str(seeds), *extra)
        summary = json.load(open(os.path.join(run_dir, "seeds.json")))["metrics"]
        kept = {k: {f: v[f] for f in ("mean", "sd", "values")} for k, v in summary.items() if k.split("/")[0] in KEPT}
        lines.append(
            {"data": setting, "method": method, "seeds": seeds, "seconds": time.perf_counter() - started}
            | {"metrics": kept}
        )
        dirs.append(run_dir)
    print(f"## {setting}: each method's {setting} experiment, {seeds} seeds\n\n{compare(dirs)}\n")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", help="where the runs go (default: a temporary directory)")
    parser.add_argument("--movielens", help="an imported MovieLens sample (socialfeat data import-movielens)")
    parser.add_argument("--methods", default=",".join(METHODS), help="which methods, comma-separated (default: all)")
    args = parser.parse_args()
    methods = tuple(args.methods.split(","))
    if unknown := set(methods) - set(METHODS):
        parser.error(f"--methods: unknown {sorted(unknown)}; choose from {', '.join(METHODS)}")
    out = args.out or tempfile.mkdtemp(prefix="socialfeat-methods-")
    machine = {"machine": platform.node(), "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d")}
    lines = over_seeds(out, args.seeds, "local", methods=methods)
    if args.movielens:
        data = ("--data", os.path.abspath(args.movielens))
        lines += over_seeds(out, args.seeds, "movielens", methods=methods, extra=data)
    for line in lines:
        print(json.dumps(machine | line))


if __name__ == "__main__":
    main()
