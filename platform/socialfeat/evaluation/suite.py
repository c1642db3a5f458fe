"""Evaluation as a pure function over named feature sets: behaviour-grounded retrieval (Fang et al. 4.3)
and linear probes."""

import logging

import numpy as np
import pandas as pd
import scipy.sparse as sp

from socialfeat.evaluation.probes import linear_probe
from socialfeat.evaluation.retrieval import cosine_neighbours, jaccard_at_ranks

log = logging.getLogger(__name__)
RANKS = (1, 10, 100)
BASELINES = ("color_hist", "pixels")


class EvaluationError(ValueError):
    """The evaluation cannot be run on these inputs."""


def _viewers(interactions: pd.DataFrame) -> tuple[sp.csr_matrix, pd.Index, pd.Index]:
    items, users = (
        pd.Index(np.sort(interactions["item_id"].unique())),
        pd.Index(np.sort(interactions["user_id"].unique())),
    )
    matrix = sp.csr_matrix(
        (
            np.ones(len(interactions), np.float32),
            (items.get_indexer(interactions["item_id"]), users.get_indexer(interactions["user_id"])),
        ),
        shape=(len(items), len(users)),
    )
    return matrix, items, users


def _owner_viewed(owners: pd.Series, queries: np.ndarray, ranked: np.ndarray, item_users, items, users) -> float:
    """Mean number of a query's top-k neighbours that the query item's owner has viewed."""
    owner_index = users.get_indexer(owners.reindex(items[queries]).to_numpy())
    known = owner_index >= 0
    if not known.any():
        return float("nan")
    user_items = item_users.T.tocsr()
    counts = [np.isin(row, user_items[o].indices).sum() for o, row in zip(owner_index[known], ranked[known])]
    return float(np.mean(counts))


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
) -> tuple[dict, np.ndarray]:
    """te items query tr items by cosine; metrics and the Jaccard-by-rank curve."""
    index = items.get_indexer(ids)
    viewed = index >= 0  # items without viewers can be neither queries nor answers
    part = parts.reindex(ids).to_numpy()
    queries, database = np.flatnonzero(viewed & (part == "te")), np.flatnonzero(viewed & (part == "tr"))
    if not len(queries) or not len(database):
        raise EvaluationError(
            f"features '{name}': {len(queries)} te and {len(database)} tr items with viewers; "
            "retrieval needs both (split.test_fraction)"
        )
    neighbours = database[cosine_neighbours(vectors[queries], vectors[database], min(k, len(database)))]
    curve = jaccard_at_ranks(item_users, index[queries], index[neighbours])
    metrics = {f"retrieval/{name}/jaccard@{r}": float(curve[r - 1]) for r in RANKS if r <= len(curve)}
    if owners is not None:
        metrics[f"retrieval/{name}/owner_viewed@{k}"] = _owner_viewed(
            owners, index[queries], index[neighbours], item_users, items, users
        )
    return metrics, curve


def random_retrieval(parts: pd.Series, item_users, items, k: int, seed: int) -> tuple[dict, np.ndarray]:
    """What a ranking that knows nothing gets: random tr items for every te query."""
    rng = np.random.default_rng(seed)
    part = parts.reindex(items).to_numpy()
    queries, database = np.flatnonzero(part == "te"), np.flatnonzero(part == "tr")
    ranked = np.stack([rng.choice(database, min(k, len(database)), replace=False) for _ in queries])
    curve = jaccard_at_ranks(item_users, queries, ranked)
    return {f"retrieval/random/jaccard@{r}": float(curve[r - 1]) for r in RANKS if r <= len(curve)}, curve


def evaluate(
    sets: dict[str, tuple[np.ndarray, np.ndarray]],
    interactions: pd.DataFrame,
    parts: pd.Series,
    owners: pd.Series | None,
    labels: pd.Series | None,
    seed: int,
    k: int = 100,
    references: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> tuple[dict, dict]:
    """(metrics, Jaccard curves) of named feature sets {name: (item_ids, vectors)}: te items query tr items
    (retrieval, owner-viewed) and linear probes on `labels`; `references` (a method's own item vectors, such
    as cfl's latent factors, which exist for tr items alone) are scored tr querying tr, without self."""
    item_users, items, users = _viewers(interactions)
    owners = None if owners is None or owners.isna().all() else owners
    metrics, curves = random_retrieval(parts, item_users, items, k, seed)
    curves = {"random": curves}
    for name, (ids, vectors) in sets.items():
        found, curves[name] = retrieval(name, vectors, ids, parts, item_users, items, users, owners, k)
        metrics.update(found)
        if labels is not None:
            kind, value = linear_probe(vectors, labels.reindex(ids).tolist(), seed)
            metrics[f"probe/{name}/{kind}"] = value
    for name, (ids, vectors) in (references or {}).items():
        metrics |= reference_retrieval(name, ids, vectors, item_users, items, k)
    return metrics, {name: curve.tolist() for name, curve in curves.items()}


def reference_retrieval(name: str, ids: np.ndarray, vectors: np.ndarray, item_users, items, k: int) -> dict:
    """What the image features try to reach: a method's item vectors, tr items querying tr items (no self)."""
    neighbours = cosine_neighbours(vectors, vectors, min(k, len(ids) - 1), exclude_self=True)
    index = items.get_indexer(ids)
    curve = jaccard_at_ranks(item_users, index, index[neighbours])
    return {f"retrieval/{name}/jaccard@{r}": float(curve[r - 1]) for r in RANKS if r <= len(curve)}
