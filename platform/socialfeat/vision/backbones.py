"""CNN backbones from torchvision (never downloaded: weights=None) and a small one for local mode: each as
an image tower (the network without its classifier) that a training task puts its head on, cut at a tap."""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from socialfeat.architectures import DIMS, TAPS
from socialfeat.errors import UserError

# Modules of the AlexNet tower kept up to each tap: features, avgpool, flatten, then Dropout, Linear, ReLU (fc6),
# Dropout, Linear, ReLU (fc7).
ALEXNET_TAP_DEPTH = {"fc6": 6, "fc7": 9}


def small_tower(width: int = 16) -> nn.Sequential:
    """Four conv blocks, pooled and flattened: learns the synthetic styles in minutes on 2 CPU cores."""
    layers, channels = [], 3
    for out in (width, width * 2, width * 4, width * 8):
        layers += [
            nn.Conv2d(channels, out, 3, padding=1, bias=False),
            nn.BatchNorm2d(out),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        ]
        channels = out
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())


class SmallCNN(nn.Module):
    """The small tower with a linear classifier: the layout of a `small` weights file."""

    def __init__(self, num_outputs: int, width: int = 16):
        super().__init__()
        self.features = small_tower(width)
        self.fc = nn.Linear(width * 8, num_outputs)

    def forward(self, x):
        return self.fc(self.features(x))


def _torchvision(name: str) -> Callable[[int], nn.Module]:
    def build(num_outputs: int) -> nn.Module:
        # torchvision.models pulls in torch._dynamo (1.4 s on 2 cores, torchvision 0.29): only a torchvision
        # architecture pays it, not every CLI start or sweep trial
        from torchvision import models

        return getattr(models, name)(weights=None, num_classes=num_outputs)

    return build


def _alexnet_tower(model: nn.Module) -> nn.Sequential:
    return nn.Sequential(model.features, model.avgpool, nn.Flatten(1), *model.classifier[:6])


def _resnet_tower(model: nn.Module) -> nn.Sequential:
    return nn.Sequential(*list(model.children())[:-1], nn.Flatten(1))


@dataclass(frozen=True)
class Backbone:
    """An architecture: the whole network with a classifier (as its weights files are laid out), its image
    tower (the modules before the classifier, shared), a fresh tower, and how deep each tap cuts it."""

    build: Callable[[int], nn.Module]
    tower: Callable[[nn.Module], nn.Sequential]
    fresh: Callable[[], nn.Sequential] | None = None  # a tower without building the whole network
    depths: dict[str, int] | None = None  # tap -> modules of the tower kept (None: all, at every tap)


BACKBONES = {
    "small": Backbone(SmallCNN, lambda model: model.features, fresh=small_tower),
    "alexnet": Backbone(_torchvision("alexnet"), _alexnet_tower, depths=ALEXNET_TAP_DEPTH),
    "resnet18": Backbone(_torchvision("resnet18"), _resnet_tower),
    "resnet50": Backbone(_torchvision("resnet50"), _resnet_tower),
}


def _named(name: str) -> Backbone:
    if name not in BACKBONES:
        raise UserError(f"training.model: unknown model {name!r}; choose from {', '.join(BACKBONES)}")
    return BACKBONES[name]


def build(name: str, num_outputs: int) -> nn.Module:
    """The whole network with a `num_outputs` classifier, laid out as its weights files are."""
    return _named(name).build(num_outputs)


def tower_of(model: nn.Module, name: str) -> nn.Sequential:
    """The image tower of a whole network (its modules, shared): everything before the classifier."""
    return _named(name).tower(getattr(model, "module", model))  # unwrap DDP


def backbone(name: str) -> tuple[nn.Sequential, int]:
    """(a freshly initialised image tower, its output dimension); the small tower draws from torch's RNG
    exactly as before the classifier existed, so seeded runs keep their weights."""
    record = _named(name)
    tower = record.fresh() if record.fresh else record.tower(record.build(1))
    return tower, DIMS[name]


def at_tap(tower: nn.Sequential, name: str, tap: str) -> nn.Sequential:
    """The tower cut at `tap` (its modules, shared); one Sequential layout for saving and loading encoders."""
    if tap not in TAPS[name]:
        raise UserError(f"tap {tap!r} does not exist for {name}; choose from {TAPS[name]}")
    depths = _named(name).depths
    depth = depths[tap] if depths else len(tower)
    return nn.Sequential(*list(tower)[:depth])


def embed(model: nn.Module, name: str, tap: str, x: torch.Tensor) -> torch.Tensor:
    """The activations of a whole network at `tap`."""
    return at_tap(tower_of(model, name), name, tap)(x)
