"""Ray Data around the pure cores: negative sampling sharded over blocks of users."""
import numpy as np

from socialfeat.factorization.sampling import USERS_PER_BLOCK, sample_block


def sample_negatives_sharded(users: np.ndarray, items: np.ndarray, n_items: int, weights: np.ndarray,
                             ratio: float, seed: int, users_per_block: int = USERS_PER_BLOCK
                             ) -> tuple[np.ndarray, np.ndarray]:
    """The same negatives as sampling.sample_negatives, each block of users sampled by a Ray task
    reading the positives from the object store; blocks come back in order."""
    import ray

    shared = ray.put((users, items, weights))
    blocks = np.unique(users // users_per_block)

    def sample(batch: dict) -> dict:
        all_users, all_items, all_weights = ray.get(shared)
        out_users, out_items, out_blocks = [], [], []
        for block in batch["block"]:
            mask = all_users // users_per_block == block
            block_users, block_items = sample_block(all_users[mask], all_items[mask], n_items, all_weights,
                                                    ratio, seed, int(block))
            out_users.append(block_users)
            out_items.append(block_items)
            out_blocks.append(np.full(len(block_users), block))
        return {"user": np.concatenate(out_users), "item": np.concatenate(out_items),
                "block": np.concatenate(out_blocks), "position": np.concatenate([np.arange(len(u)) for u in out_users])}

    dataset = ray.data.from_items([{"block": int(b)} for b in blocks]).map_batches(sample, batch_size=1)
    frame = dataset.to_pandas().sort_values(["block", "position"], kind="stable")
    return frame["user"].to_numpy(np.int32), frame["item"].to_numpy(np.int32)


def _decode_batch(batch: dict, root: str, column: str, size: int, lookup_ref) -> dict:
    """Decode, resize and crop each image of a batch; attach its label / target; drop undecodable ones."""
    import ray

    from socialfeat.data.images import item_image_bytes
    from socialfeat.vision.transforms import load_image

    lookup = ray.get(lookup_ref)
    rows, images = [], []
    for item_id, stored in zip(batch["item_id"], batch[column]):
        position = lookup["position"].get(item_id)
        if position is None or stored is None:
            continue
        image = load_image(item_image_bytes(root, stored, None) if column == "image"
                           else item_image_bytes(root, None, stored), size)
        if image is not None:
            rows.append(position)
            images.append(image)
    out = {"item_id": np.array([lookup["item_id"][p] for p in rows], dtype=object),
           "image": np.stack(images) if images else np.zeros((0, size, size, 3), np.uint8),
           "label": np.array([lookup["label"][p] for p in rows], dtype=np.int64)}
    if lookup["target"] is not None:
        out["target"] = lookup["target"][rows] if rows else np.zeros((0, lookup["target"].shape[1]), np.float32)
    return out


def image_dataset(root: str, column: str, item_ids, size: int, labels=None, targets=None):
    """A Ray Dataset of (item_id, image S x S x 3 uint8, label[, target]) for `item_ids`, decoded in
    parallel from the dataset's items.parquet; undecodable images are skipped."""
    import os

    import ray

    item_ids = np.asarray(item_ids, dtype=object)
    lookup = {"position": {item: n for n, item in enumerate(item_ids)}, "item_id": item_ids,
              "label": np.full(len(item_ids), -1, np.int64) if labels is None else np.asarray(labels, np.int64),
              "target": None if targets is None else np.asarray(targets, np.float32)}
    source = ray.data.read_parquet(os.path.join(root, "items.parquet")).select_columns(["item_id", column])
    return source.map_batches(_decode_batch, batch_format="numpy", batch_size=256,
                              fn_kwargs={"root": root, "column": column, "size": size, "lookup_ref": ray.put(lookup)})
