"""A quick check of feature quality: do an item's cosine neighbours share its labels?"""

import numpy as np

from socialfeat.stats.retrieval import neighbour_search
from socialfeat.stats.significance import Samples


def label_precision(prefix: str, ids: np.ndarray, vectors: np.ndarray, *, labels: list, k: int = 10) -> Samples:
    """{prefix/label_precision@k: per item with labels, the fraction of its k nearest neighbours (cosine)
    sharing at least one of its labels}, and prefix/search_recall@k per checked item when an IVF index
    found the neighbours."""
    has = np.array([bool(l is not None and len(l)) for l in labels])
    label_sets = [set(l) for l, h in zip(labels, has) if h]
    found = neighbour_search(vectors[has], vectors[has], k, exclude_self=True)
    shared = np.array([[bool(label_sets[q] & label_sets[n]) for n in row] for q, row in enumerate(found.indices)])
    labelled = ids[has]
    return {f"{prefix}/label_precision@{k}": (labelled, shared.mean(axis=1))} | found.recall_samples(prefix, labelled)
