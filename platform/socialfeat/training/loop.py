"""One plain training loop (after torchvision's references/classification/train.py), knowing nothing of any
method: explicit arguments, batches as dicts of tensors, the objective a Task (training/task.py)."""

import math
from collections.abc import Iterable

import torch

from socialfeat.errors import UserError
from socialfeat.training.task import Task
from socialfeat.vision.transforms import to_input


def model_inputs(batch: dict, task: Task, device, crop: int, train: bool, generator=None) -> dict:
    """The batch on `device` with each image column cropped, flipped (training) and normalised there:
    on a GPU the uint8 images are 4x smaller to move."""
    moved = {name: value.to(device, non_blocking=True) for name, value in batch.items()}
    for column in task.image_columns:
        moved[column] = to_input(moved[column], crop, train, generator)
    return moved


def _task_loss(model, task: Task, batch: dict, device):
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        return task.loss(model, batch)


def _run(model, task: Task, batches: Iterable[dict], device, crop: int, step=None, generator=None) -> dict:
    """Mean loss and task metrics over `batches`; `step(loss)` after each when training."""
    sums, seen = {"loss": 0.0} | {name: 0.0 for name in task.epoch_metrics}, 0
    for batch in batches:
        inputs = model_inputs(batch, task, device, crop, step is not None, generator)
        loss, metrics = _task_loss(model, task, inputs, device)
        if step is not None:
            step(loss)
        rows = len(inputs[task.image_columns[0]])
        sums["loss"] += float(loss.detach()) * rows
        for name in task.epoch_metrics:
            sums[name] += metrics[name] * rows
        seen += rows
    return {name: total / max(seen, 1) for name, total in sums.items()} | {"examples": seen}


def train_one_epoch(
    model, task: Task, batches: Iterable[dict], optimizer, scheduler, device, crop: int, generator=None
) -> dict:
    """One pass over `batches` (random crops and flips); the mean loss and task metrics of the pass."""
    model.train()

    def step(loss):
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()

    return _run(model, task, batches, device, crop, step, generator)


@torch.no_grad()
def evaluate(model, task: Task, batches: Iterable[dict], device, crop: int) -> dict:
    """The mean loss and task metrics on held-out batches (centre crops, no augmentation)."""
    model.eval()
    return _run(model, task, batches, device, crop)


def epoch_report(epoch: int, train: dict, held: dict, task: Task, resumed: bool) -> dict:
    """The metrics every worker reports after an epoch (training/task.py: epoch_metric_names)."""
    report = {"epoch": epoch, "train_loss": train["loss"], "holdout_loss": held["loss"]}
    if task.chance_loss:
        report["holdout_loss_vs_chance"] = held["loss"] / task.chance_loss
    for name in task.epoch_metrics:
        report |= {f"train_{name}": train[name], f"holdout_{name}": held[name]}
    return report | {"resumed": resumed}


def make_optimizer(model, name: str, learning_rate: float, weight_decay: float, momentum: float):
    """SGD or AdamW over the model; parameters of a module with `sparse_gradients` (a K-word output layer read
    at a few rows per step) get plain SGD without momentum or weight decay: either would touch all K rows
    every step, which is what a sparse gradient is there to avoid."""
    sparse = {id(p): p for m in model.modules() if getattr(m, "sparse_gradients", False) for p in m.parameters()}
    dense = [p for p in model.parameters() if id(p) not in sparse]
    if sparse and name != "sgd":
        raise UserError(f"training.optimizer {name!r} cannot update a sparse output layer; use sgd")
    groups = [{"params": dense}] + (
        [{"params": list(sparse.values()), "momentum": 0.0, "weight_decay": 0.0}] if sparse else []
    )
    if name == "sgd":
        return torch.optim.SGD(groups, lr=learning_rate, momentum=momentum, weight_decay=weight_decay)
    return torch.optim.AdamW(groups, lr=learning_rate, weight_decay=weight_decay)


def warmup_cosine(optimizer, warmup_steps: int, total_steps: int):
    """Linear warm-up, then cosine decay to zero, stepped once per batch."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
