"""Ray Data batch inference: features for every decodable item image, on an actor pool."""
import numpy as np


class Embedder:
    """One extraction actor: builds the model once, then embeds batches (on its GPU when it has one)."""

    def __init__(self, model_name: str, num_outputs: int, state: dict | None, tap: str, crop: int, seed: int):
        import ray
        import torch

        from socialfeat.features.extract import load_model

        if isinstance(state, ray.ObjectRef):
            state = ray.get(state)

        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = load_model(model_name, num_outputs, state, seed).to(self.device)
        self.model_name, self.tap, self.crop = model_name, tap, crop

    def __call__(self, batch: dict) -> dict:
        from socialfeat.features.extract import embed_images

        vectors = embed_images(self.model, self.model_name, self.tap, batch["image"], self.crop, self.device)
        return {"item_id": batch["item_id"], "vector": vectors}


def extract(images_ds, model_name: str, num_outputs: int, state: dict | None, tap: str, crop: int, seed: int,
            batch_size: int, concurrency: int, use_gpu: bool) -> tuple[np.ndarray, np.ndarray]:
    """(item_ids, vectors) for every row of `images_ds`."""
    import ray

    features = images_ds.map_batches(
        Embedder, fn_constructor_kwargs={"model_name": model_name, "num_outputs": num_outputs,
                                         "state": ray.put(state) if state is not None else None,
                                         "tap": tap, "crop": crop, "seed": seed},
        batch_size=batch_size, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=concurrency),
        num_gpus=1 if use_gpu else 0)
    rows = features.take_all()
    item_ids = np.array([r["item_id"] for r in rows], dtype=object)
    vectors = np.stack([r["vector"] for r in rows]) if rows else np.zeros((0, 0), np.float32)
    return item_ids, vectors
