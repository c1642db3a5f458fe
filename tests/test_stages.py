"""`socialfeat run`: stages cached by content, atomic outputs, clear failures that leave nothing behind."""

import json
import os

import pandas as pd
import pytest

from socialfeat import artifacts
from socialfeat.cli import main

SMALL = [
    "--until",
    "factorization",
    "--set",
    "data.synth.users=200",
    "--set",
    "data.synth.items=150",
    "--set",
    "data.synth.image_size=24",
]


def test_run_writes_metrics_and_config_then_reuses_every_stage(ray_session, tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["run", "--out", out, *SMALL]) == 0
    first = json.load(open(os.path.join(out, "metrics.json")))
    assert first["run/stages_reused"] == 0 and first["data/users"] == 200
    assert first["split/tr_items"] + first["split/te_items"] == first["filter/items"]
    assert "users: 200" in open(os.path.join(out, "config.yaml")).read()
    capsys.readouterr()
    assert main(["run", "--out", out, *SMALL]) == 0
    second = json.load(open(os.path.join(out, "metrics.json")))
    assert second["run/stages_reused"] == second["run/stages"] == first["run/stages"]
    assert "reused" in capsys.readouterr().out
    assert main(["run", "--out", out, *SMALL, "--set", "factorization.reg=2.0"]) == 0
    third = json.load(open(os.path.join(out, "metrics.json")))
    assert third["run/stages_reused"] == third["run/stages"] - 1  # only the factorisation changed
    assert main(["run", "--out", out, *SMALL, "--set", "split.seed=7"]) == 0
    fourth = json.load(open(os.path.join(out, "metrics.json")))
    assert fourth["run/stages_reused"] == fourth["run/stages"] - 3  # split and all downstream of it


def test_bad_config_fails_cleanly_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--out", str(out), "--set", "factorization.dim=-1"]) == 2
    assert "factorization.dim" in capsys.readouterr().err and not out.exists()
    assert main(["run", "--out", str(out), "--set", "factorization.dimension=8"]) == 2
    assert "unknown" in capsys.readouterr().err and not out.exists()


def test_broken_dataset_fails_cleanly_and_writes_nothing(ray_session, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--out", str(out), "--data", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err and not out.exists()
    broken = tmp_path / "broken"
    broken.mkdir()
    pd.DataFrame({"user_id": ["u"], "item_id": ["x"]}).to_parquet(broken / "interactions.parquet")
    pd.DataFrame({"item_id": ["y"], "image_path": ["y.jpg"]}).to_parquet(broken / "items.parquet")
    assert main(["run", "--out", str(out), "--data", str(broken)]) == 2
    assert "absent from items.parquet" in capsys.readouterr().err and not out.exists()


def test_stage_failure_leaves_no_partial_output(tmp_path):
    store = artifacts.StageStore(str(tmp_path))

    def explode(tmp):
        open(os.path.join(tmp, "half.txt"), "w").write("half")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        store.run("stage", {"a": 1}, {}, explode)
    assert [name for name in os.listdir(tmp_path) if name != ".locks"] == []  # .locks: per-stage lock files only
    result = store.run("stage", {"a": 1}, {}, lambda tmp: {"x": 1})
    assert not result.reused and store.run("stage", {"a": 1}, {}, lambda tmp: {"x": 2}).metrics == {"x": 1}
    assert store.run("stage", {"a": 2}, {}, lambda tmp: {"x": 3}).key != result.key
