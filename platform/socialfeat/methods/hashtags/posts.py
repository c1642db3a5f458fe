"""Posts from a tag log (Veit et al. 2018, section 5): hashtag normalisation, the spam filter, each user's time
split, the hashtag vocabulary and the PPMI-SVD hashtag embeddings of the NCSL baseline."""

import numpy as np
import pandas as pd

from socialfeat.errors import UserError
from socialfeat.text import normalise


class NoHashtags(UserError):
    """No hashtag is left to predict."""


def posts_of(tags: pd.DataFrame) -> pd.DataFrame:
    """One post per (user, item): its distinct normalised hashtags (sorted) and its time (the earliest of its
    tags'; NaN where none has one)."""
    frame = tags.assign(tag=tags["tag"].map(normalise))
    frame = frame[frame["tag"] != ""]
    if "timestamp" not in frame:
        frame = frame.assign(timestamp=np.nan)
    grouped = frame.groupby(["user_id", "item_id"], sort=True)
    return pd.DataFrame(
        {
            "hashtags": grouped["tag"].agg(lambda values: sorted(set(values))),
            "timestamp": grouped["timestamp"].min().astype(np.float64),
        }
    ).reset_index()


def spam_users(posts: pd.DataFrame, max_tags_per_post: float) -> pd.Index:
    """Users averaging more than `max_tags_per_post` hashtags per post (the paper's filter, at 15)."""
    mean_tags = posts["hashtags"].map(len).groupby(posts["user_id"]).mean()
    return mean_tags.index[mean_tags > max_tags_per_post]


def time_split(posts: pd.DataFrame, train_fraction: float) -> pd.Series:
    """Each post's part: per user, posts in time order (missing times last, ties by item id), the first
    `train_fraction` (at least one) "train", of the rest the earlier half "val" and the later "test"."""
    order = posts.assign(_missing=posts["timestamp"].isna()).sort_values(
        ["user_id", "_missing", "timestamp", "item_id"], kind="stable"
    )
    position = order.groupby("user_id").cumcount().to_numpy()
    count = order.groupby("user_id")["item_id"].transform("size").to_numpy()
    train = np.maximum(1, np.floor(train_fraction * count)).astype(np.int64)
    held = count - train
    val_end = train + held // 2
    part = np.where(position < train, "train", np.where(position < val_end, "val", "test"))
    return pd.Series(part, index=order.index).reindex(posts.index)


def hashtag_vocabulary(train_posts: pd.DataFrame, min_users: int) -> list[str]:
    """Hashtags that at least `min_users` distinct users put on train posts, most users first (then by name)."""
    pairs = train_posts[["user_id", "hashtags"]].explode("hashtags").drop_duplicates()
    users = pairs.groupby("hashtags")["user_id"].size()
    kept = users[users >= min_users]
    if kept.empty:
        most = int(users.max()) if len(users) else 0
        raise NoHashtags(
            f"no hashtag of the {len(users)} on train posts is used by hashtags.min_users = {min_users} distinct "
            f"users (the most any has is {most}): lower hashtags.min_users"
        )
    return sorted(kept.index, key=lambda tag: (-kept[tag], tag))
