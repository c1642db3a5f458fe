"""Users as bags of tag clusters: PPMI-SVD or a words run's output layer, k-means, unit-length bags."""

import json
import os

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from socialfeat.methods import METHODS, load_config
from socialfeat.methods.comparative.users import NotAWordsRun, bags_of, words_embeddings
from socialfeat.stages import run_experiment

COMPARATIVE = METHODS["comparative"]
SMALL = [
    "method=comparative",
    "data.synth.users=200",
    "data.synth.items=300",
    "data.synth.styles=4",
    "data.synth.image_size=16",
    "comparative.tag_clusters=8",
]


def _words_run(root, words: list[str], rows: np.ndarray) -> str:
    """A finished words run's files as the words method writes them: run.json, vocabulary, model.pt."""
    stages = {}
    for name in ("vocabulary", "train"):
        stages[name] = os.path.join(root, "stages", f"{name}-0123")
        os.makedirs(stages[name])
    pd.DataFrame({"word": words}).to_parquet(os.path.join(stages["vocabulary"], "vocabulary.parquet"))
    torch.save(
        {"head.weight": torch.tensor(rows), "head.bias": torch.zeros(len(words))},
        os.path.join(stages["train"], "model.pt"),
    )
    entries = [{"name": n, "key": f"{n}-key", "path": p} for n, p in stages.items()]
    with open(os.path.join(root, "run.json"), "w") as f:
        json.dump({"stages": entries}, f)
    return str(root)


def test_bags_count_interests_by_cluster_at_unit_length():
    counts = sp.csr_matrix(np.array([[2, 0, 1, 0], [0, 0, 0, 0], [0, 3, 0, 5]], np.float32))
    bags = bags_of(counts, clusters=np.array([0, 1, 0, -1]), k=2)
    assert np.allclose(bags, [[1, 0], [0, 0], [0, 1]])  # tag 3 has no cluster; the second user no interests


def test_words_embeddings_average_the_tags_words_and_a_missing_run_is_named(tmp_path):
    rows = np.eye(3, dtype=np.float32)
    run = _words_run(tmp_path / "words", ["sky", "blue", "sea"], rows)
    embedded = words_embeddings(run, pd.Index(["blue sky", "sea", "nothing"]))
    assert np.allclose(embedded, [[0.5, 0.5, 0], [0, 0, 1], [0, 0, 0]])
    with pytest.raises(NotAWordsRun, match="comparative.words_run"):
        words_embeddings(str(tmp_path / "missing"), pd.Index(["sky"]))


def test_the_users_stage_clusters_ppmi_or_words_embeddings(tmp_path):
    metrics, ctx = run_experiment(
        METHODS["comparative"], load_config(None, SMALL), str(tmp_path / "run"), until="users"
    )
    bags = np.load(ctx.path("users", "bags.npy"))
    users = pd.read_parquet(ctx.path("likes", "users.parquet"))
    assert bags.shape == (len(users), 8) and metrics["users/empty_bags"] == 0
    assert np.allclose(np.linalg.norm(bags, axis=1), 1.0)
    tags = pd.read_parquet(ctx.path("likes", "tags.parquet"))["tag"].tolist()
    # a words "dictionary" that knows every tag but the last, each as its own direction
    rows = np.random.default_rng(0).normal(size=(len(tags) - 1, 16)).astype(np.float32)
    run = _words_run(tmp_path / "words", tags[:-1], rows)
    with_words = [*SMALL, "comparative.tag_embeddings=words", f"comparative.words_run={run}"]
    metrics, ctx = run_experiment(
        METHODS["comparative"], load_config(None, with_words), str(tmp_path / "run"), until="users"
    )
    assert metrics["users/tags_without_embedding"] >= 1 and metrics["users/tags_embedded"] <= len(tags) - 1
    with pytest.raises(NotAWordsRun):  # found when the run starts, before any stage
        run_experiment(
            METHODS["comparative"],
            load_config(None, [*SMALL, "comparative.tag_embeddings=words", "comparative.words_run=/nowhere"]),
            str(tmp_path / "x"),
        )
    assert not os.path.exists(tmp_path / "x")
