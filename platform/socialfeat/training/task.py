"""The training-task interface: what a method's objective gives the task-agnostic loop and Ray Train."""

from typing import Protocol

import torch
from torch import Tensor, nn


class Task(Protocol):
    """A picklable training objective, sent to every Ray Train worker in the train_loop_config.

    A batch is a dict of tensors: each of `image_columns` holds model-ready float images (N x 3 x C x C),
    every other column the rows' pass-through values (labels, targets, padded id lists) on the device."""

    image_columns: tuple[str, ...]  # ("item",) or ("positive", "negative")
    epoch_metrics: tuple[str, ...]  # per-batch metrics of `loss`, averaged per epoch (train_* and holdout_*)
    chance_loss: float | None  # what an uninformed model scores (holdout_loss_vs_chance = loss / this)

    def build(self, backbone: nn.Module, dim: int) -> nn.Module:
        """The trainable model: the image tower (output `dim`) with this task's head."""

    def loss(self, model: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        """(the loss to minimise, {metric: its mean over the batch} for each of `epoch_metrics`)."""

    def encoder(self, model: nn.Module) -> nn.Module:
        """The image tower of a model this task built (unwrapped from DDP)."""

    def example_batch(self, rows: int, size: int, generator: torch.Generator) -> dict[str, Tensor]:
        """Random rows of the columns this task reads, uint8 images of `size` px (contract tests, benchmarks)."""


class Headed(nn.Module):
    """An image tower and a head on its output: the model of most tasks."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.backbone(images))


def epoch_metric_names(task: Task) -> tuple[str, ...]:
    """What the workers report every epoch for `task` (ASHA schedules on any of these but `epoch`)."""
    names = ["epoch", "train_loss", "holdout_loss"]
    names += ["holdout_loss_vs_chance"] if task.chance_loss else []
    names += [f"{part}_{metric}" for metric in task.epoch_metrics for part in ("train", "holdout")]
    return tuple(names)


def stage_metric(name: str) -> str:
    """The train stage's metric for an epoch metric's last value: train_loss -> train/loss, holdout_top1 ->
    train/holdout_top1."""
    return "train/" + name.removeprefix("train_")


def random_images(rows: int, size: int, generator: torch.Generator) -> Tensor:
    return torch.randint(0, 256, (rows, size, size, 3), dtype=torch.uint8, generator=generator)
