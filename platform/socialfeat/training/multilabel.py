"""Word prediction as training tasks (Joulin et al. 2016): the multi-class logistic loss over a sampled word
of each image (full, or over the batch's candidate words only), and the one-vs-all binary loss."""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from socialfeat.training.task import Headed, random_images


def multi_hot(words: torch.Tensor, classes: int) -> torch.Tensor:
    """Rows of word ids padded with -1 -> N x K {0, 1} targets."""
    target = torch.zeros(len(words), classes + 1, device=words.device)
    target.scatter_(1, torch.where(words < 0, classes, words), 1.0)
    return target[:, :classes]


def precision_at_10(logits: torch.Tensor, words: torch.Tensor) -> float:
    """The mean fraction of each row's 10 highest-scoring words that are among its words."""
    top = logits.topk(min(10, logits.shape[1]), dim=1).indices
    hits = (top[:, :, None] == words[:, None, :]).any(dim=2).float()
    return float(hits.mean())


def _example(classes: int, rows: int, size: int, generator) -> dict:
    words = torch.randint(0, classes, (rows, 3), generator=generator)
    words[:, 2] = -1  # padding
    return {"item": random_images(rows, size, generator), "label": words[:, 0].clone(), "words": words}


@dataclass(frozen=True)
class _WordTask:
    """What every word task shares: the dictionary size, one image per row, precision@10 per epoch."""

    classes: int
    image_columns: tuple[str, ...] = ("item",)
    epoch_metrics: tuple[str, ...] = ("precision_at_10",)

    def encoder(self, model) -> nn.Module:
        return getattr(model, "module", model).backbone

    def example_batch(self, rows, size, generator):
        return _example(self.classes, rows, size, generator)


@dataclass(frozen=True)
class WordSoftmaxTask(_WordTask):
    """Cross-entropy on one word of each image, the others counting as negatives (rows are drawn
    class-uniformly: a word, then an image with it)."""

    @property
    def chance_loss(self) -> float:
        return math.log(max(self.classes, 2))

    def build(self, backbone: nn.Module, dim: int) -> nn.Module:
        return Headed(backbone, nn.Linear(dim, self.classes))

    def loss(self, model, batch):
        logits = model(batch["item"]).float()
        loss = F.cross_entropy(logits, batch["label"].long())
        return loss, {"precision_at_10": precision_at_10(logits.detach(), batch["words"])}


@dataclass(frozen=True)
class OneVsAllTask(_WordTask):
    """Binary logistic loss of every dictionary word against the image's word set."""

    chance_loss: float = math.log(2)  # every word scored at even odds

    def build(self, backbone: nn.Module, dim: int) -> nn.Module:
        return Headed(backbone, nn.Linear(dim, self.classes))

    def loss(self, model, batch):
        logits = model(batch["item"]).float()
        loss = F.binary_cross_entropy_with_logits(logits, multi_hot(batch["words"].long(), self.classes))
        return loss, {"precision_at_10": precision_at_10(logits.detach(), batch["words"])}


class SampledHead(nn.Module):
    """The K x D output layer, read only at the rows asked for: its gradient is sparse (those rows), so a
    step costs O(candidates x D) whatever K is. The bias is K x 1 for the same reason (an embedding table)."""

    sparse_gradients = True  # make_optimizer gives these parameters their own sparse-safe group

    def __init__(self, dim: int, classes: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(classes, dim))
        self.bias = nn.Parameter(torch.empty(classes, 1))
        # nn.Linear's initialisation (torch 2.x), in place: a K x D copy at K = 100k would be 1.6 GB more
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        nn.init.uniform_(self.bias, -1 / math.sqrt(dim), 1 / math.sqrt(dim))

    def forward(self, features: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        rows = F.embedding(candidates, self.weight, sparse=True)
        return features @ rows.T + F.embedding(candidates, self.bias, sparse=True).T


class CandidateModel(nn.Module):
    """Image tower + SampledHead: `model(images)` gives the features, `model(images, candidates)` the
    candidate words' logits as well (one forward, so DDP sees every parameter it updates)."""

    def __init__(self, backbone: nn.Module, head: SampledHead):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, images: torch.Tensor, candidates: torch.Tensor | None = None):
        features = self.backbone(images)
        return features if candidates is None else (features, self.head(features, candidates))


def top_words(
    features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, k: int = 10, chunk: int = 8192
) -> tuple[torch.Tensor, torch.Tensor]:
    """(each row's `k` highest-scoring word ids, best first; each row's log-sum-exp over all K words), scoring
    `chunk` words at a time: a running top k and log-sum-exp, never a rows x K matrix."""
    rows = len(features)
    total = torch.full((rows,), -math.inf, dtype=features.dtype, device=features.device)
    top_scores = torch.empty(rows, 0, dtype=features.dtype, device=features.device)
    top_ids = torch.empty(rows, 0, dtype=torch.long, device=features.device)
    for start in range(0, len(weight), chunk):
        logits = features @ weight[start : start + chunk].T + bias[start : start + chunk]
        total = torch.logaddexp(total, logits.logsumexp(dim=1))
        ids = torch.arange(start, start + logits.shape[1], device=features.device).expand(rows, -1)
        top_scores, picked = torch.cat([top_scores, logits], dim=1).topk(min(k, top_scores.shape[1] + logits.shape[1]))
        top_ids = torch.cat([top_ids, ids], dim=1).gather(1, picked)
    return top_ids, total


def full_softmax(
    features: torch.Tensor, head: SampledHead, labels: torch.Tensor, words: torch.Tensor, chunk: int = 8192
) -> tuple[torch.Tensor, float]:
    """(mean cross-entropy over all K words, precision@10 against `words`), K in chunks of `chunk` words."""
    weight, bias = head.weight.float(), head.bias.float()[:, 0]
    top_ids, total = top_words(features, weight, bias, chunk=chunk)
    label_logits = (features * weight[labels]).sum(dim=1) + bias[labels]
    hits = (top_ids[:, :, None] == words[:, None, :]).any(dim=2).float()
    return (total - label_logits).mean(), float(hits.mean())


@dataclass(frozen=True)
class SampledSoftmaxTask(WordSoftmaxTask):
    """Cross-entropy on one word of each image over the candidate words only: the batch's words plus
    `negatives` words drawn uniformly. Rows are drawn class-uniformly, so every word is equally likely to be
    a candidate, log Q(word) is one constant and the sampled-softmax correction (logit - log Q) cancels.
    Training never builds a batch x K matrix; evaluation scores all K words (in chunks). Its train
    precision@10 ranks the batch's candidates, its holdout precision@10 the whole dictionary."""

    negatives: int = 0

    def build(self, backbone: nn.Module, dim: int) -> nn.Module:
        return CandidateModel(backbone, SampledHead(dim, self.classes))

    def loss(self, model, batch):
        labels = batch["label"].long()
        if not model.training:
            features = model(batch["item"]).float()
            loss, precision = full_softmax(features, getattr(model, "module", model).head, labels, batch["words"])
            return loss, {"precision_at_10": precision}
        drawn = torch.randint(0, self.classes, (self.negatives,), device=labels.device)
        candidates, positions = torch.unique(torch.cat([labels, drawn]), return_inverse=True)
        _, logits = model(batch["item"], candidates)
        logits = logits.float()
        loss = F.cross_entropy(logits, positions[: len(labels)])
        return loss, {"precision_at_10": precision_at_10(logits.detach(), _positions_of(batch["words"], candidates))}


def _positions_of(words: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """Word ids -> their column among the sorted `candidates` (-1 where not a candidate, or padding)."""
    found = torch.searchsorted(candidates, words.clamp(min=0)).clamp(max=len(candidates) - 1)
    return torch.where((candidates[found] == words) & (words >= 0), found, -1)


TASKS = {"softmax": WordSoftmaxTask, "one_vs_all": OneVsAllTask, "sampled_softmax": SampledSoftmaxTask}


def make_task(loss: str, classes: int, negatives: int = 0):
    """The training task of `words.loss` over a dictionary of `classes` words."""
    return SampledSoftmaxTask(classes, negatives=negatives) if loss == "sampled_softmax" else TASKS[loss](classes)
