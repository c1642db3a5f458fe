"""The stages of user-specific hashtag prediction (Veit et al. 2018): posts and their time split, the model
trained on the train posts, and its tagging accuracy on the test posts beside the frequency baselines."""

import os

import numpy as np
import pandas as pd
import torch

from socialfeat.data import schema
from socialfeat.errors import UserError
from socialfeat.evaluation.tagging import global_ranking, hits_at, retrieval_precision, user_rankings
from socialfeat.methods.hashtags.posts import hashtag_vocabulary, posts_of, spam_users, time_split
from socialfeat.methods.hashtags.tasks import make_task, sizes_of
from socialfeat.pipeline.train import holdout_mask, tower_outputs, train_task, trained_model
from socialfeat.stages import StageContext
from socialfeat.stats import significance
from socialfeat.text import class_uniform_rows, ppmi_svd

POSTS_KEYS = {"min_users", "max_tags_per_post", "train_fraction"}


class NoTags(UserError):
    """The dataset has no tag log."""


def _tag_log(ctx: StageContext) -> pd.DataFrame:
    dataset = ctx.dataset()
    if dataset.tags is None or dataset.tags.empty:
        state = "has no rows" if dataset.tags is not None else "does not exist"
        raise NoTags(
            f"{os.path.join(dataset.root, schema.TAGS)} {state}: the hashtags method learns from who tagged "
            "which image (user_id, item_id, tag)"
        )
    return dataset.tags


def _filtered_posts(ctx: StageContext) -> tuple[pd.DataFrame, dict]:
    """Posts on items with an image, spam users dropped, each with its part of the time split."""
    cfg, items, tags = ctx.cfg.hashtags, ctx.dataset().items, _tag_log(ctx)
    posts = posts_of(tags)
    where = os.path.join(ctx.dataset().root, schema.TAGS)
    if posts.empty:
        raise NoTags(
            f"{where}: every one of the {len(tags)} values in column 'tag' normalises to an empty hashtag "
            "(only '#', blanks or marks): there is nothing to predict"
        )
    with_image = posts["item_id"].isin(items.loc[items["image_ref"].notna(), "item_id"])
    if not with_image.any():
        raise NoTags(f"{where}: none of the {len(posts)} posts is on an item with an image")
    spam = spam_users(posts[with_image], cfg.max_tags_per_post)
    is_spam = posts["user_id"].isin(spam)
    if not (with_image & ~is_spam).any():
        raise NoTags(
            f"every one of the {len(spam)} users puts more than hashtags.max_tags_per_post = "
            f"{cfg.max_tags_per_post:g} hashtags on a post on average, so all are dropped as spam: "
            "raise hashtags.max_tags_per_post"
        )
    kept = posts[with_image & ~is_spam].reset_index(drop=True)
    counts = {
        "posts/without_image": int((~with_image).sum()),
        "posts/spam_users": len(spam),
        "posts/spam_posts": int((with_image & is_spam).sum()),
    }
    return kept.assign(part=time_split(kept, cfg.train_fraction)), counts


def posts(ctx: StageContext, tmp: str) -> dict:
    """posts.parquet (user_id, item_id, user, hashtags: vocabulary ids, timestamp, part), vocabulary.parquet
    (hashtag, users) and users.parquet (user_id, user, train_posts)."""
    frame, counts = _filtered_posts(ctx)
    vocabulary = hashtag_vocabulary(frame[frame["part"] == "train"], ctx.cfg.hashtags.min_users)
    index = {tag: n for n, tag in enumerate(vocabulary)}
    frame["hashtags"] = frame["hashtags"].map(lambda tags: [index[t] for t in tags if t in index])
    with_tags = frame[frame["hashtags"].map(len) > 0]
    train = with_tags[with_tags["part"] == "train"]
    users = train.groupby("user_id").size().rename("train_posts").reset_index()
    users["user"] = np.arange(len(users))
    kept = with_tags[with_tags["user_id"].isin(users["user_id"])].merge(users[["user_id", "user"]], on="user_id")
    kept.to_parquet(os.path.join(tmp, "posts.parquet"), index=False)
    users.to_parquet(os.path.join(tmp, "users.parquet"), index=False)
    user_counts = train[["user_id", "hashtags"]].explode("hashtags").drop_duplicates().groupby("hashtags").size()
    pd.DataFrame({"hashtag": vocabulary, "users": user_counts.reindex(range(len(vocabulary))).to_numpy()}).to_parquet(
        os.path.join(tmp, "vocabulary.parquet"), index=False
    )
    parts = kept["part"].value_counts()
    return counts | {
        "posts/hashtags": len(vocabulary),
        "posts/users": len(users),
        "posts/posts": len(kept),
        "posts/without_kept_hashtag": int(len(frame) - len(with_tags)),
        "posts/held_out_user_unseen": int(len(with_tags) - len(kept)),
        "posts/tags_per_post": float(kept["hashtags"].map(len).mean()),
        **{f"posts/{part}": int(parts.get(part, 0)) for part in ("train", "val", "test")},
    }


def _posts(ctx: StageContext) -> pd.DataFrame:
    frame = pd.read_parquet(ctx.path("posts", "posts.parquet"))
    return frame.assign(hashtags=frame["hashtags"].map(lambda tags: [int(t) for t in tags]))


def stage_task(ctx: StageContext, frame: pd.DataFrame | None = None):
    """The task of `hashtags.model`, sized by the posts stage (ncsl: PPMI-SVD of the train posts' hashtags)."""
    cfg = ctx.cfg.hashtags
    frame = _posts(ctx) if frame is None else frame
    tags = len(pd.read_parquet(ctx.path("posts", "vocabulary.parquet")))
    users = len(pd.read_parquet(ctx.path("posts", "users.parquet")))
    embeddings = (
        ppmi_svd(frame.loc[frame["part"] == "train", "hashtags"], tags, cfg.tag_dim) if cfg.model == "ncsl" else None
    )
    return make_task(cfg.model, tags, users, sizes_of(cfg), embeddings)


def _rows(frame: pd.DataFrame, task, model: str, seed: int) -> pd.DataFrame:
    """Training rows of `frame`'s posts: (image, user, hashtag) per hashtag of a post for the ranked models,
    class-uniform (image, hashtag) draws for mcll, (image, mean hashtag embedding) per post for ncsl."""
    frame = frame.reset_index(drop=True)
    base = pd.DataFrame({"item": frame["item_id"], "tags": frame["hashtags"], "user": frame["user"].astype(np.int64)})
    if model == "mcll":
        drawn = class_uniform_rows(frame["hashtags"], len(frame), seed)
        return pd.DataFrame(
            {
                "item": frame["item_id"].to_numpy()[drawn["item"]],
                "label": drawn["label"],
                "words": frame["hashtags"].to_numpy()[drawn["item"]],
            }
        )
    if model == "ncsl":
        embeddings = task.tag_embeddings
        targets = [embeddings[tags].mean(axis=0) for tags in frame["hashtags"]]
        return base.assign(target=[t / max(np.linalg.norm(t), 1e-12) for t in targets])
    rows = base.assign(tag=frame["hashtags"]).explode("tag", ignore_index=True)
    return rows.assign(tag=rows["tag"].astype(np.int64))


def train(ctx: StageContext, tmp: str) -> dict:
    """The model on the train posts; the validation posts are the trainer's holdout."""
    frame = _posts(ctx)
    task = stage_task(ctx, frame)
    model, seed = ctx.cfg.hashtags.model, ctx.cfg.hashtags.seed
    fitting, val = frame[frame["part"] == "train"], frame[frame["part"] == "val"]
    rows = _rows(fitting, task, model, seed)
    if val.empty:  # too few posts per user for a validation part: hold out a slice of train posts' items
        holdout = holdout_mask(rows["item"], ctx.cfg.training.holdout_fraction)
    else:
        val_rows = _rows(val, task, model, seed + 1)
        holdout = np.arange(len(rows) + len(val_rows)) >= len(rows)
        rows = pd.concat([rows, val_rows], ignore_index=True)
    if "tag" in rows:  # the ranked models: one code per image, across both parts, for the in-batch masks
        rows["post_item"] = pd.factorize(rows["item"])[0].astype(np.int64)
    return train_task(ctx, tmp, task, rows, holdout)


@torch.no_grad()
def _scores(task, model, features: np.ndarray, users: np.ndarray) -> torch.Tensor:
    """Rows x K scores of every hashtag (the arrays are copied: extract's come back read-only)."""
    return task.tag_scores(model, torch.tensor(features, dtype=torch.float32), torch.tensor(users)).float()


def _ranked(task, model, features: np.ndarray, users: np.ndarray, k: int = 10, chunk: int = 1024) -> np.ndarray:
    """Each row's `k` best hashtag ids, best first, `chunk` rows at a time."""
    tops = [
        _scores(task, model, features[s : s + chunk], users[s : s + chunk]).topk(k).indices.numpy()
        for s in range(0, len(features), chunk)
    ]
    return np.concatenate(tops)


def _accuracies(name: str, top: np.ndarray, truth: list, posts: np.ndarray) -> dict:
    """Per test post (`posts` names them): did A@1 / A@10 hit? The metrics are their means."""
    return {f"hashtags/{name}/accuracy@{k}": (posts, hits_at(top, truth, k).astype(np.float64)) for k in (1, 10)}


def tagging(ctx: StageContext, tmp: str) -> dict:
    """A@1 / A@10 of the trained model on the test posts whose image decodes, the frequency baselines on the
    same posts, retrieval precision@10 for user-agnostic models; by_user.parquet holds each post's hits."""
    frame, model_name = _posts(ctx), ctx.cfg.hashtags.model
    test = frame[frame["part"] == "test"]
    task = stage_task(ctx, frame)
    found, vectors, state = tower_outputs(ctx, test["item_id"].unique())
    test = test[test["item_id"].isin(found)].reset_index(drop=True)
    if test.empty:
        return {"hashtags/test_posts": 0}
    features = vectors[pd.Index(found).get_indexer(test["item_id"])]
    model = trained_model(ctx, task, state)
    truth = test["hashtags"].tolist()
    train = frame[frame["part"] == "train"]
    ranking = global_ranking(train["hashtags"], task.tags)
    tops = {
        model_name: _ranked(task, model, features, test["user"].to_numpy(np.int64)),
        "global_frequency": np.tile(ranking[:10], (len(test), 1)),
        "user_frequency": user_rankings(train["user"], train["hashtags"], test["user"], ranking, 10),
    }
    posts = (test["user"].astype(str) + "/" + test["item_id"].astype(str)).to_numpy()
    samples, by_user = {}, pd.DataFrame({"user": test["user"]})
    for name, top in tops.items():
        samples |= _accuracies(name, top, truth, posts)
        by_user[name] = samples[f"hashtags/{name}/accuracy@1"][1].astype(bool)
    # the trained model's, under one name whatever the model (a sweep over hashtags.model optimises these)
    samples |= {f"hashtags/accuracy@{k}": samples[f"hashtags/{model_name}/accuracy@{k}"] for k in (1, 10)}
    metrics = {"hashtags/test_posts": len(test)} | significance.means(samples)
    metrics |= significance.record(tmp, samples, ctx.cfg.split.seed)
    users = pd.read_parquet(ctx.path("posts", "users.parquet")).set_index("user")["train_posts"]
    by_user.assign(train_posts=users.reindex(by_user["user"]).to_numpy()).to_parquet(
        os.path.join(tmp, "by_user.parquet"), index=False
    )
    if not task.user_specific:
        metrics |= _retrieval(task, model, model_name, found, vectors, test)
    return metrics


def _retrieval(task, model, name: str, found, vectors, test: pd.DataFrame) -> dict:
    """Per hashtag of the test posts, the fraction of its 10 top-scoring test images that carry it."""
    images = test.groupby("item_id")["hashtags"].agg(lambda lists: sorted({t for tags in lists for t in tags}))
    rows = vectors[pd.Index(found).get_indexer(images.index)]
    scores = _scores(task, model, rows, np.zeros(len(rows), np.int64)).numpy()
    precision, asked = retrieval_precision(scores, images.tolist(), 10)
    return {f"hashtags/{name}/precision@10": precision, "hashtags/retrieval_queries": asked}
