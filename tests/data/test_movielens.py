"""The MovieLens importer on the real shared sample."""

import json
import os

import pandas as pd

from socialfeat.cli import main


def test_import_and_check_the_real_sample(movielens_dir, capsys):
    assert main(["data", "check", movielens_dir, "--json"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts["images_found"] == 2943 and counts["images_undecodable"] == 0
    assert counts["users"] == 610 and counts["interactions"] == 100836
    assert counts["items"] == counts["items_with_interactions"] == 9724  # posterless movies kept
    assert counts["distinct_labels"] >= 18 and counts["tags"] > 3000


def test_genres_titles_and_tags_map_into_the_contract(movielens_dir):
    items = pd.read_parquet(os.path.join(movielens_dir, "items.parquet"), columns=["item_id", "text", "labels"])
    toy_story = items.set_index("item_id").loc["1"]
    assert toy_story["text"] == "Toy Story (1995)"
    assert list(toy_story["labels"]) == ["Adventure", "Animation", "Children", "Comedy", "Fantasy"]
    tags = pd.read_parquet(os.path.join(movielens_dir, "tags.parquet"))
    assert set(tags.columns) >= {"user_id", "item_id", "tag", "timestamp"}


def test_missing_poster_directory_is_a_clear_error(tmp_path, capsys):
    code = main(
        [
            "data",
            "import-movielens",
            "--ratings",
            "r.csv",
            "--movies",
            "m.csv",
            "--posters",
            str(tmp_path / "none"),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 2 and "poster directory does not exist" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
