"""One plain training loop (after torchvision's references/classification/train.py): explicit
arguments, batches as dicts of tensors ("image" uint8 N x S x S x 3, "label", optional "target")."""
import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F

from socialfeat.vision.transforms import to_input


def loss_and_logits(model, batch: dict, device, crop: int, objective: str, train: bool, class_weights=None,
                    generator=None):
    # crop, flip and normalise where the model runs: on a GPU the uint8 batch is 4x smaller to move
    images = to_input(batch["image"].to(device, non_blocking=True), crop, train, generator)
    if device.type == "cuda":
        images = images.to(memory_format=torch.channels_last)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        outputs = model(images)
    outputs = outputs.float()
    if objective == "pseudo_class":
        labels = batch["label"].to(device).long()
        return F.cross_entropy(outputs, labels, weight=class_weights), outputs, labels
    targets = batch["target"].to(device).float()
    if objective == "latent_cosine":
        return (1 - F.cosine_similarity(outputs, targets, dim=1)).mean(), outputs, None
    return F.mse_loss(outputs, targets), outputs, None


def _topk_hits(logits: torch.Tensor, labels: torch.Tensor, k: int) -> int:
    k = min(k, logits.shape[1])
    return int((logits.topk(k, dim=1).indices == labels[:, None]).any(dim=1).sum())


def train_one_epoch(model, batches: Iterable[dict], optimizer, scheduler, device, crop: int, objective: str,
                    class_weights=None, generator=None) -> dict:
    """One pass over `batches`; returns mean loss and top-1 on the (augmented) training batches."""
    model.train()
    total_loss, seen, correct = 0.0, 0, 0
    for batch in batches:
        loss, logits, labels = loss_and_logits(model, batch, device, crop, objective, True, class_weights, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        total_loss += float(loss.detach()) * len(logits)
        seen += len(logits)
        if labels is not None:
            correct += _topk_hits(logits.detach(), labels, 1)
    return {"loss": total_loss / max(seen, 1), "top1": correct / max(seen, 1), "examples": seen}


@torch.no_grad()
def evaluate(model, batches: Iterable[dict], device, crop: int, objective: str) -> dict:
    """Mean loss, top-1 and top-5 on held-out batches (centre crops, no augmentation)."""
    model.eval()
    total_loss, seen, top1, top5 = 0.0, 0, 0, 0
    for batch in batches:
        loss, logits, labels = loss_and_logits(model, batch, device, crop, objective, False)
        total_loss += float(loss) * len(logits)
        seen += len(logits)
        if labels is not None:
            top1 += _topk_hits(logits, labels, 1)
            top5 += _topk_hits(logits, labels, 5)
    return {"loss": total_loss / max(seen, 1), "top1": top1 / max(seen, 1), "top5": top5 / max(seen, 1),
            "examples": seen}


def make_optimizer(model, name: str, learning_rate: float, weight_decay: float, momentum: float):
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=learning_rate, momentum=momentum, weight_decay=weight_decay)
    return torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=weight_decay)


def warmup_cosine(optimizer, warmup_steps: int, total_steps: int):
    """Linear warm-up, then cosine decay to zero, stepped once per batch."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
