"""A quick check of feature quality: do an item's cosine neighbours share its labels?"""

import numpy as np

from socialfeat.stats.retrieval import cosine_neighbours


def label_precision(vectors: np.ndarray, labels: list, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """(positions of the items with labels, the fraction of each one's k nearest neighbours (cosine) sharing
    at least one of its labels): the metric is their mean."""
    has = np.array([bool(l is not None and len(l)) for l in labels])
    label_sets = [set(l) for l, h in zip(labels, has) if h]
    neighbours = cosine_neighbours(vectors[has], vectors[has], k, exclude_self=True)
    shared = np.array([[bool(label_sets[q] & label_sets[n]) for n in row] for q, row in enumerate(neighbours)])
    return np.flatnonzero(has), shared.mean(axis=1)
