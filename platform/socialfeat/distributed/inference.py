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
    """One extraction actor: builds its encoders once (a trained one, a random one, ...), then embeds each
    batch with every one of them (on its GPU when it has one): one pass over the images for all of them."""

    def __init__(self, spec: dict, state_refs: dict, seed: int):

        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.encoders = {
            name: build_encoder(spec, ray.get(ref[0]) if ref else None, seed).to(self.device)
            for name, ref in state_refs.items()
        }
        self.crop = spec["crop"]

    def __call__(self, batch: dict) -> dict:

        vectors = {
            f"vector:{name}": embed_images(encoder, batch["item"], self.crop, self.device)
            for name, encoder in self.encoders.items()
        }
        return {"item_id": batch["item_id"]} | vectors


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
    settings = {"batch_size": batch_size, "concurrency": concurrency, "use_gpu": use_gpu, "progress": progress}
    return extract_sets(images_ds, spec, {"encoder": state}, seed, **settings)["encoder"]


def extract_sets(
    images_ds,
    spec: dict,
    states: dict[str, dict | None],
    seed: int,
    *,
    batch_size: int,
    concurrency: int,
    use_gpu: bool,
    progress: bool = False,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{name: (item_ids, vectors)} for each encoder of architecture `spec` in `states` (its weights, or None:
    random from `seed`), all embedded in one pass by the same actors."""

    # Decode first, then embed: fused, the read tasks and the actor pool each need a CPU at once, which a sweep
    # trial on 2 CPUs (one held by the trial and its trainer's share) never has, and the run waited for ever.
    images_ds = images_ds.materialize()
    state_refs = {name: (ray.put(state),) if state is not None else () for name, state in states.items()}
    settings = {"batch_size": batch_size, "concurrency": concurrency, "use_gpu": use_gpu, "progress": progress}
    return again_if_an_actor_dies(lambda: _embed(images_ds, spec, state_refs=state_refs, seed=seed, **settings))


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
    state_refs: dict,
    seed: int,
    batch_size: int,
    concurrency: int,
    use_gpu: bool,
    progress: bool,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:

    features = images_ds.map_batches(
        Embedder,
        fn_constructor_kwargs={"spec": spec, "state_refs": state_refs, "seed": seed},
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=concurrency),
        num_gpus=1 if use_gpu else 0,
        max_restarts=0,
    )
    ids, vectors = [], {name: [] for name in state_refs}
    with console.bar(images_ds.count(), "embedding images", progress, unit="img") as bar:
        for batch in features.iter_batches(batch_size=None, batch_format="numpy"):
            ids.append(batch["item_id"])
            for name in state_refs:
                vectors[name].append(batch[f"vector:{name}"])
            bar.update(len(batch["item_id"]))
    if not ids:
        empty = np.array([], dtype=object), np.zeros((0, spec["dim"]), np.float32)
        return {name: empty for name in state_refs}
    found = np.concatenate(ids).astype(object)
    return {name: (found, np.concatenate(parts).astype(np.float32, copy=False)) for name, parts in vectors.items()}


def item_images(root, column: str, item_ids, size: int):
    """A Ray Dataset of (item_id, item: the decoded image) for `item_ids`; undecodable images left out."""

    ids = list(item_ids)
    return image_rows(root, column, pd.DataFrame({"item": ids, "item_id": ids}), ("item",), size)
