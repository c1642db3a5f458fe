"""User-supplied feature sets: a features file (item_id, vector), an encoder artefact or a torchvision
weights file."""

import os

import numpy as np
import torch

from socialfeat.artifacts import content_hash
from socialfeat.errors import UserError
from socialfeat.features.encoder import WEIGHTS, encoder_spec, is_encoder, load_encoder
from socialfeat.features.extract import read_features
from socialfeat.vision.backbones import at_tap, build, tower_of

# The last linear layer of each architecture: its weight's rows are the model's outputs.
HEAD = {"small": "fc.weight", "resnet18": "fc.weight", "resnet50": "fc.weight", "alexnet": "classifier.6.weight"}


class ExternalFeaturesError(UserError):
    """A user-supplied feature or weights file that cannot be evaluated."""


def file_fingerprint(path: str) -> dict:
    """What makes a stage that reads `path` stale: its size and modification time (an encoder directory:
    its weights file's)."""

    if os.path.isdir(path) and is_encoder(path):
        path = os.path.join(path, WEIGHTS)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: file does not exist")
    stat = os.stat(path)
    return {"path": os.path.abspath(path), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


_CHECKED: set[str] = set()  # fingerprints of files already read whole once in this process


def check_feature_file(path: str, fingerprint: dict) -> None:
    """Read a features file whole once (per content), so a broken one fails before any stage runs."""
    if content_hash(fingerprint) not in _CHECKED:
        read_features(path)
        _CHECKED.add(content_hash(fingerprint))


def check_weights_file(path: str, training, fingerprint: dict) -> None:
    """Load --weights once (per content and model) so a wrong file fails before any stage runs."""
    key = content_hash([fingerprint, training.model, training.tap])
    if key not in _CHECKED:
        weights_encoder(path, training)
        _CHECKED.add(key)


def aligned_features(path: str, name: str, item_ids: np.ndarray) -> np.ndarray:
    """The file's vectors in the order of `item_ids`; every one of them must be present."""
    ids, vectors = read_features(path)
    position = {item: n for n, item in enumerate(ids)}
    missing = [item for item in item_ids if item not in position]
    if missing:
        raise ExternalFeaturesError(
            f"{path}: feature set '{name}' has no vector for {len(missing)} of "
            f"{len(item_ids)} items with images (first: {missing[0]!r})"
        )
    return vectors[[position[item] for item in item_ids]]


def load_weights(path: str, model_name: str) -> tuple[dict, int]:
    """(state dict, number of outputs) of a weights file for `model_name`, loaded without running code."""

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: weights file does not exist (evaluation.weights / --weights)") from None
    except Exception as error:  # pickles with code in them, truncated files, not a torch file at all
        raise ExternalFeaturesError(f"{path}: cannot be loaded as weights ({type(error).__name__}: {error})") from None
    for wrapper in ("state_dict", "model"):  # checkpoints that wrap the state dict
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    state = {key.removeprefix("module."): value for key, value in state.items()}  # saved from DDP
    if HEAD[model_name] not in state:
        raise ExternalFeaturesError(
            f"{path}: not a {model_name} state dict (no '{HEAD[model_name]}'); training.model picks the architecture"
        )
    outputs = int(state[HEAD[model_name]].shape[0])
    expected = build(model_name, outputs).state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong_shape = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or wrong_shape:
        raise ExternalFeaturesError(
            f"{path}: not a {model_name} state dict ({len(missing)} missing keys, {len(unexpected)} unexpected, "
            f"{len(wrong_shape)} of the wrong shape; first: {(missing + unexpected + wrong_shape)[0]!r}); "
            "training.model picks the architecture"
        )
    return state, outputs


def weights_encoder(path: str, training) -> tuple[dict, dict]:
    """(encoder spec, state) of `path`: an encoder artefact (a train stage's directory or its encoder.pt)
    as it is, or a torchvision state dict of `training.model` cut at `training.tap`."""

    if is_encoder(path):
        return load_encoder(path)
    state, outputs = load_weights(path, training.model)
    model = build(training.model, outputs)
    model.load_state_dict(state)
    encoder = at_tap(tower_of(model, training.model), training.model, training.tap)
    return encoder_spec(training.model, training.tap, training.image_size, training.crop_size), encoder.state_dict()
