"""Crashes where one message belongs (issue 31): each bad input is one line naming the file, key or run, exit 2,
and no traceback."""

import json
import os

import pytest

from socialfeat.cli import main


def _run_dir(root, metrics_text: str, run: dict | None = None) -> str:
    os.makedirs(root)
    with open(os.path.join(root, "metrics.json"), "w") as handle:
        handle.write(metrics_text)
    if run is not None:
        with open(os.path.join(root, "run.json"), "w") as handle:
            json.dump(run, handle)
    return str(root)


@pytest.mark.parametrize(
    "metrics, run, named",
    [
        ("[1, 2]", None, "holds a JSON list"),
        ('{"mf/pr": "high"}', None, "metric 'mf/pr' is 'high', not a number"),
        ('{"mf/pr": 0.1', None, "not valid JSON"),
        ('{"mf/pr": 0.1}', {"stages": "all"}, "'stages' is not the list"),
    ],
)
def test_compare_of_a_damaged_run_names_its_file(tmp_path, capsys, metrics, run, named):
    good = _run_dir(tmp_path / "good", '{"mf/pr": 0.2}')
    bad = _run_dir(tmp_path / "bad", metrics, run)
    assert main(["compare", good, bad]) == 2
    err = capsys.readouterr().err
    assert named in err and str(tmp_path / "bad") in err and "Traceback" not in err


def test_report_of_a_run_naming_an_unknown_method_is_one_message(tmp_path, capsys):
    run = _run_dir(tmp_path / "run", '{"mf/pr": 0.2}', {"method": "nope", "stages": []})
    (tmp_path / "run" / "config.yaml").write_text("name: run\nmethod: cfl\n")
    assert main(["report", run]) == 2
    err = capsys.readouterr().err
    assert "unknown method 'nope'" in err and "Traceback" not in err


def test_a_latent_dimension_past_the_bound_or_past_memory_is_refused_naming_the_key(tmp_path, capsys):
    from socialfeat.memory import TooLarge, check_fits, factor_bytes

    assert main(["run", "--out", str(tmp_path / "run"), "--set", "factorization.dim=1000000"]) == 2
    assert "factorization.dim" in capsys.readouterr().err and not (tmp_path / "run").exists()
    needed = factor_bytes(users=1_900_000, items=1_900_000, dim=4096)  # the paper's log at the bound
    with pytest.raises(TooLarge, match=r"factorization.dim = 4096: the factors would need about 231.9 GiB"):
        check_fits("factorization.dim", 4096, needed, "the factors", available=24 * 2**30)
    check_fits("factorization.dim", 32, factor_bytes(800, 1200, 32), "the factors", available=24 * 2**30)


@pytest.mark.parametrize("table", ["interactions", "items", "tags", "social", "comments"])
def test_a_table_that_is_not_parquet_is_named(synth_dir, tmp_path, capsys, table):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(synth_dir, data)
    (data / f"{table}.parquet").write_text("not parquet")
    assert main(["data", "check", str(data)]) != 0
    err = capsys.readouterr().err
    assert f"{table}.parquet: not a readable Parquet file" in err and "Traceback" not in err


def test_names_made_from_paths_are_valid_names():
    from socialfeat.config import safe_name
    from socialfeat.methods import load_config

    for out in ("my sweep", "résumé/ü", "über sweep (2)", "..", "日本"):
        name = safe_name(f"best_of_{out}")
        assert load_config(None, [f"name={name}"]).name == name
    assert safe_name("best_of_my sweep") == "best_of_my_sweep" and safe_name("résumé") == "resume"


@pytest.mark.slow
def test_a_sweep_objective_no_stage_declares_is_refused_before_ray_starts(synth_dir, tmp_path, capsys):
    from conftest import space_file

    space = space_file(tmp_path, samples=1, objectives=[{"metric": "mf/nosuch", "mode": "min"}])
    assert main(["sweep", space, "--data", synth_dir, "--out", str(tmp_path / "sweep")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "objective metric 'mf/nosuch' is reported by no stage of cfl" in err[0], err
    assert "space.yaml" in err[0] and not os.path.exists(tmp_path / "sweep")  # nothing started, nothing written


def test_a_sweep_objective_no_stage_reports_is_one_message_naming_the_nearest(ray_session, synth_dir, tmp_path, capsys):
    from conftest import space_file

    # a name that passes the check before Ray (kmeans/size_* is declared) but that no stage reports
    space = space_file(tmp_path, samples=1, max_failures=0, objectives=[{"metric": "kmeans/size_mean", "mode": "max"}])
    assert main(["sweep", space, "--data", synth_dir, "--out", str(tmp_path / "sweep")]) == 1
    # Tune may log the failed trial's traceback (its own log line); the sweep itself ends in one message
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: no trial reported kmeans/size_mean; the first trial's error: MissingObjective: ")
    assert "(nearest: kmeans/size_me" in last and "TuneError" not in last
