"""Users as bags of tag clusters (Lei et al. 2016): tag embeddings (PPMI-SVD of tag co-occurrence on items, or
the output layer of a words run), k-means into clusters, and each user's interests counted by cluster."""

import json
import os

import numpy as np
import pandas as pd
import scipy.sparse as sp

from socialfeat import artifacts
from socialfeat.clustering.kmeans import KMeans, kmeans
from socialfeat.errors import UserError
from socialfeat.methods.comparative.stages import relations_of
from socialfeat.stages import StageContext
from socialfeat.text import ppmi_svd, tokens


class NotAWordsRun(UserError):
    """comparative.words_run does not name a finished words run."""


def words_stages(run: str) -> dict[str, dict]:
    """{stage name: its run.json entry} of the finished words run `run`."""
    path = os.path.join(run, "run.json")
    if not os.path.isfile(path):
        raise NotAWordsRun(f"comparative.words_run {run!r}: no run.json there (not a finished socialfeat run)")
    with open(path) as f:
        stages = {s["name"]: s for s in json.load(f)["stages"]}
    if not {"vocabulary", "train"} <= stages.keys():
        raise NotAWordsRun(
            f"comparative.words_run {run!r}: a words run through its train stage is needed; this one has "
            f"{', '.join(stages)}"
        )
    return stages


def words_embeddings(run: str, tags: pd.Index) -> np.ndarray:
    """tags x dim: each tag's mean of its words' rows of the words model's output layer (zeros for a tag none of
    whose words is in that dictionary)."""
    stages = words_stages(run)
    words = pd.read_parquet(os.path.join(stages["vocabulary"]["path"], "vocabulary.parquet"))["word"]
    state = artifacts.load_tensors(os.path.join(stages["train"]["path"], "model.pt"))
    rows, index = state["head.weight"].float().numpy(), {word: n for n, word in enumerate(words)}
    embeddings = np.zeros((len(tags), rows.shape[1]), np.float32)
    for n, tag in enumerate(tags):
        found = [index[w] for w in tokens(tag) if w in index]
        if found:
            embeddings[n] = rows[found].mean(axis=0)
    return embeddings


def tag_clusters(embeddings: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, dict]:
    """(each tag's cluster, -1 for a tag without an embedding; k-means metrics) of the cosine geometry."""
    embedded = np.flatnonzero(np.linalg.norm(embeddings, axis=1) > 0)
    if k > len(embedded):
        raise UserError(
            f"comparative.tag_clusters = {k} is more than the {len(embedded)} embedded tags: choose at most "
            f"{len(embedded)}"
        )
    labels, _, metrics = kmeans(embeddings[embedded], KMeans(k=k, seed=seed))
    clusters = np.full(len(embeddings), -1, np.int64)
    clusters[embedded] = labels
    return clusters, metrics


def bags_of(interest_counts: sp.csr_matrix, clusters: np.ndarray, k: int) -> np.ndarray:
    """users x k: how often each user's interests (users x tags counts) fall in each tag cluster, unit length
    (a user without interests keeps a zero bag)."""
    kept = clusters >= 0
    to_cluster = sp.csr_matrix(
        (np.ones(kept.sum(), np.float32), (np.flatnonzero(kept), clusters[kept])), shape=(len(clusters), k)
    )
    bags = np.asarray((interest_counts @ to_cluster).todense(), np.float32)
    norms = np.linalg.norm(bags, axis=1, keepdims=True)
    return bags / np.where(norms > 0, norms, 1.0)


def _embeddings(ctx: StageContext, tags: pd.Index) -> np.ndarray:
    cfg = ctx.cfg.comparative
    if cfg.tag_embeddings == "words":
        return words_embeddings(cfg.words_run, tags)
    item_tags = pd.read_parquet(ctx.path("likes", "item_tags.parquet"))
    return ppmi_svd(item_tags.groupby("item")["tag"].agg(list), len(tags), cfg.tag_dim)


def users(ctx: StageContext, tmp: str) -> dict:
    """bags.npy (users x tag_clusters, rows as in the likes stage's users.parquet) and tag_clusters.parquet."""
    cfg = ctx.cfg.comparative
    tags = pd.Index(pd.read_parquet(ctx.path("likes", "tags.parquet"))["tag"])
    embeddings = _embeddings(ctx, tags)
    clusters, metrics = tag_clusters(embeddings, cfg.tag_clusters, cfg.seed)
    bags = bags_of(relations_of(ctx).interests, clusters, cfg.tag_clusters)
    np.save(os.path.join(tmp, "bags.npy"), bags)
    pd.DataFrame({"tag": tags, "cluster": clusters}).to_parquet(os.path.join(tmp, "tag_clusters.parquet"), index=False)
    artifacts.write_json(os.path.join(tmp, "bags.json"), {"users": len(bags), "clusters": cfg.tag_clusters})
    return {
        "users/tags_embedded": int((clusters >= 0).sum()),
        "users/tags_without_embedding": int((clusters < 0).sum()),
        "users/tag_clusters": cfg.tag_clusters,
        "users/empty_bags": int((np.linalg.norm(bags, axis=1) == 0).sum()),
        "users/clusters_per_user": float((bags > 0).sum(axis=1).mean()),
        **{f"users/{k.removeprefix('kmeans/')}": v for k, v in metrics.items() if k != "kmeans/seed"},
    }


def words_run_key(cfg) -> dict:
    """The words run's train stage key, when its embeddings are used: it keys the users stage too."""
    if cfg.comparative.tag_embeddings != "words":
        return {}
    return {"words_train": words_stages(cfg.comparative.words_run)["train"]["key"]}
