"""Clusters and jobs: cluster.yaml passes Ray's validator; a real local Ray cluster runs submitted jobs."""

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time

import pytest
import yaml

from conftest import _free_port

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
SMALL = "--until factorization --set data.synth.users=200 --set data.synth.items=150 --set data.synth.image_size=24"


def test_cluster_yaml_passes_rays_validator():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load(open(os.path.join(ROOT, "cluster.yaml")))
    validate_config(prepare_config(config))  # what `ray up` runs before any cloud call
    assert {"head", "gpu_worker"} <= set(config["available_node_types"])
    assert "--dashboard-host=127.0.0.1" in " ".join(config["head_start_ray_commands"])  # tunnel only
    with pytest.raises(Exception, match="max_workerz"):
        validate_config(prepare_config(dict(config, max_workerz=3)))


def test_kuberay_manifest_runs_socialfeat():
    job = yaml.safe_load(open(os.path.join(ROOT, "deploy", "kuberay-rayjob.yaml")))
    assert job["kind"] == "RayJob" and job["spec"]["entrypoint"].startswith("socialfeat run")
    assert job["spec"]["rayClusterSpec"]["rayVersion"].startswith("2.60")


def test_an_unreachable_ray_address_fails_in_seconds(tmp_path):
    # a process of its own: in this one the session's Ray may be up already, and the CLI would join it
    socialfeat = shutil.which("socialfeat", path=os.path.dirname(sys.executable))
    started = time.perf_counter()
    done = subprocess.run(
        [socialfeat, "run", "--out", str(tmp_path / "run")],
        env=os.environ | {"RAY_ADDRESS": "127.0.0.1:1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and time.perf_counter() - started < 15
    assert "127.0.0.1:1 (RAY_ADDRESS / --address) is unreachable" in done.stderr
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    """`ray start --head` on loopback with the dashboard's job server, token authentication on."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env |= {
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(16),
        "RAY_TMPDIR": tempfile.mkdtemp(prefix="rh", dir="/tmp"),
    }  # short: Unix socket paths max ~107 bytes
    ray = shutil.which("ray", path=os.path.dirname(sys.executable))
    # free ports, not Ray's defaults: another Ray on this machine (the session's, another test worker's)
    # holds the dashboard agent's 52365, and then this head has no job agent ("No available agent")
    gcs, dashboard, agent = _free_port(), _free_port(), _free_port()
    started = subprocess.run(
        [
            ray,
            "start",
            "--head",
            "--node-ip-address",
            "127.0.0.1",
            "--port",
            str(gcs),
            "--num-cpus",
            "2",
            "--include-dashboard",
            "true",
            "--dashboard-host",
            "127.0.0.1",
            "--dashboard-port",
            str(dashboard),
            "--dashboard-agent-listen-port",
            str(agent),
            "--disable-usage-stats",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    try:
        assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:]
        yield f"http://127.0.0.1:{dashboard}", env
    finally:
        _stop_cluster(env["RAY_TMPDIR"])


def _stop_cluster(tmpdir: str) -> None:
    """Kill the processes of the cluster whose files live in `tmpdir` (`ray stop` would stop every Ray
    on the machine, the test session's own included)."""
    import psutil

    mine = []
    for process in psutil.process_iter(["cmdline"]):
        if any(tmpdir in part for part in process.info["cmdline"] or ()):
            mine.append(process)
    for process in mine:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(mine, timeout=10)
    shutil.rmtree(tmpdir, ignore_errors=True)


# The Job Submission SDK runs in a process of its own: Ray reads the auth mode once per process, and
# this test process already holds a Ray without token auth.
SUBMIT = """
import json, sys, time
from ray.job_submission import JobStatus, JobSubmissionClient
address, entrypoint, working_dir, timeout = sys.argv[1:5]
client = JobSubmissionClient(address)
deadline = time.time() + float(timeout)
while True:  # the job agent starts a few seconds after the head
    try:
        job = client.submit_job(entrypoint=entrypoint, runtime_env={"working_dir": working_dir})
        break
    except RuntimeError as error:
        if "No available agent" not in str(error) or time.time() > deadline:
            raise
        time.sleep(1)
while (status := client.get_job_status(job)) not in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
    if time.time() > deadline:
        client.stop_job(job)
    time.sleep(1)
print(json.dumps({"status": str(status.value), "logs": client.get_job_logs(job)}))
"""


def _run_job(address: str, env: dict, entrypoint: str, working_dir: str, timeout: float = 240):
    done = subprocess.run(
        [sys.executable, "-c", SUBMIT, address, entrypoint, working_dir, str(timeout)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout + 60,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["status"], result["logs"]


def _read(uri: str) -> bytes:
    import pyarrow.fs as pafs

    filesystem, path = pafs.FileSystem.from_uri(uri)
    with filesystem.open_input_stream(path) as stream:
        return stream.read()


@pytest.mark.slow
def test_submitted_jobs_run_the_experiment_from_the_working_dir(ray_head, bucket, tmp_path):
    address, env = ray_head
    work = tmp_path / "work"
    os.makedirs(work / "experiments")
    (work / "experiments" / "small.yaml").write_text("name: small\nfactorization: {epochs: 4}\n")
    out = f"{bucket}/run"  # results go to shared storage, as a multi-node cluster needs
    status, logs = _run_job(address, env, f"socialfeat run experiments/small.yaml --out {out} {SMALL}", str(work))
    assert status == "SUCCEEDED", logs[-3000:]
    assert "factorization  computed" in logs and "Ray: " in logs and "local" not in logs.split("Ray: ")[1][:10]
    metrics = json.loads(_read(f"{out}/metrics.json"))
    assert metrics["data/users"] == 200 and metrics["mf/pr"] < metrics["mf/popularity/pr"]
    assert yaml.safe_load(_read(f"{out}/config.yaml"))["factorization"]["epochs"] == 4
    status, logs = _run_job(address, env, f"socialfeat run experiments/missing.yaml --out {tmp_path}/no", str(work))
    assert status == "FAILED" and "experiments/missing.yaml: experiment file does not exist" in logs
    assert not (tmp_path / "no").exists()
