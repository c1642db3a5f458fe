"""Feature vectors from a trained (or randomly initialised) CNN, and features.parquet I/O."""
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from socialfeat.vision.backbones import build, embed
from socialfeat.vision.transforms import to_input


def load_model(model_name: str, num_outputs: int, state: dict | None, seed: int):
    """The trained model from a training state, or (state None) the same architecture at random."""
    torch.manual_seed(seed)
    model = build(model_name, num_outputs)
    if state is not None:
        model.load_state_dict(state)
    return model.eval()


@torch.no_grad()
def embed_images(model, model_name: str, tap: str, images: np.ndarray, crop: int, device="cpu") -> np.ndarray:
    """N x S x S x 3 uint8 images -> N x D float32 features at `tap` (centre crops)."""
    x = to_input(torch.from_numpy(np.ascontiguousarray(images)).to(device), crop, train=False)
    return embed(model.to(device), model_name, tap, x).float().cpu().numpy()


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
