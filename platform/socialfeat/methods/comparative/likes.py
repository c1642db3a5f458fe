"""Likes, social circles and tag sets (Lei et al. 2016) as sparse matrices: which items a user liked, which their
friends and groups liked, which share a tag with their interests; the triplets' negatives and the candidate
sets each test user ranks follow from them."""

from dataclasses import dataclass
from functools import cached_property

import numba
import numpy as np
import pandas as pd
import scipy.sparse as sp

from socialfeat.errors import UserError
from socialfeat.factorization.sampling import log_popularity_weights

BLOCK = 1024  # users whose dense rows (users x items) are held at once, at most
ROW_CELLS = 1 << 26  # users x items cells of each of a block's dense rows: fewer users a block past 65,536 items


@numba.njit(cache=True)
def _mark_reach(marked, users, first: tuple, then: tuple):
    """marked[r, j] = True where user users[r] reaches item j in two steps of positive entries: to k in their
    row of `first`, then to j in row k of `then` (each a CSR matrix's (indptr, indices, data))."""
    first_indptr, first_indices, first_data = first
    then_indptr, then_indices, then_data = then
    for r in range(len(users)):
        for at in range(first_indptr[users[r]], first_indptr[users[r] + 1]):
            k = first_indices[at]
            if first_data[at] > 0:
                for j in range(then_indptr[k], then_indptr[k + 1]):
                    if then_data[j] > 0:
                        marked[r, then_indices[j]] = True


def _csr(matrix: sp.csr_matrix) -> tuple:
    return matrix.indptr, matrix.indices, matrix.data


class NoTestUsers(UserError):
    """No user has enough likes to conceal some and still learn from the rest."""


def likes_of(interactions: pd.DataFrame, like_min: float | None) -> pd.DataFrame:
    """(user_id, item_id) of every interaction whose value is at least `like_min` (None: every one), once."""
    liked = interactions if like_min is None else interactions[interactions["value"] >= like_min]
    return liked[["user_id", "item_id"]].drop_duplicates().sort_values(["user_id", "item_id"], ignore_index=True)


def conceal(likes: pd.DataFrame, concealed: int, min_train: int, test_fraction: float, seed: int):
    """(each like's part, "train" or "test", and the counts): a seeded `test_fraction` of the users with at least
    `concealed + min_train` likes are test users, and `concealed` of their likes, drawn at random, are test."""
    rng = np.random.default_rng([seed, 0])
    counts = likes.groupby("user_id").size()
    eligible = counts.index[counts >= concealed + min_train]
    if eligible.empty:
        raise NoTestUsers(
            f"no user has comparative.concealed + comparative.min_train_likes = {concealed + min_train} likes "
            f"(the most any has is {int(counts.max()) if len(counts) else 0}): lower them, or "
            "comparative.like_min"
        )
    chosen = rng.choice(eligible.to_numpy(), max(1, round(test_fraction * len(eligible))), replace=False)
    draw = pd.Series(rng.random(len(likes)), index=likes.index)
    is_test_user = likes["user_id"].isin(chosen)
    rank = draw[is_test_user].groupby(likes.loc[is_test_user, "user_id"]).rank(method="first")
    part = pd.Series("train", index=likes.index)
    part[rank.index[rank <= concealed]] = "test"
    return part.to_numpy(), {
        "likes/test_users": len(chosen),
        "likes/eligible_users": len(eligible),
        "likes/too_few_likes": int(len(counts) - len(eligible)),
    }


def incidence(rows, columns, shape: tuple[int, int]) -> sp.csr_matrix:
    """A 0/1 sparse matrix with ones at (rows, columns), duplicates counted once."""
    ones = np.ones(len(rows), np.float32)
    matrix = sp.csr_matrix((ones, (np.asarray(rows), np.asarray(columns))), shape=shape)
    matrix.data[:] = 1.0
    return matrix


def circles(social: pd.DataFrame | None, users: pd.Index) -> tuple[sp.csr_matrix, sp.csr_matrix, dict]:
    """(friends: users x users, 1 where a link names the two, either way; members: users x groups; the counts of
    links naming a user who liked nothing here, which are left out). Groups stay a users x groups matrix: a
    group's co-members (members @ members.T) would be dense for a large group."""
    n = len(users)
    if social is None or social.empty:
        empty = sp.csr_matrix((n, n), dtype=np.float32)
        return empty, sp.csr_matrix((n, 0), dtype=np.float32), {"social/links": 0, "social/unknown_users": 0}
    user = users.get_indexer(social["user_id"])
    friends = (social["kind"] == "friend").to_numpy()
    other = users.get_indexer(social["other_id"].where(friends))
    known_friend = friends & (user >= 0) & (other >= 0)
    links = incidence(user[known_friend], other[known_friend], (n, n))
    in_group = ~friends & (user >= 0)
    groups = pd.Index(social.loc[in_group, "other_id"].unique())
    members = incidence(user[in_group], groups.get_indexer(social.loc[in_group, "other_id"]), (n, len(groups)))
    unknown = int((user < 0).sum() + (friends & (user >= 0) & (other < 0)).sum())
    symmetric = ((links + links.T) > 0).astype(np.float32)
    return sp.csr_matrix(symmetric), members, {"social/links": len(social), "social/unknown_users": unknown}


@dataclass(frozen=True)
class Relations:
    """Users x items (and users x users, users x groups, users x tags) relations, sparse."""

    liked: sp.csr_matrix  # every like, concealed ones too: no negative or candidate is ever liked
    train_liked: sp.csr_matrix  # the likes a model and a user's interests may see
    friends: sp.csr_matrix  # users x users
    members: sp.csr_matrix  # users x groups
    interests: sp.csr_matrix  # users x tags: how often their train likes carry a tag, plus how often they wrote it
    item_tags: sp.csr_matrix  # items x tags, 0/1

    def rows(self, users: np.ndarray) -> dict[str, np.ndarray]:
        """Dense rows for `users`: liked, potentially liked (by a friend or a member of one of their groups; their
        own likes too, which `liked` excludes anyway), sharing one of their tags."""
        own, potential = np.zeros((2, len(users), self.liked.shape[1]), bool)
        _mark_reach(own, users, self._identity, _csr(self.liked))
        # marked straight from the CSR arrays: scipy's sparse products built (and sorted) a near-dense matrix
        _mark_reach(potential, users, _csr(self.friends), _csr(self.liked))
        _mark_reach(potential, users, _csr(self.members), _csr(self.group_likes))
        return {"liked": own, "potential": potential, "shares_tag": self._sharing_a_tag(users)}

    @cached_property
    def _identity(self) -> tuple:
        users = np.arange(self.liked.shape[0] + 1, dtype=np.int64)
        return users, users[:-1], np.ones(len(users) - 1, np.float32)

    def _sharing_a_tag(self, users: np.ndarray) -> np.ndarray:
        """users x items: True where the item carries one of the user's tags. Sparse times dense, not sparse
        times sparse: the product is near-dense (most users share a tag with most items) and scipy spent ~97% of
        a sparse product sorting its indices (3.8 s against 0.12 s for 1,024 users and 60k items). Rows
        contiguous: each user's row is read on its own."""
        users_tags = (self.interests[users] > 0).astype(np.float32).toarray()
        return np.ascontiguousarray(((self.item_tags @ users_tags.T) > 0).T)

    @cached_property
    def group_likes(self) -> sp.csr_matrix:
        """groups x items: how many members liked each item."""
        return sp.csr_matrix(self.members.T @ self.liked)

    def circle_sizes(self) -> np.ndarray:
        """Per user: friends, plus the other members of each of their groups (links: a friend met again in a group,
        or a member of two of the groups, counts twice)."""
        group_sizes = np.asarray(self.members.sum(axis=0)).ravel()
        in_groups = self.members @ np.maximum(group_sizes - 1, 0)
        return np.diff(self.friends.indptr) + np.asarray(in_groups).ravel().astype(np.int64)

    def has_circle(self) -> np.ndarray:
        return self.circle_sizes() > 0

    def has_tags(self) -> np.ndarray:
        return np.diff(self.interests.indptr) > 0


def _tiers(rows: dict, with_circle: bool, with_tags: bool, sharing: bool) -> list[np.ndarray]:
    unliked = ~rows["liked"]
    social = unliked & ~rows["potential"] if with_circle else unliked
    return [social & (rows["shares_tag"] == sharing) if with_tags else social, social, unliked]


def negative_pools(rows: dict, with_circle: bool, with_tags: bool) -> list[np.ndarray]:
    """One user's item masks, most trusted first: not liked by them or their circle and sharing none of their
    tags (the paper's negatives), then not liked by them or their circle, then not liked by them."""
    return _tiers(rows, with_circle, with_tags, sharing=False)


def candidate_tiers(rows: dict, with_circle: bool, with_tags: bool) -> list[np.ndarray]:
    """One test user's masks for the others in their candidate set, filled in this order: unliked by them and
    their circle and sharing one of their tags (hard candidates), then unliked by them and their circle, then
    unliked by them."""
    return _tiers(rows, with_circle, with_tags, sharing=True)


def user_rows(rel: Relations, users: np.ndarray):
    """(user, their dense rows from `rel.rows`) for each of `users`, computed a block of users at a time."""
    per_block = max(1, min(BLOCK, ROW_CELLS // max(1, rel.liked.shape[1])))
    for start in range(0, len(users), per_block):
        block = users[start : start + per_block]
        rows = rel.rows(block)
        for r, user in enumerate(block):
            yield user, {name: values[r] for name, values in rows.items()}


def fill(tiers: list[np.ndarray], wanted: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(up to `wanted` items, each item's tier): a random order of the first tier, then of the next tier's new
    items, and so on."""
    taken, tier_of, seen = [], [], np.zeros_like(tiers[0])
    for tier, mask in enumerate(tiers):
        fresh = np.flatnonzero(mask & ~seen)
        picked = rng.permutation(fresh)[: wanted - len(taken)]
        taken += picked.tolist()
        tier_of += [tier] * len(picked)
        seen |= mask
        if len(taken) == wanted:
            break
    return np.array(taken, np.int64), np.array(tier_of, np.int64)


def test_candidates(rel: Relations, test_users: np.ndarray, concealed: int, others: int, seed: int):
    """candidates (user, item, concealed, tier) of every test user: their `concealed` test likes and `others`
    other items (candidate_tiers, tier 0 the hardest); users whose catalogue cannot give `others` are left out
    and counted."""
    rng = np.random.default_rng([seed, 1])
    with_circle, with_tags = rel.has_circle(), rel.has_tags()
    test_likes = rel.liked - rel.train_liked
    frames, short = [], 0
    for user, rows in user_rows(rel, test_users):
        items, tiers_of = fill(candidate_tiers(rows, with_circle[user], with_tags[user]), others, rng)
        if len(items) < others:
            short += 1
            continue
        positives = test_likes[user].indices[:concealed]
        frames.append(
            pd.DataFrame(
                {
                    "user": user,
                    "item": np.concatenate([positives, items]),
                    "concealed": np.arange(len(positives) + len(items)) < len(positives),
                    "tier": np.concatenate([np.full(len(positives), -1), tiers_of]),
                }
            )
        )
    columns = {"user": [], "item": [], "concealed": [], "tier": []}
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns), short


def popularity_weights(rel: Relations) -> np.ndarray:
    """log(1 + train likes) per item: the factorisation stage's sampler (0 for an item nobody liked)."""
    return log_popularity_weights(np.asarray(rel.train_liked.sum(axis=0)).ravel())


def _draw(mask: np.ndarray, weights: np.ndarray | None, count: int, rng) -> np.ndarray:
    allowed = np.flatnonzero(mask if weights is None else mask & (weights > 0))
    if len(allowed) == 0:
        return allowed
    p = None if weights is None else weights[allowed] / weights[allowed].sum()
    return rng.choice(allowed, count, p=p)


def _user_negatives(rows: dict, rule: str, context: tuple, count: int, rng) -> tuple[np.ndarray, str]:
    """(`count` negatives of one user, the source they came from)."""
    with_circle, with_tags, weights = context
    pools = negative_pools(rows, with_circle, with_tags)
    if rule == "uniform":
        return _draw(pools[-1], None, count, rng), "uniform"
    if rule == "social" and with_circle:
        drawn = _draw(pools[0], None, count, rng)
        if len(drawn):
            return drawn, "social"
    # the popularity sampler; a social fallback still keeps off what the user's circle liked where it can
    for pool in pools[1:] if rule == "social" else pools[-1:]:
        drawn = _draw(pool, weights, count, rng)
        if len(drawn):
            return drawn, "fallback" if rule == "social" else "popularity"
    return _draw(pools[-1], None, count, rng), "uniform"


def sample_triplets(rel: Relations, rule: str, per_user: int, seed: int) -> tuple[pd.DataFrame, dict]:
    """(user, positive, negative, source) rows: per user with train likes, `per_user` triplets, positives drawn from
    their train likes, negatives by `rule` (social | popularity | uniform); counts of each negative source."""
    rng = np.random.default_rng([seed, 2])
    with_circle, with_tags, weights = rel.has_circle(), rel.has_tags(), popularity_weights(rel)
    users = np.flatnonzero(np.diff(rel.train_liked.indptr) > 0)
    sources = {"social": 0, "fallback": 0, "popularity": 0, "uniform": 0}
    columns = {"user": [], "positive": [], "negative": [], "source": []}  # arrays a user, one frame at the end
    train = rel.train_liked
    for user, rows in user_rows(rel, users):
        negatives, source = _user_negatives(rows, rule, (with_circle[user], with_tags[user], weights), per_user, rng)
        if len(negatives) == 0:
            continue
        sources[source] += len(negatives)
        columns["positive"].append(
            rng.choice(train.indices[train.indptr[user] : train.indptr[user + 1]], len(negatives))
        )
        columns["negative"].append(negatives)
        columns["user"].append(np.full(len(negatives), user))
        columns["source"].append(np.full(len(negatives), source, dtype=object))
    frame = pd.DataFrame({name: np.concatenate(parts) if parts else [] for name, parts in columns.items()})
    return frame, {f"triplets/{source}_negatives": count for source, count in sources.items()}
