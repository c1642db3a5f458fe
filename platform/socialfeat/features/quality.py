"""A quick check of feature quality: do an item's cosine neighbours share its labels?"""

import numpy as np

from socialfeat.evaluation.retrieval import cosine_neighbours


def label_precision(vectors: np.ndarray, labels: list, k: int = 10) -> float:
    """Mean fraction of each item's k nearest neighbours (cosine) sharing at least one of its labels;
    items without labels are neither queries nor counted."""
    has = np.array([bool(l is not None and len(l)) for l in labels])
    vectors = vectors[has]
    label_sets = [set(l) for l, h in zip(labels, has) if h]
    neighbours = cosine_neighbours(vectors, vectors, k, exclude_self=True)
    shared = [[bool(label_sets[q] & label_sets[n]) for n in row] for q, row in enumerate(neighbours)]
    return float(np.mean(shared))
