"""Ray Data batch inference: an encoder's features for every decodable item image, on an actor pool."""

import logging

import numpy as np
import pandas as pd
import ray
import torch

from socialfeat import console
from socialfeat.distributed.data import image_rows
from socialfeat.features.encoder import build_encoder
from socialfeat.features.extract import embed_images

log = logging.getLogger(__name__)


class Embedder:
    """One extraction actor: builds the encoder once, then embeds batches (on its GPU when it has one)."""

    def __init__(self, spec: dict, state_ref: tuple, seed: int):

        state = ray.get(state_ref[0]) if state_ref else None
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.encoder = build_encoder(spec, state, seed).to(self.device)
        self.crop = spec["crop"]

    def __call__(self, batch: dict) -> dict:

        return {
            "item_id": batch["item_id"],
            "vector": embed_images(self.encoder, batch["item"], self.crop, self.device),
        }


ACTOR_ATTEMPTS = 3  # an extraction whose actor died is run again, this many times in all


def extract(
    images_ds,
    spec: dict,
    state: dict | None,
    seed: int,
    batch_size: int,
    concurrency: int,
    use_gpu: bool,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """(item_ids, vectors) of the encoder `spec` (weights `state`, or random from `seed`) for every row of
    `images_ds` (columns item_id and item, the decoded image); a bar over the images with `progress`."""

    # Decode first, then embed: fused, the read tasks and the actor pool each need a CPU at once, which a sweep
    # trial on 2 CPUs (one held by the trial and its trainer's share) never has, and the run waited for ever.
    images_ds = images_ds.materialize()
    state_ref = (ray.put(state),) if state is not None else ()
    settings = {"batch_size": batch_size, "concurrency": concurrency, "use_gpu": use_gpu, "progress": progress}
    return again_if_an_actor_dies(lambda: _embed(images_ds, spec, state_ref=state_ref, seed=seed, **settings))


def again_if_an_actor_dies(work, attempts: int = ACTOR_ATTEMPTS):
    """work(), run again when one of its actors dies. Ray Data's pools restart actors themselves
    (max_restarts=-1), but a restart needs the constructor arguments, which Ray Data keeps in the object
    store where they may be gone by then (ray-project/ray#53727; Ray 2.60 logs an error line for every
    such pool): our pools do not restart, and a crash costs this one extraction instead."""

    for attempt in range(1, attempts + 1):
        try:
            return work()
        except ray.exceptions.RayActorError as error:
            if attempt == attempts:
                raise
            log.warning("an actor died (%s): running the extraction again (%d of %d)", error, attempt + 1, attempts)


def _embed(
    images_ds,
    spec: dict,
    *,
    state_ref: tuple,
    seed: int,
    batch_size: int,
    concurrency: int,
    use_gpu: bool,
    progress: bool,
):

    features = images_ds.map_batches(
        Embedder,
        fn_constructor_kwargs={"spec": spec, "state_ref": state_ref, "seed": seed},
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=concurrency),
        num_gpus=1 if use_gpu else 0,
        max_restarts=0,
    )
    ids, vectors = [], []
    with console.bar(images_ds.count(), "embedding images", progress, unit="img") as bar:
        for batch in features.iter_batches(batch_size=None, batch_format="numpy"):
            ids.append(batch["item_id"])
            vectors.append(batch["vector"])
            bar.update(len(batch["item_id"]))
    if not ids:
        return np.array([], dtype=object), np.zeros((0, spec["dim"]), np.float32)
    return np.concatenate(ids).astype(object), np.concatenate(vectors).astype(np.float32, copy=False)


def item_images(root, column: str, item_ids, size: int):
    """A Ray Dataset of (item_id, item: the decoded image) for `item_ids`; undecodable images left out."""

    ids = list(item_ids)
    return image_rows(root, column, pd.DataFrame({"item": ids, "item_id": ids}), ("item",), size)
