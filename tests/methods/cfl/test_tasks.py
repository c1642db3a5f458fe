"""Fang et al.'s two objectives as tasks: the pseudo-class softmax and the latent-factor regression."""

import math

import pytest
import torch
import torch.nn.functional as F

from socialfeat.methods.cfl.tasks import LatentTask, PseudoClassTask, make_task
from socialfeat.training.loop import model_inputs
from socialfeat.vision.backbones import backbone

CPU = torch.device("cpu")


def _batch(task, rows=16, seed=0):
    return model_inputs(task.example_batch(rows, 32, torch.Generator().manual_seed(seed)), task, CPU, 28, False)


def test_pseudo_class_task_scores_chance_at_random_and_weights_rare_classes():
    torch.manual_seed(0)
    task = PseudoClassTask(6)
    model = task.build(*backbone("small"))
    torch.nn.init.zeros_(model.head.weight)  # uniform predictions: the loss is exactly ln K
    torch.nn.init.zeros_(model.head.bias)
    batch = _batch(task)
    loss, metrics = task.loss(model, batch)
    assert loss.item() == pytest.approx(math.log(6)) == pytest.approx(task.chance_loss)
    assert set(metrics) == set(task.epoch_metrics) and 0 <= metrics["top1"] <= metrics["top5"] <= 1
    torch.nn.init.normal_(model.head.weight)
    weighted = PseudoClassTask(6, class_weights=(1.0, 0, 0, 0, 0, 0))  # only class 0 counts
    logits = model(batch["item"])
    only_zero = batch["label"] == 0
    expected = F.cross_entropy(logits[only_zero], batch["label"][only_zero])
    assert weighted.loss(model, batch)[0].item() == pytest.approx(expected.item(), rel=1e-5)


def test_latent_tasks_regress_unit_factors_with_their_chance_levels():
    torch.manual_seed(0)
    cosine, l2 = make_task("latent_cosine", 6, 12), make_task("latent_l2", 6, 12)
    assert isinstance(cosine, LatentTask) and cosine.distance == "cosine" and l2.distance == "l2"
    assert cosine.chance_loss == 1.0 and l2.chance_loss == pytest.approx(1 / 12)
    batch = _batch(cosine)
    assert torch.allclose(batch["target"].norm(dim=1), torch.ones(16))
    model = cosine.build(*backbone("small"))
    with torch.no_grad():  # predicting the targets themselves: cosine loss 0, L2 loss 0
        model.head = torch.nn.Identity()
        outputs = model(batch["item"])
    exact = {"item": batch["item"], "target": outputs}
    assert cosine.loss(model, exact)[0].item() == pytest.approx(0, abs=1e-5)
    assert l2.loss(model, exact)[0].item() == pytest.approx(0, abs=1e-6)
    assert cosine.loss(model, exact)[1]["cosine"] == pytest.approx(1, abs=1e-5)
