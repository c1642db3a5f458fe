"""Seconds a Ray Train epoch spends in ray.train.report(checkpoint=...) at Ray's 2 s controller poll
against the local Ray's 0.2 s (socialfeat.distributed.cluster), on a laptop-sized epoch.

    python benchmarks/train_report_wait.py [--epochs 8] [--rows 1100]

Each setting runs in its own process, since the workers take the poll interval from the raylet's
environment. Prints one JSON line per setting.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

CHILD = r"""
import json, os, sys, tempfile, time
import numpy as np, ray, torch
import ray.train
from ray.train import DataConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

epochs, rows = int(sys.argv[1]), int(sys.argv[2])

def loop(config):
    shard, reports, iterations = ray.train.get_dataset_shard("train"), [], []
    for epoch in range(config["epochs"]):
        started = time.perf_counter()
        for _ in shard.iter_torch_batches(batch_size=64):
            pass
        iterated = time.perf_counter()
        with tempfile.TemporaryDirectory() as directory:
            torch.save({"weights": torch.zeros(100_000)}, os.path.join(directory, "state.pt"))
            ray.train.report({"epoch": epoch}, checkpoint=ray.train.Checkpoint.from_directory(directory))
        iterations.append(iterated - started)
        reports.append(time.perf_counter() - iterated)
    print("RESULT " + json.dumps({"iterate": iterations, "report": reports}), flush=True)

ray.init(num_cpus=2, include_dashboard=False, log_to_driver=True)
images = np.random.default_rng(0).integers(0, 255, (rows, 36, 36, 3), dtype=np.uint8)
started = time.perf_counter()
TorchTrainer(
    loop,
    train_loop_config={"epochs": epochs},
    scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": 1}),
    datasets={"train": ray.data.from_numpy(images).materialize()},
    run_config=RunConfig(storage_path=tempfile.mkdtemp(), name="wait"),
).fit()
print("FIT " + str(time.perf_counter() - started), flush=True)
"""


def _measure(poll: str, epochs: int, rows: int) -> dict:
    env = dict(os.environ, RAY_TRAIN_HEALTH_CHECK_INTERVAL_S=poll)
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as script:
        script.write(CHILD)
    output = subprocess.run(
        [sys.executable, script.name, str(epochs), str(rows)], env=env, capture_output=True, text=True, check=True
    ).stdout
    lines = output.splitlines()
    # the workers' output reaches the driver once or twice (Ray's log deduplication): take the first
    found = json.loads(next(line.split("RESULT ", 1)[1] for line in lines if "RESULT " in line))
    fit = float(next(line.split("FIT ", 1)[1] for line in lines if line.startswith("FIT ")))
    later = found["report"][1:]  # the first report has no earlier one queued to wait behind
    return {
        "poll_seconds": float(poll),
        "epochs": epochs,
        "rows": rows,
        "mean_report_seconds": sum(later) / len(later),
        "mean_iterate_seconds": sum(found["iterate"][1:]) / len(later),
        "fit_seconds": fit,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--rows", type=int, default=1100)
    args = parser.parse_args()
    for poll in ("2.0", "0.2"):
        print(json.dumps(_measure(poll, args.epochs, args.rows)), flush=True)


if __name__ == "__main__":
    main()
