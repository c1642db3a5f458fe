"""CNN backbones from torchvision (never downloaded: weights=None) and a small one for local mode: each as
an image tower (the network without its classifier) that a training task puts its head on, cut at a tap."""

import torch
from torch import nn

from socialfeat.architectures import DIMS, TAPS

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


def build(name: str, num_outputs: int) -> nn.Module:
    """The whole network with a `num_outputs` classifier, laid out as its weights files are."""
    if name == "small":
        return SmallCNN(num_outputs)
    # imported here: torchvision.models pulls in torch._dynamo (1.4 s on 2 cores, torchvision 0.29), which
    # every CLI start and sweep trial paid through socialfeat.config before any model was built
    from torchvision import models

    if name == "alexnet":
        return models.alexnet(weights=None, num_classes=num_outputs)
    if name in ("resnet18", "resnet50"):
        return getattr(models, name)(weights=None, num_classes=num_outputs)
    raise ValueError(f"training.model: unknown model {name!r}; choose from {', '.join(TAPS)}")


def tower_of(model: nn.Module, name: str) -> nn.Sequential:
    """The image tower of a whole network (its modules, shared): everything before the classifier."""
    model = getattr(model, "module", model)  # unwrap DDP
    if name == "small":
        return model.features
    if name == "alexnet":
        return nn.Sequential(model.features, model.avgpool, nn.Flatten(1), *model.classifier[:6])
    return nn.Sequential(*list(model.children())[:-1], nn.Flatten(1))


def backbone(name: str) -> tuple[nn.Sequential, int]:
    """(a freshly initialised image tower, its output dimension); the small tower draws from torch's RNG
    exactly as before the classifier existed, so seeded runs keep their weights."""
    tower = small_tower() if name == "small" else tower_of(build(name, 1), name)
    return tower, DIMS[name]


def at_tap(tower: nn.Sequential, name: str, tap: str) -> nn.Sequential:
    """The tower cut at `tap` (its modules, shared); one Sequential layout for saving and loading encoders."""
    if tap not in TAPS[name]:
        raise ValueError(f"tap {tap!r} does not exist for {name}; choose from {TAPS[name]}")
    depth = ALEXNET_TAP_DEPTH[tap] if name == "alexnet" else len(tower)
    return nn.Sequential(*list(tower)[:depth])


def embed(model: nn.Module, name: str, tap: str, x: torch.Tensor) -> torch.Tensor:
    """The activations of a whole network at `tap`."""
    return at_tap(tower_of(model, name), name, tap)(x)
