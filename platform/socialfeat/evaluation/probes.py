"""Linear probes (Fang et al. 4.4, Joulin et al. 4.2): logistic regression on item labels."""

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import expit
from sklearn.metrics import average_precision_score
from sklearn.preprocessing import MultiLabelBinarizer, StandardScaler

from socialfeat.stats import significance

REGULARISATION = (0.01, 0.1, 1.0, 10.0)
# A probe fits on at most this many items (a seeded sample of its train split): the probe measures the
# features, and its accuracy's interval comes from the test split, so more rows only cost time.
MAX_TRAIN_ITEMS = 200_000
MAX_ITERATIONS = 500


def _split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train (64%), validation (16%, for choosing C) and test (20%) indices."""
    order = np.random.default_rng(seed).permutation(n)
    test, val = order[: n // 5], order[n // 5 : n // 5 + n * 4 // 25]
    return order[n // 5 + n * 4 // 25 :], val, test


@dataclass(frozen=True)
class _Logistic:
    """A fitted linear model: softmax over `classes` (one label per item) or a sigmoid per label."""

    weight: np.ndarray
    bias: np.ndarray
    classes: np.ndarray | None  # None: multi-label

    def logits(self, x: np.ndarray) -> np.ndarray:
        return x @ self.weight + self.bias

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.classes[self.logits(x).argmax(axis=1)]

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return expit(self.logits(x))


def _fit(c: float, x: np.ndarray, y: np.ndarray, multilabel: bool) -> _Logistic:
    """L2-regularised logistic regression by full-batch L-BFGS in float64: scikit-learn's objective (multinomial
    for one label per item, one-vs-rest for several, intercepts unpenalised), all labels in one solve."""
    features = torch.from_numpy(np.asarray(x, np.float64))
    classes = None if multilabel else np.unique(y)
    targets = torch.from_numpy(np.asarray(y, np.float64) if multilabel else np.searchsorted(classes, y))
    outputs = y.shape[1] if multilabel else len(classes)
    weight = torch.zeros(features.shape[1], outputs, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(outputs, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias], max_iter=MAX_ITERATIONS, tolerance_grad=1e-7, history_size=20, line_search_fn="strong_wolfe"
    )
    loss_of = F.binary_cross_entropy_with_logits if multilabel else F.cross_entropy

    def objective() -> torch.Tensor:
        optimizer.zero_grad()
        # per item, summed over labels: each label's one-vs-rest objective, all fitted at once
        penalty = (weight**2).sum() / (2 * c)
        loss = (loss_of(features @ weight + bias, targets, reduction="sum") + penalty) / len(features)
        loss.backward()
        return loss

    optimizer.step(objective)
    return _Logistic(weight.detach().numpy(), bias.detach().numpy(), classes)


def _score(model: _Logistic, x, y, multilabel: bool) -> float:
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
    if len(train) > MAX_TRAIN_ITEMS:
        train = np.random.default_rng(seed).choice(train, MAX_TRAIN_ITEMS, replace=False)
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
