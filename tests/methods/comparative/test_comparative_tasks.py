"""The dual net's pieces: the weighted distance keeps non-negative weights whatever the gradient, CDL and TwoNets
losses point the right way, and the ranking metrics and Borda count on hand-made inputs."""

import math

import numpy as np
import pandas as pd
import torch

from socialfeat.methods.comparative.recommend import at_k, borda, chance
from socialfeat.methods.comparative.tasks import CDLTask, Sizes, WeightedDistance, distances, make_task
from socialfeat.vision.backbones import DIMS, backbone


def test_the_distance_weights_stay_non_negative_when_the_loss_pushes_them_down():
    distance = WeightedDistance(8, dropout=0.0)
    optimizer = torch.optim.SGD(distance.parameters(), lr=10.0)
    users, images = torch.randn(32, 8), torch.randn(32, 8)
    for _ in range(50):  # maximise the distance's negative: every weight wants to go below zero
        optimizer.zero_grad()
        distance(users, images).mean().backward()
        optimizer.step()
    assert (distance.weights >= 0).all() and distance.weights.max() < 0.01
    assert (distance(users, images) >= 0).all()


def test_the_distance_is_a_weighted_squared_l2():
    distance = WeightedDistance(3, dropout=0.5).eval()  # no dropout in eval mode
    with torch.no_grad():
        distance.raw.copy_(torch.tensor([math.log(math.e - 1), -30.0, math.log(math.e**2 - 1)]))
    d = distance(torch.tensor([[1.0, 5.0, 0.0]]), torch.tensor([[0.0, 0.0, 3.0]]))
    assert torch.allclose(d, torch.tensor([1.0 * 1 + 0.0 * 25 + 2.0 * 9]), atol=1e-4)


def test_cdl_loss_falls_when_the_liked_image_is_the_closer():
    task = CDLTask(Sizes(clusters=4, dim=4, dropout=0.0))
    torch.manual_seed(0)  # the weights: the suite's order must not decide them
    model = task.build(*backbone("small")).eval()
    batch = task.example_batch(6, 28, torch.Generator().manual_seed(0))
    batch = batch | {c: batch[c].permute(0, 3, 1, 2).float() / 255 for c in task.image_columns}
    loss, metrics = task.loss(model, batch)
    swapped, swapped_metrics = task.loss(model, batch | {"positive": batch["negative"], "negative": batch["positive"]})
    liked, other = model(batch["bag"].float(), batch["positive"], batch["negative"])
    gap = (other - liked).mean()  # how much farther the other image is than the liked one, on average
    # swapping liked and other flips every gap g, and softplus(-g) - softplus(g) = -g: the loss falls by the gap
    assert abs(metrics["closer"] + swapped_metrics["closer"] - 1) < 1e-6
    assert torch.isclose(swapped - loss, gap, atol=1e-5) and gap != 0


def test_ranking_distances_use_the_user_bag_and_the_image():
    task = make_task("twonets", Sizes(clusters=4, dim=4, dropout=0.3))
    model = task.build(*backbone("small"))
    bags, features = torch.rand(5, 4), torch.rand(5, DIMS["small"])
    first, again = distances(model, bags, features), distances(model, bags, features)
    assert torch.equal(first, again) and (first >= 0).all()  # eval mode: no dropout noise
    assert not torch.allclose(distances(model, bags.flip(0), features), first)


def test_precision_and_recall_at_k_chance_and_borda():
    relevant = np.array([1, 0, 1, 0, 0], bool)
    precision, recall = at_k(np.array([2, 1, 0, 3, 4]), relevant, 3)
    assert precision.tolist() == [1.0, 0.5, 2 / 3] and recall.tolist() == [0.5, 0.5, 1.0]
    expected_precision, expected_recall = chance(relevant, 5)
    assert np.allclose(expected_precision, 0.4) and np.allclose(expected_recall, [0.2, 0.4, 0.6, 0.8, 1.0])
    candidates = np.array([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]])
    points = borda(candidates, liked=np.array([[1.0, 0.1], [0.9, 0.0]]))
    assert points.tolist() == [6, 2, 4]  # both liked items rank the first candidate first, the second last


def test_popularity_ranks_by_train_likes_and_breaks_ties_at_random_not_by_candidate_order():
    from socialfeat.methods.comparative.recommend import _popularity

    # one test user's 100 candidates, the 20 concealed first (as test_candidates lists them), none ever liked
    candidates = pd.DataFrame({"user": 0, "item": np.arange(100), "concealed": np.arange(100) < 20})
    likes = pd.DataFrame({"user": [1, 2, 3], "item": [50, 50, 60], "part": ["train", "train", "test"]})
    scores = _popularity(candidates, likes, seed=0)
    order = np.argsort(-scores, kind="stable")
    assert order[0] == 50  # two train likes; i60's like is a test like, not counted
    precision, _ = at_k(order, candidates["concealed"].to_numpy(), 20)
    assert precision[-1] < 0.5  # a stable sort of equal counts would put the 20 concealed first: 1.0
