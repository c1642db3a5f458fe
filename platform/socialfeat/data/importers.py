"""Importers from public formats into the dataset contract (MovieLens ratings + posters)."""

import logging
import os

import numpy as np
import pandas as pd
from tqdm import tqdm

from socialfeat.artifacts import atomic_dir
from socialfeat.data.reader import DatasetError
from socialfeat.data.synthetic import write_contract

log = logging.getLogger(__name__)
NO_GENRES = "(no genres listed)"


NUMERIC = ("rating", "timestamp")


def _numeric_columns(path: str, frame: pd.DataFrame) -> None:
    """Numbers where MovieLens has numbers; a cell that is not one is named by column and row."""
    for column in NUMERIC:
        if column not in frame:
            continue
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = np.flatnonzero(values.isna().to_numpy())
        if len(bad):
            raise DatasetError(
                [
                    f"{path}: column '{column}' at row {bad[0]} holds {frame[column].iloc[bad[0]]!r}, not a number "
                    f"({len(bad)} such row(s))"
                ]
            )
        frame[column] = values


def _read_csv(path: str, columns: tuple[str, ...]) -> pd.DataFrame:
    if not os.path.isfile(path):
        raise DatasetError([f"{path}: file does not exist"])
    try:
        frame = pd.read_csv(path, dtype={"userId": str, "movieId": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DatasetError([f"{path}: not a readable CSV file ({str(error).splitlines()[0]})"]) from None
    _numeric_columns(path, frame)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DatasetError([f"{path}: missing column(s) {', '.join(missing)} (found: {', '.join(frame.columns)})"])
    for column in ("userId", "movieId"):
        if column in frame and frame[column].isna().any():
            row = int(np.flatnonzero(frame[column].isna().to_numpy())[0])
            raise DatasetError([f"{path}: column '{column}' is empty at row {row}"])
    return frame


def _poster_bytes(posters: str, movie_ids: pd.Series, progress: bool) -> list[bytes | None]:
    """Each movie's poster bytes from <posters>/<movieId>.jpg, or None when it has none."""
    images = []
    for movie_id in tqdm(movie_ids, desc="reading posters", unit="movie", disable=not progress):
        path = os.path.join(posters, f"{movie_id}.jpg")
        images.append(open(path, "rb").read() if os.path.isfile(path) else None)
    return images


def import_movielens(
    ratings: str,
    movies: str,
    posters: str,
    out: str,
    tags: str | None = None,
    progress: bool = False,
    shards: int = 1,
) -> dict:
    """Convert MovieLens CSVs and a poster folder into a contract dataset at `out`; returns counts.

    Every rating is a view (value = the rating); genres become labels, titles text; movies without a
    poster are kept (for factorisation) with no image and counted; movies nobody rated are dropped."""
    if not os.path.isdir(posters):
        raise DatasetError([f"{posters}: poster directory does not exist"])
    rating_frame = _read_csv(ratings, ("userId", "movieId", "rating", "timestamp"))
    movie_frame = _read_csv(movies, ("movieId", "title", "genres"))
    rated_unknown = ~rating_frame["movieId"].isin(movie_frame["movieId"])
    if rated_unknown.any():  # keep their ratings: add bare items rather than lose behaviour
        extra = pd.DataFrame({"movieId": rating_frame.loc[rated_unknown, "movieId"].unique()})
        movie_frame = pd.concat([movie_frame, extra], ignore_index=True)
    # A movie nobody rated carries no behaviour to learn from: dropped, and counted.
    rated = movie_frame["movieId"].isin(rating_frame["movieId"])
    unrated, movie_frame = int((~rated).sum()), movie_frame[rated].reset_index(drop=True)
    interactions = pd.DataFrame(
        {
            "user_id": rating_frame["userId"],
            "item_id": rating_frame["movieId"],
            "value": rating_frame["rating"].astype(np.float32),
            "timestamp": rating_frame["timestamp"].astype(np.int64),
        }
    )
    genres = movie_frame["genres"].fillna(NO_GENRES).str.split("|")
    items = pd.DataFrame(
        {
            "item_id": movie_frame["movieId"],
            "image": _poster_bytes(posters, movie_frame["movieId"], progress),
            "text": movie_frame["title"],
            "labels": [[g for g in gs if g != NO_GENRES] for gs in genres],
        }
    )
    tag_frame, tags_dropped = _tags(tags, items["item_id"]) if tags else (None, 0)
    poster_ids = {name[:-4] for name in os.listdir(posters) if name.endswith(".jpg")}
    with_poster = items["image"].notna()
    counts = {
        "users": int(interactions["user_id"].nunique()),
        "items": len(items),
        "items_with_poster": int(with_poster.sum()),
        "items_without_poster": int((~with_poster).sum()),
        "unrated_movies_dropped": unrated,
        "posters_without_rated_movie": len(poster_ids - set(items["item_id"])),
        "interactions": len(interactions),
        "interactions_on_posters": int(interactions["item_id"].isin(items.loc[with_poster, "item_id"]).sum()),
        "tags": 0 if tag_frame is None else len(tag_frame),
        "tags_dropped_unknown_movie": tags_dropped,
    }
    meta = {
        "name": "movielens-posters",
        "source": {
            "ratings": os.path.abspath(ratings),
            "movies": os.path.abspath(movies),
            "posters": os.path.abspath(posters),
        },
        "counts": counts,
    }
    with atomic_dir(out) as tmp:
        write_contract(tmp, interactions, items, tag_frame, None, meta, shards=shards)
    return counts


def _tags(path: str, known_items: pd.Series) -> tuple[pd.DataFrame, int]:
    frame = _read_csv(path, ("userId", "movieId", "tag"))
    known = frame["movieId"].isin(known_items) & frame["tag"].notna()
    frame = frame[known]
    tags = pd.DataFrame({"user_id": frame["userId"], "item_id": frame["movieId"], "tag": frame["tag"].astype(str)})
    if "timestamp" in frame:
        tags["timestamp"] = frame["timestamp"].astype(np.int64)
    return tags.reset_index(drop=True), int((~known).sum())
