"""Feature vectors from an encoder, features files (item_id, vector) and the index of named feature sets."""

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from socialfeat import artifacts
from socialfeat.vision.transforms import to_input

INDEX = "feature_sets.json"  # name -> features file, in every stage that writes feature sets


@torch.no_grad()
def embed_images(encoder, images: np.ndarray, crop: int, device="cpu") -> np.ndarray:
    """N x S x S x 3 uint8 images -> N x D float32 features (centre crops)."""
    x = to_input(torch.from_numpy(np.ascontiguousarray(images)).to(device), crop, train=False)
    return encoder.to(device)(x).float().cpu().numpy()


def write_features(path: str, item_ids, vectors: np.ndarray) -> None:
    vectors = np.asarray(vectors, np.float32)
    column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), vectors.shape[1])
    pq.write_table(pa.table({"item_id": pa.array(list(item_ids), pa.string()), "vector": column}), path)


def read_features(path: str) -> tuple[np.ndarray, np.ndarray]:
    """(item_ids, N x D vectors); raises ValueError naming the file when vectors hold NaN."""
    table = pq.read_table(path)
    vectors = np.asarray(table.column("vector").combine_chunks().flatten(), np.float32)
    vectors = vectors.reshape(table.num_rows, -1)
    bad = ~np.isfinite(vectors).all(axis=1)
    if bad.any():
        raise ValueError(f"{path}: {int(bad.sum())} feature vector(s) hold NaN or infinite values")
    return np.asarray(table.column("item_id").to_pylist(), dtype=object), vectors


def write_sets(directory: str, sets: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """Write each named set to `directory`/<name>.parquet and the index naming them."""
    for name, (ids, vectors) in sets.items():
        write_features(os.path.join(directory, f"{name}.parquet"), ids, vectors)
    artifacts.write_json(os.path.join(directory, INDEX), {name: f"{name}.parquet" for name in sets})


def set_paths(directory: str) -> dict[str, str]:
    """{name: features file} of a stage directory's index (empty when it has none)."""
    index = os.path.join(directory, INDEX)
    if not os.path.exists(index):
        return {}
    return {name: os.path.join(directory, file) for name, file in artifacts.read_json(index).items()}


def read_sets(directory: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {name: read_features(path) for name, path in set_paths(directory).items()}
