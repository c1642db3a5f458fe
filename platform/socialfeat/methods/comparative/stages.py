"""The stages of comparative deep learning (Lei et al. 2016): likes, tags, circles and the test users' candidate
sets; the triplets; the dual net trained on them (the users stage is users.py, the ranking recommend.py)."""

import logging
import os

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import scipy.sparse as sp

from socialfeat import artifacts
from socialfeat.errors import UserError
from socialfeat.methods.comparative.likes import (
    Relations,
    circles,
    conceal,
    incidence,
    likes_of,
    sample_triplets,
    sorted_categorical,
    test_candidates,
)
from socialfeat.methods.comparative.tasks import make_task, sizes_of
from socialfeat.pipeline.common import view_log
from socialfeat.pipeline.train import holdout_mask, train_task
from socialfeat.stages import StageContext
from socialfeat.text import normalise, tokens

log = logging.getLogger(__name__)

LIKES_KEYS = {"like_min", "concealed", "candidates", "test_users", "min_train_likes", "min_tag_items", "item_text"}
USERS_KEYS = {"tag_embeddings", "words_run", "tag_dim", "tag_clusters"}
TRIPLETS_KEYS = {"triplets_per_user", "negatives"}
MODEL_KEYS = {"model", "dim", "hidden", "dropout", "margin"}


class NoLikes(UserError):
    """Nothing in the log counts as a like, or no like leaves a triplet."""


class NoTags(UserError):
    """No item carries a tag, so no user has interests to describe them."""


def _item_tag_pairs(ctx: StageContext, items: pd.Index) -> pd.DataFrame:
    """(item_id, tag) of the catalogue: every user's normalised tags on it, and its text's words when asked."""
    dataset = ctx.dataset()
    frames = []
    if dataset.tags is not None:
        frames.append(dataset.tags[["item_id", "tag"]].assign(tag=dataset.tags["tag"].map(normalise)))
    if ctx.cfg.comparative.item_text and "text" in dataset.items:
        words = dataset.items.set_index("item_id")["text"].map(tokens).explode().dropna()
        frames.append(pd.DataFrame({"item_id": words.index, "tag": words.to_numpy()}))
    pairs = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({"item_id": [], "tag": []})
    return pairs[(pairs["tag"] != "") & pairs["item_id"].isin(items)].drop_duplicates()


def _vocabulary(pairs: pd.DataFrame, min_items: int, root: str) -> pd.Index:
    on_items = pairs.groupby("tag").size()
    kept = on_items.index[on_items >= min_items]
    if kept.empty:
        raise NoTags(
            f"{root}: no tag is on comparative.min_tag_items = {min_items} of the liked catalogue's items "
            f"({len(on_items)} tags in all): users are described by their tags (tags.parquet, or item text with "
            "comparative.item_text: true); lower comparative.min_tag_items"
        )
    return pd.Index(sorted(kept))


def _own_tags(ctx: StageContext, users: pd.Index, tags: pd.Index, concealed: pd.DataFrame) -> pd.DataFrame:
    """(user, tag) of the tags each user wrote, but not on a like concealed from them."""
    written = ctx.dataset().tags
    if written is None:
        return pd.DataFrame({"user": np.zeros(0, np.int64), "tag": np.zeros(0, np.int64)})
    frame = written.assign(
        user=users.get_indexer(written["user_id"]), tag=tags.get_indexer(written["tag"].map(normalise))
    )
    hidden = frame.merge(concealed[["user_id", "item_id"]], on=["user_id", "item_id"], how="left", indicator=True)
    keep = (frame["user"] >= 0) & (frame["tag"] >= 0) & (hidden["_merge"] == "left_only").to_numpy()
    return frame.loc[keep, ["user", "tag"]].reset_index(drop=True)


def interest_counts(train_liked: sp.csr_matrix, item_tags: sp.csr_matrix, own: pd.DataFrame) -> sp.csr_matrix:
    """users x tags: how many of a user's train likes carry each tag, plus how often they wrote it."""
    shape = (train_liked.shape[0], item_tags.shape[1])
    written = sp.csr_matrix((np.ones(len(own), np.float32), (own["user"], own["tag"])), shape=shape)
    # one product, [likes | written] @ [item_tags ; identity]: a sum of two products holds three users x tags
    # matrices at once, and users x tags is most of this stage's memory (77% dense at 100k users, 296 tags)
    tags_of = sp.vstack([item_tags, sp.identity(shape[1], np.float32, format="csr")], format="csr")
    counts = sp.csr_matrix(sp.hstack([train_liked, written], format="csr") @ tags_of)
    counts.sort_indices()
    return counts


def _relations(likes, shape: tuple, item_tags, own, social: tuple) -> Relations:
    users, items, tags = shape
    user, item, train = likes["user"].to_numpy(), likes["item"].to_numpy(), (likes["part"] == "train").to_numpy()
    train_liked = incidence(user[train], item[train], (users, items))
    tagged = incidence(item_tags["item"], item_tags["tag"], (items, tags))
    return Relations(
        liked=incidence(user, item, (users, items)),
        train_liked=train_liked,
        friends=social[0],
        members=social[1],
        interests=interest_counts(train_liked, tagged, own),
        item_tags=tagged,
    )


def relations_of(ctx: StageContext) -> Relations:
    """The likes stage's tables as sparse relations."""
    read = lambda name: pd.read_parquet(ctx.path("likes", name))  # noqa: E731
    shape = tuple(len(read(f"{table}.parquet")) for table in ("users", "items", "tags"))
    social = tuple(sp.load_npz(ctx.path("likes", f"{name}.npz")) for name in ("friends", "members"))
    return _relations(numbered_likes(ctx), shape, read("item_tags.parquet"), read("user_tags.parquet"), social)


def numbered_likes(ctx: StageContext) -> pd.DataFrame:
    """The likes stage's likes as (user, item, part): numbers and a dictionary, a few bytes a like where the ids
    are two strings."""
    path = ctx.path("likes", "likes.parquet")
    return pq.read_table(path, columns=["user", "item", "part"], read_dictionary=["part"]).to_pandas()


def _catalogue(ctx: StageContext) -> tuple[pd.DataFrame, pd.Index, dict]:
    """(the filtered log on items with an image, its ids categoricals whose categories are sorted, so that a view
    holds two codes and every sort or group by id orders as the strings do; its items; the count of
    interactions without an image)."""
    items = ctx.dataset().items
    interactions = view_log(ctx.path("filter", "interactions.parquet"), ["user_id", "item_id", "value"])
    with_image = interactions["item_id"].isin(items.loc[items["image_ref"].notna(), "item_id"]).to_numpy()
    kept = interactions[with_image].reset_index(drop=True)
    for column in ("user_id", "item_id"):
        kept[column] = sorted_categorical(kept[column].cat.remove_unused_categories())
    return kept, pd.Index(kept["item_id"].cat.categories), {"likes/without_image": int((~with_image).sum())}


def _liked(ctx: StageContext) -> tuple[pd.DataFrame, pd.Index, dict]:
    """(the likes: user_id and item_id categoricals, part, and user and item, their codes, which number users and
    items in id order; the catalogue; the counts), in a few bytes a like."""
    cfg = ctx.cfg.comparative
    interactions, items, counts = _catalogue(ctx)
    liked = likes_of(interactions, cfg.like_min)
    del interactions
    if liked.empty:
        raise NoLikes(f"no interaction has a value of at least comparative.like_min = {cfg.like_min}")
    liked["user_id"] = liked["user_id"].cat.remove_unused_categories()  # the users numbered: those with a like
    user = liked["user_id"].cat.codes.to_numpy(np.int32)
    is_test, split = conceal(user, cfg.concealed, cfg.min_train_likes, cfg.test_users, cfg.seed)
    liked["part"] = pd.Categorical.from_codes(is_test.astype(np.int8), categories=["train", "test"])
    liked["user"], liked["item"] = user, liked["item_id"].cat.codes.to_numpy(np.int32)
    return liked, items, counts | split


def likes(ctx: StageContext, tmp: str) -> dict:
    """Likes and who is a test user (likes.parquet, users.parquet), the catalogue and its tags (items, tags,
    item_tags, user_tags.parquet), friends and groups (friends.npz, members.npz) and the test users' candidate sets
    (candidates.parquet: user, item, concealed, tier)."""
    cfg = ctx.cfg.comparative
    liked, items, counts = _liked(ctx)
    users = pd.Index(liked["user_id"].cat.categories)
    artifacts.write_parquet(liked, os.path.join(tmp, "likes.parquet"))  # the ids written as strings
    concealed = liked.loc[liked["part"] == "test", ["user_id", "item_id"]]
    liked = liked[["part", "user", "item"]]  # the ids' codes are user and item (4 bytes a like each)
    pairs = _item_tag_pairs(ctx, items)
    tags = _vocabulary(pairs, cfg.min_tag_items, ctx.dataset().root)
    pairs = pairs[pairs["tag"].isin(tags)]
    item_tags = pd.DataFrame({"item": items.get_indexer(pairs["item_id"]), "tag": tags.get_indexer(pairs["tag"])})
    own = _own_tags(ctx, users, tags, concealed)
    friends, members, social = circles(ctx.dataset().social, users)
    rel = _relations(liked, (len(users), len(items), len(tags)), item_tags, own, (friends, members))
    test_users = np.unique(liked.loc[liked["part"] == "test", "user"]).astype(np.int64)
    others = cfg.candidates - cfg.concealed
    candidates, (short, enumerated) = test_candidates(rel, test_users, cfg.concealed, others, cfg.seed)
    if candidates.empty:
        raise NoLikes(
            f"no test user has {others} items they did not like to rank their {cfg.concealed} concealed likes "
            f"among (the catalogue has {len(items)} items with an image): lower comparative.candidates"
        )
    _write_likes(tmp, liked, (users, items, tags), item_tags, own, candidates, rel)
    tiers = candidates.loc[~candidates["concealed"], "tier"].value_counts(normalize=True)
    return (
        counts
        | social
        | {
            "likes/likes": len(liked),
            "likes/users": len(users),
            "likes/items": len(items),
            "likes/tags": len(tags),
            "likes/users_with_circle": int(rel.has_circle().sum()),
            "likes/users_without_own_tags": int(len(users) - own["user"].nunique()),
            "likes/test_users_ranked": int(candidates["user"].nunique()),
            "likes/small_candidate_pool": short,
            "likes/tiers_enumerated": enumerated,  # the tiers random draws could not fill: O(items) each at most
            # the others of a candidate set: sharing a tag, outside the circle's likes, or only not liked by the user
            **{f"likes/candidates_tier{t}": float(tiers.get(t, 0.0)) for t in range(3)},
        }
    )


def _write_likes(tmp, liked, index: tuple, item_tags, own, candidates, rel: Relations) -> None:
    users, items, tags = index
    write = lambda frame, name: frame.to_parquet(os.path.join(tmp, name), index=False)  # noqa: E731
    user, test = liked["user"].to_numpy(), (liked["part"] == "test").to_numpy()
    write(
        pd.DataFrame(
            {
                "user_id": users,
                "user": np.arange(len(users)),
                "train_likes": np.bincount(user[~test], minlength=len(users)),
                "test_likes": np.bincount(user[test], minlength=len(users)),
                "circle": rel.circle_sizes(),
            }
        ),
        "users.parquet",
    )
    write(pd.DataFrame({"item_id": items, "item": np.arange(len(items))}), "items.parquet")
    write(pd.DataFrame({"tag": tags}), "tags.parquet")
    write(item_tags, "item_tags.parquet")
    write(own, "user_tags.parquet")
    write(candidates.assign(item_id=items[candidates["item"].to_numpy(np.int64)]), "candidates.parquet")
    sp.save_npz(os.path.join(tmp, "friends.npz"), rel.friends)
    sp.save_npz(os.path.join(tmp, "members.npz"), rel.members)


def triplets(ctx: StageContext, tmp: str) -> dict:
    """triplets.parquet (user, positive, negative: item numbers; source: the negative's sampler) by
    `comparative.negatives`."""
    cfg = ctx.cfg.comparative
    frame, sources = sample_triplets(relations_of(ctx), cfg.negatives, cfg.triplets_per_user, cfg.seed)
    if frame.empty:
        raise NoLikes("no user has a train like and an item to contrast it with: the catalogue is too small")
    if cfg.negatives == "social" and sources["triplets/social_negatives"] == 0:
        log.warning("no user has friends or groups (social.parquet): every negative is a popularity fallback")
    frame.to_parquet(os.path.join(tmp, "triplets.parquet"), index=False)
    return sources | {"triplets/triplets": len(frame), "triplets/users": int(frame["user"].nunique())}


def _bags(ctx: StageContext) -> np.ndarray:
    return np.load(ctx.path("users", "bags.npy"))


def stage_task(ctx: StageContext):
    return make_task(ctx.cfg.comparative.model, sizes_of(ctx.cfg.comparative, _bags(ctx).shape[1]))


def _training_rows(ctx: StageContext, model: str) -> tuple[pd.DataFrame, np.ndarray]:
    """(the task's rows, each carrying the user's bag, the holdout mask: a stable slice of liked items);
    twonets: each triplet as two doublets, liked (1) and not (0)."""
    frame = pd.read_parquet(ctx.path("triplets", "triplets.parquet"))
    item_ids = pd.read_parquet(ctx.path("likes", "items.parquet"))["item_id"].to_numpy()
    bags = _bags(ctx)
    rows = pd.DataFrame(
        {
            "positive": item_ids[frame["positive"]],
            "negative": item_ids[frame["negative"]],
            "bag": list(bags[frame["user"]]),
        }
    )
    holdout = holdout_mask(rows["positive"], ctx.cfg.training.holdout_fraction)
    if model != "twonets":
        return rows, holdout
    liked = pd.DataFrame({"item": rows["positive"], "bag": rows["bag"], "label": 1})
    other = pd.DataFrame({"item": rows["negative"], "bag": rows["bag"], "label": 0})
    return pd.concat([liked, other], ignore_index=True), np.concatenate([holdout, holdout])


def train(ctx: StageContext, tmp: str) -> dict:
    """The dual net on the triplets; the triplets whose liked item falls in a stable slice are the holdout."""
    rows, holdout = _training_rows(ctx, ctx.cfg.comparative.model)
    return train_task(ctx, tmp, stage_task(ctx), rows, holdout)
