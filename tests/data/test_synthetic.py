"""The synthetic generator: deterministic, and the structure it plants is really there."""

import io
import os
import subprocess
import sys
import unicodedata

import numpy as np
import pandas as pd
import yaml
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score

from conftest import SMALL_SYNTH
from socialfeat.config import SynthConfig
from socialfeat.data.synthetic import generate


def _load(root):
    interactions = pd.read_parquet(os.path.join(root, "interactions.parquet"))
    items = pd.read_parquet(os.path.join(root, "items.parquet"))
    items["style"] = items["labels"].str[0]
    return interactions, items


def _favourite_styles(interactions, items) -> pd.Series:
    """Each user's most-viewed style."""
    styled = interactions.merge(items[["item_id", "style"]], on="item_id")
    return styled.groupby("user_id")["style"].agg(lambda s: s.value_counts().index[0])


def _generate_in_process(cfg: SynthConfig, out: str, hash_seed: str) -> None:
    """Generate in a fresh interpreter: Python salts str hashes per process (PYTHONHASHSEED), so anything
    that leans on set or dict-of-str order differs between processes, not within one."""
    code = (
        "from socialfeat.config import SynthConfig\nfrom socialfeat.data.synthetic import generate\n"
        f"generate(SynthConfig(**{cfg.model_dump()!r}), {out!r})"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=os.environ | {"PYTHONHASHSEED": hash_seed})


def test_same_seed_same_data_other_seed_other_data(tmp_path, synth_dir):
    for hash_seed in ("1", "2"):
        _generate_in_process(SMALL_SYNTH, str(tmp_path / hash_seed), hash_seed)
        for name in ("interactions.parquet", "items.parquet", "tags.parquet", "social.parquet", "comments.parquet"):
            again = pd.read_parquet(tmp_path / hash_seed / name)
            assert again.equals(pd.read_parquet(os.path.join(synth_dir, name))), name
    generate(SMALL_SYNTH.model_copy(update={"seed": 4}), str(tmp_path / "other"))
    assert not pd.read_parquet(tmp_path / "other" / "interactions.parquet").equals(
        pd.read_parquet(os.path.join(synth_dir, "interactions.parquet"))
    )


def test_users_view_their_styles_and_popularity_has_a_long_tail(synth_dir):
    interactions, items = _load(synth_dir)
    styled = interactions.merge(items[["item_id", "style"]], on="item_id")
    top_share = styled.groupby("user_id")["style"].agg(lambda s: s.value_counts(normalize=True).iloc[0])
    assert top_share.mean() > 0.5  # chance with 6 styles and no taste: about 0.3 for 25 views
    views = interactions["item_id"].value_counts()
    assert views.iloc[: len(views) // 10].sum() / views.sum() > 0.25  # top 10% of items: well over 10%


def test_owners_mostly_view_their_items_style(synth_dir):
    interactions, items = _load(synth_dir)
    favourite = _favourite_styles(interactions, items)
    owned = items[items["owner_id"].isin(favourite.index)]
    agree = (owned["owner_id"].map(favourite) == owned["style"]).mean()
    assert agree > 0.6  # chance: 1/6


def test_friends_share_taste(synth_dir):
    interactions, items = _load(synth_dir)
    favourite = _favourite_styles(interactions, items)
    social = pd.read_parquet(os.path.join(synth_dir, "social.parquet"))
    friends = social[
        (social["kind"] == "friend")
        & social["other_id"].isin(favourite.index)
        & social["user_id"].isin(favourite.index)
    ]
    assert len(friends) > 100
    assert (friends["user_id"].map(favourite) == friends["other_id"].map(favourite)).mean() > 0.5


def test_mean_colour_cannot_separate_styles_but_pixels_differ(synth_dir):
    _, items = _load(synth_dir)
    pixels = np.stack([np.asarray(Image.open(io.BytesIO(b)), np.float32) for b in items["image"]])
    mean_colour = pixels.mean(axis=(1, 2))
    labels = items["style"].to_numpy()
    accuracy = cross_val_score(LogisticRegression(max_iter=2000), mean_colour, labels, cv=3).mean()
    assert accuracy < 0.3  # chance is 1/6; a CNN must look at shape and texture


def test_users_have_personal_words_some_in_another_language(synth_dir):
    tags = pd.read_parquet(os.path.join(synth_dir, "tags.parquet"))
    canonical = set(yaml.safe_load(open(os.path.join(synth_dir, "dataset.yaml")))["planted"]["concept_words"])
    accented = tags["tag"].map(lambda t: unicodedata.normalize("NFD", t) != t)
    foreign_users = set(tags.loc[accented, "user_id"])
    tagging_users = tags["user_id"].nunique()
    assert 0.08 < len(foreign_users) / tagging_users < 0.4  # foreign_fraction = 0.2
    # a foreign user never says the canonical word; other users say it about half the time
    foreign_canonical = tags[tags["user_id"].isin(foreign_users) & tags["tag"].isin(canonical)]
    assert foreign_canonical.empty
    native = tags[~tags["user_id"].isin(foreign_users)]
    assert 0.25 < native["tag"].isin(canonical).mean() < 0.6


def test_scales_by_flags(tmp_path):
    counts = generate(SynthConfig(users=50, items=30, styles=3, mean_views=8, image_size=16), str(tmp_path / "tiny"))
    assert counts["users"] == 50 and counts["items"] == 30 and counts["interactions"] > 50 * 3
