"""Shared fixtures: one Ray per test session, a loopback S3 server, a small synthetic dataset, MovieLens."""

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import pytest
import yaml

from socialfeat.config import SynthConfig
from socialfeat.data.importers import import_movielens
from socialfeat.data.synthetic import generate

MOVIELENS = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "movielens-posters")
SMALL_SYNTH = SynthConfig(users=300, items=400, styles=6, mean_views=25, seed=3, image_size=32)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# Set before Ray starts so its workers inherit them: every s3:// URI in the tests goes to the loopback
# server (moto, started by the s3_server fixture), and remote datasets/runs are cached in a temp dir.
S3_PORT = _free_port()
os.environ |= {
    "AWS_ENDPOINT_URL": f"http://127.0.0.1:{S3_PORT}",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "SOCIALFEAT_CACHE": tempfile.mkdtemp(prefix="socialfeat-cache-"),
}


def start_moto(port: int, **env) -> subprocess.Popen:
    """moto's S3 API server on 127.0.0.1:`port`; returns once it answers."""
    server = os.path.join(os.path.dirname(sys.executable), "moto_server")
    process = subprocess.Popen(
        [server, "-H", "127.0.0.1", "-p", str(port)],
        env=os.environ | env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
            return process
        except urllib.error.HTTPError:  # an answer, if not a 200
            return process
        except OSError:
            if process.poll() is not None or time.time() > deadline:
                process.kill()
                raise RuntimeError(f"moto_server did not start on port {port}") from None
            time.sleep(0.2)


@pytest.fixture(scope="session")
def s3_server():
    process = start_moto(S3_PORT)
    yield os.environ["AWS_ENDPOINT_URL"]
    process.terminate()
    process.wait(10)
    shutil.rmtree(os.environ["SOCIALFEAT_CACHE"], ignore_errors=True)


@pytest.fixture
def bucket(s3_server, request) -> str:
    """A fresh bucket on the loopback server, named after the test: returns 's3://<name>'."""
    import pyarrow.fs as pafs

    name = "t-" + request.node.name.replace("_", "-").lower()[:50].strip("-")
    filesystem, _ = pafs.FileSystem.from_uri(f"s3://{name}?allow_bucket_creation=true")
    filesystem.create_dir(name)
    return f"s3://{name}"


@pytest.fixture(scope="session")
def ray_session():
    import ray

    from socialfeat.distributed.cluster import start_local

    if not ray.is_initialized():
        start_local(num_cpus=2)  # as the CLI starts it: loopback only, a private token
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("synth") / "data")
    generate(SMALL_SYNTH, out)
    return out


@pytest.fixture(scope="session")
def movielens_dir(tmp_path_factory) -> str:
    if not os.path.isdir(MOVIELENS):
        pytest.skip(f"{MOVIELENS}: the shared MovieLens sample is not beside the project")
    out = str(tmp_path_factory.mktemp("movielens") / "data")
    import_movielens(
        f"{MOVIELENS}/ratings.csv", f"{MOVIELENS}/movies.csv", f"{MOVIELENS}/posters", out, tags=f"{MOVIELENS}/tags.csv"
    )
    return out


SHRINK = ["factorization.epochs=4", "factorization.eval_max_users=200", "clustering.k=6"]


def as_at_a_terminal() -> None:
    """preexec_fn for a child a test interrupts: Ctrl-C's default action, as in a terminal. A test session
    started in the background (`cmd &`, nohup) has SIGINT ignored, and a child inherits that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def space_file(tmp_path, name="space.yaml", **fields) -> str:
    raw = {
        "experiment": None,
        "until": "kmeans",
        "objectives": [{"metric": "kmeans/silhouette", "mode": "max"}],
        "samples": 3,
        "fixed": SHRINK,
        "space": {"clustering.k": {"int": [4, 12]}},
    } | fields
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return str(path)


@pytest.fixture
def release_stopped_trainers(ray_session):
    """The test session's Ray runs without the dashboard, so Ray Train cannot release the workers of a
    trial ASHA stopped (the sweep warns): remove their placement groups, as Ray Train's cleaner would.
    A stopped trainer may still be asking for its group (pending) when the test ends and get it later, so
    new groups in any live state are removed until none has appeared for 3 s and the CPUs are back."""
    from ray._raylet import PlacementGroupID
    from ray.util.placement_group import PlacementGroup, placement_group_table, remove_placement_group

    before = set(placement_group_table())
    cpus = ray_session.available_resources().get("CPU", 0)
    yield
    deadline, quiet_since = time.time() + 30, time.time()
    while time.time() < deadline:
        live = [pg for pg, info in placement_group_table().items() if pg not in before and info["state"] != "REMOVED"]
        for pg_id in live:
            remove_placement_group(PlacementGroup(PlacementGroupID.from_hex(pg_id)))
        quiet_since = time.time() if live else quiet_since
        if time.time() - quiet_since > 3 and ray_session.available_resources().get("CPU", 0) >= cpus:
            break
        time.sleep(0.5)
    assert ray_session.available_resources().get("CPU", 0) >= cpus, "the sweep left CPUs held"


EXPERIMENTS = os.path.join(os.path.dirname(__file__), "..", "experiments")
SMALL_CROPS = ("training.image_size=36", "training.crop_size=32")  # half the training time of 64-pixel crops
TINY_CROPS = ("training.image_size=28", "training.crop_size=24")  # words and hashtags learn as well from these
SHARDED = ("data.synth.shards=3",)  # a method's shared run reads a sharded dataset (tests/methods/test_contract.py)
# The one run per method that its end-to-end test and the contract test share: (experiment, overrides).
# cfl's is the default run (`socialfeat run`), and its contract run adds a second pseudo-class round to it.
METHOD_RUNS = {
    "cfl": (None, ()),
    "words": ("words_local.yaml", (*TINY_CROPS, *SHARDED)),
    "hashtags": ("hashtags_local.yaml", ("hashtags.model=tensor", *TINY_CROPS, *SHARDED)),
    # two of the experiment's five epochs: the order of CDL, TwoNets and the baselines already holds
    "comparative": ("comparative_local.yaml", ("comparative.model=cdl", "training.epochs=2", *SMALL_CROPS, *SHARDED)),
}
# Runs made from another one: its directory copied and rerun with more overrides (only what they move runs).
CFL_ROUND2 = ("clustering.rounds=2", "clustering.feature_weight=2", "clustering.round_epochs=2")
DERIVED_RUNS = {"cfl_round2": ("cfl", CFL_ROUND2)}


def run_arguments(experiment: str | None, out: str, overrides, until: str | None = None) -> list[str]:
    """`socialfeat run` arguments: the experiment (None: the defaults) into `out`, with overrides."""
    sets = [arg for text in overrides for arg in ("--set", text)]
    return ["run", *([experiment] if experiment else []), "--out", out, *sets, *(["--until", until] if until else [])]


@dataclasses.dataclass(frozen=True)
class SharedRun:
    """A finished `socialfeat run`: its directory, experiment, overrides and the metrics it wrote."""

    out: str
    experiment: str | None
    overrides: tuple[str, ...]
    metrics: dict

    def again(self, *overrides: str, until: str | None = None) -> list[str]:
        """`socialfeat run` arguments for this run's experiment with more overrides, into the same directory."""
        return run_arguments(self.experiment, self.out, (*self.overrides, *overrides), until)

    def context(self):
        """(config, metrics, StageContext) of the run, every stage reused: what the contract test reads."""
        from socialfeat.methods import load_config, named
        from socialfeat.stages import run_experiment

        cfg = load_config(self.experiment, list(self.overrides))
        metrics, ctx = run_experiment(named(cfg.method), cfg, self.out)
        assert metrics["run/stages_reused"] == len(ctx.results), "the shared run's stages were not all reused"
        return cfg, metrics, ctx


_SHARED: dict[str, SharedRun] = {}


def shared_run(name: str, tmp_path_factory) -> SharedRun:
    """The session's one run called `name`: a METHOD_RUNS or DERIVED_RUNS entry."""
    from socialfeat.cli import main

    if name not in _SHARED:
        out = str(tmp_path_factory.mktemp(f"shared-{name}") / "run")
        if name in DERIVED_RUNS:
            base, extra = DERIVED_RUNS[name]
            source = shared_run(base, tmp_path_factory)
            shutil.copytree(source.out, out)
            experiment, overrides = source.experiment, (*source.overrides, *extra)
        else:
            experiment, overrides = METHOD_RUNS[name]
            experiment = experiment and os.path.join(EXPERIMENTS, experiment)
        assert main(run_arguments(experiment, out, overrides)) == 0
        with open(os.path.join(out, "metrics.json")) as handle:
            _SHARED[name] = SharedRun(out, experiment, tuple(overrides), json.load(handle))
    return _SHARED[name]
