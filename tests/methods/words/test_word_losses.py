"""The word losses: the sampled softmax is the full softmax over the batch's candidate words, with a sparse
output-layer gradient, and evaluation ranks the whole dictionary in chunks."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from socialfeat.config import ConfigError
from socialfeat.methods import METHODS, load_config
from socialfeat.methods.words.stages import top_words
from socialfeat.training.loop import make_optimizer
from socialfeat.training.multilabel import SampledSoftmaxTask, full_softmax, precision_at_10
from socialfeat.vision.backbones import backbone

CLASSES = 50


def _model_and_batch(negatives: int = 0):
    torch.manual_seed(0)
    task = SampledSoftmaxTask(CLASSES, negatives=negatives)
    model = task.build(*backbone("small"))
    batch = task.example_batch(16, 28, torch.Generator().manual_seed(1))
    batch["item"] = batch["item"].permute(0, 3, 1, 2).float() / 255
    return task, model, batch


def _full_logits(model, images):
    head = model.head
    return model(images) @ head.weight.T + head.bias[:, 0]


def test_sampled_loss_is_the_softmax_over_the_candidates_and_touches_only_their_rows():
    task, model, batch = _model_and_batch(negatives=5)
    torch.manual_seed(3)
    loss, _ = task.loss(model.train(), batch)
    loss.backward()
    gradient = model.head.weight.grad.coalesce()
    assert gradient.is_sparse and model.head.bias.grad.is_sparse
    touched = gradient.indices()[0].unique()
    torch.manual_seed(3)  # the same negatives again
    candidates = torch.unique(torch.cat([batch["label"], torch.randint(0, CLASSES, (5,))]))
    assert torch.equal(touched, candidates) and len(candidates) < CLASSES
    with torch.no_grad():
        full = _full_logits(model, batch["item"])[:, candidates]
        position = torch.searchsorted(candidates, batch["label"])
        assert torch.allclose(loss, F.cross_entropy(full, position), atol=1e-5)


def test_evaluation_scores_every_word_in_chunks_like_the_full_softmax():
    task, model, batch = _model_and_batch()
    with torch.no_grad():
        features = model.eval()(batch["item"])
        loss, precision = full_softmax(features, model.head, batch["label"], batch["words"], chunk=7)
        full = _full_logits(model, batch["item"])
        assert torch.allclose(loss, F.cross_entropy(full, batch["label"]), atol=1e-5)
        assert precision == pytest.approx(precision_at_10(full, batch["words"]))
        task_loss, task_metrics = task.loss(model, batch)
        assert task_loss == pytest.approx(float(loss), abs=1e-5) and task_metrics == {"precision_at_10": precision}


def test_sgd_moves_only_the_candidate_rows_and_adamw_is_refused_for_a_sparse_layer():
    task, model, batch = _model_and_batch()
    before = model.head.weight.detach().clone()
    optimizer = make_optimizer(model, "sgd", 0.1, weight_decay=1e-2, momentum=0.9)
    for _ in range(2):
        optimizer.zero_grad()
        task.loss(model.train(), batch)[0].backward()
        optimizer.step()
    moved = (model.head.weight.detach() != before).any(dim=1).nonzero()[:, 0]
    assert torch.equal(moved, batch["label"].unique())  # no weight decay or momentum spreading to other rows
    with pytest.raises(ValueError, match="training.optimizer 'adamw'"):
        make_optimizer(model, "adamw", 1e-3, weight_decay=0.0, momentum=0.0)


def test_top_words_in_chunks_matches_a_full_ranking():
    rng = np.random.default_rng(0)
    vectors, weights, bias = rng.normal(size=(9, 4)), rng.normal(size=(103, 4)), rng.normal(size=103)
    expected = np.argsort(-(vectors @ weights.T + bias), axis=1)[:, :10]
    assert np.array_equal(top_words(vectors, weights, bias, chunk=16), expected)


def test_sampled_softmax_with_adamw_is_a_config_error_naming_both_keys():
    with pytest.raises(ConfigError, match="words.loss sampled_softmax .* training.optimizer: sgd"):
        load_config(None, ["method=words", "words.loss=sampled_softmax"])
    sampled = ["method=words", "words.loss=sampled_softmax", "training.optimizer=sgd"]
    task = METHODS["words"].task(load_config(None, [*sampled, "words.negatives=7"]))
    assert isinstance(task, SampledSoftmaxTask) and task.negatives == 7 and task.image_columns == ("item",)
    with pytest.raises(ConfigError, match="NCCL cannot all-reduce across training.num_workers = 4"):
        load_config(None, [*sampled, "training.use_gpu=true", "training.num_workers=4"])
