"""Word prediction as training tasks (Joulin et al. 2016): the multi-class logistic loss over a sampled word
of each image, and the one-vs-all binary loss over all its words."""

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
class WordSoftmaxTask:
    """Cross-entropy on one word of each image, the others counting as negatives (rows are drawn
    class-uniformly: a word, then an image with it)."""

    classes: int
    image_columns: tuple[str, ...] = ("item",)
    epoch_metrics: tuple[str, ...] = ("precision_at_10",)

    @property
    def chance_loss(self) -> float:
        return math.log(max(self.classes, 2))

    def build(self, backbone: nn.Module, dim: int) -> nn.Module:
        return Headed(backbone, nn.Linear(dim, self.classes))

    def loss(self, model, batch):
        logits = model(batch["item"]).float()
        loss = F.cross_entropy(logits, batch["label"].long())
        return loss, {"precision_at_10": precision_at_10(logits.detach(), batch["words"])}

    def encoder(self, model) -> nn.Module:
        return getattr(model, "module", model).backbone

    def example_batch(self, rows, size, generator):
        return _example(self.classes, rows, size, generator)


@dataclass(frozen=True)
class OneVsAllTask:
    """Binary logistic loss of every dictionary word against the image's word set."""

    classes: int
    image_columns: tuple[str, ...] = ("item",)
    epoch_metrics: tuple[str, ...] = ("precision_at_10",)
    chance_loss: float = math.log(2)  # every word scored at even odds

    def build(self, backbone: nn.Module, dim: int) -> nn.Module:
        return Headed(backbone, nn.Linear(dim, self.classes))

    def loss(self, model, batch):
        logits = model(batch["item"]).float()
        loss = F.binary_cross_entropy_with_logits(logits, multi_hot(batch["words"].long(), self.classes))
        return loss, {"precision_at_10": precision_at_10(logits.detach(), batch["words"])}

    def encoder(self, model) -> nn.Module:
        return getattr(model, "module", model).backbone

    def example_batch(self, rows, size, generator):
        return _example(self.classes, rows, size, generator)


TASKS = {"softmax": WordSoftmaxTask, "one_vs_all": OneVsAllTask}
