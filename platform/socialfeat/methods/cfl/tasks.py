"""Fang et al.'s two CNN objectives as training tasks: the K-way pseudo-class softmax and the regression
onto the normalised latent factor (cosine or L2)."""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from socialfeat.training.task import Headed, random_images


def topk_hits(logits: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """The fraction of rows whose label is among the k highest logits."""
    k = min(k, logits.shape[1])
    return float((logits.topk(k, dim=1).indices == labels[:, None]).any(dim=1).float().mean())


@dataclass(frozen=True)
class PseudoClassTask:
    """Cross-entropy over K pseudo classes (k-means clusters of the item factors)."""

    classes: int
    class_weights: tuple[float, ...] | None = None  # inverse class frequency (training.class_balanced)
    image_columns: tuple[str, ...] = ("item",)
    epoch_metrics: tuple[str, ...] = ("top1", "top5")

    @property
    def chance_loss(self) -> float:
        return math.log(max(self.classes, 2))  # uniform guessing over K classes

    def build(self, backbone: nn.Module, dim: int) -> nn.Module:
        return Headed(backbone, nn.Linear(dim, self.classes))

    def loss(self, model, batch):
        logits = model(batch["item"]).float()
        labels = batch["label"].long()
        weights = None if self.class_weights is None else torch.tensor(self.class_weights, device=logits.device)
        loss = F.cross_entropy(logits, labels, weight=weights)
        logits = logits.detach()
        return loss, {"top1": topk_hits(logits, labels, 1), "top5": topk_hits(logits, labels, 5)}

    def encoder(self, model) -> nn.Module:
        return getattr(model, "module", model).backbone

    def example_batch(self, rows, size, generator):
        return {
            "item": random_images(rows, size, generator),
            "label": torch.randint(0, self.classes, (rows,), generator=generator),
        }


@dataclass(frozen=True)
class LatentTask:
    """Regress the unit-length latent factor of each item: 1 - cosine, or the squared error."""

    dim: int
    distance: str = "cosine"  # "cosine" or "l2"
    image_columns: tuple[str, ...] = ("item",)
    epoch_metrics: tuple[str, ...] = ("cosine",)

    @property
    def chance_loss(self) -> float:
        # predicting nothing: 1 - cos = 1 for any direction; zeros give |t|^2 / dim = 1 / dim for unit targets
        return 1.0 if self.distance == "cosine" else 1.0 / self.dim

    def build(self, backbone: nn.Module, dim: int) -> nn.Module:
        return Headed(backbone, nn.Linear(dim, self.dim))

    def loss(self, model, batch):
        outputs = model(batch["item"]).float()
        targets = batch["target"].float()
        cosine = F.cosine_similarity(outputs, targets, dim=1)
        loss = (1 - cosine).mean() if self.distance == "cosine" else F.mse_loss(outputs, targets)
        return loss, {"cosine": float(cosine.detach().mean())}

    def encoder(self, model) -> nn.Module:
        return getattr(model, "module", model).backbone

    def example_batch(self, rows, size, generator):
        targets = torch.randn(rows, self.dim, generator=generator)
        return {"item": random_images(rows, size, generator), "target": F.normalize(targets, dim=1)}


def make_task(objective: str, classes: int, latent_dim: int, class_weights=None):
    """The task for `training.objective`."""
    if objective == "pseudo_class":
        return PseudoClassTask(classes, None if class_weights is None else tuple(class_weights))
    return LatentTask(latent_dim, "cosine" if objective == "latent_cosine" else "l2")
