"""Cold-start recommendation from pixels: a ridge regression from an item's image features to its latent
factors, fitted on tr items, predicts factors for te items (which the factorisation never saw); every user
is then ranked over the te items and scored on the ones they viewed (AUC, recall@K)."""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.stats import rankdata
from sklearn.linear_model import RidgeCV
from sklearn.preprocessing import StandardScaler

from socialfeat.errors import UserError
from socialfeat.stats.ranking import hits_at_k, top_k
from socialfeat.stats.significance import Samples

RANKS = (10, 50)
ALPHAS = tuple(10.0**p for p in range(-2, 5))  # ridge strengths tried by leave-one-out (GCV)
BLOCK = 1024  # users scored at once


@dataclass(frozen=True)
class Factors:
    """A factorisation of the tr view log: user and item ids beside their factors, and its λ."""

    user_ids: np.ndarray
    user_factors: np.ndarray
    item_ids: np.ndarray
    item_factors: np.ndarray
    reg: float


def predicted_factors(features: tuple[np.ndarray, np.ndarray], factors: Factors, te_ids: np.ndarray) -> np.ndarray:
    """te items' factors predicted from their features by ridge regression fitted on the tr items."""
    ids, vectors = features
    rows = pd.Index(ids)
    train = rows.get_indexer(factors.item_ids)
    if (train < 0).any():
        raise UserError(f"{int((train < 0).sum())} tr items of the factorisation have no feature vector")
    scaler = StandardScaler().fit(vectors[train])
    model = RidgeCV(alphas=ALPHAS).fit(scaler.transform(vectors[train]), factors.item_factors)
    return model.predict(scaler.transform(vectors[rows.get_indexer(te_ids)]))


def folded_in(factors: Factors, views: sp.csr_matrix) -> np.ndarray:
    """The oracle: te items' factors from their own views, least squares against the fixed user factors
    (one ALS item step with the factorisation's λ). It sees the views it is scored on: the ceiling."""
    users = factors.user_factors.astype(np.float64)
    gram = users.T @ users + factors.reg * np.eye(users.shape[1])
    return np.linalg.solve(gram, (views.T @ users).T).T


def _auc(scores: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """Per row: the probability that a relevant item outscores an irrelevant one (ties count half)."""
    ranks = rankdata(scores, axis=1)
    positives = relevant.sum(axis=1)
    negatives = relevant.shape[1] - positives
    wins = (ranks * relevant).sum(axis=1) - positives * (positives + 1) / 2
    return wins / (positives * negatives)


def user_scores(score_block: Callable[[int, int], np.ndarray], views: sp.csr_matrix) -> dict[str, np.ndarray]:
    """{auc, recall@K, curve (recall@1..50)} per user (rows of `views`, users x te items); `score_block(start,
    stop)` scores users start..stop over every te item."""
    deepest = min(max(RANKS), views.shape[1])
    found: dict[str, list] = {"auc": [], "curve": []}
    for start in range(0, views.shape[0], BLOCK):
        relevant = views[start : start + BLOCK].toarray() > 0
        scores = score_block(start, start + len(relevant))
        hits = hits_at_k(top_k(scores, deepest), relevant)
        n_relevant = relevant.sum(axis=1)
        found["auc"].append(_auc(scores, relevant))
        found["curve"].append(np.cumsum(hits, axis=1) / n_relevant[:, None])
    curve = np.concatenate(found["curve"])
    result = {"auc": np.concatenate(found["auc"]), "curve": curve}
    return result | {f"recall@{r}": curve[:, min(r, deepest) - 1] for r in RANKS}


def _dot_products(user_factors: np.ndarray, item_factors: np.ndarray) -> Callable[[int, int], np.ndarray]:
    return lambda start, stop: user_factors[start:stop] @ item_factors.T


def _indexer(index: pd.Index, ids: pd.Series) -> np.ndarray:
    """Each of `ids`' position in `index` (-1: absent); a categorical column is looked up by its categories."""
    if isinstance(ids.dtype, pd.CategoricalDtype):
        found = index.get_indexer(ids.cat.categories)
        return np.where(ids.cat.codes.to_numpy() < 0, -1, found[ids.cat.codes.to_numpy()])
    return index.get_indexer(ids)


def te_views(interactions: pd.DataFrame, factors: Factors, te_ids: np.ndarray) -> tuple[np.ndarray, sp.csr_matrix]:
    """(scored users, every user x te item views): users the factorisation knows are scored when they viewed
    some te items, not all of them."""
    test = interactions[interactions["item_id"].isin(te_ids)]
    user_index = _indexer(pd.Index(factors.user_ids), test["user_id"])
    item_index = _indexer(pd.Index(te_ids), test["item_id"])
    known = user_index >= 0
    views = sp.csr_matrix(
        (np.ones(int(known.sum()), np.float32), (user_index[known], item_index[known])),
        shape=(len(factors.user_ids), len(te_ids)),
    )
    views.data[:] = 1.0  # a repeated view is one view
    counts = np.asarray(views.sum(axis=1)).ravel()
    return np.flatnonzero((counts > 0) & (counts < len(te_ids))), views


def recall_samples(
    sets: dict[str, tuple[np.ndarray, np.ndarray]],
    interactions: pd.DataFrame,
    factors: Factors,
    te_ids: np.ndarray,
    *,
    seed: int,
    max_users: int | None = None,
) -> tuple[Samples, dict[str, list]]:
    """Per-user coldstart/<name>/{auc, recall@K} for each feature set, a random ranking (per user) and the
    oracle, and each one's mean recall@1..50 curve. Past `max_users` scored users, a seeded sample of them is
    scored: each user ranks every te item, so the time grows as users x te items."""
    users, views = te_views(interactions, factors, te_ids)
    if not len(users):
        raise UserError("no user of the factorisation viewed a te item: cold start has nothing to score")
    if max_users is not None and len(users) > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))
    candidates = {name: predicted_factors(features, factors, te_ids) for name, features in sets.items()}
    candidates["oracle"] = folded_in(factors, views)
    user_factors = factors.user_factors[users]
    scorers = {name: _dot_products(user_factors, item_factors) for name, item_factors in candidates.items()}
    scorers["random"] = lambda start, stop: np.random.default_rng([seed, start]).random((stop - start, len(te_ids)))
    samples, curves = {}, {}
    for name, score_block in scorers.items():
        scored = user_scores(score_block, views[users])
        curves[name] = scored.pop("curve").mean(axis=0).tolist()
        samples |= {f"coldstart/{name}/{metric}": (factors.user_ids[users], v) for metric, v in scored.items()}
    return samples, curves
