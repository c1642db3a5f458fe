"""The dataset's part of every stage key: its tables' bytes, dataset.yaml, and its image files' stat."""

import hashlib
import os

from socialfeat.data import schema

# Tables (a file, or a folder of shards) and files whose bytes define a dataset; images referenced by
# path are covered by items.parquet's paths.
FINGERPRINT_FILES = (
    schema.INTERACTIONS,
    schema.ITEMS,
    schema.TAGS,
    schema.SOCIAL,
    schema.COMMENTS,
    schema.META,  # its image policy (allow_external_images) decides what a stage may read
)


def dataset_fingerprint(root: str) -> str:
    """A hash of the dataset's table files' bytes: any change to the data changes every stage key."""
    digest = hashlib.sha256()
    for name in FINGERPRINT_FILES:
        files = schema.table_files(root, name) if name in schema.SCHEMAS else [name]
        for file in files:  # a single file is named as before the shards were: its key is unchanged
            path = os.path.join(root, file)
            if not os.path.exists(path):
                continue
            digest.update(file.encode())
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 22), b""):
                    digest.update(block)
    return digest.hexdigest()[:16]


def images_fingerprint(root: str) -> str:
    """A hash of the image files items.parquet's image_path names, by path, size and modification time
    (not their bytes: hashing every image would read the whole image set at every run's start, and
    rewriting a file changes its mtime, as make and rsync rely on). Embedded images are in items.parquet's
    bytes already; URIs are keyed by the reference alone (a listing per run would cost a request each)."""
    if not schema.has_table(root, schema.ITEMS) or "image_path" not in schema.table_schema(root, schema.ITEMS).names:
        return ""
    digest = hashlib.sha256()
    for reference in schema.read_columns(root, schema.ITEMS, ["image_path"]).column(0).to_pylist():
        if reference is None or "://" in reference.removeprefix("file://"):
            continue
        path = reference.removeprefix("file://")
        try:
            info = os.stat(path if os.path.isabs(path) else os.path.join(root, path))
            digest.update(f"{reference}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{reference}\0missing\n".encode())
    return digest.hexdigest()[:16]
