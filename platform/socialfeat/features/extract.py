"""Feature vectors from an encoder, features files (item_id, vector) and the index of named feature sets."""

import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from socialfeat import artifacts
from socialfeat.errors import UserError
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
    """(item_ids, N x D vectors); raises ValueError naming the file (and the row) when it is not Parquet, lacks
    a column, or holds a null, ragged, non-numeric or non-finite vector."""
    table = _feature_table(path)
    column = table.column("vector").combine_chunks()
    nulls = np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))
    if len(nulls):
        raise UserError(f"{path}: column 'vector' is null at row {nulls[0]}")
    lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
    ragged = np.flatnonzero(lengths != lengths[0]) if len(lengths) else []
    if len(ragged):
        row = ragged[0]
        raise UserError(
            f"{path}: column 'vector' has {lengths[row]} values at row {row} but {lengths[0]} at row 0 "
            "(every vector must have one length)"
        )
    try:
        vectors = np.asarray(column.flatten(), np.float32).reshape(table.num_rows, -1)
    except (ValueError, TypeError, pa.ArrowInvalid) as error:
        raise UserError(f"{path}: column 'vector' is not a list of numbers ({column.type}: {error})") from None
    bad = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
    if len(bad):
        raise UserError(f"{path}: {len(bad)} feature vector(s) hold NaN or infinite values, first at row {bad[0]}")
    return np.asarray(table.column("item_id").to_pylist(), dtype=object), vectors


def _feature_table(path: str) -> pa.Table:
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as error:
        raise UserError(f"{path}: not a readable Parquet file of (item_id, vector) ({error})") from None
    missing = [name for name in ("item_id", "vector") if name not in table.column_names]
    if missing:
        raise UserError(f"{path}: column(s) {missing} missing (found: {table.column_names}); expected item_id, vector")
    kind = table.schema.field("vector").type
    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)):
        raise UserError(f"{path}: column 'vector' has type {kind}, expected a list of numbers")
    return table


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
