"""The hashtag models' scores and negatives: the tensor score is the three-way sum, every in-batch
replacement is scored as if built by hand, and the hard negatives are the best-scoring valid replacements."""

import itertools

import torch

from socialfeat.evaluation.tagging import global_ranking, hits_at, retrieval_precision, user_rankings
from socialfeat.methods.hashtags.tasks import AXES, MLPHead, Sizes, TensorHead, _invalid, in_batch_negatives

SIZES = Sizes(image_dim=4, tag_dim=3, user_dim=2, hidden=5)


def _unit(rows, dim, generator):
    return torch.nn.functional.normalize(torch.randn(rows, dim, generator=generator), dim=1)


def _by_hand(head, h, f, u) -> torch.Tensor:
    if isinstance(head, TensorHead):  # h and u end in a constant 1
        h, u = torch.cat([h, torch.ones(1)]), torch.cat([u, torch.ones(1)])
        return sum(
            head.core[a, b, c] * h[a] * f[b] * u[c]
            for a, b, c in itertools.product(range(len(h)), range(len(f)), range(len(u)))
        )
    return head.replacement_scores(h[None], f[None], u[None])[0][0]


def test_every_in_batch_replacement_is_scored_as_the_triple_it_makes():
    generator = torch.Generator().manual_seed(0)
    for head in (TensorHead(8, 5, 6, SIZES), MLPHead(8, 5, 6, SIZES)):
        h, f, u = _unit(4, 4, generator), _unit(4, 3, generator), _unit(4, 2, generator)
        positive, swapped = head.replacement_scores(h, f, u)
        for i, j in itertools.product(range(4), range(4)):
            assert torch.allclose(positive[i], _by_hand(head, h[i], f[i], u[i]), atol=1e-5)
            assert torch.allclose(swapped["image"][i, j], _by_hand(head, h[j], f[i], u[i]), atol=1e-5)
            assert torch.allclose(swapped["tag"][i, j], _by_hand(head, h[i], f[j], u[i]), atol=1e-5)
            assert torch.allclose(swapped["user"][i, j], _by_hand(head, h[i], f[i], u[j]), atol=1e-5)


def test_hard_negatives_are_the_best_scoring_valid_in_batch_replacements():
    # a hand-made batch of 4 posts: rows 0 and 1 share an image, rows 2 and 3 a user; row 0's post carries
    # hashtags 1 and 2, so rows 1 and 2's hashtags are no negatives for it, and since row 3's post carries
    # hashtag 1 too, row 3's image and user are no negatives for row 0 (nor row 0's for row 3)
    batch = {
        "post_item": torch.tensor([7, 7, 8, 9]),
        "user": torch.tensor([0, 1, 2, 2]),
        "tag": torch.tensor([1, 2, 3, 1]),
        "tags": torch.tensor([[1, 2], [2, -1], [3, -1], [1, -1]]),
    }
    invalid = _invalid(batch)
    assert invalid["image"].tolist() == [
        [True, True, False, True],
        [True, True, False, False],
        [False, False, True, False],
        [True, False, False, True],
    ]
    assert invalid["user"].tolist()[3] == [True, False, True, True]
    assert invalid["tag"].tolist()[0] == [True, True, False, True]  # row 3's hashtag 1 is row 0's too
    scores = torch.tensor([[9.0, 8.0, 1.0, 2.0], [5.0, 0.0, 3.0, 4.0], [1.0, 7.0, 0.0, 6.0], [0.0, 0.0, 0.0, 0.0]])
    torch.manual_seed(0)
    for axis in AXES:
        random, hard, has_any = in_batch_negatives(scores, invalid[axis])
        for row in range(4):
            allowed = [j for j in range(4) if not invalid[axis][row, j]]
            assert bool(has_any[row]) == bool(allowed)
            if allowed:
                assert scores[row, hard[row]] == max(scores[row, j] for j in allowed), (axis, row)
                assert int(random[row]) in allowed
    assert in_batch_negatives(scores, invalid["tag"])[1][0] == 2  # only row 2's hashtag is not on row 0's post


def test_random_negatives_cover_every_valid_replacement():
    invalid = torch.eye(5, dtype=torch.bool)
    drawn = torch.stack([in_batch_negatives(torch.zeros(5, 5), invalid)[0] for _ in range(200)])
    for row in range(5):
        assert set(drawn[:, row].tolist()) == set(range(5)) - {row}


def test_tagging_metrics_and_frequency_baselines():
    truth = [[3], [1, 4], [2]]
    top = torch.tensor([[3, 0, 1], [0, 4, 1], [0, 1, 3]]).numpy()
    assert hits_at(top, truth, 1).tolist() == [True, False, False]
    assert hits_at(top, truth, 2).tolist() == [True, True, False]
    ranking = global_ranking([[0, 1], [1], [1, 2]], 4)
    assert ranking.tolist() == [1, 0, 2, 3]
    mine = user_rankings(["a", "a", "b"], [[2], [2, 3], [0]], ["a", "c"], ranking, 3)
    assert mine.tolist() == [[2, 3, 1], [1, 0, 2]]  # a's own hashtags, then the global ones; c has none
    scores = torch.tensor([[0.9, 0.1], [0.8, 0.7], [0.1, 0.9]]).numpy()
    precision, asked = retrieval_precision(scores, [[0], [1], [0]], k=1)
    assert asked == 2 and precision == 0.5  # hashtag 0 finds image 0 (carries it); hashtag 1 image 2 (does not)
