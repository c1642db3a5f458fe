"""Bad input of every kind gets one message naming the key, file, column or row, exit 2, and nothing written."""

import os
import shutil

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from socialfeat.cli import main
from socialfeat.config import ConfigError
from socialfeat.distributed.cluster import UnsatisfiableResources, check_training_resources, worker_slots
from socialfeat.methods import load_config


@pytest.mark.parametrize(
    "override, named",
    [
        ("factorization.dim=true", "'factorization.dim': expected a number, not a boolean"),
        ("training.use_gpu=1", "'training.use_gpu': expected true or false"),
        ("factorization.dim={", "--set factorization.dim: value '{' is not valid YAML"),
        ("name=/etc/cron.d/x", "config key 'name'"),
        ("name=../../elsewhere", "config key 'name'"),
    ],
)
def test_config_values_are_type_strict_and_named(override, named):
    with pytest.raises(ConfigError) as failure:
        load_config(None, [override])
    assert named in str(failure.value) and "Traceback" not in str(failure.value)


def test_an_experiment_path_that_is_a_directory_is_named(tmp_path, capsys):
    assert main(["run", str(tmp_path), "--out", str(tmp_path / "run")]) == 2
    assert "is a directory; expected an experiment YAML file" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def _dataset(root) -> str:
    root.mkdir()
    pd.DataFrame({"user_id": ["u", "v"], "item_id": ["a", "b"]}).to_parquet(root / "interactions.parquet")
    pd.DataFrame({"item_id": ["a", "b"], "image_path": ["a.jpg", "b.jpg"]}).to_parquet(root / "items.parquet")
    return str(root)


def test_table_cells_are_named_by_file_column_and_row(tmp_path, capsys):
    not_parquet = _dataset(tmp_path / "text")
    (tmp_path / "text" / "interactions.parquet").write_text("user_id,item_id\nu,a\n")
    assert main(["data", "check", not_parquet]) == 1
    assert "interactions.parquet: not a readable Parquet file" in capsys.readouterr().err
    null_label = _dataset(tmp_path / "labels")
    labels = pa.array([["drama"], ["comedy", None]], pa.list_(pa.string()))
    pq.write_table(
        pa.table({"item_id": ["a", "b"], "image_path": ["a.jpg", "b.jpg"], "labels": labels}),
        tmp_path / "labels" / "items.parquet",
    )
    assert main(["data", "check", null_label]) == 1
    assert "items.parquet: column 'labels' holds a null label in 1 row(s), first at row 1" in capsys.readouterr().err
    ratings, movies = tmp_path / "ratings.csv", tmp_path / "movies.csv"
    ratings.write_text("userId,movieId,rating,timestamp\n1,10,4.0,5\n1,11,abc,6\n")
    movies.write_text("movieId,title,genres\n10,A,Drama\n11,B,Comedy\n")
    (tmp_path / "posters").mkdir()
    out = tmp_path / "imported"
    argv = ["data", "import-movielens", "--ratings", str(ratings), "--movies", str(movies)]
    assert main([*argv, "--posters", str(tmp_path / "posters"), "--out", str(out)]) == 2
    assert f"{ratings}: column 'rating' at row 1 holds 'abc', not a number" in capsys.readouterr().err
    assert not out.exists()


def test_self_links_in_social_are_dropped_and_counted(synth_dir, tmp_path):
    from socialfeat.data.check import dataset_counts
    from socialfeat.data.reader import read_dataset

    copy = shutil.copytree(synth_dir, tmp_path / "d")
    social = pd.read_parquet(copy / "social.parquet")
    looped = pd.concat([social, pd.DataFrame({"user_id": ["u1"], "other_id": ["u1"], "kind": ["friend"]})])
    looped.to_parquet(copy / "social.parquet")
    dataset = read_dataset(str(copy))
    assert len(dataset.social) == len(social) and dataset_counts(dataset)["social_self_links_removed"] == 1


@pytest.mark.parametrize(
    "vectors, named",
    [
        ([[1.0, 2.0], [3.0]], "column 'vector' has 1 values at row 1 but 2 at row 0"),
        ([[1.0, 2.0], None], "column 'vector' is null at row 1"),
        (None, "not a readable Parquet file"),
    ],
)
def test_feature_files_are_checked_before_any_stage_runs(tmp_path, capsys, vectors, named):
    path = tmp_path / "features.parquet"
    if vectors is None:
        path.write_text("item_id,vector\n")
    else:
        pq.write_table(pa.table({"item_id": ["a", "b"], "vector": pa.array(vectors)}), path)
    out = tmp_path / "run"
    assert main(["run", "--out", str(out), "--features", f"theirs={path}"]) == 2
    assert f"{path}: {named}" in capsys.readouterr().err
    assert not out.exists()
    assert main(["run", "--out", str(out), "--features", f"theirs={tmp_path / 'absent.parquet'}"]) == 2
    assert "absent.parquet: file does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("out", ["/proc/socialfeat-run", "FILE/run"])
def test_an_unwritable_out_fails_before_ray_starts(tmp_path, capsys, out):
    (tmp_path / "FILE").write_text("a file")
    out = out.replace("FILE", str(tmp_path / "FILE"))
    assert main(["run", "--out", out]) == 2
    err = capsys.readouterr().err
    assert "(--out)" in err and "Ray:" not in err and "Traceback" not in err


def test_training_the_cluster_cannot_hold_fails_naming_the_keys(ray_session, tmp_path, capsys):
    from socialfeat.config import TrainingConfig

    nodes = [{"Alive": True, "Resources": {"CPU": 2.0}}, {"Alive": False, "Resources": {"CPU": 64.0, "GPU": 8.0}}]
    assert worker_slots(nodes, cpus_per_worker=1, use_gpu=False) == 2
    assert worker_slots(nodes, cpus_per_worker=2, use_gpu=True) == 0
    with pytest.raises(UnsatisfiableResources, match="training.num_workers = 2 workers of 2 CPU"):
        check_training_resources(TrainingConfig(num_workers=2, cpus_per_worker=2))
    check_training_resources(TrainingConfig(num_workers=1, cpus_per_worker=2))  # fits the session's 2 CPUs
    capsys.readouterr()
    with pytest.raises(UnsatisfiableResources, match=r"room for 0 such worker\(s\), after waiting 2s"):
        check_training_resources(TrainingConfig(num_workers=1, cpus_per_worker=4), wait_s=2)  # a cluster that may grow
    waiting = capsys.readouterr().err.strip().splitlines()  # said once while it waits: the keys, what the cluster has
    assert waiting == [
        "waiting up to 2s (ray.resource_wait_s) for training.num_workers = 1 workers of 4 CPU each "
        "(training.cpus_per_worker); this Ray cluster has 2 CPUs and 0 GPUs in all, room for 0 such worker(s)"
    ]
    out = tmp_path / "run"
    assert main(["run", "--out", str(out), "--set", "training.use_gpu=true"]) == 2
    assert "training.use_gpu" in capsys.readouterr().err and not out.exists()


@pytest.mark.slow
def test_local_mode_starts_its_own_ray_beside_a_dead_clusters_address_file(tmp_path):
    """`ray start` leaves /tmp/ray/ray_current_cluster behind; a plain ray.init() would try to join it."""
    import subprocess
    import sys

    marker = "/tmp/ray/ray_current_cluster"
    saved = open(marker).read() if os.path.exists(marker) else None
    os.makedirs("/tmp/ray", exist_ok=True)
    with open(marker, "w") as handle:
        handle.write("127.0.0.1:1\n")  # nobody listens there
    try:
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        command = [sys.executable, "-m", "socialfeat", "run", "--out", str(tmp_path / "run"), "--until", "split"]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    finally:
        if saved is None:
            os.remove(marker)
        else:
            with open(marker, "w") as handle:
                handle.write(saved)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "(Ray: local)" in done.stdout
