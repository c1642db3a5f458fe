"""Ray Train around the loop: a killed worker resumes, an interrupt leaves no thread in Ray, the workers poll often."""

import glob
import os
import signal
import threading
import time

import pandas as pd
import pytest

from socialfeat.config import TrainingConfig
from socialfeat.methods.cfl.tasks import PseudoClassTask


def test_a_killed_train_worker_resumes_from_its_checkpoint(ray_session, synth_dir, tmp_path):
    from socialfeat.distributed.data import image_rows
    from socialfeat.distributed.train import _latest_on_disk, fit, load_state

    items = pd.read_parquet(os.path.join(synth_dir, "items.parquet"), columns=["item_id", "labels"])
    labels = items["labels"].str[0].astype("category").cat.codes.to_numpy()
    rows = pd.DataFrame({"item": items["item_id"], "label": labels.astype("int64")})
    train = image_rows(synth_dir, "image", rows[:300], ("item",), 32)
    holdout = image_rows(synth_dir, "image", rows[300:], ("item",), 32)
    cfg = TrainingConfig(image_size=32, crop_size=28, epochs=5, batch_size=32, max_failures=2)
    storage = str(tmp_path / "ray")
    outcome = {}
    thread = threading.Thread(
        target=lambda: outcome.update(
            result=fit(train.materialize(), holdout.materialize(), PseudoClassTask(6), cfg, 300, storage, "kill")
        )
    )
    thread.start()
    killed = saved = None
    deadline = time.time() + 240
    while time.time() < deadline and killed is None and thread.is_alive():
        # a checkpoint directory appears before its state.pt is copied in: killing then leaves nothing to resume
        saved = os.path.isdir(os.path.join(storage, "kill")) and _latest_on_disk(os.path.join(storage, "kill"))
        pid_file = os.path.join(storage, "worker-0.pid")
        if saved and os.path.exists(pid_file):
            killed = int(open(pid_file).read())
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.2)
    thread.join(timeout=300)
    assert killed is not None, "training ended before a checkpoint appeared"
    state, history = outcome["result"]
    assert [h["epoch"] for h in history] == list(range(1, 6)) and state["epoch"] == 4
    resumed = [h["epoch"] for h in history if h["resumed"]]  # epochs run in the restarted worker
    assert resumed and resumed[0] > saved["epoch"] + 1, (resumed, saved["epoch"])
    assert int(open(os.path.join(storage, "worker-0.pid")).read()) != killed
    newest = max(glob.glob(os.path.join(storage, "kill", "checkpoint_*", "state.pt")), key=os.path.getmtime)
    assert load_state(newest)["epoch"] == 4  # checkpoints are tensors and plain values (weights_only loads)


def test_resume_skips_a_checkpoint_cut_off_mid_copy(tmp_path):
    import torch

    from socialfeat.distributed.train import STATE, _latest_on_disk

    for epoch in (1, 2):
        os.makedirs(tmp_path / f"checkpoint_{epoch}")
        torch.save({"epoch": epoch, "model": {"w": torch.ones(64, 64)}}, tmp_path / f"checkpoint_{epoch}" / STATE)
    whole = (tmp_path / "checkpoint_2" / STATE).read_bytes()
    (tmp_path / "checkpoint_2" / STATE).write_bytes(whole[: len(whole) // 2])  # a copy into storage cut off
    assert _latest_on_disk(str(tmp_path))["epoch"] == 1


def test_fit_runs_in_the_calling_thread_and_its_progress_thread_is_gone_before_an_interrupt_leaves():
    # the CLI answers Ctrl-C with ray.shutdown(): a driver thread still inside a Ray call then dies of SIGSEGV
    from socialfeat.distributed.train import _fit_interruptibly

    polls, fitted_in = [], []

    class InterruptedAfterTwoPolls:  # stands in for the trainer: what matters here is which thread waits
        def fit(self):
            fitted_in.append(threading.current_thread())
            while len(polls) < 2:
                time.sleep(0.05)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _fit_interruptibly(InterruptedAfterTwoPolls(), poll=lambda: polls.append(threading.current_thread().name))
    assert fitted_in == [threading.main_thread()] and set(polls) == {"train-progress"}
    assert [t.name for t in threading.enumerate() if t.name == "train-progress"] == []
    polled = len(polls)
    time.sleep(1.2)
    assert len(polls) == polled  # stopped, not merely between two polls


def test_the_local_rays_workers_poll_ray_train_often_enough_for_short_epochs(ray_session):
    # a report with a checkpoint waits for the controller's poll of its workers: Ray's 2 s was 1.8 s an epoch
    import socialfeat.distributed.cluster as cluster

    seen = ray_session.get(ray_session.remote(lambda: os.environ.get(cluster.TRAIN_POLL_ENV)).remote())
    assert seen == cluster.TRAIN_POLL_SECONDS and float(seen) < 0.5
