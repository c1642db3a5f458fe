"""The evaluation stage: behaviour-grounded retrieval (Fang et al. 4.3) and linear probes, for the
learned CNN against a random CNN, colour histograms, raw pixels and the latent factors."""
import logging
import os

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import scipy.sparse as sp

from socialfeat.data.images import item_image_bytes
from socialfeat.data.reader import Dataset
from socialfeat.evaluation.baselines import baseline_features
from socialfeat.evaluation.external import aligned_features
from socialfeat.evaluation.probes import linear_probe
from socialfeat.evaluation.retrieval import cosine_neighbours, jaccard_at_ranks
from socialfeat.features.extract import read_features, write_features

log = logging.getLogger(__name__)
RANKS = (1, 10, 100)
BASELINES = ("color_hist", "pixels")


class EvaluationError(ValueError):
    """The evaluation cannot be run on these inputs."""


def _viewers(interactions: pd.DataFrame) -> tuple[sp.csr_matrix, pd.Index, pd.Index]:
    items, users = pd.Index(np.sort(interactions["item_id"].unique())), pd.Index(np.sort(interactions["user_id"].unique()))
    matrix = sp.csr_matrix((np.ones(len(interactions), np.float32),
                            (items.get_indexer(interactions["item_id"]), users.get_indexer(interactions["user_id"]))),
                           shape=(len(items), len(users)))
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


def retrieval(name: str, vectors: np.ndarray, ids: np.ndarray, parts: pd.Series, item_users, items, users,
              owners: pd.Series | None, k: int = 100) -> tuple[dict, np.ndarray]:
    """te items query tr items by cosine; metrics and the Jaccard-by-rank curve."""
    index = items.get_indexer(ids)
    viewed = index >= 0  # items without viewers can be neither queries nor answers
    part = parts.reindex(ids).to_numpy()
    queries, database = np.flatnonzero(viewed & (part == "te")), np.flatnonzero(viewed & (part == "tr"))
    if not len(queries) or not len(database):
        raise EvaluationError(f"features '{name}': {len(queries)} te and {len(database)} tr items with viewers; "
                              "retrieval needs both (split.test_fraction)")
    neighbours = database[cosine_neighbours(vectors[queries], vectors[database], min(k, len(database)))]
    curve = jaccard_at_ranks(item_users, index[queries], index[neighbours])
    metrics = {f"retrieval/{name}/jaccard@{r}": float(curve[r - 1]) for r in RANKS if r <= len(curve)}
    if owners is not None:
        metrics[f"retrieval/{name}/owner_viewed@{k}"] = _owner_viewed(owners, index[queries], index[neighbours],
                                                                      item_users, items, users)
    return metrics, curve


def random_retrieval(parts: pd.Series, item_users, items, k: int, seed: int) -> tuple[dict, np.ndarray]:
    """What a ranking that knows nothing gets: random tr items for every te query."""
    rng = np.random.default_rng(seed)
    part = parts.reindex(items).to_numpy()
    queries, database = np.flatnonzero(part == "te"), np.flatnonzero(part == "tr")
    ranked = np.stack([rng.choice(database, min(k, len(database)), replace=False) for _ in queries])
    curve = jaccard_at_ranks(item_users, queries, ranked)
    return {f"retrieval/random/jaccard@{r}": float(curve[r - 1]) for r in RANKS if r <= len(curve)}, curve


def _feature_sets(dataset: Dataset, features_dir: str, external: dict[str, str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    sets = {"cnn": read_features(os.path.join(features_dir, "features.parquet"))}
    random_path = os.path.join(features_dir, "features_random_cnn.parquet")
    if os.path.exists(random_path):
        sets["random_cnn"] = read_features(random_path)
    ids = sets["cnn"][0]
    column = dataset.image_column
    table = pq.read_table(os.path.join(dataset.root, "items.parquet"), columns=["item_id", column]).to_pandas()
    stored = table.set_index("item_id")[column].reindex(ids)
    encoded = [item_image_bytes(dataset.root, v, None) if column == "image" else item_image_bytes(dataset.root, None, v)
               for v in stored]
    for name, vectors in baseline_features(encoded).items():
        sets[name] = (ids, vectors)
    for name, path in external.items():  # compared on exactly the items the run's CNN embedded
        sets[name] = (ids, aligned_features(path, name, ids))
    return sets


def evaluate(dataset: Dataset, interactions: pd.DataFrame, parts: pd.DataFrame, features_dir: str,
             factors_dir: str, seed: int, k: int = 100, external: dict[str, str] | None = None,
             save_dir: str | None = None) -> tuple[dict, dict]:
    """(metrics, curves) for every feature set: retrieval, owner-viewed and linear probes.

    `external` maps extra feature-set names to feature files (item_id, vector) to compare as well;
    the baselines' features are written to `save_dir` (for the report's neighbour grids)."""
    item_users, items, users = _viewers(interactions)
    part = parts.set_index("item_id")["part"]
    owners = dataset.items.set_index("item_id")["owner_id"] if "owner_id" in dataset.items else None
    owners = None if owners is None or owners.isna().all() else owners
    labels = dataset.items.set_index("item_id")["labels"] if "labels" in dataset.items else None
    metrics, curves = {}, {}
    metrics_random, curves["random"] = random_retrieval(part, item_users, items, k, seed)
    metrics.update(metrics_random)
    for name, (ids, vectors) in _feature_sets(dataset, features_dir, external or {}).items():
        if save_dir and name in BASELINES:
            write_features(os.path.join(save_dir, f"features_{name}.parquet"), ids, vectors)
        found, curves[name] = retrieval(name, vectors, ids, part, item_users, items, users, owners, k)
        metrics.update(found)
        if labels is not None:
            kind, value = linear_probe(vectors, labels.reindex(ids).tolist(), seed)
            metrics[f"probe/{name}/{kind}"] = value
    metrics |= _latent(factors_dir, item_users, items, k)
    return metrics, {name: curve.tolist() for name, curve in curves.items()}


def _latent(factors_dir: str, item_users, items, k: int) -> dict:
    """The reference the CNN tries to reach: latent factors, tr items querying tr items (no self)."""
    ids = pd.read_parquet(os.path.join(factors_dir, "items.parquet"))["item_id"].to_numpy()
    factors = np.load(os.path.join(factors_dir, "item_factors.npy"))
    neighbours = cosine_neighbours(factors, factors, min(k, len(ids) - 1), exclude_self=True)
    index = items.get_indexer(ids)
    curve = jaccard_at_ranks(item_users, index, index[neighbours])
    return {f"retrieval/latent/jaccard@{r}": float(curve[r - 1]) for r in RANKS if r <= len(curve)}
