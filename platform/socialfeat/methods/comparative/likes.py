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

# Rounds of random draws before a user's tier is enumerated: a tier that 8 rounds miss is a small share of the
# catalogue, and one pass over the catalogue in numba costs less than drawing on for it
TRY_ROUNDS = 8
TRY_DRAWS = 64  # draws a round, at least (4 per item wanted past 16)


@numba.njit(cache=True)
def _stamp_row(marks, stamp, row, matrix):
    """marks[j] = stamp for every positive entry j of `row` of a CSR matrix (indptr, indices, data)."""
    indptr, indices, data = matrix
    for at in range(indptr[row], indptr[row + 1]):
        if data[at] > 0:
            marks[indices[at]] = stamp


@numba.njit(cache=True)
def _stamp_reach(marks, stamp, row, first, then):
    """marks[j] = stamp for every j reached from `row` in two steps of positive entries: to k in `row` of
    `first`, then to j in row k of `then`."""
    indptr, indices, data = first
    for at in range(indptr[row], indptr[row + 1]):
        if data[at] > 0:
            _stamp_row(marks, stamp, indices[at], then)


@numba.njit(cache=True)
def _in_tier(items, stamp, marks: tuple, item_tags: tuple, keep_off_circle: bool, sharing: int):
    """Which of `items` are in the stamped user's tier: not liked by them; with `keep_off_circle`, not liked by
    their circle; `sharing` 1: carrying one of their tags, 0: none of them, -1: either."""
    liked, circle, tags = marks
    indptr, indices = item_tags
    keep = np.empty(len(items), np.bool_)
    for n in range(len(items)):
        item = items[n]
        ok = liked[item] != stamp and not (keep_off_circle and circle[item] == stamp)
        if ok and sharing >= 0:
            shares = False
            for at in range(indptr[item], indptr[item + 1]):
                if tags[indices[at]] == stamp:
                    shares = True
                    break
            ok = shares == (sharing == 1)
        keep[n] = ok
    return keep


@numba.njit(cache=True)
def _column_entries(indptr, indices, columns):
    """The row numbers in `columns` of a CSC matrix (indptr, indices), one after another."""
    total = 0
    for column in columns:
        total += indptr[column + 1] - indptr[column]
    rows, at = np.empty(total, np.int64), 0
    for column in columns:
        for entry in range(indptr[column], indptr[column + 1]):
            rows[at] = indices[entry]
            at += 1
    return rows


def _csr(matrix: sp.csr_matrix) -> tuple:
    return matrix.indptr, matrix.indices, matrix.data


class NoTestUsers(UserError):
    """No user has enough likes to conceal some and still learn from the rest."""


def sorted_categorical(column: pd.Series) -> pd.Categorical:
    """The ids as a categorical whose categories are sorted, so that codes order as the ids do."""
    values = column.astype("category")
    if not values.cat.categories.is_monotonic_increasing:
        values = values.cat.reorder_categories(values.cat.categories.sort_values())
    return values.array


def likes_of(interactions: pd.DataFrame, like_min: float | None) -> pd.DataFrame:
    """(user_id, item_id) of every interaction whose value is at least `like_min` (None: every one), once, sorted
    by user then item: categoricals with sorted categories, the log's own ones (a like holds two codes, and users
    or items without a like keep their category)."""
    keep = slice(None) if like_min is None else (interactions["value"] >= like_min).to_numpy()
    users, items = (sorted_categorical(interactions[column]) for column in ("user_id", "item_id"))
    width = max(1, len(items.categories))
    pairs = np.sort(users.codes[keep].astype(np.int64) * width + items.codes[keep])
    pairs = pairs[_run_starts(pairs)]  # sorted, then each run's first: np.unique hashes, 10x slower here
    return pd.DataFrame(
        {
            "user_id": pd.Categorical.from_codes((pairs // width).astype(np.int32), dtype=users.dtype),
            "item_id": pd.Categorical.from_codes((pairs % width).astype(np.int32), dtype=items.dtype),
        }
    )


def conceal(users: np.ndarray, concealed: int, min_train: int, test_fraction: float, seed: int):
    """(which likes are test likes, and the counts), the likes given by their users' numbers 0..n-1 in the users'
    order: a seeded `test_fraction` of the users with at least `concealed + min_train` likes are test users, and
    `concealed` of their likes, drawn at random, are test."""
    rng = np.random.default_rng([seed, 0])
    counts = np.bincount(users)
    eligible = np.flatnonzero(counts >= concealed + min_train)
    if len(eligible) == 0:
        raise NoTestUsers(
            f"no user has comparative.concealed + comparative.min_train_likes = {concealed + min_train} likes "
            f"(the most any has is {int(counts.max()) if len(counts) else 0}): lower them, or "
            "comparative.like_min"
        )
    chosen = rng.choice(eligible, max(1, round(test_fraction * len(eligible))), replace=False)
    draw = rng.random(len(users))
    of_test_users = np.flatnonzero(np.isin(users, chosen))
    order = of_test_users[np.lexsort((draw[of_test_users], users[of_test_users]))]  # stable: ties keep log order
    is_test = np.zeros(len(users), bool)
    is_test[order[_rank_in_run(users[order]) < concealed]] = True
    return is_test, {
        "likes/test_users": len(chosen),
        "likes/eligible_users": len(eligible),
        "likes/too_few_likes": int((counts > 0).sum() - len(eligible)),
    }


def _run_starts(keys: np.ndarray) -> np.ndarray:
    """True where a run of equal sorted `keys` starts."""
    return np.r_[True, keys[1:] != keys[:-1]] if len(keys) else np.zeros(0, bool)


def _rank_in_run(keys: np.ndarray) -> np.ndarray:
    """Each position's rank (0, 1, ...) within its run of equal sorted `keys`."""
    starts = np.flatnonzero(_run_starts(keys))
    return np.arange(len(keys)) - np.repeat(starts, np.diff(np.r_[starts, len(keys)]))


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


Tier = tuple[bool, int]  # (keep off the circle's likes, sharing: 1 one of the user's tags, 0 none of them, -1 either)


def _tiers(with_circle: bool, with_tags: bool, sharing: int) -> list[Tier]:
    return [(with_circle, sharing if with_tags else -1), (with_circle, -1), (False, -1)]


def negative_pools(with_circle: bool, with_tags: bool) -> list[Tier]:
    """One user's pools, most trusted first: not liked by them or their circle and sharing none of their tags
    (the paper's negatives), then not liked by them or their circle, then not liked by them."""
    return _tiers(with_circle, with_tags, sharing=0)


def candidate_tiers(with_circle: bool, with_tags: bool) -> list[Tier]:
    """One test user's tiers for the others in their candidate set, filled in this order: unliked by them and
    their circle and sharing one of their tags (hard candidates), then unliked by them and their circle, then
    unliked by them."""
    return _tiers(with_circle, with_tags, sharing=1)


class Catalogue:
    """The catalogue as one user at a time sees it. `visit` stamps the user's likes, their circle's likes and
    their tags into item- and tag-long arrays (the user's number + 1, so nothing is cleared between users), and
    draws are proposed at random and kept when they fall in the asked tier: a user costs their likes, circle,
    tags and draws, not the catalogue. A tier too small for the rounds of draws to fill is enumerated."""

    def __init__(self, rel: Relations, weights: np.ndarray | None = None):
        n_items, n_tags = rel.liked.shape[1], rel.item_tags.shape[1]
        self.n_items, self.stamp = n_items, 0
        self.every_item = np.arange(n_items)  # what an enumeration of the whole catalogue reads
        self.enumerated = 0  # tiers random draws could not fill, so enumerated (O(items) unless from tags)
        self.marks = (np.zeros(n_items, np.int32), np.zeros(n_items, np.int32), np.zeros(n_tags, np.int32))
        self.item_tags = (rel.item_tags.indptr, rel.item_tags.indices)
        tag_items = rel.item_tags.tocsc()
        self.tag_items = (tag_items.indptr, tag_items.indices)
        self.csr = {
            name: _csr(getattr(rel, name)) for name in ("liked", "friends", "members", "group_likes", "interests")
        }
        self.weights = weights  # the weighted draws' sampler
        self.cumulative = None if weights is None else np.cumsum(weights)

    def visit(self, user: int) -> None:
        (liked, circle, tags), csr = self.marks, self.csr
        self.stamp = int(user) + 1
        _stamp_row(liked, self.stamp, user, csr["liked"])
        _stamp_reach(circle, self.stamp, user, csr["friends"], csr["liked"])
        _stamp_reach(circle, self.stamp, user, csr["members"], csr["group_likes"])
        _stamp_row(tags, self.stamp, user, csr["interests"])

    def in_tier(self, items: np.ndarray, tier: Tier) -> np.ndarray:
        return _in_tier(items, self.stamp, self.marks, self.item_tags, *tier)

    def tier_items(self, tier: Tier) -> np.ndarray:
        """Every item of the visited user's tier, ascending: from the items of the user's tags when the tier asks
        for one of them and those are fewer than the catalogue (a user with a few rare tags has a small tier
        that random draws miss), else the catalogue enumerated."""
        self.enumerated += 1
        items = self.every_item
        if tier[1] == 1:
            indptr, indices = self.tag_items
            theirs = np.flatnonzero(self.marks[2] == self.stamp)
            if (indptr[theirs + 1] - indptr[theirs]).sum() < self.n_items:
                items = np.unique(_column_entries(indptr, indices, theirs))
        return items[self.in_tier(items, tier)]

    def draw(self, tier: Tier, count: int, rng, weighted: bool = False) -> np.ndarray:
        """`count` items of the tier, with replacement, uniformly or by the weights (items of weight 0 never);
        none when the tier has none."""
        kept = []
        for _ in range(TRY_ROUNDS):
            proposed = self._propose(max(TRY_DRAWS, 4 * count), rng, weighted)
            kept += proposed[self.in_tier(proposed, tier)].tolist()
            if len(kept) >= count:
                return np.array(kept[:count], np.int64)
        allowed = self.tier_items(tier)
        if weighted:
            allowed = allowed[self.weights[allowed] > 0]
        if len(allowed) == 0:
            return allowed
        p = self.weights[allowed] / self.weights[allowed].sum() if weighted else None
        return np.concatenate([np.array(kept, np.int64), rng.choice(allowed, count - len(kept), p=p)])

    def distinct(self, tier: Tier, count: int, rng, taken: np.ndarray) -> np.ndarray:
        """Up to `count` items of the tier not in `taken`, in a random order, without replacement: all of them
        when it has fewer."""
        seen, picked = set(taken.tolist()), []
        for _ in range(TRY_ROUNDS):
            proposed = rng.integers(0, self.n_items, max(TRY_DRAWS, 4 * count))
            for item in proposed[self.in_tier(proposed, tier)].tolist():
                if item not in seen:
                    seen.add(item)
                    picked.append(item)
                    if len(picked) == count:
                        return np.array(picked, np.int64)
        rest = self.tier_items(tier)
        rest = rest[~np.isin(rest, np.fromiter(seen, np.int64, len(seen)))]
        return np.concatenate([np.array(picked, np.int64), rng.permutation(rest)[: count - len(picked)]])

    def _propose(self, size: int, rng, weighted: bool) -> np.ndarray:
        if not weighted:
            return rng.integers(0, self.n_items, size)
        if self.cumulative[-1] <= 0:
            return np.zeros(0, np.int64)
        drawn = np.searchsorted(self.cumulative, rng.random(size) * self.cumulative[-1], side="right")
        drawn = np.minimum(drawn, self.n_items - 1)
        return drawn[self.weights[drawn] > 0]


def fill(catalogue: Catalogue, tiers: list[Tier], wanted: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """(up to `wanted` items of the visited user, each item's tier): a random order of the first tier, then of the
    next tier's new items, and so on."""
    taken, tier_of = np.zeros(0, np.int64), []
    for number, tier in enumerate(tiers):
        picked = catalogue.distinct(tier, wanted - len(taken), rng, taken)
        taken = np.concatenate([taken, picked])
        tier_of += [number] * len(picked)
        if len(taken) == wanted:
            break
    return taken, np.array(tier_of, np.int64)


def test_candidates(rel: Relations, test_users: np.ndarray, concealed: int, others: int, seed: int):
    """(candidates: (user, item, concealed, tier) of every test user, their `concealed` test likes and `others`
    other items (candidate_tiers, tier 0 the hardest), (counts: the users left out because the catalogue cannot
    give them `others`, the tiers enumerated))."""
    rng = np.random.default_rng([seed, 1])
    with_circle, with_tags = rel.has_circle(), rel.has_tags()
    test_likes = sp.csr_matrix(rel.liked - rel.train_liked)
    catalogue, short = Catalogue(rel), 0
    columns = {"user": [], "item": [], "concealed": [], "tier": []}  # arrays a user, one frame at the end
    for user in test_users:
        catalogue.visit(user)
        items, tiers_of = fill(catalogue, candidate_tiers(with_circle[user], with_tags[user]), others, rng)
        if len(items) < others:
            short += 1
            continue
        positives = test_likes.indices[test_likes.indptr[user] : test_likes.indptr[user + 1]][:concealed]
        columns["user"].append(np.full(len(positives) + len(items), user, np.int64))
        columns["item"].append(np.concatenate([positives, items]).astype(np.int64))
        columns["concealed"].append(np.arange(len(positives) + len(items)) < len(positives))
        columns["tier"].append(np.concatenate([np.full(len(positives), -1), tiers_of]))
    frame = {name: np.concatenate(parts) for name, parts in columns.items()} if columns["user"] else columns
    return pd.DataFrame(frame), (short, catalogue.enumerated)


def popularity_weights(rel: Relations) -> np.ndarray:
    """log(1 + train likes) per item: the factorisation stage's sampler (0 for an item nobody liked)."""
    return log_popularity_weights(np.asarray(rel.train_liked.sum(axis=0)).ravel())


def _user_negatives(catalogue: Catalogue, rule: str, context: tuple, count: int, rng) -> tuple[np.ndarray, str]:
    """(`count` negatives of the visited user, the source they came from)."""
    with_circle, with_tags = context
    pools = negative_pools(with_circle, with_tags)
    if rule == "uniform":
        return catalogue.draw(pools[-1], count, rng), "uniform"
    if rule == "social" and with_circle:
        drawn = catalogue.draw(pools[0], count, rng)
        if len(drawn):
            return drawn, "social"
    # the popularity sampler; a social fallback still keeps off what the user's circle liked where it can
    for pool in pools[1:] if rule == "social" else pools[-1:]:
        drawn = catalogue.draw(pool, count, rng, weighted=True)
        if len(drawn):
            return drawn, "fallback" if rule == "social" else "popularity"
    return catalogue.draw(pools[-1], count, rng), "uniform"


def sample_triplets(rel: Relations, rule: str, per_user: int, seed: int) -> tuple[pd.DataFrame, dict]:
    """(user, positive, negative, source) rows: per user with train likes, `per_user` triplets, positives drawn from
    their train likes, negatives by `rule` (social | popularity | uniform); counts of each negative source."""
    rng = np.random.default_rng([seed, 2])
    with_circle, with_tags = rel.has_circle(), rel.has_tags()
    catalogue = Catalogue(rel, popularity_weights(rel))
    users = np.flatnonzero(np.diff(rel.train_liked.indptr) > 0)
    sources = {"social": 0, "fallback": 0, "popularity": 0, "uniform": 0}
    columns = {"user": [], "positive": [], "negative": [], "source": []}  # arrays a user, one frame at the end
    train = rel.train_liked
    for user in users:
        catalogue.visit(user)
        negatives, source = _user_negatives(catalogue, rule, (with_circle[user], with_tags[user]), per_user, rng)
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
    counts = {f"triplets/{source}_negatives": count for source, count in sources.items()}
    return frame, counts | {"triplets/pools_enumerated": catalogue.enumerated}
