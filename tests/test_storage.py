"""Object storage: runs, datasets and sweeps on s3:// URIs against a real S3 API server on loopback."""

import json
import os
import shutil

import pandas as pd
import pyarrow.fs as pafs
import pytest
import yaml

from conftest import TINY_CROPS, _free_port, space_file, start_moto
from socialfeat import storage
from socialfeat.cli import main

SMALL = [
    "--set",
    "data.synth.users=200",
    "--set",
    "data.synth.items=150",
    "--set",
    "data.synth.image_size=24",
    "--set",
    "factorization.epochs=4",
    "--set",
    "clustering.k=6",
]
CNN = [f"--set={setting}" for setting in ("training.epochs=1", "training.batch_size=32", *TINY_CROPS)]


def _files(uri_or_dir: str) -> set[str]:
    """Relative paths of every file under a local directory or a storage URI."""
    if not storage.is_uri(uri_or_dir):
        return {os.path.relpath(os.path.join(d, n), uri_or_dir) for d, _, names in os.walk(uri_or_dir) for n in names}
    filesystem, root = pafs.FileSystem.from_uri(uri_or_dir)
    infos = filesystem.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    return {i.path[len(root) + 1 :] for i in infos if i.type == pafs.FileType.File}


def _read(uri: str) -> bytes:
    filesystem, path = pafs.FileSystem.from_uri(uri)
    with filesystem.open_input_stream(path) as stream:
        return stream.read()


def _outputs(files: set[str]) -> set[str]:
    """Leave out the run and stage store lock files: coordination on one host, not outputs."""
    return {f for f in files if not f.startswith("stages/.locks/") and f != ".run.lock"}


@pytest.mark.slow
def test_a_run_to_s3_writes_the_files_a_local_run_writes(ray_session, bucket, tmp_path, capsys):
    local, until = tmp_path / "local", ["--until", "features"]  # the stages that write checkpoints and images
    assert main(["run", "--out", str(local), *SMALL, *CNN, *until]) == 0
    assert main(["run", "--out", f"{bucket}/run", *SMALL, *CNN, *until]) == 0
    assert f"metrics: {bucket}/run/metrics.json" in capsys.readouterr().out
    remote = _files(f"{bucket}/run")
    checkpoints = {f for f in remote if f.startswith("checkpoints/")}
    assert any(f.startswith("checkpoints/train-") and f.endswith("/state.pt") for f in checkpoints)
    assert _outputs(_files(str(local))) == _outputs(remote - checkpoints)
    local_metrics = json.loads((local / "metrics.json").read_text())
    remote_metrics = json.loads(_read(f"{bucket}/run/metrics.json"))
    for name in ("data/users", "data/interactions", "mf/pr", "kmeans/nmi", "train/epochs"):
        assert remote_metrics[name] == local_metrics[name], name
    assert yaml.safe_load(_read(f"{bucket}/run/config.yaml")) == yaml.safe_load((local / "config.yaml").read_text())

    shutil.rmtree(os.environ["SOCIALFEAT_CACHE"])  # another machine: nothing local, every stage is in the bucket
    assert main(["run", "--out", f"{bucket}/run", *SMALL, *CNN, *until]) == 0
    stages = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("  ")]
    assert len(stages) == 9 and all(words[1] == "reused" for words in stages)  # synth .. features


def test_a_dataset_in_s3_is_fetched_once_and_gives_the_local_results(ray_session, synth_dir, bucket, tmp_path):
    storage.upload(synth_dir, f"{bucket}/data")
    assert (
        main(["run", "--data", f"{bucket}/data", "--out", str(tmp_path / "remote"), "--until", "factorization", *SMALL])
        == 0
    )
    assert main(["run", "--data", synth_dir, "--out", str(tmp_path / "local"), "--until", "factorization", *SMALL]) == 0
    remote_metrics = json.loads((tmp_path / "remote" / "metrics.json").read_text())
    local_metrics = json.loads((tmp_path / "local" / "metrics.json").read_text())
    assert (
        remote_metrics["data/items"] == local_metrics["data/items"]
        and remote_metrics["mf/pr"] == local_metrics["mf/pr"]
    )
    cached = storage.cache_dir(f"{bucket}/data", "data")
    assert _files(cached) == _files(synth_dir) and storage.download(f"{bucket}/data", cached) == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--out", "s3://no-such-bucket-here/run"],
            "s3://no-such-bucket-here/run: bucket 'no-such-bucket-here' does not exist",
        ),
        (
            ["--data", "s3://no-such-bucket-here/data"],
            "bucket 'no-such-bucket-here' does not exist (--data / data.path)",
        ),
        (["--data", "BUCKET/nothing"], "BUCKET/nothing: no dataset there"),
    ],
)
def test_missing_buckets_and_datasets_fail_before_any_work(s3_server, bucket, tmp_path, capsys, args, message):
    args = [a.replace("BUCKET", bucket) for a in args]
    out = ["--out", str(tmp_path / "run")] if "--out" not in args else []
    assert main(["run", *args, *out]) == 2
    assert message.replace("BUCKET", bucket) in capsys.readouterr().err
    assert not (tmp_path / "run").exists() and not os.path.exists(storage.cache_dir(args[-1], "runs"))
    assert not _files(bucket)  # not even the write probe is left behind


def test_refused_credentials_fail_before_any_work(s3_server, tmp_path, capsys, monkeypatch):
    port = _free_port()
    guarded = start_moto(port, INITIAL_NO_AUTH_ACTION_COUNT="0")  # this server checks every request's credentials
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
        assert main(["run", "--out", "s3://some-bucket/run"]) == 2
    finally:
        guarded.terminate()
        guarded.wait(10)
    assert "s3://some-bucket/run: access denied: check the credentials" in capsys.readouterr().err


@pytest.mark.slow
def test_a_sweep_keeps_its_stages_trials_and_results_in_s3(ray_session, synth_dir, bucket, tmp_path):
    storage.upload(synth_dir, f"{bucket}/data")
    assert main(["sweep", space_file(tmp_path), "--data", f"{bucket}/data", "--out", f"{bucket}/sweep"]) == 0
    files = _files(f"{bucket}/sweep")
    assert {"results.csv", "results.parquet", "best.yaml", "plots/history.png"} <= files
    trials = {f.split("/")[1] for f in files if f.startswith("trials/") and f.endswith("/trial_metrics.json")}
    assert len(trials) == 3
    assert len({f.split("/")[1] for f in files if f.startswith("stages/factorization-")}) == 1
    assert any(f.startswith("tune/") for f in files)
    results = pd.read_csv(f"{storage.cache_dir(f'{bucket}/sweep', 'sweeps')}/results.csv")
    assert results["stage/factorization/reused"].sum() == 2
    best = yaml.safe_load(_read(f"{bucket}/sweep/best.yaml"))
    assert best["data"]["path"] == f"{bucket}/data"
    # the space it searched is kept there too: another one cannot resume it, even from another machine
    assert "space/space.json" in files
    shutil.rmtree(storage.cache_dir(f"{bucket}/sweep", "sweeps"))
    changed = space_file(tmp_path, name="changed.yaml", space={"clustering.k": {"int": [3, 5]}})
    assert main(["sweep", changed, "--data", f"{bucket}/data", "--out", f"{bucket}/sweep", "--resume"]) == 2
