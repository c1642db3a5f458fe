"""Likes, circles, triplets and candidate sets on the synthetic data with its planted friends and groups: no
negative is liked by the user or their circle, every candidate set holds exactly the concealed likes."""

import os

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from socialfeat.data.synthetic import generate, write_contract
from socialfeat.methods import METHODS, load_config
from socialfeat.methods.comparative import likes
from socialfeat.methods.comparative.likes import NoTestUsers, conceal, fill, likes_of
from socialfeat.methods.comparative.stages import relations_of
from socialfeat.stages import run_experiment

SMALL = [
    "method=comparative",
    "data.synth.users=200",
    "data.synth.items=300",
    "data.synth.styles=4",
    "data.synth.image_size=16",
    "comparative.tag_clusters=8",
    "comparative.test_users=0.5",
]


def _run(out, *overrides, until="triplets"):
    cfg = load_config(None, [*SMALL, *overrides])
    metrics, ctx = run_experiment(METHODS["comparative"], cfg, str(out), until=until)
    return metrics, ctx


def _read(ctx, stage, name):
    return pd.read_parquet(ctx.path(stage, name))


def _liked_by_user_or_circle(ctx) -> sp.csr_matrix:
    """users x items: liked by the user, a friend (a link either way) or a member of one of their groups, from
    social.parquet itself."""
    likes, users = _read(ctx, "likes", "likes.parquet"), _read(ctx, "likes", "users.parquet")
    social = ctx.dataset().social
    friends = social[social["kind"] == "friend"]
    pairs = pd.concat(
        [
            friends[["user_id", "other_id"]],
            friends[["other_id", "user_id"]].set_axis(["user_id", "other_id"], axis=1),
            social[social["kind"] == "group"]
            .merge(social[social["kind"] == "group"], on="other_id")[["user_id_x", "user_id_y"]]
            .set_axis(["user_id", "other_id"], axis=1),
            users[["user_id"]].assign(other_id=users["user_id"]),  # the user's own likes
        ]
    )
    index = pd.Index(users["user_id"])
    pairs = pairs.assign(user=index.get_indexer(pairs["user_id"]), other=index.get_indexer(pairs["other_id"]))
    pairs = pairs[(pairs["user"] >= 0) & (pairs["other"] >= 0)]
    forbidden = pairs.merge(likes[["user", "item"]].rename(columns={"user": "other"}), on="other")
    shape = (len(users), len(_read(ctx, "likes", "items.parquet")))
    return sp.csr_matrix((np.ones(len(forbidden)), (forbidden["user"], forbidden["item"])), shape=shape)


@pytest.fixture(scope="module")
def social_run(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("comparative") / "run")


def test_no_social_negative_is_liked_by_the_user_or_a_friend_or_group_member(social_run):
    metrics, ctx = social_run
    triplets = _read(ctx, "triplets", "triplets.parquet")
    forbidden = _liked_by_user_or_circle(ctx)
    social = triplets[triplets["source"] == "social"]
    assert metrics["triplets/social_negatives"] == len(social) > 0.9 * len(triplets)  # every user has a circle
    assert metrics["triplets/fallback_negatives"] == len(triplets) - len(social)
    assert not np.asarray(forbidden[social["user"].to_numpy(), social["negative"].to_numpy()]).any()
    liked = _read(ctx, "likes", "likes.parquet")
    every_like = set(zip(liked["user"], liked["item"]))
    assert not any(pair in every_like for pair in zip(triplets["user"], triplets["negative"]))
    train = set(zip(liked.loc[liked["part"] == "train", "user"], liked.loc[liked["part"] == "train", "item"]))
    assert set(zip(triplets["user"], triplets["positive"])) <= train  # positives never concealed
    # and the negatives share no tag with the user's interests
    interests = _interests(ctx)
    item_tags = _read(ctx, "likes", "item_tags.parquet").groupby("item")["tag"].agg(set)
    shared = [
        bool(interests.get(u, set()) & item_tags.get(n, set())) for u, n in zip(social["user"], social["negative"])
    ]
    assert not any(shared)


def _interests(ctx) -> dict:
    liked = _read(ctx, "likes", "likes.parquet")
    train = liked[liked["part"] == "train"]
    item_tags = _read(ctx, "likes", "item_tags.parquet")
    from_items = train.merge(item_tags, on="item")[["user", "tag"]]
    own = _read(ctx, "likes", "user_tags.parquet")
    return pd.concat([from_items, own]).groupby("user")["tag"].agg(set).to_dict()


def test_each_users_tiers_are_their_likes_circle_and_tags_whatever_user_came_before(social_run):
    _, ctx = social_run
    rel = relations_of(ctx)
    interests, item_tags = _interests(ctx), _read(ctx, "likes", "item_tags.parquet").groupby("item")["tag"].agg(set)
    n_users, n_items = rel.liked.shape
    shares = np.array(
        [[bool(interests.get(u, set()) & item_tags.get(i, set())) for i in range(n_items)] for u in range(n_users)]
    )
    assert 0.05 < shares.mean() < 0.95  # some items share a tag with a user, some do not
    circle = _liked_by_user_or_circle(ctx).toarray() > 0
    unliked = rel.liked.toarray() == 0
    catalogue = likes.Catalogue(rel)
    for user in np.random.default_rng(0).permutation(n_users):  # stamps left by any other user never count
        catalogue.visit(user)
        expected = {
            (False, -1): unliked[user],
            (True, -1): ~circle[user],
            (True, 0): ~circle[user] & ~shares[user],
            (True, 1): ~circle[user] & shares[user],
            (False, 1): unliked[user] & shares[user],
        }
        for tier, mask in expected.items():
            np.testing.assert_array_equal(catalogue.tier_items(tier), np.flatnonzero(mask))


def _one_user_catalogue(weights=None) -> "likes.Catalogue":
    """User 0 liked item 5 and shares tag 0 with items 0 and 1; their friend, user 1, liked items 3 and 4; item 2
    carries tag 1 only. Candidate tiers: {0, 1}, then {2}, then {3, 4}."""
    liked = likes.incidence([0, 1, 1], [5, 3, 4], (2, 6))
    friends = likes.incidence([0, 1], [1, 0], (2, 2))
    interests = likes.incidence([0], [0], (2, 2))
    item_tags = likes.incidence([0, 1, 2], [0, 0, 1], (6, 2))
    rel = likes.Relations(liked, liked, friends, sp.csr_matrix((2, 0), dtype=np.float32), interests, item_tags)
    catalogue = likes.Catalogue(rel, weights)
    catalogue.visit(0)
    return catalogue


def test_draws_follow_the_tier_uniformly_or_by_weight_whether_proposed_or_enumerated(monkeypatch):
    weights = np.array([1.0, 3.0, 0.0, 2.0, 6.0, 5.0])
    for rounds in (8, 0):  # 0 rounds: every draw comes from the enumerated tier
        monkeypatch.setattr(likes, "TRY_ROUNDS", rounds)
        catalogue, rng = _one_user_catalogue(weights), np.random.default_rng(rounds)
        uniform = catalogue.draw((True, 1), 20_000, rng)
        assert set(uniform) == {0, 1} and abs((uniform == 0).mean() - 0.5) < 0.02
        anything_unliked = catalogue.draw((False, -1), 20_000, rng, weighted=True)
        share = np.bincount(anything_unliked, minlength=6) / len(anything_unliked)
        np.testing.assert_allclose(share, [1 / 12, 3 / 12, 0, 2 / 12, 6 / 12, 0], atol=0.02)  # 2: weight 0; 5: liked
        assert catalogue.draw((True, 0), 5, rng).tolist() == [2] * 5  # off the circle's likes, no tag shared
        assert catalogue.draw((True, 0), 5, rng, weighted=True).size == 0  # item 2 has weight 0
        assert set(catalogue.draw((True, -1), 60, rng)) == {0, 1, 2}


def test_every_candidate_set_has_exactly_the_concealed_likes_and_unliked_others(social_run):
    metrics, ctx = social_run
    candidates = _read(ctx, "likes", "candidates.parquet")
    liked = _read(ctx, "likes", "likes.parquet")
    concealed = liked[liked["part"] == "test"].groupby("user")["item"].agg(set)
    assert metrics["likes/test_users_ranked"] == candidates["user"].nunique() == len(concealed) > 10
    for user, rows in candidates.groupby("user"):
        assert len(rows) == 100 and rows["item"].is_unique
        assert rows["concealed"].sum() == 20 and set(rows.loc[rows["concealed"], "item"]) == concealed[user]
    others = candidates[~candidates["concealed"]]
    every_like = set(zip(liked["user"], liked["item"]))
    assert not any(pair in every_like for pair in zip(others["user"], others["item"]))
    # the first tier keeps off the circle's likes and shares a tag with the user's interests
    hard = others[others["tier"] == 0]
    assert len(hard) > 0
    assert not np.asarray(_liked_by_user_or_circle(ctx)[hard["user"].to_numpy(), hard["item"].to_numpy()]).any()
    interests, item_tags = _interests(ctx), _read(ctx, "likes", "item_tags.parquet").groupby("item")["tag"].agg(set)
    assert all(interests[u] & item_tags[i] for u, i in zip(hard["user"], hard["item"]))


def test_popularity_and_uniform_negatives_are_never_liked_by_the_user(social_run, tmp_path):
    _, social_ctx = social_run
    for rule in ("popularity", "uniform"):
        metrics, ctx = _run(social_ctx.out, f"comparative.negatives={rule}")
        triplets = _read(ctx, "triplets", "triplets.parquet")
        assert metrics[f"triplets/{rule}_negatives"] == len(triplets) and metrics["triplets/social_negatives"] == 0
        liked = set(zip(*[_read(ctx, "likes", "likes.parquet")[c] for c in ("user", "item")]))
        assert not any(pair in liked for pair in zip(triplets["user"], triplets["negative"]))
    assert metrics["run/stages_reused"] >= 4  # data, filter, likes, users: only the triplets change


def test_conceal_hides_exactly_concealed_likes_of_a_seeded_share_of_eligible_users():
    rng = np.random.default_rng(0)
    counts = rng.integers(1, 60, 100)
    users = np.repeat(np.arange(100), counts)
    test, metrics = conceal(users, concealed=20, min_train=5, test_fraction=0.5, seed=1)
    per_user = np.bincount(users[test], minlength=100)
    eligible = int((counts >= 25).sum())
    assert metrics["likes/eligible_users"] == eligible and metrics["likes/too_few_likes"] == 100 - eligible
    assert set(per_user[per_user > 0]) == {20} and (per_user > 0).sum() == round(0.5 * eligible)
    assert (per_user[counts < 25] == 0).all()
    assert (conceal(users, 20, 5, 0.5, 1)[0] == test).all() and not (conceal(users, 20, 5, 0.5, 2)[0] == test).all()
    few = np.repeat(np.arange(100), np.minimum(counts, 24))
    with pytest.raises(NoTestUsers, match="comparative.concealed"):
        conceal(few, 20, 5, 0.5, 1)


def test_conceal_draws_as_a_seeded_rank_within_each_user_does():
    # the pandas form it replaced: a random draw per like, the `concealed` lowest of each chosen user's are test
    users = np.repeat(np.arange(30), np.random.default_rng(3).integers(1, 50, 30))
    test, _ = conceal(users, concealed=4, min_train=3, test_fraction=0.4, seed=7)
    rng = np.random.default_rng([7, 0])
    counts = pd.Series(users).value_counts().sort_index()
    chosen = rng.choice(counts.index[counts >= 7].to_numpy(), round(0.4 * (counts >= 7).sum()), replace=False)
    draw = pd.Series(rng.random(len(users)))
    rank = draw.groupby(users).rank(method="first")
    assert (test == (np.isin(users, chosen) & (rank <= 4).to_numpy())).all() and test.sum() == 4 * len(chosen)


def test_likes_follow_like_min_and_fill_takes_tiers_in_order(monkeypatch):
    log = pd.DataFrame({"user_id": ["a", "a", "b", "b"], "item_id": ["x", "y", "x", "x"], "value": [5, 3, 4, 4.5]})
    assert likes_of(log, 4).astype(str).values.tolist() == [["a", "x"], ["b", "x"]]
    assert likes_of(log, None).astype(str).values.tolist() == [["a", "x"], ["a", "y"], ["b", "x"]]
    unsorted = log.assign(user_id=pd.Categorical(log["user_id"], categories=["b", "a", "c"]))
    assert likes_of(unsorted, None)["user_id"].cat.codes.tolist() == [0, 0, 1]  # codes order as the ids do
    tiers = likes.candidate_tiers(with_circle=True, with_tags=True)
    for rounds in (8, 0):
        monkeypatch.setattr(likes, "TRY_ROUNDS", rounds)
        for seed in range(5):
            items, tier = fill(_one_user_catalogue(), tiers, 4, np.random.default_rng(seed))
            assert sorted(items[:2]) == [0, 1] and items[2] == 2 and items[3] in (3, 4)
            assert tier.tolist() == [0, 0, 1, 2]
        assert sorted(fill(_one_user_catalogue(), tiers, 9, np.random.default_rng(0))[0]) == [0, 1, 2, 3, 4]
    firsts = [fill(_one_user_catalogue(), tiers, 1, np.random.default_rng(seed))[0][0] for seed in range(200)]
    assert 0.35 < np.mean(np.array(firsts) == 0) < 0.65  # either hard candidate comes first


def test_unknown_social_users_are_counted_and_a_too_small_catalogue_is_named(tmp_path):
    from socialfeat.config import SynthConfig

    root = str(tmp_path / "data")
    generate(SynthConfig(users=120, items=200, styles=4, image_size=16), root)
    tables = {
        n: pd.read_parquet(os.path.join(root, f"{n}.parquet")) for n in ("interactions", "items", "tags", "social")
    }
    extra = pd.DataFrame({"user_id": ["nobody", "u000001"], "other_id": ["u000002", "ghost"], "kind": "friend"})
    tables["social"] = pd.concat([tables["social"], extra], ignore_index=True)
    write_contract(root, tables["interactions"], tables["items"], tables["tags"], tables["social"])
    metrics, _ = _run(tmp_path / "run", f"data.path={root}", until="likes")
    assert metrics["social/unknown_users"] >= 2
    with pytest.raises(ValueError, match="comparative.candidates"):
        _run(tmp_path / "big", f"data.path={root}", "comparative.candidates=5000", until="likes")


def test_without_tags_users_are_described_by_item_text_or_the_run_stops_naming_it(tmp_path):
    from socialfeat.config import SynthConfig
    from socialfeat.methods.comparative.stages import NoTags

    root = str(tmp_path / "data")
    generate(SynthConfig(users=120, items=200, styles=4, image_size=16), root)
    os.remove(os.path.join(root, "tags.parquet"))
    with pytest.raises(NoTags, match="comparative.item_text"):
        _run(tmp_path / "run", f"data.path={root}", until="likes")
    stages = os.listdir(tmp_path / "run" / "stages")  # nothing half-written: the stages before it are whole
    assert not [s for s in stages if s.startswith("likes")]
    assert all(os.path.exists(tmp_path / "run" / "stages" / s / "manifest.json") for s in stages if s[0] != ".")
    metrics, _ = _run(tmp_path / "text", f"data.path={root}", "comparative.item_text=true", until="users")
    assert metrics["likes/tags"] > 8 and metrics["users/empty_bags"] == 0


def test_a_user_who_liked_every_item_gets_no_triplet_and_no_crash():
    from socialfeat.methods.comparative.likes import Relations, incidence, sample_triplets

    everything = incidence([0, 0, 0, 1], [0, 1, 2, 0], (2, 3))
    none = sp.csr_matrix((2, 2), dtype=np.float32)
    rel = Relations(everything, everything, none, sp.csr_matrix((2, 0)), sp.csr_matrix((2, 1)), sp.csr_matrix((3, 1)))
    frame, counts = sample_triplets(rel, "social", 4, seed=0)
    assert set(frame["user"]) == {1} and set(frame["negative"]) <= {1, 2} and counts["triplets/fallback_negatives"] == 4
    alone = incidence([0, 0, 0], [0, 1, 2], (1, 3))
    frame, counts = sample_triplets(
        Relations(alone, alone, none[:1, :1], sp.csr_matrix((1, 0)), sp.csr_matrix((1, 1)), sp.csr_matrix((3, 1))),
        "popularity",
        4,
        seed=0,
    )
    assert (
        frame.empty
        and list(frame.columns) == ["user", "positive", "negative", "source"]
        and sum(v for k, v in counts.items() if k.endswith("_negatives")) == 0
        and counts["triplets/pools_enumerated"] == 2  # the popularity pool, then the uniform one: both empty
    )
