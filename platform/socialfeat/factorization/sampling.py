"""Popularity-proportional negative sampling (Fang et al. 2015, Algorithm 1), vectorised and seeded.

For each user j, n_j = round(ratio x positives_j) negatives are drawn without replacement from
the items j has not interacted with, with probability proportional to w_i = log(1 + p_i), where
p_i is item i's number of positive interactions: the log damps the head so popular items are
likely negatives (a user who skipped a popular item probably saw and ignored it) without taking
over. Drawing with replacement from w and keeping each user's first occurrences is exactly
successive sampling without replacement; drawn positives are rejected, so none is ever sampled.
"""

import numba
import numpy as np

USERS_PER_BLOCK = 65536  # the unit of sharding: each block has its own random stream
MAX_ROUNDS = 12


def log_popularity_weights(item_counts: np.ndarray) -> np.ndarray:
    return np.log1p(item_counts.astype(np.float64))


def negatives_wanted(positive_counts: np.ndarray, n_items: int, ratio: float) -> np.ndarray:
    """n_j per user, capped at the items left to choose from (0 for a user who saw every item)."""
    return np.minimum(np.rint(ratio * positive_counts).astype(np.int64), n_items - positive_counts)


def _first_per_user(users: np.ndarray, items: np.ndarray, quota: np.ndarray) -> np.ndarray:
    """Indices of each user's first `quota[user]` candidates, keeping draw order."""
    order = np.argsort(users, kind="stable")
    sorted_users = users[order]
    group_start = np.searchsorted(sorted_users, sorted_users)
    rank = np.arange(len(order)) - group_start
    return np.sort(order[rank < quota[sorted_users]])


def _exact(
    user: int, n_items: int, weights: np.ndarray, taken: np.ndarray, want: int, rng: np.random.Generator
) -> np.ndarray:
    """Efraimidis-Spirakis keys over the allowed items: for the rare users rejection cannot finish."""
    allowed = np.ones(n_items, bool)
    allowed[taken] = False
    candidates = np.flatnonzero(allowed & (weights > 0))
    keys = rng.exponential(size=len(candidates)) / weights[candidates]
    return candidates[np.argsort(keys)[:want]]


def sample_block(
    users: np.ndarray, items: np.ndarray, n_items: int, weights: np.ndarray, ratio: float, seed: int, block: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Negatives (users, items) for the positives (users, items) of one block of users."""
    rng = np.random.default_rng([seed, block])
    if len(users) == 0:
        return users[:0], items[:0]
    n_users = int(users.max()) + 1
    positive_counts = np.bincount(users, minlength=n_users)
    remaining = negatives_wanted(positive_counts, int((weights > 0).sum()), ratio)
    remaining[positive_counts == 0] = 0
    taken = np.unique(users.astype(np.int64) * n_items + items)  # sorted keys never to draw again
    cdf = np.cumsum(weights) / weights.sum()
    chosen_users, chosen_items = [], []
    for _ in range(MAX_ROUNDS):
        active = np.flatnonzero(remaining > 0)
        if not len(active):
            break
        draws = np.ceil(remaining[active] * 1.3 + 4).astype(np.int64)
        cand_users = np.repeat(active, draws)
        cand_items = np.minimum(np.searchsorted(cdf, rng.random(len(cand_users)), side="right"), n_items - 1)
        keys = cand_users.astype(np.int64) * n_items + cand_items
        fresh = ~np.isin(keys, taken)
        _, first = np.unique(keys, return_index=True)
        keep = np.zeros(len(keys), bool)
        keep[first] = True
        picked = np.flatnonzero(keep & fresh)
        picked = picked[_first_per_user(cand_users[picked], cand_items[picked], remaining)]
        chosen_users.append(cand_users[picked])
        chosen_items.append(cand_items[picked])
        remaining -= np.bincount(cand_users[picked], minlength=n_users)
        taken = np.union1d(taken, keys[picked])
    for user in np.flatnonzero(remaining > 0):
        user_taken = taken[(taken >= user * n_items) & (taken < (user + 1) * n_items)] - user * n_items
        extra = _exact(int(user), n_items, weights, user_taken, int(remaining[user]), rng)
        chosen_users.append(np.full(len(extra), user))
        chosen_items.append(extra)
    return (np.concatenate(chosen_users).astype(np.int32), np.concatenate(chosen_items).astype(np.int32))


def negative_blocks(
    users: np.ndarray,
    items: np.ndarray,
    n_items: int,
    weights: np.ndarray,
    ratio: float,
    seed: int,
    users_per_block: int = USERS_PER_BLOCK,
):
    """Negatives (users, items) a block of users at a time, in block order (what the sharded Ray version yields)."""
    for block, rows in blocks_of(users, users_per_block):
        yield sample_block(users[rows], items[rows], n_items, weights, ratio, seed, block)


def joined(blocks) -> tuple[np.ndarray, np.ndarray]:
    """The blocks' negatives as one (users, items) pair: the negatives of every user."""
    parts = list(blocks)
    if not parts:
        return np.zeros(0, np.int32), np.zeros(0, np.int32)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


@numba.njit(cache=True)
def _block_sizes(users, users_per_block, sizes):
    for user in users:
        sizes[user // users_per_block] += 1


@numba.njit(cache=True)
def _fill_block_rows(users, users_per_block, next_slot, rows):
    for row in range(len(users)):
        block = users[row] // users_per_block
        rows[next_slot[block]] = row
        next_slot[block] += 1


def blocks_of(users: np.ndarray, users_per_block: int = USERS_PER_BLOCK):
    """(block index, the rows of its positives in row order) for each block of users (users // users_per_block)
    that has positives, in block order. The rows come from one counting sort, an int32 a positive (a stable
    argsort took an int64 and its sort's buffers; a mask a block took a pass over the log each)."""
    sizes = np.zeros(int(users.max()) // users_per_block + 1 if len(users) else 0, np.int64)
    _block_sizes(users, users_per_block, sizes)
    ends = np.cumsum(sizes)
    rows = np.empty(len(users), np.int32 if len(users) < 2**31 else np.int64)
    _fill_block_rows(users, users_per_block, ends - sizes, rows)
    for block in np.flatnonzero(sizes).tolist():
        yield block, rows[ends[block] - sizes[block] : ends[block]]
