"""Evaluation pieces on small real inputs: probes, baselines, retrieval errors, feature files, compare."""

import glob
import json
import os

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from sklearn.linear_model import LogisticRegression

from conftest import SMALL_CROPS
from socialfeat.cli import main
from socialfeat.config import TrainingConfig
from socialfeat.evaluation.external import ExternalFeaturesError, aligned_features, load_weights, weights_encoder
from socialfeat.evaluation.probes import _fit, linear_probe
from socialfeat.evaluation.suite import EvaluationError, random_retrieval, viewers_of
from socialfeat.evaluation.suite import retrieval as retrieval_of
from socialfeat.features.encoder import build_encoder, save_encoder
from socialfeat.features.extract import read_features, write_features
from socialfeat.stats import retrieval
from socialfeat.stats.retrieval import cosine_neighbours, normalise
from socialfeat.vision.backbones import build, embed


def test_probe_accuracy_for_single_labels_and_map_for_multi_labels():
    rng = np.random.default_rng(0)
    classes = rng.integers(0, 3, 300)
    vectors = np.eye(3)[classes] * 3 + rng.standard_normal((300, 3))
    probe = linear_probe(vectors, [[str(c)] for c in classes])
    assert probe.kind == "accuracy" and probe.value > 0.8 and probe.value == probe.correct.mean()
    assert probe.interval[0] < probe.value < probe.interval[1] and len(probe.items) == 60  # the 20% test split
    noise = linear_probe(rng.standard_normal((300, 3)), [[str(c)] for c in classes])
    assert noise.interval[1] < probe.interval[0] and noise.value < 0.5  # the intervals do not overlap
    multi = [[str(c), "x"] if c == 0 else [str(c)] for c in classes]
    mapped = linear_probe(vectors, multi)
    assert mapped.kind == "map" and mapped.correct is None and mapped.interval[0] < mapped.value < mapped.interval[1]


def test_retrieval_finds_co_viewed_items_and_needs_te_items():
    # two communities of users; items 0-9 viewed by community A, 10-19 by B
    rows = [(f"u{u}", f"i{i}") for u in range(20) for i in range(20) if (u < 10) == (i < 10) and (u + i) % 3]
    interactions = pd.DataFrame(rows, columns=["user_id", "item_id"])
    item_users, items, users = viewers_of(interactions)
    ids = np.array([f"i{i}" for i in range(20)], dtype=object)
    vectors = np.array([[1.0, 0.0] if i < 10 else [0.0, 1.0] for i in range(20)]) + 0.01 * np.arange(20)[:, None]
    parts = pd.Series(["te" if i in (0, 10) else "tr" for i in range(20)], index=ids)
    samples, curve = retrieval_of("toy", vectors, ids, parts, item_users, items, users, None, k=5)
    random_samples, _ = random_retrieval(parts, item_users, items, 5, seed=0)
    queries, at_1 = samples["retrieval/toy/jaccard@1"]
    assert sorted(queries) == ["i0", "i10"] and at_1.mean() == curve[0]  # one value per te query
    assert at_1.mean() > 2 * random_samples["retrieval/random/jaccard@1"][1].mean()
    with pytest.raises(EvaluationError, match="0 te"):
        retrieval_of("toy", vectors, ids, pd.Series(["tr"] * 20, index=ids), item_users, items, users, None)


def test_feature_files_round_trip_and_nan_is_named(tmp_path):
    path = str(tmp_path / "features.parquet")
    write_features(path, ["a", "b"], np.array([[1.0, 2.0], [3.0, 4.0]]))
    ids, vectors = read_features(path)
    assert list(ids) == ["a", "b"] and vectors.shape == (2, 2)
    write_features(path, ["a", "b"], np.array([[1.0, np.nan], [3.0, 4.0]]))
    with pytest.raises(ValueError, match=r"features.parquet: 1 feature vector\(s\) hold NaN"):
        read_features(path)


def test_a_feature_file_missing_items_is_named_with_the_count(tmp_path):
    path = str(tmp_path / "mine.parquet")
    write_features(path, ["a", "b"], np.ones((2, 3)))
    assert aligned_features(path, "mine", np.array(["b", "a"], dtype=object)).shape == (2, 3)
    with pytest.raises(ExternalFeaturesError, match=r"mine.parquet: feature set 'mine' has no vector for 2 of 4"):
        aligned_features(path, "mine", np.array(["a", "b", "c", "d"], dtype=object))


def test_weights_files_load_without_code_and_wrong_architectures_are_named(tmp_path):
    model = build("small", 5)
    path = str(tmp_path / "small.pt")
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)  # DDP checkpoint
    state, outputs = load_weights(path, "small")
    assert outputs == 5 and torch.equal(state["fc.weight"], model.state_dict()["fc.weight"])
    with pytest.raises(ExternalFeaturesError, match="not a resnet18 state dict"):
        load_weights(path, "resnet18")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ExternalFeaturesError, match="junk.pt: cannot be loaded"):
        load_weights(str(tmp_path / "junk.pt"), "small")


def test_a_torchvision_weights_file_becomes_the_encoder_at_the_tap(tmp_path):
    torch.manual_seed(0)
    model = build("small", 5).eval()
    path = str(tmp_path / "small.pt")
    torch.save(model.state_dict(), path)
    spec, state = weights_encoder(path, TrainingConfig(image_size=40, crop_size=32))
    assert spec == {"architecture": "small", "tap": "penultimate", "image_size": 40, "crop": 32, "dim": 128}
    images = torch.rand(3, 3, 32, 32)
    assert torch.allclose(build_encoder(spec, state)(images), embed(model, "small", "penultimate", images))
    save_encoder(str(tmp_path), build_encoder(spec, state), spec)  # an encoder artefact is read as it is
    again, again_state = weights_encoder(str(tmp_path / "encoder.pt"), TrainingConfig(model="resnet18"))
    assert again == spec and all(torch.equal(again_state[k], v) for k, v in state.items())


@pytest.mark.slow
def test_weights_and_feature_files_are_compared_beside_the_run(ray_session, tmp_path, capsys):
    """A run's own CNN given back as --weights must score exactly what the run's CNN scored."""
    out = str(tmp_path / "run")
    small = [
        "--set",
        "data.synth.users=300",
        "--set",
        "data.synth.items=300",
        "--set",
        "training.epochs=2",
        "--set",
        "factorization.epochs=5",
        "--set",
        "features.random_cnn=false",
        *(f"--set={setting}" for setting in SMALL_CROPS),
    ]
    assert main(["run", "--out", out, *small]) == 0
    weights = glob.glob(os.path.join(out, "stages", "train-*"))[0]  # the run's encoder artefact
    ids, vectors = read_features(glob.glob(os.path.join(out, "stages", "features-*", "cnn.parquet"))[0])
    write_features(str(tmp_path / "mine.parquet"), ids, vectors[:, ::-1])  # same geometry, other layout
    assert main(["run", "--out", out, *small, "--weights", weights, "--features", f"mine={tmp_path}/mine.parquet"]) == 0
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    assert metrics["run/stages_reused"] == metrics["run/stages"] - 2  # only evaluate and coldstart (after it) are new
    assert metrics["coldstart/weights/auc"] == pytest.approx(metrics["coldstart/cnn/auc"], abs=1e-6)
    for name in ("weights", "mine"):
        for rank in (1, 10, 100):
            assert metrics[f"retrieval/{name}/jaccard@{rank}"] == pytest.approx(
                metrics[f"retrieval/cnn/jaccard@{rank}"], abs=1e-6
            )
    assert metrics["probe/weights/accuracy"] == pytest.approx(metrics["probe/cnn/accuracy"], abs=0.02)
    page = open(os.path.join(out, "report.html")).read()
    for name in ("cnn", "color_hist", "pixels", "weights"):
        assert f"report/neighbours_{name}.png" in page
    capsys.readouterr()
    assert main(["compare", out, out, "--metric", "retrieval/*/jaccard@10"]) == 0
    table = capsys.readouterr().out
    assert "retrieval/weights/jaccard@10" in table and "retrieval/pixels/jaccard@10" in table
    assert main(["run", "--out", out, *small, "--features", f"gone={tmp_path}/gone.parquet"]) == 2
    assert "gone.parquet: file does not exist" in capsys.readouterr().err


def test_compare_tables_runs_and_names_a_directory_without_metrics(tmp_path, capsys):
    for name, pr in (("a", 0.2), ("b", 0.1)):
        os.makedirs(tmp_path / name)
        (tmp_path / name / "metrics.json").write_text(
            json.dumps({"mf/pr": pr, "retrieval/cnn/jaccard@10": 0.05 if name == "a" else None})
        )
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "metric,a,b" and "mf/pr,0.2,0.1" in lines and "retrieval/cnn/jaccard@10,0.05,-" in lines
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "nothing")]) == 2
    assert "nothing: no metrics.json" in capsys.readouterr().err


def test_the_probe_solver_fits_scikit_learns_objective():
    rng = np.random.default_rng(1)
    classes = rng.integers(0, 4, 400)
    vectors = np.eye(4)[classes] @ rng.standard_normal((4, 8)) + rng.standard_normal((400, 8))
    for c in (0.01, 1.0):
        ours = _fit(c, vectors, classes, multilabel=False)
        theirs = LogisticRegression(C=c, max_iter=2000, tol=1e-8).fit(vectors, classes)
        assert np.abs(ours.weight.T - theirs.coef_).max() < 1e-3 * max(1, np.abs(theirs.coef_).max())
        assert (ours.predict(vectors) == theirs.predict(vectors)).mean() > 0.99


def test_cosine_neighbours_are_exact_and_never_the_query_itself_even_among_duplicates():
    rng = np.random.default_rng(2)
    vectors = rng.standard_normal((60, 5))
    vectors[10:20] = vectors[10]  # ten copies: each may outrank itself
    found = cosine_neighbours(vectors, vectors, 4, exclude_self=True)
    assert found.shape == (60, 4) and not (found == np.arange(60)[:, None]).any()
    scores = normalise(vectors) @ normalise(vectors).T
    np.fill_diagonal(scores, -np.inf)
    best = np.sort(scores, axis=1)[:, ::-1][:, :4]
    assert np.allclose(np.take_along_axis(scores, found, axis=1), best, atol=1e-5)
    assert set(found[10]) <= set(range(11, 20))


def _clustered(items: int, dim: int, seed: int) -> np.ndarray:
    """Vectors around 40 centres, overlapping enough that an IVF index misses some true neighbours."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((40, dim))
    return centres[rng.integers(0, 40, items)] + rng.standard_normal((items, dim))


def test_past_the_exact_budget_an_ivf_index_answers_and_reports_its_sampled_recall(monkeypatch):
    vectors = _clustered(6000, 16, seed=3)
    exact = retrieval.neighbour_search(vectors, vectors, 10, exclude_self=True)
    assert exact.recall is None and exact.checked is None
    monkeypatch.setattr(retrieval, "EXACT_PAIRS", 6000 * 5000)
    found = retrieval.neighbour_search(vectors, vectors, 10, exclude_self=True)
    overlap = np.mean([len(np.intersect1d(a, b)) for a, b in zip(found.indices, exact.indices)]) / 10
    assert 0.85 < found.recall < 0.99 and abs(found.recall - overlap) < 0.02  # the sample tells the whole's recall
    assert len(found.checked) == retrieval.RECALL_QUERIES and not (found.indices == np.arange(6000)[:, None]).any()
    monkeypatch.setattr(retrieval, "IVF_PROBES", 1)
    assert retrieval.neighbour_search(vectors, vectors, 10, exclude_self=True).recall < 0.6  # one list of 309
    one_list = retrieval.neighbour_search(vectors, vectors, 30, exclude_self=True)  # ~19 vectors a list: short
    assert (one_list.indices >= 0).all() and not (one_list.indices == np.arange(6000)[:, None]).any()


def test_retrieval_past_the_exact_budget_reports_the_search_recall_beside_the_jaccard(monkeypatch):
    ids = np.array([f"i{n}" for n in range(3000)])
    parts = pd.Series(np.where(np.arange(3000) % 5 == 0, "te", "tr"), index=ids)
    users = [f"u{n % 400}" for n in range(12000)]
    interactions = pd.DataFrame({"user_id": users, "item_id": ids[np.arange(12000) * 7 % 3000]})
    item_users, items, user_index = viewers_of(interactions)
    vectors = _clustered(3000, 8, seed=4)
    args = ("cnn", vectors, ids, parts, item_users, items, user_index, None)
    exact, _ = retrieval_of(*args, k=10)
    assert not [name for name in exact if "search_recall" in name]
    monkeypatch.setattr(retrieval, "EXACT_PAIRS", 600 * 2000)
    approximate, _ = retrieval_of(*args, k=10)
    queries, recall = approximate["retrieval/cnn/search_recall@10"]
    assert len(queries) == min(600, retrieval.RECALL_QUERIES) and set(queries) <= set(ids[parts == "te"])
    assert 0.5 < recall.mean() <= 1


def _viewer_log(seed: int) -> sp.csr_matrix:
    """50 items x 300 users, item 0 viewed by nearly everyone; rows unsorted, one entry twice, some values <= 0."""
    rng = np.random.default_rng(seed)
    items = np.concatenate([np.zeros(280, np.int64), rng.integers(1, 50, 700), [7]])
    users = np.concatenate([np.arange(280), rng.integers(0, 300, 700), [3]])
    values = np.concatenate([rng.choice([1.0, 1.0, 1.0, 0.0, -1.0], 980), [1.0]])
    order = rng.permutation(len(items))
    items, users, values = items[order], users[order], values[order]
    by_item = np.argsort(items, kind="stable")
    indptr = np.r_[0, np.cumsum(np.bincount(items, minlength=50))]
    matrix = sp.csr_matrix((values[by_item], users[by_item], indptr), shape=(50, 300))
    assert not matrix.has_canonical_format
    return matrix


def _viewer_sets(matrix: sp.csr_matrix) -> list[set]:
    """Each item's viewers: the users whose entries for it sum above 0."""
    summed = matrix.tocoo()
    summed.sum_duplicates()
    viewers = [set() for _ in range(matrix.shape[0])]
    for item, user, value in zip(summed.row, summed.col, summed.data):
        if value > 0:
            viewers[item].add(int(user))
    return viewers


def test_jaccard_is_the_jaccard_of_the_viewer_sets():
    item_users = _viewer_log(5)
    viewers = _viewer_sets(item_users)
    rng = np.random.default_rng(5)
    left, right = rng.integers(0, 50, 400), rng.integers(0, 50, 400)
    left[:50] = 0  # the popular item beside the others
    union = [len(viewers[a] | viewers[b]) for a, b in zip(left, right)]
    expected = [len(viewers[a] & viewers[b]) / u if u else 0.0 for a, b, u in zip(left, right, union)]
    pairs = retrieval.jaccard_pairs(item_users, left, right)
    assert np.allclose(pairs, expected) and (pairs > 0).sum() > 50
    queries = np.arange(40)
    by_query = retrieval.jaccard_by_query(item_users, queries, right[:400].reshape(40, 10))
    assert np.array_equal(by_query.ravel(), retrieval.jaccard_pairs(item_users, np.repeat(queries, 10), right))
    assert retrieval.jaccard_pairs(item_users, left[:0], right[:0]).shape == (0,)


def test_viewed_among_counts_the_ranked_items_a_user_viewed():
    item_users = _viewer_log(6)
    viewers = _viewer_sets(item_users)
    rng = np.random.default_rng(6)
    ranked, users = rng.integers(0, 50, (200, 8)), rng.integers(0, 300, 200)
    expected = [sum(int(user) in viewers[item] for item in row) for row, user in zip(ranked, users)]
    assert np.array_equal(retrieval.viewed_among(item_users, ranked, users), expected)
    assert sum(expected) > 0
