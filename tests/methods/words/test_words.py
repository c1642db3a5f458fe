"""The words method end to end on the synthetic data: it predicts te images' words far better than the
frequency baseline and learns features that group the planted styles."""

import glob
import json
import os

import pandas as pd
import pytest

from socialfeat.cli import main

EXPERIMENT = os.path.join(os.path.dirname(__file__), "..", "..", "..", "experiments", "words_local.yaml")


@pytest.mark.slow
def test_words_local_beats_the_frequency_baseline_and_a_random_cnn(ray_session, tmp_path):
    out = str(tmp_path / "run")
    assert main(["run", EXPERIMENT, "--out", out]) == 0
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    assert metrics["words/te_items"] > 30 and metrics["vocabulary/size"] == 100
    assert metrics["words/precision@10"] >= 2 * metrics["words/frequency/precision@10"]
    assert metrics["features/cnn/label_precision@10"] >= metrics["features/random_cnn/label_precision@10"] + 0.2
    predicted = pd.read_parquet(glob.glob(os.path.join(out, "stages", "words-*", "predicted.parquet"))[0])
    assert len(predicted) == metrics["words/te_items"] and predicted["predicted"].map(len).eq(10).all()
    te = set(
        pd.read_parquet(glob.glob(os.path.join(out, "stages", "split-*", "items.parquet"))[0]).query("part == 'te'")[
            "item_id"
        ]
    )
    assert set(predicted["item_id"]) <= te  # only held-out images are scored
