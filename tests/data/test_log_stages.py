"""The shared log stages on codes: the data stage writes the log as int32 codes with their id maps, the filter
over codes keeps exactly what the frame filter keeps, the filter and the split give the frame functions' rows
however many row groups they stream, and no stage holds the side tables after it ran."""

import pandas as pd
import pyarrow.parquet as pq

from socialfeat.data import codes
from socialfeat.data.reader import log_frame, read_dataset
from socialfeat.data.splits import filter_by_popularity, split_interactions
from socialfeat.methods import METHODS, load_config
from socialfeat.stages import run_experiment


def test_the_filter_over_codes_keeps_what_the_frame_filter_keeps(synth_dir, tmp_path):
    settings = ["filter.min_user_interactions=15", "filter.min_item_interactions=6", "filter.require_image=true"]
    cfg = load_config(None, ["method=cfl", f"data.path={synth_dir}", *settings])
    metrics, ctx = run_experiment(METHODS["cfl"], cfg, str(tmp_path / "run"), until="filter")
    held = read_dataset(synth_dir)
    views, item_ids = codes.read_codes(ctx.path("data"))
    assert views.user.dtype == "int32" and views.item.dtype == "int32"
    pd.testing.assert_frame_equal(log_frame(views, item_ids), held.interactions)
    expected, report = filter_by_popularity(held.interactions, cfg.filter)
    assert 0 < len(expected) < len(held.interactions) and report["filter/passes"] > 1  # the filters bit
    pd.testing.assert_frame_equal(pd.read_parquet(ctx.path("filter", "interactions.parquet")), expected)
    assert {name: metrics[name] for name in report} == report
    assert metrics["filter/users"] == expected["user_id"].nunique()
    assert metrics["data/interactions"] == len(held.interactions) and metrics["data/users"] == len(views.users)
    assert item_ids.to_pylist() == held.items["item_id"].tolist()


def test_no_stage_holds_the_side_tables_after_it_ran(synth_dir, tmp_path):
    cfg = load_config(None, ["method=cfl", f"data.path={synth_dir}"])
    _, ctx = run_experiment(METHODS["cfl"], cfg, str(tmp_path / "run"), until="split")
    dataset = ctx.dataset()
    assert dataset.side.frames == {} and dataset.interactions is None and dataset.log is None
    assert dataset.tags.equals(read_dataset(synth_dir).tags)  # read again when a stage asks


def test_the_filter_drops_views_of_items_without_an_image_before_counting(movielens_dir, tmp_path):
    cfg = load_config(None, ["method=cfl", f"data.path={movielens_dir}", "filter.require_image=true"])
    metrics, ctx = run_experiment(METHODS["cfl"], cfg, str(tmp_path / "run"), until="filter")
    held = read_dataset(movielens_dir)
    with_image = held.items.loc[held.items["image_ref"].notna(), "item_id"]
    assert 0 < len(with_image) < len(held.items)  # some films have no poster
    views = held.interactions[held.interactions["item_id"].isin(with_image)].reset_index(drop=True)
    expected, _ = filter_by_popularity(views, cfg.filter)
    kept = pd.read_parquet(ctx.path("filter", "interactions.parquet"))
    pd.testing.assert_frame_equal(kept, expected)
    assert metrics["filter/interactions"] == len(expected) < len(held.interactions)


def test_the_filter_and_split_stream_row_groups_to_the_rows_the_frame_functions_give(synth_dir, tmp_path, monkeypatch):
    # groups of 200 views: the filter's passes, its writer and the split's draws run over ~25 groups
    monkeypatch.setattr(codes, "ROWS_PER_GROUP", 200)
    settings = ["filter.min_user_interactions=15", "filter.min_item_interactions=6", "split.val_fraction=0.3"]
    cfg = load_config(None, ["method=cfl", f"data.path={synth_dir}", *settings])
    metrics, ctx = run_experiment(METHODS["cfl"], cfg, str(tmp_path / "run"), until="split")
    expected, report = filter_by_popularity(read_dataset(synth_dir).interactions, cfg.filter)
    filtered = pq.ParquetFile(ctx.path("filter", "interactions.parquet"))
    assert report["filter/passes"] > 1 and filtered.metadata.num_row_groups == -(-len(expected) // 200) > 10
    assert {len(group) for group in filtered.iter_batches(200)} == {200, len(expected) % 200}
    pd.testing.assert_frame_equal(filtered.read().to_pandas(), expected)
    assert {name: metrics[name] for name in report} == report and metrics["filter/items"] == expected[
        "item_id"
    ].nunique()
    split, items, counts = split_interactions(expected, cfg.split)
    written = pd.read_parquet(ctx.path("split", "interactions.parquet"))
    pd.testing.assert_frame_equal(written, split.assign(fold=split["fold"].astype("str")))
    pd.testing.assert_frame_equal(pd.read_parquet(ctx.path("split", "items.parquet")), items)
    assert {name: metrics[name] for name in counts} == counts
