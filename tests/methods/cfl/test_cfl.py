"""Collaborative feature learning end to end: the default run (cold start, significance against a second
training seed), and a dataset whose images are all missing."""

import glob
import json
import os
import shutil
import signal

import pandas as pd
import pytest

from conftest import shared_run
from socialfeat.cli import main


def test_every_image_missing_is_a_clear_error(ray_session, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    users = [f"u{n}" for n in range(40) for _ in range(8)]
    items = [f"i{(n * 7 + k) % 30}" for n in range(40) for k in range(8)]
    pd.DataFrame({"user_id": users, "item_id": items}).drop_duplicates().to_parquet(data / "interactions.parquet")
    pd.DataFrame(
        {"item_id": [f"i{n}" for n in range(30)], "image_path": [f"gone/{n}.jpg" for n in range(30)]}
    ).to_parquet(data / "items.parquet")
    code = main(
        [
            "run",
            "--data",
            str(data),
            "--out",
            str(tmp_path / "run"),
            "--set",
            "clustering.k=3",
            "--set",
            "filter.min_user_interactions=1",
            "--set",
            "filter.min_item_interactions=1",
        ]
    )
    assert code == 2
    assert "has a decodable image" in capsys.readouterr().err
    assert not glob.glob(str(tmp_path / "run" / "stages" / "train-*"))  # nothing half-written


def test_later_rounds_are_refused_for_an_objective_without_pseudo_classes(tmp_path, capsys):
    settings = ["--set", "clustering.rounds=2", "--set", "training.objective=latent_cosine"]
    assert main(["run", "--out", str(tmp_path / "run"), *settings]) == 2
    assert "clustering.rounds = 2 needs training.objective: pseudo_class" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "run")  # refused before any work


@pytest.fixture(scope="module")
def default_run(ray_session, tmp_path_factory) -> str:
    return shared_run("cfl", tmp_path_factory).out  # `socialfeat run`: the defaults


@pytest.mark.slow
def test_default_run_learns_features_far_better_than_a_random_cnn(default_run):
    out = default_run
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    assert metrics["features/cnn/label_precision@10"] > metrics["features/random_cnn/label_precision@10"] + 0.25
    assert metrics["features/items"] == metrics["data/items"]  # every image (its time: benchmarks, not a test)
    # behaviour-grounded retrieval: learned features find co-viewed items, baselines barely beat random
    assert metrics["retrieval/cnn/jaccard@10"] > 2 * metrics["retrieval/random_cnn/jaccard@10"]
    assert metrics["retrieval/cnn/jaccard@10"] > 2 * metrics["retrieval/random/jaccard@10"]
    assert metrics["retrieval/latent/jaccard@10"] > metrics["retrieval/cnn/jaccard@10"]
    assert metrics["probe/cnn/accuracy"] > metrics["probe/color_hist/accuracy"] + 0.3
    page = open(os.path.join(out, "report.html")).read()  # written at the end of every run
    summary = page.split("<h2>Summary</h2>")[1].split("<h2>Figures</h2>")[0]  # the answer leads the page
    label_row = summary.split("features/cnn/label_precision@10</b>")[1].split("</tr>")[0]
    assert "beats every baseline" in label_row and "features/random_cnn/label_precision@10" in label_row
    assert "<details><summary>evaluate (" in page  # the metrics grouped by stage, folded
    figures = ("jaccard_by_rank.png", "neighbours_cnn.png", "neighbours_random_cnn.png", "training.png")
    for figure in (*figures, "coldstart_recall.png"):
        assert f"report/{figure}" in page and os.path.getsize(os.path.join(out, "report", figure)) > 1000
    features = pd.read_parquet(glob.glob(os.path.join(out, "stages", "features-*", "cnn.parquet"))[0])
    assert len(features) == metrics["features/items"] and len(features["vector"].iloc[0]) == 128
    assert not glob.glob(os.path.join(out, "stages", ".checkpoints", "*", "*"))  # dropped once the stage completed
    encoder = json.load(open(glob.glob(os.path.join(out, "stages", "train-*", "encoder.json"))[0]))
    assert encoder == {"architecture": "small", "tap": "penultimate", "image_size": 72, "crop": 64, "dim": 128}


@pytest.mark.slow
def test_cold_start_from_pixels_beats_a_random_cnn_and_chance_and_stays_below_the_oracle(default_run):
    metrics = json.load(open(os.path.join(default_run, "metrics.json")))
    auc = {name: metrics[f"coldstart/{name}/auc"] for name in ("cnn", "random_cnn", "random", "oracle")}
    assert auc["oracle"] > auc["cnn"] > auc["random_cnn"] + 0.1 and auc["random_cnn"] > 0.55
    assert metrics["coldstart/random/auc/ci_low"] < 0.5 < metrics["coldstart/random/auc/ci_high"]
    assert metrics["coldstart/cnn/auc/ci_low"] > metrics["coldstart/random_cnn/auc/ci_high"]
    assert metrics["coldstart/cnn/recall@10"] > 2 * metrics["coldstart/random/recall@10"]


@pytest.mark.slow
def test_compare_marks_cnn_against_a_random_cnn_but_not_most_metrics_of_another_training_seed(
    default_run, tmp_path, capsys
):
    capsys.readouterr()
    assert main(["compare", default_run, "--sets", "cnn,random_cnn", "--format", "csv"]) == 0
    rows = {line.split(",")[0]: line.split(",") for line in capsys.readouterr().out.splitlines()}
    header = rows.pop("metric")
    p = header.index("random_cnn/p")
    for metric in ("retrieval/<set>/jaccard@10", "probe/<set>/accuracy", "coldstart/<set>/auc"):
        assert float(rows[metric][p]) < 0.05, metric
    # the same config with another training seed: copied so that only train and what follows it run again
    reseeded = str(tmp_path / "reseeded")
    shutil.copytree(default_run, reseeded)
    ctrl_c = signal.getsignal(signal.SIGINT)
    assert main(["run", "--out", reseeded, "--set", "training.seed=1"]) == 0
    assert signal.getsignal(signal.SIGINT) is ctrl_c  # training in this thread left Ctrl-C to Python, not Ray
    capsys.readouterr()
    patterns = ("retrieval/*", "probe/*", "coldstart/*", "features/*/label_precision*", "mf/*pr")
    assert main(["compare", default_run, reseeded, "--format", "csv", *(f"--metric={m}" for m in patterns)]) == 0
    lines = [line.split(",") for line in capsys.readouterr().out.splitlines()]
    column = lines[0].index("reseeded/p")
    p_values = [float(row[column]) for row in lines[1:] if row[column] != "-"]
    assert len(p_values) > 30 and sum(p < 0.05 for p in p_values) < len(p_values) / 4
    assert main(["compare", default_run, reseeded, "--metric", "coldstart/*"]) == 0
    legend = capsys.readouterr().out.splitlines()[-1]
    assert "* differs from run (p < 0.05)" in legend and "†" not in legend  # the same queries: paired tests


@pytest.mark.slow
def test_a_second_pseudo_class_round_is_its_own_cached_stage_and_reported_beside_the_first(
    ray_session, tmp_path_factory
):
    # the default run copied, with clustering.rounds=2: round 1 (kmeans, train, features) is reused. The
    # contract test shares it (tests/methods/test_contract.py), and raises the rounds to 3 there.
    run = shared_run("cfl_round2", tmp_path_factory)
    rounds, metrics = run.out, run.metrics
    assert metrics["run/stages_reused"] >= 7  # synth .. features
    assert 0.2 < metrics["rounds/r2/nmi_previous"] < 1.0  # new pseudo classes, related to round 1's
    assert metrics["rounds/r2/label_precision@10/ci_low"] < metrics["rounds/r2/label_precision@10"]
    for set_metric in ("retrieval/{}/jaccard@10", "probe/{}/accuracy", "coldstart/{}/auc"):
        assert set_metric.format("cnn_r2") in metrics and set_metric.format("cnn") in metrics
    history = json.load(open(glob.glob(os.path.join(rounds, "stages", "round2-*", "history.json"))[0]))
    first = json.load(open(glob.glob(os.path.join(rounds, "stages", "train-*", "history.json"))[0]))
    # warm-started from round 1's tower: its first epoch is already far past round 1's first epoch
    assert history[0]["holdout_top1"] > first[0]["holdout_top1"] + 0.2
    assert len(history) == 2 and len(first) == 20  # clustering.round_epochs, training.epochs
    # raising R reuses round 2 and computes round 3: tests/methods/test_contract.py, on small data
