"""Two Ray nodes on this machine: training workers on both, the worker node killed mid-training and replaced,
the run resumed from its checkpoint in object storage with an unkilled run's metrics; no shared storage, no run."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from test_storage import _read

HELPER = os.path.join(os.path.dirname(__file__), "two_nodes.py")
# the default method, small: one training worker on each node (STRICT_SPREAD), checkpoints every epoch
RUN = (
    "data.synth.users=300",
    "data.synth.items=400",
    "data.synth.image_size=32",
    "factorization.epochs=4",
    "factorization.eval_max_users=200",
    "clustering.k=6",
    "training.image_size=36",
    "training.crop_size=32",
    "training.epochs=4",
    "training.num_workers=2",
    "training.cpus_per_worker=1",
    "training.placement=STRICT_SPREAD",
)
UNSTEADY = ("seconds", "rss", "resumed", "reused")  # wall time, memory, the resume and reuse records
BEFORE_TRAINING = ("synth", "data", "filter", "split", "sampling", "factorization", "kmeans")


def two_nodes(out: str, kill: bool = False, reference: str | None = None) -> dict:
    """`socialfeat run` on a fresh two-node cluster (its own processes: this one holds the session's Ray); with
    `reference`, an unkilled run there first, whose stages before training the `out` run reuses."""
    socialfeat = shutil.which("socialfeat", path=os.path.dirname(sys.executable))
    command = [sys.executable, HELPER, "--socialfeat", socialfeat, "--out", out, *(["--kill"] if kill else [])]
    command += ["--reference", reference, "--reuse", ",".join(BEFORE_TRAINING)] if reference else []
    command += [part for text in RUN for part in ("--set", text)]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1100)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def steady(metrics: dict) -> dict:
    return {name: value for name, value in metrics.items() if not any(word in name for word in UNSTEADY)}


@pytest.mark.slow
def test_a_run_survives_losing_a_node_mid_training_and_gives_the_unkilled_runs_metrics(bucket):
    runs = two_nodes(f"{bucket}/killed", kill=True, reference=f"{bucket}/unkilled")
    unkilled, killed = runs["reference"], runs["run"]
    assert unkilled["returncode"] == 0, unkilled["output"]
    assert killed["returncode"] == 0 and killed["killed"], killed["output"]
    reference = json.loads(_read(f"{bucket}/unkilled/metrics.json"))
    resumed = json.loads(_read(f"{bucket}/killed/metrics.json"))
    assert reference["train/resumed"] == 0 and resumed["run/stages_reused"] == len(BEFORE_TRAINING)
    # the killed node held a training worker (STRICT_SPREAD), so training failed and resumed from a checkpoint
    assert resumed["train/resumed"] == 1 and 1 <= resumed["train/resumed_epoch"] < 4
    assert steady(resumed) == steady(reference) and len(steady(reference)) > 200


@pytest.mark.slow
def test_several_nodes_without_shared_storage_is_one_message_before_any_stage(tmp_path):
    refused = two_nodes(str(tmp_path / "run"))["run"]
    assert refused["returncode"] == 2
    last = refused["output"].strip().splitlines()[-1]
    assert "this Ray cluster has 2 nodes, and --out is a local directory" in last
    assert "ray.shared_filesystem=true" in last and not (tmp_path / "run").exists()
