"""The popularity filters and the tr / te split on the synthetic log."""

import os

import pandas as pd
import pytest

from socialfeat.config import FilterConfig, SplitConfig
from socialfeat.data.splits import EmptyAfterFilter, filter_by_popularity, split_interactions


def test_filters_hold_after_convergence_and_fail_loudly_when_empty(synth_dir):
    frame = pd.read_parquet(os.path.join(synth_dir, "interactions.parquet"))
    cfg = FilterConfig(min_user_interactions=10, min_item_interactions=10)
    kept, report = filter_by_popularity(frame, cfg)
    assert kept["user_id"].value_counts().min() >= 10 and kept["item_id"].value_counts().min() >= 10
    assert report["filter/interactions_removed"] == len(frame) - len(kept) > 0
    once, _ = filter_by_popularity(frame, cfg.model_copy(update={"until_stable": False}))
    assert len(once) >= len(kept)
    with pytest.raises(EmptyAfterFilter, match="min_user|users need 10000"):
        filter_by_popularity(frame, FilterConfig(min_user_interactions=10000))


def test_split_keeps_te_items_out_of_train_and_is_seeded(synth_dir):
    frame = pd.read_parquet(os.path.join(synth_dir, "interactions.parquet"))
    split, items, counts = split_interactions(frame, SplitConfig())
    te = set(items.loc[items["part"] == "te", "item_id"])
    assert len(te) == round(len(items) * 0.05)
    assert not split[split["fold"] != "test"]["item_id"].isin(te).any()
    assert split[split["fold"] == "test"]["item_id"].isin(te).all()
    val_share = counts["split/val_entries"] / (counts["split/val_entries"] + counts["split/train_entries"])
    assert 0.17 < val_share < 0.23
    again, _, _ = split_interactions(frame, SplitConfig())
    assert again.equals(split)
