"""Recommendation by distance (Lei et al. 2016, section 5): every test user ranks their candidates (concealed
likes among other items) by the dual net's distance, by the Borda count of image-feature similarity to
their train likes, and by popularity (train likes per item); precision and recall at K for each ranking and
for chance."""

import os

import numpy as np
import pandas as pd
import torch

from socialfeat.features.extract import read_sets
from socialfeat.methods.comparative.stages import numbered_likes, stage_task
from socialfeat.methods.comparative.tasks import distances
from socialfeat.pipeline.evaluate import image_baselines
from socialfeat.pipeline.train import tower_outputs, trained_model
from socialfeat.stages import StageContext
from socialfeat.stats import significance

KS = (5, 10, 20)  # the reported cut-offs
CURVE = 20  # P@K and R@K curves for K = 1..CURVE


def at_k(order: np.ndarray, relevant: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """(precision@K, recall@K for K = 1..depth) of one ranking: `order` ranks the candidates (best first),
    `relevant` marks the concealed ones."""
    hits = np.cumsum(relevant[order][:depth])
    ks = np.arange(1, depth + 1)
    return hits / ks, hits / max(int(relevant.sum()), 1)


def borda(candidates: np.ndarray, liked: np.ndarray) -> np.ndarray:
    """Each candidate's Borda points: every liked item ranks the candidates by cosine similarity and gives
    n - rank points (n candidates), summed over the liked items."""
    unit = lambda v: v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)  # noqa: E731
    similarity = unit(liked) @ unit(candidates).T  # liked x candidates
    ranks = np.argsort(np.argsort(-similarity, axis=1, kind="stable"), axis=1)
    return (len(candidates) - ranks).sum(axis=0)


def chance(relevant: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """The expected precision@K and recall@K of a random order of the candidates."""
    ks = np.minimum(np.arange(1, depth + 1), len(relevant))
    return np.full(depth, relevant.mean()), ks / len(relevant)


def _feature_sets(ctx: StageContext, stored: dict, ids: pd.Index) -> dict[str, tuple[pd.Index, np.ndarray]]:
    """{name: (its items, vectors)}: the features stage's sets `stored` and the colour histogram of `ids`."""
    sets = {name: (pd.Index(found), vectors) for name, (found, vectors) in stored.items()}
    decodable = ids[ids.isin(sets["cnn"][0])]
    histograms = image_baselines(ctx, decodable)["color_hist"]
    return sets | {"color_hist": (decodable, histograms)}


def _scores(ctx: StageContext, candidates: pd.DataFrame, stored: dict) -> dict[str, np.ndarray]:
    """{ranking: each candidate row's score, higher first}: the model's -distance, popularity and the Borda
    baselines over the features stage's sets `stored`."""
    task = stage_task(ctx)
    found, vectors, state = tower_outputs(ctx, candidates["item_id"].unique())
    rows = pd.Index(found).get_indexer(candidates["item_id"])
    bags = np.load(ctx.path("users", "bags.npy"))[candidates["user"].to_numpy()]
    model = trained_model(ctx, task, state)
    scores = {ctx.cfg.comparative.model: -distances(model, torch.from_numpy(bags), torch.tensor(vectors[rows])).numpy()}
    likes = numbered_likes(ctx)
    scores["popularity"] = _popularity(candidates, likes, ctx.cfg.comparative.seed)
    train = _train_likes_of(ctx, likes, candidates["user"].unique())
    sets = _feature_sets(ctx, stored, pd.Index(pd.unique(np.concatenate([candidates["item_id"], train["item_id"]]))))
    for name, (ids, vectors) in sets.items():
        scores[f"borda_{name}"] = _borda_scores(candidates, train, ids, vectors)
    return scores


def _train_likes_of(ctx: StageContext, likes: pd.DataFrame, users: np.ndarray) -> pd.DataFrame:
    """(user, item_id) of the train likes of `users`, in the likes' order."""
    item_ids = pd.read_parquet(ctx.path("likes", "items.parquet"))["item_id"].to_numpy()  # by item number
    mine = ((likes["part"] == "train") & likes["user"].isin(users)).to_numpy()
    return pd.DataFrame({"user": likes["user"].to_numpy()[mine], "item_id": item_ids[likes["item"].to_numpy()[mine]]})


def _popularity(candidates: pd.DataFrame, likes: pd.DataFrame, seed: int) -> np.ndarray:
    """Each candidate's count of train likes (every user's): the ranker a practitioner tries first. Ties are
    broken at random, never by candidate order (each user's concealed likes come first)."""
    train_items = likes.loc[likes["part"] == "train", "item"].to_numpy()
    counts = np.bincount(train_items, minlength=int(candidates["item"].max()) + 1)
    jitter = np.random.default_rng(seed).random(len(candidates)) * 0.5  # below 1: orders only equal counts
    return counts[candidates["item"].to_numpy()].astype(np.float64) + jitter


def _borda_scores(candidates: pd.DataFrame, train: pd.DataFrame, ids: pd.Index, vectors: np.ndarray) -> np.ndarray:
    scores = np.zeros(len(candidates))
    liked_by = train.groupby("user")["item_id"].agg(list)
    for user, rows in candidates.groupby("user").indices.items():
        liked = ids.get_indexer(liked_by.get(user, []))
        liked = liked[liked >= 0]
        if len(liked):
            scores[rows] = borda(vectors[ids.get_indexer(candidates["item_id"].to_numpy()[rows])], vectors[liked])
    return scores


def per_user(candidates: pd.DataFrame, scores: dict[str, np.ndarray], depth: int) -> pd.DataFrame:
    """(user, ranking, k, precision, recall) for every test user, ranking (chance included) and k = 1..depth."""
    groups = candidates.groupby("user").indices
    concealed = candidates["concealed"].to_numpy()
    frames = []
    for name, score in ({"random": None} | scores).items():
        for user, rows in groups.items():
            if score is None:
                precision, recall = chance(concealed[rows], depth)
            else:
                precision, recall = at_k(np.argsort(-score[rows], kind="stable"), concealed[rows], depth)
            frames.append(
                pd.DataFrame(
                    {
                        "user": user,
                        "ranking": name,
                        "k": np.arange(1, depth + 1),
                        "precision": precision,
                        "recall": recall,
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


def recommend(ctx: StageContext, tmp: str) -> dict:
    """comparative/<ranking>/{precision,recall}@{5,10,20} over the test users whose candidates all have an
    image that decodes; curves.parquet holds their means at K = 1..20, by_user.parquet each user's."""
    every = pd.read_parquet(ctx.path("likes", "candidates.parquet"))
    stored = read_sets(ctx.path("features"))
    decodable = every["item_id"].isin(stored["cnn"][0])
    whole = decodable.groupby(every["user"]).transform("all")
    candidates = every[whole].reset_index(drop=True)
    metrics = {
        "comparative/test_users": int(candidates["user"].nunique()),
        "comparative/users_with_undecodable_candidates": int(every.loc[~whole, "user"].nunique()),
    }
    if candidates.empty:
        return metrics
    depth = min(CURVE, int(candidates.groupby("user").size().min()))
    users = per_user(candidates, _scores(ctx, candidates, stored), depth)
    users.to_parquet(os.path.join(tmp, "by_user.parquet"), index=False)
    table = users.groupby(["ranking", "k"], sort=False)[["precision", "recall"]].mean()
    table.reset_index().to_parquet(os.path.join(tmp, "curves.parquet"), index=False)
    samples = {}
    for (name, k), rows in users[users["k"].isin(KS)].groupby(["ranking", "k"], sort=False):
        for measure in ("precision", "recall"):
            samples[f"comparative/{name}/{measure}@{k}"] = (rows["user"].to_numpy(), rows[measure].to_numpy())
    model = ctx.cfg.comparative.model
    # the trained model's, under one name whatever the model (a sweep over comparative.model optimises these)
    samples |= {
        f"comparative/{m}@{k}": samples[f"comparative/{model}/{m}@{k}"]
        for m in ("precision", "recall")
        for k in KS
        if k <= depth
    }
    return metrics | significance.means(samples) | significance.record(tmp, samples, ctx.cfg.comparative.seed)
