"""Tagging metrics over arrays (Veit et al. 2018): accuracy@k of ranked hashtags, hashtag-based image retrieval
and the image-free frequency baselines."""

from collections import Counter

import numpy as np


def hits_at(top: np.ndarray, truth: list, k: int) -> np.ndarray:
    """Per row: is any of its true hashtag ids among the first `k` of its ranked ids (Veit's A@k)?"""
    return np.array([bool(set(row[:k].tolist()) & set(tags)) for row, tags in zip(top, truth)], bool)


def global_ranking(train_tag_lists, tags: int) -> np.ndarray:
    """Every hashtag id, the most used on train posts first (ties by id)."""
    counts = np.bincount(np.concatenate([np.asarray(t, np.int64) for t in train_tag_lists]), minlength=tags)
    return np.argsort(-counts, kind="stable")


def user_rankings(train_users, train_tag_lists, users, fallback: np.ndarray, k: int) -> np.ndarray:
    """N x k: for each of `users`, their own most used train hashtags (ties by global rank), then the global
    ranking's next ones (a user's own few hashtags do not fill k)."""
    rank_of = np.empty(len(fallback), np.int64)
    rank_of[fallback] = np.arange(len(fallback))
    own: dict = {}
    for user, tags in zip(train_users, train_tag_lists):
        own.setdefault(user, Counter()).update(tags)
    rows = []
    for user in users:
        counts = own.get(user, Counter())
        mine = sorted(counts, key=lambda tag: (-counts[tag], rank_of[tag]))[:k]
        rest = [tag for tag in fallback[: k + len(mine)] if tag not in counts][: k - len(mine)]
        rows.append(mine + rest)
    return np.array(rows, np.int64)


def retrieval_precision(image_scores: np.ndarray, image_tags: list, k: int = 10) -> tuple[float, int]:
    """(mean over the hashtags that some image carries of the fraction of its `k` top-scoring images that
    carry it, how many hashtags were asked). `image_scores` is images x K, `image_tags` each image's ids."""
    carried: dict = {}
    for image, tags in enumerate(image_tags):
        for tag in tags:
            carried.setdefault(int(tag), set()).add(image)
    if not carried:
        return 0.0, 0
    asked = np.array(sorted(carried))
    top = np.argsort(-image_scores[:, asked], axis=0, kind="stable")[:k].T  # asked x k image positions
    precision = [len(carried[tag] & set(images.tolist())) / len(images) for tag, images in zip(asked, top)]
    return float(np.mean(precision)), len(asked)
