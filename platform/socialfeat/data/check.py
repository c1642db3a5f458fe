"""`socialfeat data check`: the counts of a dataset and a census of its images."""

from collections import Counter
from collections.abc import Iterator

import numpy as np
from tqdm import tqdm

from socialfeat.data import schema
from socialfeat.data.images import image_bytes_or_refusal, open_image
from socialfeat.data.reader import Dataset


def _image_bytes(dataset: Dataset) -> Iterator[tuple[str, bytes | None, str | None, str | None]]:
    """(item_id, bytes or None, path or None, why it was refused or None) for every item that names an image."""
    column = dataset.image_column
    if column is None:
        return
    batches = (
        batch
        for parquet in schema.parquet_files(dataset.root, schema.ITEMS)
        for batch in parquet.iter_batches(columns=["item_id", column], batch_size=256)
    )
    for batch in batches:
        for item_id, value in zip(batch.column("item_id").to_pylist(), batch.column(column).to_pylist()):
            if value is None:
                continue
            if column == "image":
                yield item_id, *image_bytes_or_refusal(dataset.images, value, None), None
            else:
                yield item_id, *image_bytes_or_refusal(dataset.images, None, value), value


def image_census(dataset: Dataset, progress: bool = False) -> dict:
    """How many items have a decodable image, a missing file, a reference the image policy refuses (a FIFO,
    a file over images.max_bytes, a link out of the dataset, an unreadable name), undecodable bytes, or none
    at all; and how many were stored in a mode other than RGB (converted on read)."""
    counts = Counter()
    first_bad: dict[str, str] = {}
    refused: list[str] = []
    total = int(dataset.items["image_ref"].notna().sum())
    for item_id, data, refusal, path in tqdm(
        _image_bytes(dataset), total=total, disable=not progress, desc="decoding images", unit="img"
    ):
        if refusal is not None:
            counts["images_refused"] += 1
            refused.append(f"item {item_id}: {path}: {refusal}")
            continue
        if data is None:
            counts["images_missing"] += 1
            first_bad.setdefault("missing", f"item {item_id}: {path}")
            continue
        image = open_image(data)
        if image is None:
            counts["images_undecodable"] += 1
            first_bad.setdefault("undecodable", f"item {item_id}" + (f": {path}" if path else ""))
            continue
        counts["images_found"] += 1
        if image.mode != "RGB":
            counts[f"images_converted_from_{image.mode}"] += 1
    counts["items_without_image"] = len(dataset.items) - total
    for key in ("images_found", "images_missing", "images_refused", "images_undecodable"):
        counts.setdefault(key, 0)
    return {"counts": dict(counts), "examples": first_bad, "refused": refused}


def dataset_counts(dataset: Dataset) -> dict:
    """Users, items, interactions, density, tags, owners and labels of a validated dataset."""
    items, n_items = dataset.items, len(dataset.items)
    if dataset.interactions is None:  # held as codes (read_dataset(log_as="codes"))
        codes = dataset.log
        users, viewed, views = len(codes.users), np.count_nonzero(np.bincount(codes.item, minlength=1)), len(codes)
    else:
        interactions = dataset.interactions
        users, viewed, views = interactions["user_id"].nunique(), interactions["item_id"].nunique(), len(interactions)
    counts = {
        "users": int(users),
        "items": int(n_items),
        "items_with_interactions": int(viewed),
        "interactions": int(views),
        "density": float(views / max(1, users * n_items)),
        **dataset.side.counted(),  # tags, distinct_tags, social_links, comments
        "items_with_owner": int(items["owner_id"].notna().sum()) if "owner_id" in items else 0,
        "items_with_text": int(items["text"].notna().sum()) if "text" in items else 0,
        "items_with_labels": int(items["labels"].map(lambda v: v is not None and len(v) > 0).sum())
        if "labels" in items
        else 0,
        "distinct_labels": int(items["labels"].explode().dropna().nunique()) if "labels" in items else 0,
    }
    counts.update(dataset.handled)
    return counts
