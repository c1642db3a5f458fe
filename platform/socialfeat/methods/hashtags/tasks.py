"""Hashtag prediction as training tasks (Veit et al. 2018): the user-specific three-way tensor and MLP, trained
with in-batch ranking negatives, and the user-agnostic MCLL (softmax) and NCSL (regression onto PPMI-SVD
hashtag embeddings). Every task scores all K hashtags of an (image, user) pair with `tag_scores`."""

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from socialfeat.training.multilabel import WordSoftmaxTask
from socialfeat.training.task import random_images

AXES = ("image", "tag", "user")  # what a negative replaces


def in_batch_negatives(scores: torch.Tensor, invalid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(a random and the best-scoring replacement of each row, whether the row has any) from `scores` (N x N:
    row i with row j's element in place of its own) and `invalid` (N x N: replacements that are no negative,
    such as the row's own element or one of its true hashtags)."""
    hard = scores.detach().masked_fill(invalid, -math.inf).argmax(dim=1)
    random = torch.rand_like(scores, dtype=torch.float32).masked_fill(invalid, -1.0).argmax(dim=1)
    return random, hard, ~invalid.all(dim=1)


def ranking_loss(positive: torch.Tensor, negatives: list[torch.Tensor], valid: list[torch.Tensor]):
    """(mean logistic ranking loss softplus(s_neg - s_pos) over the valid negatives, the fraction of them the
    positive outscores)."""
    margins = torch.stack([positive - n for n in negatives], dim=1)
    weights = torch.stack(valid, dim=1).float()
    count = weights.sum().clamp(min=1.0)
    loss = (F.softplus(-margins) * weights).sum() / count
    return loss, float(((margins.detach() > 0).float() * weights).sum() / count)


class Embeddings(nn.Module):
    """The user and hashtag tables: a batch reads only its rows; with `sparse` their gradients are sparse too
    (make_optimizer gives them plain SGD), so a step costs the batch's rows whatever the table sizes."""

    def __init__(self, users: int, tags: int, user_dim: int, tag_dim: int, sparse: bool):
        super().__init__()
        self.users = nn.Embedding(users, user_dim, sparse=sparse)
        self.tags = nn.Embedding(tags, tag_dim, sparse=sparse)
        self.sparse_gradients = sparse
        for table in (self.users, self.tags):  # rows of about unit norm, which embed() keeps them at
            nn.init.normal_(table.weight, std=table.embedding_dim**-0.5)


def _with_one(vectors: torch.Tensor) -> torch.Tensor:
    return torch.cat([vectors, torch.ones_like(vectors[:, :1])], dim=1)


class TensorHead(nn.Module):
    """s(h, f, u) = sum_abc W[a, b, c] h_a f_b u_c, never an N x D x F x E tensor: every score contracts W
    with two of the three vectors first (N x one of D, F, E), then takes a dot product with the third. h and u
    carry a constant 1 as their last component, so W also holds a user-by-hashtag term (the user's own
    vocabulary, whatever the image), an image-by-hashtag term (for users the model knows little of) and a
    hashtag prior; f carries none, since every score must depend on the hashtag."""

    def __init__(self, dim: int, users: int, tags: int, sizes: "Sizes"):
        super().__init__()
        self.image = nn.Linear(dim, sizes.image_dim)
        self.tables = Embeddings(users, tags, sizes.user_dim, sizes.tag_dim, sizes.sparse)
        # h, f and u are unit vectors (embed), so scores start near zero (std about (DFE)^-1/2): a W of unit
        # entries gives unit-variance random scores that training first has to unlearn
        shape = (sizes.image_dim + 1, sizes.tag_dim, sizes.user_dim + 1)
        self.core = nn.Parameter(torch.randn(shape) * math.prod(shape) ** -0.5)

    def replacement_scores(self, h, f, u) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(the rows' scores, {axis: N x N scores of row i with row j's element on that axis})."""
        h, u = _with_one(h), _with_one(u)
        by_image = torch.einsum("dfe,nf,ne->nd", self.core, f, u)
        by_tag = torch.einsum("dfe,nd,ne->nf", self.core, h, u)
        by_user = torch.einsum("dfe,nd,nf->ne", self.core, h, f)
        positive = (by_image * h).sum(dim=1)
        return positive, {"image": by_image @ h.T, "tag": by_tag @ f.T, "user": by_user @ u.T}

    def tag_scores(self, h, tags, u) -> torch.Tensor:
        """N x K: each (h, u) row with every one of the K hashtag vectors `tags`."""
        return torch.einsum("dfe,nd,ne->nf", self.core, _with_one(h), _with_one(u)) @ tags.T


class MLPHead(nn.Module):
    """An MLP on [h; f; u]. Its first layer is the sum of one linear map per embedding, so scores with any
    element replaced come from broadcast sums (N x N x hidden), not N^2 concatenations."""

    def __init__(self, dim: int, users: int, tags: int, sizes: "Sizes"):
        super().__init__()
        self.image = nn.Linear(dim, sizes.image_dim)
        self.tables = Embeddings(users, tags, sizes.user_dim, sizes.tag_dim, sizes.sparse)
        self.by_image = nn.Linear(sizes.image_dim, sizes.hidden)
        self.by_tag = nn.Linear(sizes.tag_dim, sizes.hidden, bias=False)
        self.by_user = nn.Linear(sizes.user_dim, sizes.hidden, bias=False)
        self.out = nn.Linear(sizes.hidden, 1)

    def _score(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.out(F.relu(hidden)).squeeze(-1)

    def _parts(self, h, f, u) -> dict[str, torch.Tensor]:
        """Each unit vector's share of the first layer, scaled to unit-variance components (sqrt(dim))."""
        layers = {"image": (self.by_image, h), "tag": (self.by_tag, f), "user": (self.by_user, u)}
        return {axis: layer(v * v.shape[-1] ** 0.5) for axis, (layer, v) in layers.items()}

    def replacement_scores(self, h, f, u) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        parts = self._parts(h, f, u)
        whole = sum(parts.values())
        swapped = {axis: whole[:, None, :] - part[:, None, :] + part[None, :, :] for axis, part in parts.items()}
        return self._score(whole), {axis: self._score(hidden) for axis, hidden in swapped.items()}

    def tag_scores(self, h, tags, u, chunk: int = 1024) -> torch.Tensor:
        parts = self._parts(h, tags, u)
        rest, tags = parts["image"] + parts["user"], parts["tag"]
        return torch.cat(
            [self._score(rest[:, None, :] + tags[None, s : s + chunk]) for s in range(0, len(tags), chunk)], 1
        )


def embed(head: nn.Module, features: torch.Tensor, tags: torch.Tensor, users: torch.Tensor):
    """(h, f, u) as unit vectors: scores stay on one scale whatever the tower's output norm, and a table row
    cannot raise its scores by growing."""
    h = F.normalize(head.image(features), dim=1)
    return h, F.normalize(head.tables.tags(tags), dim=1), F.normalize(head.tables.users(users), dim=1)


class RankedModel(nn.Module):
    """Image tower + a user-specific head: `model(images)` gives the tower's features; with tags and users, the
    scores of the rows and of their in-batch replacements as well (one forward, so DDP sees every parameter)."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, images, tags=None, users=None):
        features = self.backbone(images)
        if tags is None:
            return features
        return self.head.replacement_scores(*embed(self.head, features, tags, users))


@dataclass(frozen=True)
class Sizes:
    image_dim: int = 300
    tag_dim: int = 300
    user_dim: int = 50
    hidden: int = 256
    sparse: bool = False


def sizes_of(hashtags) -> Sizes:
    """The embedding sizes of a `hashtags` config section."""
    return Sizes(hashtags.image_dim, hashtags.tag_dim, hashtags.user_dim, hashtags.hidden, hashtags.sparse)


def _invalid(batch: dict) -> dict[str, torch.Tensor]:
    """Replacements that are no negatives: the row's own image or user, and any element of a row whose post
    carries the row's hashtag (that image was given it, that user gave it); on the hashtag axis, the
    hashtags of the row's own post."""
    carries = (batch["tag"][:, None, None] == batch["tags"][None, :, :]).any(dim=2)  # [i, j]: post j has tag i
    return {
        "image": carries | (batch["post_item"][:, None] == batch["post_item"][None, :]),
        "tag": carries.T,  # [i, j]: post i has tag j
        "user": carries | (batch["user"][:, None] == batch["user"][None, :]),
    }


def _example(tags: int, users: int, rows: int, size: int, generator) -> dict:
    tag = torch.randint(0, tags, (rows,), generator=generator)
    tag_lists = torch.stack([tag, torch.full_like(tag, -1)], dim=1)
    return {
        "item": random_images(rows, size, generator),
        "post_item": torch.arange(rows),
        "user": torch.randint(0, users, (rows,), generator=generator),
        "tag": tag,
        "tags": tag_lists,
        "label": tag.clone(),
        "words": tag_lists.clone(),
    }


@dataclass(frozen=True)
class _HashtagTask:
    tags: int
    users: int
    sizes: Sizes = Sizes()
    image_columns: tuple[str, ...] = ("item",)
    user_specific: bool = True

    def encoder(self, model) -> nn.Module:
        return getattr(model, "module", model).backbone

    def example_batch(self, rows, size, generator):
        return _example(self.tags, self.users, rows, size, generator)


@dataclass(frozen=True)
class RankedTask(_HashtagTask):
    """A user-specific scorer trained on (image, user, hashtag) rows, each against six in-batch negatives: per
    axis one random replacement ("intermediate") and the best-scoring one ("hard")."""

    head: str = "tensor"
    epoch_metrics: tuple[str, ...] = ("ranked_above",)
    chance_loss: float = math.log(2)  # softplus(0): every negative scored like the positive

    def build(self, backbone: nn.Module, dim: int) -> nn.Module:
        head = (TensorHead if self.head == "tensor" else MLPHead)(dim, self.users, self.tags, self.sizes)
        return RankedModel(backbone, head)

    def loss(self, model, batch):
        positive, swapped = model(batch["item"], batch["tag"].long(), batch["user"].long())
        positive, invalid = positive.float(), _invalid(batch)
        negatives, valid = [], []
        for axis in AXES:
            scores = swapped[axis].float()
            random, hard, has_any = in_batch_negatives(scores, invalid[axis])
            negatives += [scores.gather(1, random[:, None])[:, 0], scores.gather(1, hard[:, None])[:, 0]]
            valid += [has_any, has_any]
        loss, above = ranking_loss(positive, negatives, valid)
        return loss, {"ranked_above": above}

    def tag_scores(self, model, features: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        head = getattr(model, "module", model).head
        every_tag = torch.arange(head.tables.tags.num_embeddings, device=features.device)
        h, tags, u = embed(head, features, every_tag, users)
        return head.tag_scores(h, tags, u)


@dataclass(frozen=True)
class MCLLTask(WordSoftmaxTask):
    """User-agnostic: the words method's class-uniform softmax over the K hashtags."""

    users: int = 0
    user_specific: bool = False

    @property
    def tags(self) -> int:
        return self.classes

    def tag_scores(self, model, features: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        return getattr(model, "module", model).head(features)

    def example_batch(self, rows, size, generator):
        return _example(self.classes, max(self.users, 1), rows, size, generator)


class NCSLModel(nn.Module):
    """Image tower + a linear map into the PPMI-SVD space, with the K hashtag embeddings as a fixed buffer."""

    def __init__(self, backbone: nn.Module, dim: int, tag_embeddings: np.ndarray):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(dim, tag_embeddings.shape[1])
        self.register_buffer("tag_embeddings", torch.from_numpy(np.asarray(tag_embeddings, np.float32)))

    def forward(self, images):
        return self.head(self.backbone(images))


@dataclass(frozen=True)
class NCSLTask(_HashtagTask):
    """User-agnostic: regress the image onto the mean PPMI-SVD embedding of its post's hashtags with the
    negative cosine similarity loss; hashtags rank by cosine to the prediction."""

    tag_embeddings: np.ndarray = field(default=None, compare=False, repr=False)
    user_specific: bool = False
    epoch_metrics: tuple[str, ...] = ("cosine",)
    chance_loss: float | None = None  # -cos has no uninformed value to compare with

    def build(self, backbone: nn.Module, dim: int) -> nn.Module:
        return NCSLModel(backbone, dim, self.tag_embeddings)

    def loss(self, model, batch):
        predicted = model(batch["item"]).float()
        cosine = F.cosine_similarity(predicted, batch["target"].float(), dim=1)
        return -cosine.mean(), {"cosine": float(cosine.detach().mean())}

    def tag_scores(self, model, features: torch.Tensor, users: torch.Tensor) -> torch.Tensor:
        model = getattr(model, "module", model)
        return F.normalize(model.head(features), dim=1) @ F.normalize(model.tag_embeddings, dim=1).T

    def example_batch(self, rows, size, generator):
        batch = _example(self.tags, self.users, rows, size, generator)
        return batch | {"target": torch.from_numpy(self.tag_embeddings)[batch["tag"]]}


MODELS = ("tensor", "mlp", "mcll", "ncsl")


def make_task(model: str, tags: int, users: int, sizes: Sizes, tag_embeddings: np.ndarray | None = None):
    """The training task of `hashtags.model` over `tags` hashtags and `users` users (ncsl: its embeddings)."""
    if model == "mcll":
        return MCLLTask(tags, users=users)
    if model == "ncsl":
        if tag_embeddings is None:
            tag_embeddings = F.normalize(torch.randn(tags, sizes.tag_dim), dim=1).numpy()
        return NCSLTask(tags, users, sizes, tag_embeddings=tag_embeddings)
    return RankedTask(tags, users, sizes, head=model)
