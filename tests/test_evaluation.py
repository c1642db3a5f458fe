"""Evaluation pieces on small real inputs: probes, baselines, retrieval errors, feature files."""
import numpy as np
import pandas as pd
import pytest

from socialfeat.evaluation.probes import linear_probe
from socialfeat.evaluation.suite import EvaluationError, _viewers, random_retrieval, retrieval
from socialfeat.features.extract import read_features, write_features


def test_probe_accuracy_for_single_labels_and_map_for_multi_labels():
    rng = np.random.default_rng(0)
    classes = rng.integers(0, 3, 300)
    vectors = np.eye(3)[classes] * 3 + rng.standard_normal((300, 3))
    kind, value = linear_probe(vectors, [[str(c)] for c in classes])
    assert kind == "accuracy" and value > 0.8
    noise_kind, noise = linear_probe(rng.standard_normal((300, 3)), [[str(c)] for c in classes])
    assert noise < 0.5
    multi = [[str(c), "x"] if c == 0 else [str(c)] for c in classes]
    assert linear_probe(vectors, multi)[0] == "map"


def test_retrieval_finds_co_viewed_items_and_needs_te_items():
    # two communities of users; items 0-9 viewed by community A, 10-19 by B
    rows = [(f"u{u}", f"i{i}") for u in range(20) for i in range(20) if (u < 10) == (i < 10) and (u + i) % 3]
    interactions = pd.DataFrame(rows, columns=["user_id", "item_id"])
    item_users, items, users = _viewers(interactions)
    ids = np.array([f"i{i}" for i in range(20)], dtype=object)
    vectors = np.array([[1.0, 0.0] if i < 10 else [0.0, 1.0] for i in range(20)]) + 0.01 * np.arange(20)[:, None]
    parts = pd.Series(["te" if i in (0, 10) else "tr" for i in range(20)], index=ids)
    metrics, curve = retrieval("toy", vectors, ids, parts, item_users, items, users, None, k=5)
    random_metrics, _ = random_retrieval(parts, item_users, items, 5, seed=0)
    assert metrics["retrieval/toy/jaccard@1"] > 2 * random_metrics["retrieval/random/jaccard@1"]
    with pytest.raises(EvaluationError, match="0 te"):
        retrieval("toy", vectors, ids, pd.Series(["tr"] * 20, index=ids), item_users, items, users, None)


def test_feature_files_round_trip_and_nan_is_named(tmp_path):
    path = str(tmp_path / "features.parquet")
    write_features(path, ["a", "b"], np.array([[1.0, 2.0], [3.0, 4.0]]))
    ids, vectors = read_features(path)
    assert list(ids) == ["a", "b"] and vectors.shape == (2, 2)
    write_features(path, ["a", "b"], np.array([[1.0, np.nan], [3.0, 4.0]]))
    with pytest.raises(ValueError, match=r"features.parquet: 1 feature vector\(s\) hold NaN"):
        read_features(path)
