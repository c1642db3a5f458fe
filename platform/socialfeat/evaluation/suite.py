"""Evaluation as a pure function over named feature sets: behaviour-grounded retrieval (Fang et al. 4.3)
and linear probes."""

import logging

import numpy as np
import pandas as pd
import scipy.sparse as sp

from socialfeat.data.splits import sorted_codes
from socialfeat.errors import UserError
from socialfeat.evaluation.probes import linear_probe
from socialfeat.stats.retrieval import jaccard_by_query, neighbour_search, viewed_among
from socialfeat.stats.significance import Samples, means

log = logging.getLogger(__name__)
RANKS = (1, 10, 100)
BASELINES = ("color_hist", "pixels")


class EvaluationError(UserError):
    """The evaluation cannot be run on these inputs."""


Viewers = tuple[sp.csr_matrix, pd.Index, pd.Index]  # (items x users, True where a user viewed an item; their ids)


def viewers_of(interactions: pd.DataFrame) -> Viewers:
    """(items x users views, the item ids, the user ids), ids sorted. Read the log's ids as dictionaries
    (pandas categoricals): only their distinct strings are sorted, never a string a view. One byte a view
    beside the indices: the matrix holds who viewed what, not how often."""
    item_codes, items = sorted_codes(interactions["item_id"])
    user_codes, users = sorted_codes(interactions["user_id"])
    matrix = sp.csr_matrix((np.ones(len(interactions), bool), (item_codes, user_codes)), shape=(len(items), len(users)))
    return matrix, items, users


def _owner_viewed(owners: pd.Series, queries: np.ndarray, ranked: np.ndarray, item_users, items, users):
    """(query items whose owner is known, how many of each one's top-k neighbours the owner has viewed)."""
    owner_index = users.get_indexer(owners.reindex(items[queries]).to_numpy())
    known = owner_index >= 0
    return items[queries[known]], viewed_among(item_users, ranked[known], owner_index[known])


def _rank_samples(prefix: str, query_ids, by_query: np.ndarray) -> Samples:
    """{prefix/jaccard@r: (query ids, each query's Jaccard at rank r)} for the reported ranks."""
    return {f"{prefix}/jaccard@{r}": (query_ids, by_query[:, r - 1]) for r in RANKS if r <= by_query.shape[1]}


def retrieval(
    name: str,
    vectors: np.ndarray,
    ids: np.ndarray,
    parts: pd.Series,
    item_users,
    items,
    users,
    owners: pd.Series | None,
    k: int = 100,
) -> tuple[Samples, np.ndarray]:
    """te items query tr items by cosine: per-query values of each metric, and the Jaccard-by-rank curve."""
    index = items.get_indexer(ids)
    viewed = index >= 0  # items without viewers can be neither queries nor answers
    part = parts.reindex(ids).to_numpy()
    queries, database = np.flatnonzero(viewed & (part == "te")), np.flatnonzero(viewed & (part == "tr"))
    if not len(queries) or not len(database):
        raise EvaluationError(
            f"features '{name}': {len(queries)} te and {len(database)} tr items with viewers; "
            "retrieval needs both (split.test_fraction)"
        )
    found = neighbour_search(vectors[queries], vectors[database], min(k, len(database)))
    neighbours = database[found.indices]
    by_query = jaccard_by_query(item_users, index[queries], index[neighbours])
    prefix = f"retrieval/{name}"
    samples = _rank_samples(prefix, ids[queries], by_query) | found.recall_samples(prefix, ids[queries])
    if owners is not None:
        samples[f"{prefix}/owner_viewed@{k}"] = _owner_viewed(
            owners, index[queries], index[neighbours], item_users, items, users
        )
    return samples, by_query.mean(axis=0)


def random_retrieval(parts: pd.Series, item_users, items, k: int, seed: int) -> tuple[Samples, np.ndarray]:
    """What a ranking that knows nothing gets: random tr items for every te query."""
    rng = np.random.default_rng(seed)
    part = parts.reindex(items).to_numpy()
    queries, database = np.flatnonzero(part == "te"), np.flatnonzero(part == "tr")
    ranked = np.stack([rng.choice(database, min(k, len(database)), replace=False) for _ in queries])
    by_query = jaccard_by_query(item_users, queries, ranked)
    return _rank_samples("retrieval/random", items[queries], by_query), by_query.mean(axis=0)


def evaluate(
    sets: dict[str, tuple[np.ndarray, np.ndarray]],
    viewers: Viewers,
    parts: pd.Series,
    owners: pd.Series | None,
    labels: pd.Series | None,
    seed: int,
    k: int = 100,
    references: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> tuple[dict, dict, Samples]:
    """(metrics, Jaccard curves, per-query values) of named feature sets {name: (item_ids, vectors)}: te items
    query tr items (retrieval, owner-viewed) and linear probes on `labels`; `references` (a method's own item
    vectors, such as cfl's latent factors, which exist for tr items alone) are scored tr querying tr, without
    self. Every metric but a multi-label probe's mAP is the mean of its per-query values."""
    item_users, items, users = viewers
    owners = None if owners is None or owners.isna().all() else owners
    samples, curves = random_retrieval(parts, item_users, items, k, seed)
    curves, metrics = {"random": curves}, {}
    for name, (ids, vectors) in sets.items():
        found, curves[name] = retrieval(name, vectors, ids, parts, item_users, items, users, owners, k)
        samples |= found
        if labels is not None:
            probe = linear_probe(vectors, labels.reindex(ids).tolist(), seed)
            if probe.correct is not None:
                samples[f"probe/{name}/{probe.kind}"] = (ids[probe.items], probe.correct)
            else:  # macro mAP is no mean over items: its interval comes from the probe's own resampling
                metrics[f"probe/{name}/{probe.kind}"] = probe.value
                metrics[f"probe/{name}/{probe.kind}/ci_low"], metrics[f"probe/{name}/{probe.kind}/ci_high"] = (
                    probe.interval
                )
    for name, (ids, vectors) in (references or {}).items():
        samples |= reference_retrieval(name, ids, vectors, item_users, items, k)
    return means(samples) | metrics, {name: curve.tolist() for name, curve in curves.items()}, samples


def reference_retrieval(name: str, ids: np.ndarray, vectors: np.ndarray, item_users, items, k: int) -> Samples:
    """What the image features try to reach: a method's item vectors, tr items querying tr items (no self)."""
    found = neighbour_search(vectors, vectors, min(k, len(ids) - 1), exclude_self=True)
    index = items.get_indexer(ids)
    by_query = jaccard_by_query(item_users, index, index[found.indices])
    return _rank_samples(f"retrieval/{name}", ids, by_query) | found.recall_samples(f"retrieval/{name}", ids)
