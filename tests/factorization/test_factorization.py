"""Negative sampling, the factorisation engines and their metrics, on small real inputs."""

import functools
import json
import os

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from socialfeat.cli import main
from socialfeat.config import ConfigError, FactorizationConfig, SamplingConfig, SplitConfig
from socialfeat.data.splits import split_interactions
from socialfeat.factorization import engines, entry_file
from socialfeat.factorization.engines import ENGINES
from socialfeat.factorization.metrics import pair_error
from socialfeat.factorization.mf import (
    evaluate,
    factorize,
    neighbour_metrics,
    sampled_entries,
    write_sampled_entries,
)
from socialfeat.factorization.sampling import blocks_of, joined, log_popularity_weights, negative_blocks
from socialfeat.methods import load_config
from socialfeat.stats.ranking import mis_ordered_fraction, ndcg_at_k


def _positives(n_users=3000, n_items=20, per_user=2, seed=0):
    rng = np.random.default_rng(seed)
    items = np.concatenate([rng.choice(n_items, per_user, replace=False) for _ in range(n_users)])
    return np.repeat(np.arange(n_users), per_user).astype(np.int32), items.astype(np.int32)


def test_negatives_follow_the_log_popularity_weights_and_never_hit_a_positive():
    users, items = _positives()
    popularity = np.arange(1, 21) ** 2  # a steep head so the weights differ a lot
    weights = log_popularity_weights(popularity)
    neg_users, neg_items = joined(negative_blocks(users, items, 20, weights, ratio=0.5, seed=1))  # one per user
    assert len(neg_users) == 3000
    positive_keys = set(zip(users.tolist(), items.tolist()))
    assert not any((u, i) in positive_keys for u, i in zip(neg_users.tolist(), neg_items.tolist()))
    # expected frequency: for each user, w_i over the weight left after removing their positives
    expected = np.zeros(20)
    for user in range(3000):
        allowed = np.ones(20, bool)
        allowed[items[2 * user : 2 * user + 2]] = False
        expected[allowed] += weights[allowed] / weights[allowed].sum()
    observed = np.bincount(neg_items, minlength=20)
    chi2 = ((observed - expected) ** 2 / expected).sum()
    assert chi2 < 45  # 19 degrees of freedom: p < 0.001 beyond ~43.8
    uniform_chi2 = ((observed - 3000 / 20) ** 2 / (3000 / 20)).sum()
    assert uniform_chi2 > 100  # and it is clearly not uniform


def test_quota_without_replacement_seeded_and_skips_users_with_nothing_left():
    users = np.array([0, 0, 1, 1, 1, 1, 1], np.int32)
    items = np.array([0, 1, 0, 1, 2, 3, 4], np.int32)  # user 1 saw every one of the 5 items
    weights = log_popularity_weights(np.array([2, 2, 1, 1, 1]))
    neg_users, neg_items = joined(negative_blocks(users, items, 5, weights, ratio=2.0, seed=3))
    assert (neg_users == 0).sum() == 3 and not (neg_users == 1).any()  # capped at 3 left, none for user 1
    assert sorted(neg_items.tolist()) == [2, 3, 4]
    again = joined(negative_blocks(users, items, 5, weights, ratio=2.0, seed=3))
    assert np.array_equal(again[1], neg_items)


def test_blocks_of_users_hold_their_positives_rows_in_row_order():
    users = np.random.default_rng(0).integers(0, 300, 5000).astype(np.int32)
    users[users // 32 == 4] = 0  # block 4 has no positives and is skipped
    blocks = list(blocks_of(users, 32))
    assert [block for block, _ in blocks] == [b for b in range(10) if b != 4]
    for block, rows in blocks:
        assert np.array_equal(rows, np.flatnonzero(users // 32 == block))


def test_sharded_ray_sampling_equals_the_local_one(ray_session):
    from socialfeat.distributed.data import negative_blocks_sharded

    users, items = _positives(n_users=500, n_items=60, per_user=5)
    weights = log_popularity_weights(np.bincount(items, minlength=60))
    local = joined(negative_blocks(users, items, 60, weights, 2.0, seed=5, users_per_block=128))
    sharded = joined(negative_blocks_sharded(users, items, 60, weights, 2.0, seed=5, users_per_block=128))
    assert np.array_equal(local[0], sharded[0]) and np.array_equal(local[1], sharded[1])
    # one block out at a time, each sent when the one before it is back: the same blocks in the same order
    local = joined(negative_blocks(users, items, 60, weights, 2.0, seed=5, users_per_block=32))
    one_by_one = negative_blocks_sharded(users, items, 60, weights, 2.0, seed=5, users_per_block=32, in_flight=1)
    assert all(np.array_equal(a, b) for a, b in zip(local, joined(one_by_one))) and len(np.unique(local[0] // 32)) == 16


def test_pair_error_matches_brute_force():
    rng = np.random.default_rng(0)
    users = rng.integers(0, 30, 600)
    scores = rng.integers(0, 5, 600).astype(float)  # many ties
    positive = rng.random(600) < 0.3
    brute = [mis_ordered_fraction(scores[(users == u) & positive], scores[(users == u) & ~positive]) for u in range(30)]
    assert pair_error(users, scores, positive) == pytest.approx(np.nanmean(brute))
    assert mis_ordered_fraction(np.array([2.0]), np.array([1.0, 3.0, 2.0])) == pytest.approx(0.5)


def test_pair_error_over_blocks_of_users_is_the_one_pass_value(monkeypatch):
    from socialfeat.factorization import metrics

    rng = np.random.default_rng(1)
    users = rng.integers(0, 40, 2000).astype(np.int32)
    scores = rng.integers(0, 7, 2000).astype(np.float32)
    positive = rng.random(2000) < 0.4
    whole = metrics.pair_error_by_user(users, scores, positive)
    monkeypatch.setattr(metrics, "PAIR_ENTRIES_PER_BLOCK", 130)  # ~16 blocks of users
    blocked = metrics.pair_error_by_user(users, scores, positive)
    assert np.array_equal(whole[0], blocked[0]) and np.array_equal(whole[1], blocked[1])
    assert metrics.pair_error(users, scores, positive) == float(np.mean(whole[1]))


def test_als_on_int8_values_is_the_fit_on_float_values():
    from socialfeat.factorization.cg import cg_rows, rows_csr

    users, items = _positives(n_users=300, n_items=30, per_user=4)
    values = (np.random.default_rng(2).random(len(users)) < 0.5).astype(np.float32)
    assert engines._compact(values).dtype == np.int8 and engines._compact(values + 0.5).dtype == np.float32
    fits = []
    for data in (values, values.astype(np.int8)):
        rng = np.random.default_rng(0)
        user_factors, item_factors = engines._initial(300, 8, rng), engines._initial(30, 8, rng)
        by_user, by_item = rows_csr(users, items, data, 300), rows_csr(items, users, data, 30)
        assert by_user[2].dtype == data.dtype
        for _ in range(3):
            cg_rows(*by_user, user_factors, item_factors, 1.0, 3)
            cg_rows(*by_item, item_factors, user_factors, 1.0, 3)
        fits.append(item_factors)
    assert np.array_equal(fits[0], fits[1])


def test_ndcg_of_a_perfect_and_a_reversed_list():
    perfect = np.array([[True, True, False]])
    assert ndcg_at_k(perfect, np.array([2]))[0] == pytest.approx(1.0)
    assert ndcg_at_k(np.array([[False, True, True]]), np.array([2]))[0] < 0.7


def _small_entries() -> engines.Entries:
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 40, 500).astype(np.int32), rng.integers(0, 70, 500).astype(np.int32)
    keep = ~pd.DataFrame({"u": users, "i": items}).duplicated().to_numpy()
    return engines.Entries(users[keep], items[keep], rng.integers(0, 2, keep.sum()).astype(np.float32), 40, 70)


@pytest.mark.parametrize(("cg_steps", "tolerance"), [(0, 1e-4), (8, 2e-3)])
def test_als_row_update_is_the_closed_form_solution(cg_steps, tolerance):
    """The exact solve, and CG with as many steps as dimensions (CG's exact-arithmetic bound)."""
    data = _small_entries()
    cfg = FactorizationConfig(dim=8, reg=0.7, epochs=3, cg_steps=cg_steps)
    user_factors, item_factors = engines.fit_als(data, cfg)
    # after the last item update, each item row solves its normal equations
    for item in (0, 5, 11):
        rows = data.items == item
        design = user_factors[data.users[rows]]
        solution = np.linalg.solve(design.T @ design + 0.7 * np.eye(8), design.T @ data.values[rows])
        assert np.allclose(solution, item_factors[item], atol=tolerance)


def test_cg_als_is_deterministic_whatever_the_thread_count():
    import numba

    data, cfg = _small_entries(), FactorizationConfig(dim=8, reg=0.7, epochs=4)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = engines.fit_als(data, cfg)
    finally:
        numba.set_num_threads(threads)
    many = engines.fit_als(data, cfg)
    assert all(np.array_equal(a, b) for a, b in zip(one, many, strict=True))
    exact = engines.fit_als(data, cfg.model_copy(update={"cg_steps": 0}))
    assert not np.array_equal(one[1], exact[1])  # three CG steps from a warm start are close, not exact
    assert np.abs(one[1] - exact[1]).max() < 0.05


def test_rows_csr_groups_entries_by_row_in_their_order_keeping_duplicates():
    from socialfeat.factorization.cg import rows_csr

    rows = np.array([2, 0, 2, 1, 0, 2, 2], np.int32)
    cols = np.array([5, 3, 1, 4, 3, 0, 5], np.int32)
    values = np.arange(7, dtype=np.float32)
    indptr, indices, data = rows_csr(rows, cols, values, 4)
    assert indptr.tolist() == [0, 2, 3, 7, 7]  # row 3 has no entries
    assert indices.tolist() == [3, 3, 4, 5, 1, 0, 5]  # (0, 3) twice, row 2 in input order
    assert data.tolist() == [1, 4, 3, 0, 2, 5, 6]


@pytest.fixture(scope="module")
def synth_entries(synth_dir):
    interactions = pd.read_parquet(os.path.join(synth_dir, "interactions.parquet"))
    split, _, _ = split_interactions(interactions, SplitConfig())
    entries, users, items, counts = sampled_entries(split, SamplingConfig(), SplitConfig())
    labels = pd.read_parquet(os.path.join(synth_dir, "items.parquet"), columns=["item_id", "labels"])
    item_labels = labels.set_index("item_id")["labels"].str[0].reindex(items).to_numpy()
    return entries, users, items, item_labels


def test_entries_keep_the_splits_folds_in_one_byte_each(synth_dir, synth_entries):
    entries = synth_entries[0]
    interactions = pd.read_parquet(os.path.join(synth_dir, "interactions.parquet"))
    split, _, _ = split_interactions(interactions, SplitConfig())
    positives = entries[entries["value"] == 1]
    assert (positives["fold"] == "val").sum() == (split["fold"] == "val").sum()  # the split's own val rows
    negatives = entries[entries["value"] == 0]
    assert 0.15 < (negatives["fold"] == "val").mean() < 0.25  # split.val_fraction = 0.2 of the negatives
    assert entries["fold"].memory_usage(deep=True) < 2 * len(entries) + 1000  # codes, not a string per entry


def test_entries_written_by_blocks_read_back_by_fold_as_the_frame(synth_dir, tmp_path, monkeypatch):
    interactions = pd.read_parquet(os.path.join(synth_dir, "interactions.parquet"))
    split, _, _ = split_interactions(interactions, SplitConfig())
    sampling, path = SamplingConfig(ratio=2.0), str(tmp_path / "entries.parquet")
    # blocks of 50 users, each with its own validation draws, written 1000 rows a group
    blocks = functools.partial(negative_blocks, users_per_block=50)
    monkeypatch.setattr(entry_file, "ROWS_PER_GROUP", 1000)
    users, items, counts = write_sampled_entries(split, sampling, SplitConfig(), path, blocks)
    frame, *expected = sampled_entries(split, sampling, SplitConfig(), blocks)
    assert pq.ParquetFile(path).num_row_groups > 10 and counts["sampling/negatives"] > 10000
    assert users.equals(expected[0]) and items.equals(expected[1]) and counts == expected[2]
    for where, kept in (
        ("train", frame["fold"] == "train"),
        ("val", frame["fold"] == "val"),
        ("evaluated", (frame["fold"] == "val") | (frame["value"] > 0)),
    ):
        read = entry_file.read_entries(path, where)
        pd.testing.assert_frame_equal(read, frame[kept.to_numpy()].reset_index(drop=True))
    assert read["fold"].memory_usage(deep=True) < 2 * len(read) + 1000


@pytest.mark.parametrize("engine", list(ENGINES))
def test_every_engine_recovers_planted_styles_and_beats_popularity(synth_entries, engine):
    entries, users, items, labels = synth_entries
    cfg = FactorizationConfig(
        engine=engine,
        dim=16,
        reg={"als": 3.0, "sgd": 3.0}.get(engine, 0.05),
        epochs={"implicit_bpr": 200, "sgd": 30}.get(engine, 10),
        learning_rate=0.05 if engine != "implicit_bpr" else 0.02,
    )
    user_factors, item_factors, history, _ = factorize(entries, len(users), len(items), cfg)
    bias_column = engine == "implicit_bpr"  # implicit's BPR learns an item bias as one more factor
    assert len(history) == cfg.epochs and user_factors.shape == (len(users), 16 + bias_column)
    metrics = evaluate(user_factors, item_factors, entries, cfg)
    assert metrics["mf/pr"] < metrics["mf/popularity/pr"] - 0.03, metrics
    assert metrics["mf/auc"] > metrics["mf/popularity/auc"], metrics
    neighbours = neighbour_metrics(item_factors, entries, labels, 10, seed=0)
    assert neighbours["mf/latent_label_precision@10"] > 2.5 * neighbours["mf/random_label_precision@10"], neighbours
    assert neighbours["mf/latent_jaccard@10"] > neighbours["mf/random_jaccard@10"]


def test_bad_factorisation_settings_are_named():
    for override, key in (
        ("factorization.reg=-1", "factorization.reg"),
        ("factorization.dim=0", "factorization.dim"),
        ("sampling.ratio=0", "sampling.ratio"),
    ):
        with pytest.raises(ConfigError, match=key):
            load_config(None, [override])


@pytest.mark.slow
def test_movielens_factorisation_acceptance(ray_session, movielens_dir, tmp_path):
    experiment = os.path.join(os.path.dirname(__file__), "..", "..", "experiments", "cfl_movielens.yaml")
    out = str(tmp_path / "run")
    assert main(["run", experiment, "--data", movielens_dir, "--until", "factorization", "--out", out]) == 0
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    assert metrics["mf/pr"] < 0.35 and metrics["mf/pr"] < metrics["mf/popularity/pr"]
    assert metrics["mf/latent_jaccard@10"] > metrics["mf/random_jaccard@10"]
    stage = [d for d in os.listdir(os.path.join(out, "stages")) if d.startswith("factorization-")][0]
    assert np.load(os.path.join(out, "stages", stage, "item_factors.npy")).shape[1] == 64


def test_the_fit_lets_go_of_its_row_copies(monkeypatch):
    # numba compiling cg_rows inside the fit left a reference cycle that held the fit's CSR copies (5 GB at
    # 100M views) after it returned, until the collector ran
    import weakref

    users, items = _positives(n_users=300, n_items=50, per_user=4)
    entries = engines.Entries(users, items, np.ones(len(users), np.float32), 300, 50)
    copies, rows_csr = [], engines.rows_csr

    def kept(*args):
        csr = rows_csr(*args)
        copies.append(weakref.ref(csr[1]))
        return csr

    monkeypatch.setattr(engines, "rows_csr", kept)
    engines.fit(entries, FactorizationConfig(engine="als", dim=8, epochs=2))
    assert len(copies) == 2 and all(copy() is None for copy in copies)
