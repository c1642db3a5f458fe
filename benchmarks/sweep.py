"""Sweep orchestration cost: a 16-trial factorisation sweep (Ray Tune + Optuna) against the same 16
configurations run in a plain Python loop on the same machine and the same kind of shared stage store.

    python benchmarks/sweep.py [--data DIR] [--space search_spaces/cfl_factorization.yaml] [--trials 16]

Without --data the shared MovieLens sample is imported into a temp dir first. Prints one JSON line per
phase and a summary line; `overhead_per_trial_s` is the trial-slot time a trial spends outside the
experiment code (actor start, Optuna, result handling): (sweep wall x concurrency - trial seconds) / trials.
"""

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MOVIELENS = os.path.join(HERE, "..", "..", "shared", "data", "movielens-posters")


def _dataset(data: str | None, scratch: str) -> str:
    if data:
        return os.path.abspath(data)
    from socialfeat.data.importers import import_movielens

    out = os.path.join(scratch, "movielens")
    import_movielens(
        f"{MOVIELENS}/ratings.csv", f"{MOVIELENS}/movies.csv", f"{MOVIELENS}/posters", out, tags=f"{MOVIELENS}/tags.csv"
    )
    return out


def _sweep(space, data: str, out: str, trials: int) -> tuple[float, list[dict]]:
    from socialfeat.sweep.runner import finished_trials, run_sweep

    started = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # Tune prints tables even at verbose=0: stdout is for JSON
        run_sweep(space, data, out, samples=trials, verbose=0)
    return time.perf_counter() - started, finished_trials(out)


def _loop(space, data: str, out: str, finished: list[dict]) -> tuple[float, list[float]]:
    """The sweep's own configurations, one after another, sharing one stage store like the trials do."""
    from socialfeat.methods import named
    from socialfeat.stages import run_experiment
    from socialfeat.sweep.space import trial_config

    base = space.base_config(data)
    started, seconds = time.perf_counter(), []
    for index, record in enumerate(finished):
        cfg = trial_config(base, record["params"], f"loop-{index}")
        metrics, _ = run_experiment(
            named(cfg.method),
            cfg,
            os.path.join(out, f"loop-{index}"),
            until=space.until,
            stage_root=os.path.join(out, "stages"),
        )
        seconds.append(metrics["run/seconds"])
    return time.perf_counter() - started, seconds


def main() -> None:
    import ray

    from socialfeat.sweep.runner import max_concurrency
    from socialfeat.sweep.space import load_space

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data")
    parser.add_argument("--space", default=os.path.join(HERE, "..", "search_spaces", "cfl_factorization.yaml"))
    parser.add_argument("--trials", type=int, default=16)
    args = parser.parse_args()
    scratch = tempfile.mkdtemp(prefix="sweep-bench-")
    data = _dataset(args.data, scratch)
    started = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    ray_start = time.perf_counter() - started
    space = load_space(args.space)
    concurrency = max_concurrency(space, space.base_config(data))
    sweep_wall, finished = _sweep(space, data, os.path.join(scratch, "sweep"), args.trials)
    trial_seconds = [r["metrics"]["run/seconds"] for r in finished if "metrics" in r]
    record = {
        "phase": "sweep",
        "trials": len(finished),
        "failed": len(finished) - len(trial_seconds),
        "concurrency": concurrency,
        "wall_s": sweep_wall,
        "trial_seconds_sum": sum(trial_seconds),
        "ray_start_s": ray_start,
    }
    print(json.dumps(record), flush=True)
    loop_wall, loop_seconds = _loop(space, data, os.path.join(scratch, "loop"), [r for r in finished if "metrics" in r])
    print(
        json.dumps(
            {"phase": "loop", "trials": len(loop_seconds), "wall_s": loop_wall, "trial_seconds_sum": sum(loop_seconds)}
        ),
        flush=True,
    )
    print(
        json.dumps(
            {
                "summary": True,
                "space": os.path.basename(args.space),
                "cpus": os.cpu_count(),
                "trials": len(finished),
                "concurrency": concurrency,
                "sweep_wall_s": round(sweep_wall, 2),
                "loop_wall_s": round(loop_wall, 2),
                "sweep_over_loop": round(sweep_wall / loop_wall, 3),
                "overhead_per_trial_s": round(
                    (sweep_wall * concurrency - sum(trial_seconds)) / max(1, len(finished)), 2
                ),
                "trial_seconds_sweep_over_loop": round(sum(trial_seconds) / max(1e-9, sum(loop_seconds)), 3),
            }
        )
    )
    ray.shutdown()


if __name__ == "__main__":
    main()
