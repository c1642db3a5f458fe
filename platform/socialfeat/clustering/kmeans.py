"""k-means of item factors into K pseudo classes with faiss, seeded, no cluster left empty."""

import logging
from dataclasses import dataclass

import faiss
import numpy as np
from sklearn.metrics import normalized_mutual_info_score, silhouette_score

from socialfeat.errors import UserError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KMeans:
    """What k-means is told: K, Lloyd iterations, L2-normalise first, PCA-whiten first, the seed."""

    k: int
    iterations: int = 25
    normalize: bool = True
    whiten: bool = False
    seed: int = 0


class ClusteringError(UserError):
    """K does not fit the data."""


# what `cluster` reports about a clustering (with the truth it is scored against, the method adds its own nmi)
KMEANS_METRICS = (
    "kmeans/k",
    "kmeans/seed",
    "kmeans/inertia",
    "kmeans/silhouette",
    "kmeans/size_*",
    "kmeans/empty_reseeded",
)


def prepare(vectors: np.ndarray, cfg: KMeans) -> np.ndarray:
    """Optionally PCA-whiten, then optionally L2-normalise (cosine geometry, as retrieval uses)."""
    x = np.asarray(vectors, np.float32)
    if cfg.whiten:
        centred = x - x.mean(axis=0)
        _, singular, components = np.linalg.svd(centred, full_matrices=False)
        x = centred @ components.T / np.maximum(singular / np.sqrt(len(x)), 1e-8)
    if cfg.normalize:
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return np.ascontiguousarray(x, dtype=np.float32)


def _reseed_empty(x: np.ndarray, labels: np.ndarray, centroids: np.ndarray, k: int) -> tuple[np.ndarray, int]:
    """Give every empty cluster the point farthest from its centroid in the largest cluster."""
    reseeded = 0
    for empty in np.flatnonzero(np.bincount(labels, minlength=k) == 0):
        largest = np.bincount(labels, minlength=k).argmax()
        members = np.flatnonzero(labels == largest)
        far = members[np.argmax(((x[members] - centroids[largest]) ** 2).sum(axis=1))]
        labels[far], centroids[empty] = empty, x[far]
        reseeded += 1
    return labels, reseeded


def kmeans(vectors: np.ndarray, cfg: KMeans) -> tuple[np.ndarray, np.ndarray, dict]:
    """(labels, centroids, metrics) of K pseudo classes; every class non-empty."""

    n, k = len(vectors), cfg.k
    if k > n:
        raise ClusteringError(f"clustering.k = {k} is larger than the {n} items to cluster; choose at most {n}")
    x = prepare(vectors, cfg)
    model = faiss.Kmeans(
        x.shape[1],
        k,
        niter=cfg.iterations,
        seed=cfg.seed,
        verbose=False,
        min_points_per_centroid=1,
        max_points_per_centroid=max(256, n // k + 1),
    )
    model.train(x)
    _, assigned = model.index.search(x, 1)
    centroids = model.centroids.copy()
    labels, reseeded = _reseed_empty(x, assigned.ravel().astype(np.int64), centroids, k)
    inertia = float(((x - centroids[labels]) ** 2).sum())
    sizes = np.bincount(labels, minlength=k)
    metrics = {
        "kmeans/inertia": inertia,
        "kmeans/k": k,
        "kmeans/size_min": int(sizes.min()),
        "kmeans/size_max": int(sizes.max()),
        "kmeans/size_median": float(np.median(sizes)),
        "kmeans/empty_reseeded": reseeded,
        "kmeans/seed": cfg.seed,
        "kmeans/silhouette": silhouette(x, labels, cfg.seed),
    }
    log.info("k-means: K=%d, sizes %d..%d, inertia %.4g, seed %d", k, sizes.min(), sizes.max(), inertia, cfg.seed)
    return labels, centroids, metrics


def silhouette(x: np.ndarray, labels: np.ndarray, seed: int, sample: int = 4000) -> float:
    """Mean silhouette on a seeded sample: unlike inertia it does not simply improve as K grows,
    so a K sweep can be scored without labels (NaN when every point is its own cluster)."""

    if not 2 <= len(np.unique(labels)) < len(labels):
        return float("nan")
    return float(silhouette_score(x, labels, sample_size=min(sample, len(x)), random_state=seed))


def nmi(labels: np.ndarray, truth: np.ndarray) -> float:
    return float(normalized_mutual_info_score(truth, labels))
