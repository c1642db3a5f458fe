"""Ray Data batch inference: an encoder's features for every decodable item image, on an actor pool."""

import numpy as np


class Embedder:
    """One extraction actor: builds the encoder once, then embeds batches (on its GPU when it has one)."""

    def __init__(self, spec: dict, state, seed: int):
        import ray
        import torch

        from socialfeat.features.encoder import build_encoder

        if isinstance(state, ray.ObjectRef):
            state = ray.get(state)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.encoder = build_encoder(spec, state, seed).to(self.device)
        self.crop = spec["crop"]

    def __call__(self, batch: dict) -> dict:
        from socialfeat.features.extract import embed_images

        return {
            "item_id": batch["item_id"],
            "vector": embed_images(self.encoder, batch["item"], self.crop, self.device),
        }


def extract(
    images_ds, spec: dict, state: dict | None, seed: int, batch_size: int, concurrency: int, use_gpu: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(item_ids, vectors) of the encoder `spec` (weights `state`, or random from `seed`) for every row of
    `images_ds` (columns item_id and item, the decoded image)."""
    import ray

    # Decode first, then embed: fused, the read tasks and the actor pool each need a CPU at once, which a sweep
    # trial on 2 CPUs (one held by the trial and its trainer's share) never has, and the run waited for ever.
    features = images_ds.materialize().map_batches(
        Embedder,
        fn_constructor_kwargs={"spec": spec, "state": ray.put(state) if state is not None else None, "seed": seed},
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=concurrency),
        num_gpus=1 if use_gpu else 0,
    )
    rows = features.take_all()
    item_ids = np.array([r["item_id"] for r in rows], dtype=object)
    vectors = np.stack([r["vector"] for r in rows]) if rows else np.zeros((0, spec["dim"]), np.float32)
    return item_ids, vectors


def item_images(root, column: str, item_ids, size: int):
    """A Ray Dataset of (item_id, item: the decoded image) for `item_ids`; undecodable images left out."""
    import pandas as pd

    from socialfeat.distributed.data import image_rows

    ids = list(item_ids)
    return image_rows(root, column, pd.DataFrame({"item": ids, "item_id": ids}), ("item",), size)
