"""Bootstrap intervals and tests over queries, and cold-start scoring, on small seeded inputs."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from socialfeat.evaluation.coldstart import Factors, folded_in, recall_samples, user_scores
from socialfeat.stats import significance


def test_the_interval_holds_the_true_mean_about_95_times_in_100_and_narrows_with_more_queries():
    rng = np.random.default_rng(0)
    covered = 0
    for trial in range(100):
        low, high = significance.interval(rng.exponential(2.0, 200), seed=trial, resamples=400)
        covered += low <= 2.0 <= high
    assert 88 <= covered <= 100
    narrow = significance.interval(rng.exponential(2.0, 5000), seed=0)
    wide = significance.interval(rng.exponential(2.0, 50), seed=0)
    assert narrow[1] - narrow[0] < (wide[1] - wide[0]) / 5


def test_the_paired_test_finds_a_small_shift_that_the_unpaired_one_cannot_see():
    rng = np.random.default_rng(1)
    per_query = rng.normal(0.5, 0.3, 400)  # queries differ a lot; the second system is 0.02 better on each
    better = per_query + 0.02 + rng.normal(0, 0.01, 400)
    assert significance.paired_p_value(per_query, better, seed=0) < 0.01
    assert significance.unpaired_p_value(per_query, better, seed=0) > 0.05
    assert significance.paired_p_value(per_query, per_query, seed=0) == 1.0
    noise = per_query + rng.normal(0, 0.05, 400)  # no shift: the test must not call it different
    assert significance.paired_p_value(per_query, noise, seed=0) > 0.05


def test_p_value_pairs_only_when_both_measured_the_same_queries():
    first = pd.Series([0.1, 0.2, 0.3], index=["a", "b", "c"])
    p, paired = significance.p_value(first, first.iloc[::-1] + 0.1, seed=0)
    assert paired and p < 0.05  # the same queries in another order: paired by query id
    _, paired = significance.p_value(first, pd.Series([0.1, 0.2], index=["a", "b"]), seed=0)
    assert not paired
    repeated = pd.Series([0.1, 0.2, 0.3], index=["a", "a", "b"])  # a query measured twice: paired by position
    assert significance.p_value(repeated, repeated + 0.1, seed=0) == (pytest.approx(0.001, abs=0.001), True)


def test_samples_round_trip_through_the_stage_directory(tmp_path):
    samples = {"m/x": (np.array(["q1", "q2", "q3"]), np.array([0.0, 1.0, 1.0]))}
    metrics = significance.record(str(tmp_path), samples, seed=0)
    assert metrics["m/x/ci_low"] <= 2 / 3 <= metrics["m/x/ci_high"]
    read = significance.read_samples(str(tmp_path))
    assert list(read) == ["m/x"] and read["m/x"].to_dict() == {"q1": 0.0, "q2": 1.0, "q3": 1.0}


def _planted(seed: int = 0, users: int = 300, items: int = 120, dim: int = 4):
    """Users and items with planted factors; a user views the items they score highest on."""
    rng = np.random.default_rng(seed)
    user_factors, item_factors = rng.standard_normal((users, dim)), rng.standard_normal((items, dim))
    scores = user_factors @ item_factors.T + rng.normal(0, 0.5, (users, items))
    viewed = scores > np.quantile(scores, 0.9, axis=1, keepdims=True)
    rows, columns = np.nonzero(viewed)
    interactions = pd.DataFrame({"user_id": [f"u{r}" for r in rows], "item_id": [f"i{c}" for c in columns]})
    return user_factors, item_factors, interactions


def test_cold_start_ranks_by_features_that_carry_the_factors_above_random_and_below_the_oracle():
    user_factors, item_factors, interactions = _planted()
    item_ids = np.array([f"i{n}" for n in range(120)])
    tr, te = item_ids[:80], item_ids[80:]
    factors = Factors(np.array([f"u{n}" for n in range(300)]), user_factors, tr, item_factors[:80], reg=1.0)
    rng = np.random.default_rng(1)
    sets = {  # image features: the factors seen through a random linear map and noise, or pure noise
        "informative": (item_ids, item_factors @ rng.standard_normal((4, 16)) + rng.normal(0, 2.0, (120, 16))),
        "noise": (item_ids, rng.standard_normal((120, 16))),
    }
    samples, curves = recall_samples(sets, interactions, factors, te, seed=0)
    sampled, _ = recall_samples(sets, interactions, factors, te, seed=0, max_users=50)
    users, values = sampled["coldstart/informative/auc"]
    assert len(users) == 50 and set(users) < set(samples["coldstart/informative/auc"][0])
    whole = dict(zip(*samples["coldstart/informative/auc"]))
    assert np.allclose(values, [whole[user] for user in users])  # a user's score does not depend on the sample
    auc = {name: samples[f"coldstart/{name}/auc"][1].mean() for name in ("informative", "noise", "random", "oracle")}
    assert auc["oracle"] > auc["informative"] > 0.7 and abs(auc["noise"] - 0.5) < 0.1 and abs(auc["random"] - 0.5) < 0.1
    assert curves["informative"][9] == pytest.approx(samples["coldstart/informative/recall@10"][1].mean())
    assert np.all(np.diff(curves["informative"]) >= 0)  # recall grows with K


def test_user_scores_auc_and_recall_on_a_hand_checked_ranking():
    views = sp.csr_matrix(np.array([[1, 0, 1, 0], [0, 0, 0, 1]], np.float32))
    scores = np.array([[4.0, 3.0, 2.0, 1.0], [4.0, 3.0, 2.0, 1.0]])
    scored = user_scores(lambda start, stop: scores[start:stop], views)
    # user 0: positives ranked 1st and 3rd of 4 -> 3 of 4 (positive, negative) pairs right; user 1: last
    assert scored["auc"].tolist() == [0.75, 0.0]
    assert scored["curve"][0].tolist() == [0.5, 0.5, 1.0, 1.0] and scored["recall@10"].tolist() == [1.0, 1.0]


def test_the_oracle_folds_in_factors_that_reproduce_the_views():
    user_factors, item_factors, _ = _planted()
    views = sp.csr_matrix((user_factors @ item_factors.T > 1.5).astype(np.float32))
    folded = folded_in(Factors(None, user_factors, None, None, reg=0.1), views)
    counts = np.asarray(views.sum(axis=1)).ravel()
    scored_users = np.flatnonzero((counts > 0) & (counts < views.shape[1]))
    scored = user_scores(lambda start, stop: user_factors[scored_users[start:stop]] @ folded.T, views[scored_users])
    assert len(scored_users) > 200 and scored["auc"].mean() > 0.9


def test_a_reports_verdicts_hold_the_model_to_each_baseline_in_pairs():
    from socialfeat.report import verdicts

    rng = np.random.default_rng(0)
    queries = [f"q{i}" for i in range(200)]
    model = pd.Series(rng.random(200) + 0.5, index=queries)
    samples = {
        "retrieval/cnn/jaccard@10": model,
        "retrieval/random/jaccard@10": pd.Series(rng.random(200), index=queries),  # far below: beaten
        "retrieval/random_cnn/jaccard@10": model + rng.normal(0, 0.01, 200),  # the same: not beaten
        "retrieval/oracle/jaccard@10": model + 1,  # an upper bound: shown, not held against it
    }
    metrics = {name: float(values.mean()) for name, values in samples.items()} | {"mf/pr": 0.1, "mf/popularity/pr": 0.3}
    found = {v.metric: v for v in verdicts(metrics, samples, ("retrieval/*/jaccard@10", "mf/pr"))}
    retrieval = found["retrieval/cnn/jaccard@10"]
    assert retrieval.beaten() == ["retrieval/random/jaccard@10"]
    assert retrieval.sentence() == "does not beat random_cnn significantly"
    samples["retrieval/random/jaccard@10"] = model + 1  # now far above the model: worse, and said so
    metrics["retrieval/random/jaccard@10"] = float(samples["retrieval/random/jaccard@10"].mean())
    worse = verdicts(metrics, samples, ("retrieval/*/jaccard@10",))[0]
    assert worse.sentence() == "significantly worse than random; does not beat random_cnn significantly"
    assert found["mf/pr"].lower_is_better  # and without per-query values nothing is claimed
    assert found["mf/pr"].sentence() == "untested against popularity (no per-query values)"


def test_a_sign_flip_test_over_a_few_seeds_claims_no_more_than_they_hold():
    first = np.array([0.10, 0.20, 0.30])
    assert significance.sign_flip_p_value(first, first + 0.05, seed=0) == pytest.approx(2 / 8)  # all one sign
    assert significance.sign_flip_p_value(first, first, seed=0) == 1.0
    five = np.arange(5.0)
    assert significance.sign_flip_p_value(five, five + 1, seed=0) == pytest.approx(2 / 32)
    assert significance.sign_flip_p_value(np.zeros(40), np.ones(40), seed=0) < 0.001  # random flips past 16
    # a bootstrap over the same 3 differences would have called it p = 0.001
    assert significance.paired_p_value(first, first + 0.05, seed=0) < 0.01
