"""`socialfeat run --seeds N`: the run repeated with its seeds moved, the spread over seeds, compare across seeds."""

import glob
import json
import os

import yaml

from socialfeat.cli import main
from test_stages import SMALL


def test_seeds_repeat_the_run_and_report_the_spread_that_compare_tests_by_seed(ray_session, tmp_path, capsys):
    out = str(tmp_path / "seeds")
    assert main(["run", "--out", out, *SMALL, "--seeds", "3"]) == 0
    printed = capsys.readouterr().out
    summary = json.load(open(os.path.join(out, "seeds.json")))
    assert "split.seed" in summary["seed_keys"] and "factorization.seed" in summary["seed_keys"]
    assert "data.synth.seed" not in summary["seed_keys"]  # the same dataset in every repeat
    assert [yaml.safe_load(open(os.path.join(out, f"seed{s}", "config.yaml")))["split"]["seed"] for s in range(3)] == [
        0,
        1,
        2,
    ]
    pr = summary["metrics"]["mf/pr"]
    runs = [json.load(open(os.path.join(out, f"seed{s}", "metrics.json")))["mf/pr"] for s in range(3)]
    assert pr["values"] == runs and pr["n"] == 3 and pr["sd"] > 0  # another split: another number
    assert summary["metrics"]["data/users"]["sd"] == 0
    assert "mf/pr" in printed and "± " in printed and "(3 seeds)" not in printed
    for seed_free in ("synth", "data", "filter"):  # made once, for every repeat
        assert len(glob.glob(os.path.join(out, "stages", f"{seed_free}-*"))) == 1, seed_free
    assert len(glob.glob(os.path.join(out, "stages", "split-*"))) == 3
    weaker = str(tmp_path / "weaker")
    assert main(["run", "--out", weaker, *SMALL, "--set", "factorization.reg=500", "--seeds", "3"]) == 0
    capsys.readouterr()
    assert main(["compare", out, weaker, "--metric", "mf/pr"]) == 0
    table = capsys.readouterr().out
    assert "seeds (3 seeds)" in table and "weaker (3 seeds)" in table and "tests paired by seed" in table
    row = next(line for line in table.splitlines() if line.startswith("mf/pr "))
    assert row.count("[") == 2  # mean ± 1.96 sd/sqrt(3) beside each
