"""Collaborative feature learning end to end: the default run, and a dataset whose images are all missing."""

import glob
import json
import os

import pandas as pd
import pytest

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


@pytest.mark.slow
def test_default_run_learns_features_far_better_than_a_random_cnn(ray_session, tmp_path):
    out = str(tmp_path / "run")
    assert main(["run", "--out", out]) == 0
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    assert metrics["features/cnn/label_precision@10"] > metrics["features/random_cnn/label_precision@10"] + 0.25
    assert metrics["run/seconds"] < 300 and metrics["features/items"] == metrics["data/items"]  # every image
    # behaviour-grounded retrieval: learned features find co-viewed items, baselines barely beat random
    assert metrics["retrieval/cnn/jaccard@10"] > 2 * metrics["retrieval/random_cnn/jaccard@10"]
    assert metrics["retrieval/cnn/jaccard@10"] > 2 * metrics["retrieval/random/jaccard@10"]
    assert metrics["retrieval/latent/jaccard@10"] > metrics["retrieval/cnn/jaccard@10"]
    assert metrics["probe/cnn/accuracy"] > metrics["probe/color_hist/accuracy"] + 0.3
    page = open(os.path.join(out, "report.html")).read()  # written at the end of every run
    for figure in ("jaccard_by_rank.png", "neighbours_cnn.png", "neighbours_random_cnn.png", "training.png"):
        assert f"report/{figure}" in page and os.path.getsize(os.path.join(out, "report", figure)) > 1000
    features = pd.read_parquet(glob.glob(os.path.join(out, "stages", "features-*", "cnn.parquet"))[0])
    assert len(features) == metrics["features/items"] and len(features["vector"].iloc[0]) == 128
    assert not glob.glob(os.path.join(out, "stages", ".checkpoints", "*", "*"))  # dropped once the stage completed
    encoder = json.load(open(glob.glob(os.path.join(out, "stages", "train-*", "encoder.json"))[0]))
    assert encoder == {"architecture": "small", "tap": "penultimate", "image_size": 72, "crop": 64, "dim": 128}
