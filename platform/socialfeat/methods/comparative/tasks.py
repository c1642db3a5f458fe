"""Comparative deep learning (Lei et al. 2016) as training tasks: a dual net puts images (the image tower) and
users (an MLP on their bag of tag clusters) in one space, where a learned non-negative weighted squared L2
distance ranks images for a user. CDL learns from triplets (the liked image should be the closer), TwoNets, the
paper's baseline, from doublets (liked or not)."""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from socialfeat.training.task import random_images

MODELS = ("cdl", "cdl_hinge", "twonets")
UNIT_WEIGHT = math.log(math.e - 1)  # softplus(UNIT_WEIGHT) = 1


class WeightedDistance(nn.Module):
    """d(u, v) = sum_k w_k dropout((u_k - v_k)^2) with w = softplus(raw): every weight is non-negative by
    construction, so d stays a (semi-)distance whatever the optimiser does."""

    def __init__(self, dim: int, dropout: float):
        super().__init__()
        self.raw = nn.Parameter(torch.full((dim,), UNIT_WEIGHT))
        self.dropout = nn.Dropout(dropout)

    @property
    def weights(self) -> torch.Tensor:
        return F.softplus(self.raw)

    def forward(self, users: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        return (self.dropout((users - images) ** 2) * self.weights).sum(dim=-1)


class DualNet(nn.Module):
    """The image tower and a linear map, the user MLP (bag -> hidden -> d), both onto the unit sphere of the
    joint space (so distances start on one scale and the weights learn it), and the distance layer.
    `model(bags, *images)` gives the distance of each user to each image column."""

    def __init__(self, backbone: nn.Module, dim: int, sizes: "Sizes"):
        super().__init__()
        self.backbone = backbone
        self.image = nn.Linear(dim, sizes.dim)
        self.user = nn.Sequential(
            nn.Linear(sizes.clusters, sizes.hidden), nn.ReLU(), nn.Linear(sizes.hidden, sizes.dim)
        )
        self.distance = WeightedDistance(sizes.dim, sizes.dropout)

    def embed_images(self, features: torch.Tensor) -> torch.Tensor:
        """Image tower outputs -> unit vectors of the joint space."""
        return F.normalize(self.image(features), dim=-1)

    def embed_users(self, bags: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.user(bags), dim=-1)

    def forward(self, bags: torch.Tensor, *images: torch.Tensor) -> list[torch.Tensor]:
        users = self.embed_users(bags)
        return [self.distance(users, self.embed_images(self.backbone(batch))) for batch in images]


class TwoNetsModel(DualNet):
    """TwoNets: the dual net whose distance, squashed by a sigmoid, says whether the user likes the image:
    P(like) = sigmoid(offset - d)."""

    def __init__(self, backbone: nn.Module, dim: int, sizes: "Sizes"):
        super().__init__(backbone, dim, sizes)
        self.offset = nn.Parameter(torch.ones(()))

    def forward(self, bags: torch.Tensor, *images: torch.Tensor) -> list[torch.Tensor]:
        return [self.offset - distance for distance in super().forward(bags, *images)]


@dataclass(frozen=True)
class Sizes:
    clusters: int = 64  # the bag's length: tag clusters
    dim: int = 64  # d: the joint space (paper 1024)
    hidden: int = 256  # the user MLP's hidden layer
    dropout: float = 0.1  # on the distance layer's terms
    margin: float = 1.0  # cdl_hinge


def sizes_of(comparative, clusters: int | None = None) -> Sizes:
    """The sizes of a `comparative` config section (`clusters`: the bags' length, when it differs)."""
    c = comparative
    return Sizes(clusters or c.tag_clusters, c.dim, c.hidden, c.dropout, c.margin)


@dataclass(frozen=True)
class _DualTask:
    sizes: Sizes = Sizes()

    def encoder(self, model) -> nn.Module:
        return getattr(model, "module", model).backbone


@dataclass(frozen=True)
class CDLTask(_DualTask):
    """Triplets (user, liked image, other image): cross-entropy on d(user, other) - d(user, liked), the logit of
    "the liked image is the closer" (or, with `hinge`, max(0, margin + d_liked - d_other))."""

    hinge: bool = False
    image_columns: tuple[str, ...] = ("positive", "negative")
    epoch_metrics: tuple[str, ...] = ("closer",)

    @property
    def chance_loss(self) -> float:
        return self.sizes.margin if self.hinge else math.log(2)  # both distances equal

    def build(self, backbone: nn.Module, dim: int) -> nn.Module:
        return DualNet(backbone, dim, self.sizes)

    def loss(self, model, batch):
        liked, other = (d.float() for d in model(batch["bag"].float(), batch["positive"], batch["negative"]))
        gap = other - liked
        loss = F.relu(self.sizes.margin - gap).mean() if self.hinge else F.softplus(-gap).mean()
        return loss, {"closer": float((gap.detach() > 0).float().mean())}

    def example_batch(self, rows, size, generator):
        return {
            "positive": random_images(rows, size, generator),
            "negative": random_images(rows, size, generator),
            "bag": F.normalize(torch.rand(rows, self.sizes.clusters, generator=generator), dim=1),
        }


@dataclass(frozen=True)
class TwoNetsTask(_DualTask):
    """Doublets (user, image, liked 0/1): binary cross-entropy of sigmoid(offset - distance)."""

    image_columns: tuple[str, ...] = ("item",)
    epoch_metrics: tuple[str, ...] = ("accuracy",)
    chance_loss: float = math.log(2)  # even odds on balanced doublets

    def build(self, backbone: nn.Module, dim: int) -> nn.Module:
        return TwoNetsModel(backbone, dim, self.sizes)

    def loss(self, model, batch):
        (logits,) = model(batch["bag"].float(), batch["item"])
        labels = batch["label"].float()
        loss = F.binary_cross_entropy_with_logits(logits.float(), labels)
        return loss, {"accuracy": float(((logits.detach() > 0).float() == labels).float().mean())}

    def example_batch(self, rows, size, generator):
        return {
            "item": random_images(rows, size, generator),
            "bag": F.normalize(torch.rand(rows, self.sizes.clusters, generator=generator), dim=1),
            "label": torch.randint(0, 2, (rows,), generator=generator),
        }


def make_task(model: str, sizes: Sizes):
    """The training task of `comparative.model`."""
    if model == "twonets":
        return TwoNetsTask(sizes)
    return CDLTask(sizes, hinge=model == "cdl_hinge")


@torch.no_grad()
def distances(model: nn.Module, bags: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """Each row's user (bag) to its image (tower output) in the joint space, dropout off: what ranks a user's
    candidates, the nearest first."""
    model = getattr(model, "module", model).eval()
    return model.distance(model.embed_users(bags.float()), model.embed_images(features.float())).float()
