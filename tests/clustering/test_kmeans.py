"""k-means pseudo classes: planted clusters recovered, seeded, bad K named."""

import numpy as np
import pytest

from socialfeat.clustering.kmeans import ClusteringError, KMeans, kmeans, nmi
from socialfeat.config import ConfigError
from socialfeat.methods import load_config


def test_kmeans_recovers_planted_clusters_and_names_bad_k():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((5, 8)) * 5
    truth = rng.integers(0, 5, 500)
    points = centres[truth] + rng.standard_normal((500, 8))
    labels, centroids, metrics = kmeans(points, KMeans(k=5, normalize=False))
    assert nmi(labels, truth) > 0.95 and metrics["kmeans/size_min"] > 0 and centroids.shape == (5, 8)
    again, _, _ = kmeans(points, KMeans(k=5, normalize=False))
    assert np.array_equal(labels, again)  # seeded
    with pytest.raises(ClusteringError, match="clustering.k = 600 is larger than the 500 items"):
        kmeans(points, KMeans(k=600))
    with pytest.raises(ConfigError, match="clustering.k"):
        load_config(None, ["clustering.k=1"])
