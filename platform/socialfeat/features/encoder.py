"""The encoder artefact: an image tower cut at its tap, saved as a plain state dict (encoder.pt) beside what
reading it needs (encoder.json: architecture, tap, image size, crop, output dim), so the features stage,
--weights and any method load it without knowing the head it was trained with."""

import os

import torch
from torch import nn

from socialfeat import artifacts
from socialfeat.vision.backbones import DIMS, at_tap, backbone

WEIGHTS, SPEC = "encoder.pt", "encoder.json"


def encoder_spec(model: str, tap: str, image_size: int, crop: int) -> dict:

    return {"architecture": model, "tap": tap, "image_size": image_size, "crop": crop, "dim": DIMS[model]}


def build_encoder(spec: dict, state: dict | None = None, seed: int = 0) -> nn.Module:
    """The encoder of `spec` in eval mode: with `state`'s weights, or (None) at random from `seed`."""
    torch.manual_seed(seed)
    tower, _ = backbone(spec["architecture"])
    encoder = at_tap(tower, spec["architecture"], spec["tap"])
    if state is not None:
        encoder.load_state_dict(state)
    return encoder.eval()


def save_encoder(directory: str, encoder: nn.Module, spec: dict) -> None:
    torch.save({k: v.detach().cpu() for k, v in encoder.state_dict().items()}, os.path.join(directory, WEIGHTS))
    artifacts.write_json(os.path.join(directory, SPEC), spec)


def is_encoder(path: str) -> bool:
    """Whether `path` is an encoder directory or the encoder.pt inside one."""
    directory = path if os.path.isdir(path) else os.path.dirname(path)
    return os.path.isfile(os.path.join(directory, SPEC)) and os.path.isfile(os.path.join(directory, WEIGHTS))


def load_encoder(path: str) -> tuple[dict, dict]:
    """(spec, state dict) of an encoder directory (or its encoder.pt); tensors only, no code is run."""
    directory = path if os.path.isdir(path) else os.path.dirname(path)
    spec = artifacts.read_json(os.path.join(directory, SPEC))
    state = artifacts.load_tensors(os.path.join(directory, WEIGHTS))
    return spec, state
