"""Linear probes (Fang et al. 4.4, Joulin et al. 4.2): logistic regression on item labels."""

from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score
from sklearn.multiclass import OneVsRestClassifier
from sklearn.preprocessing import MultiLabelBinarizer, StandardScaler

from socialfeat.stats import significance

REGULARISATION = (0.01, 0.1, 1.0, 10.0)


def _split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train (64%), validation (16%, for choosing C) and test (20%) indices."""
    order = np.random.default_rng(seed).permutation(n)
    test, val = order[: n // 5], order[n // 5 : n // 5 + n * 4 // 25]
    return order[n // 5 + n * 4 // 25 :], val, test


def _fit(c: float, x, y, multilabel: bool):
    model = LogisticRegression(C=c, max_iter=2000)
    return (OneVsRestClassifier(model) if multilabel else model).fit(x, y)


def _score(model, x, y, multilabel: bool) -> float:
    if not multilabel:
        return float((model.predict(x) == y).mean())
    return _macro_ap(y, model.predict_proba(x))


@dataclass(frozen=True)
class Probe:
    kind: str  # "accuracy" (one label per item) or "map" (macro mAP over labels)
    value: float
    items: np.ndarray  # positions in `vectors` of the test items
    correct: np.ndarray | None  # accuracy: 1.0 / 0.0 per test item (the per-query values)
    interval: tuple[float, float]  # 95% bootstrap over the test items


def linear_probe(vectors: np.ndarray, labels: list, seed: int = 0) -> Probe:
    """Accuracy when every item has one label, else macro mAP; C chosen on validation, then a test split."""
    keep = np.array([l is not None and len(l) > 0 for l in labels])
    x = StandardScaler().fit_transform(vectors[keep])
    kept = [list(l) for l, k in zip(labels, keep) if k]
    multilabel = any(len(l) > 1 for l in kept)
    y = MultiLabelBinarizer().fit_transform(kept) if multilabel else np.array([l[0] for l in kept])
    train, val, test = _split(len(x), seed)
    best = max(
        REGULARISATION, key=lambda c: _score(_fit(c, x[train], y[train], multilabel), x[val], y[val], multilabel)
    )
    final = _fit(best, x[np.concatenate([train, val])], y[np.concatenate([train, val])], multilabel)
    items = np.flatnonzero(keep)[test]
    if multilabel:
        scores = final.predict_proba(x[test])
        ci = significance.statistic_interval(lambda rows: _macro_ap(y[test][rows], scores[rows]), len(test), seed)
        return Probe("map", _macro_ap(y[test], scores), items, None, ci)
    correct = (final.predict(x[test]) == y[test]).astype(np.float64)
    return Probe("accuracy", float(correct.mean()), items, correct, significance.interval(correct, seed))


def _macro_ap(truth: np.ndarray, scores: np.ndarray) -> float:
    present = truth.sum(axis=0) > 0
    return float(average_precision_score(truth[:, present], scores[:, present], average="macro"))
