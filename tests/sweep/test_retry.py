"""A sweep trial whose process dies mid-training is retried by Tune and resumes from its last checkpoint."""

import glob
import json
import os
import signal
import threading
import time

import pandas as pd
import pytest

from conftest import SHRINK, space_file
from socialfeat.artifacts import UnsafeFile
from socialfeat.cli import main
from socialfeat.distributed.train import load_state


def _kill_after_epoch(out: str, epoch: int, killed: dict, deadline: float) -> None:
    """SIGKILL the trial's process (its Tune actor) once a checkpoint of `epoch` (1-based) exists."""
    pattern = os.path.join(out, "stages", ".checkpoints", "train-*", "cnn", "checkpoint_*", "state.pt")
    while time.time() < deadline:
        states = []
        for path in glob.glob(pattern):
            try:
                states.append(load_state(path)["epoch"] + 1)
            except (OSError, UnsafeFile):
                pass  # still being copied into storage: a partial torch file
        records = glob.glob(os.path.join(out, "trials", "*", "trial.json"))
        if states and max(states) >= epoch and records:
            killed["epoch"] = max(states)
            killed["pid"] = json.load(open(records[0]))["pid"]
            os.kill(killed["pid"], signal.SIGKILL)
            return
        time.sleep(0.2)


@pytest.mark.slow
def test_a_retried_trial_resumes_training_from_its_checkpoint(release_stopped_trainers, synth_dir, tmp_path):
    space = space_file(
        tmp_path,
        until="train",
        samples=1,
        max_failures=1,
        space={"clustering.k": {"choice": [6]}},
        objectives=[{"metric": "train/holdout_loss", "mode": "min"}],
        trial_resources={"cpu": 0.01, "data_cpus": 1},
        fixed=SHRINK
        + [
            "training.epochs=8",
            "training.batch_size=32",
            "training.cpus_per_worker=0.99",
            "training.image_size=32",
            "training.crop_size=28",
        ],
    )
    out = str(tmp_path / "sweep")
    killed: dict = {}
    killer = threading.Thread(target=_kill_after_epoch, args=(out, 3, killed, time.time() + 300))
    killer.start()
    assert main(["sweep", space, "--data", synth_dir, "--out", out]) == 0
    killer.join()
    assert killed, "the trial finished before its epoch-3 checkpoint was seen"
    results = pd.read_csv(os.path.join(out, "results.csv"))
    assert len(results) == 1 and results.loc[0, "status"] == "TERMINATED"
    record = json.load(open(glob.glob(os.path.join(out, "trials", "*", "trial.json"))[0]))
    assert record["pid"] != killed["pid"]  # the retry ran in a new process
    assert results.loc[0, "train/resumed_epoch"] >= killed["epoch"] >= 3  # it went on from the checkpoint
    history = json.load(open(glob.glob(os.path.join(out, "stages", "train-*", "history.json"))[0]))
    assert [h["epoch"] for h in history] == list(range(1, 9))
    assert not history[0]["resumed"] and history[-1]["resumed"]
