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
