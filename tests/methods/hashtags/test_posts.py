"""Posts of the hashtags method: normalisation, the spam filter, each user's time split, the vocabulary, and
bad input refused before any training."""

import glob
import os
import shutil

import numpy as np
import pandas as pd
import pytest

from socialfeat.cli import main
from socialfeat.methods.hashtags.posts import (
    NoHashtags,
    hashtag_vocabulary,
    posts_of,
    spam_users,
    time_split,
)
from socialfeat.text import normalise, ppmi_svd


def _tags(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "item_id", "tag", "timestamp"])


def test_hashtags_are_normalised_and_a_post_is_one_users_tags_on_one_item():
    assert normalise("#NYC ") == normalise("nyc") == normalise("Nýc") == "nyc"
    assert normalise(None) == normalise("#") == ""
    posts = posts_of(
        _tags([["a", "i1", "#NYC", 5], ["a", "i1", "nyc", 3], ["a", "i1", "Home", 9], ["b", "i1", "#", 1]])
    )
    assert len(posts) == 1  # b's only tag normalises to nothing
    assert posts.iloc[0]["hashtags"] == ["home", "nyc"] and posts.iloc[0]["timestamp"] == 3


def test_the_time_split_never_puts_a_users_later_post_in_train():
    rng = np.random.default_rng(0)
    rows = []
    for user in range(40):
        for item in range(int(rng.integers(1, 25))):
            rows.append([f"u{user}", f"i{item}", "x", int(rng.integers(0, 50)) if rng.random() > 0.1 else None])
    posts = posts_of(_tags(rows))
    posts = posts.assign(part=time_split(posts, 0.9))
    for user, own in posts.groupby("user_id"):
        times = own["timestamp"].fillna(np.inf)
        train, held = times[own["part"] == "train"], times[own["part"] != "train"]
        assert len(train) >= 1 and len(train) == max(1, int(np.floor(0.9 * len(own))))
        assert held.empty or train.max() <= held.min(), user  # missing times count as the latest
        val, test = times[own["part"] == "val"], times[own["part"] == "test"]
        assert val.empty or test.empty or val.max() <= test.min(), user
    single = posts.groupby("user_id").filter(lambda own: len(own) == 1)
    assert (single["part"] == "train").all()
    again = time_split(posts.sample(frac=1.0, random_state=1), 0.9).reindex(posts.index)
    assert again.equals(posts["part"])  # ties and missing times broken the same way in any row order


def test_the_spam_filter_counts_users_averaging_more_hashtags_per_post_than_the_limit():
    rows = [["spam", "i1", f"t{n}", 1] for n in range(20)] + [["spam", "i2", "a", 2]]  # mean 10.5
    rows += [["flood", "i3", f"t{n}", 1] for n in range(30)]  # mean 30
    rows += [["fine", f"i{n}", "a", n] for n in range(5)]
    posts = posts_of(_tags(rows))
    assert sorted(spam_users(posts, 15)) == ["flood"]
    assert sorted(spam_users(posts, 10)) == ["flood", "spam"]


def test_the_vocabulary_keeps_hashtags_of_enough_users_and_says_which_key_to_lower():
    posts = posts_of(_tags([["a", "i1", "x", 1], ["b", "i1", "x", 1], ["b", "i2", "y", 1], ["c", "i3", "x", 1]]))
    assert hashtag_vocabulary(posts, 2) == ["x"]
    with pytest.raises(NoHashtags, match="hashtags.min_users = 4"):
        hashtag_vocabulary(posts, 4)


def test_ppmi_svd_embeds_co_occurring_hashtags_together():
    lists = [[0, 1]] * 20 + [[2, 3]] * 20 + [[0, 1, 4]] * 3 + [[2, 3, 4]] * 3
    embeddings = ppmi_svd(lists, 5, 3)
    similarity = embeddings @ embeddings.T
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    assert similarity[0, 1] > 0.9 and similarity[2, 3] > 0.9 and similarity[0, 2] < 0.2


def test_a_dataset_without_tags_or_without_a_common_hashtag_fails_before_training(
    synth_dir, tmp_path, ray_session, capsys
):
    no_tags = tmp_path / "no_tags"
    shutil.copytree(synth_dir, no_tags)
    os.remove(no_tags / "tags.parquet")
    empty_tags = tmp_path / "empty_tags"  # every tag normalises to nothing (it was a TypeError traceback)
    shutil.copytree(synth_dir, empty_tags)
    tags = pd.read_parquet(empty_tags / "tags.parquet")
    blanks = np.array(["#", " ", "##", "\u0301"], dtype=object)[np.arange(len(tags)) % 4]
    tags.assign(tag=blanks).to_parquet(empty_tags / "tags.parquet", index=False)
    failures = {
        "tags.parquet does not exist": ["--data", str(no_tags)],
        "hashtags.min_users = 100000": ["--data", synth_dir, "--set", "hashtags.min_users=100000"],
        "column 'tag' normalises to an empty hashtag": ["--data", str(empty_tags)],
        "all are dropped as spam: raise hashtags.max_tags_per_post": [
            "--data",
            synth_dir,
            "--set",
            "hashtags.max_tags_per_post=0.5",
        ],
    }
    for message, arguments in failures.items():
        out = tmp_path / message.split()[0]
        assert main(["run", "--set", "method=hashtags", "--out", str(out), *arguments]) != 0
        assert message in capsys.readouterr().err
        assert not glob.glob(str(out / "stages" / "posts-*")) and not glob.glob(str(out / "stages" / "train-*"))
