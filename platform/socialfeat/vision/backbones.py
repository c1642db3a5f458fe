"""CNN backbones from torchvision (never downloaded: weights=None) and a small one for local mode,
each with named feature taps."""
import torch
from torch import nn
from torchvision import models

TAPS = {"small": ("penultimate",), "alexnet": ("fc6", "fc7"), "resnet18": ("penultimate",),
        "resnet50": ("penultimate",)}


class SmallCNN(nn.Module):
    """Four conv blocks and a linear head: learns the synthetic styles in minutes on 2 CPU cores."""

    def __init__(self, num_outputs: int, width: int = 16):
        super().__init__()
        layers, channels = [], 3
        for out in (width, width * 2, width * 4, width * 8):
            layers += [nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2)]
            channels = out
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(channels, num_outputs)

    def forward(self, x):
        return self.fc(self.features(x))


def build(name: str, num_outputs: int) -> nn.Module:
    if name == "small":
        return SmallCNN(num_outputs)
    if name == "alexnet":
        return models.alexnet(weights=None, num_classes=num_outputs)
    if name in ("resnet18", "resnet50"):
        return getattr(models, name)(weights=None, num_classes=num_outputs)
    raise ValueError(f"training.model: unknown model {name!r}; choose from {', '.join(TAPS)}")


def embed(model: nn.Module, name: str, tap: str, x: torch.Tensor) -> torch.Tensor:
    """The activations at `tap` (fc6 / fc7 of AlexNet after ReLU, the pooled penultimate layer otherwise)."""
    model = getattr(model, "module", model)  # unwrap DDP
    if name == "small":
        return model.features(x)
    if name == "alexnet":
        hidden = torch.flatten(model.avgpool(model.features(x)), 1)
        upto = {"fc6": 3, "fc7": 6}[tap]  # Dropout, Linear, ReLU (fc6), Dropout, Linear, ReLU (fc7)
        return model.classifier[:upto](hidden)
    body = nn.Sequential(*list(model.children())[:-1])
    return torch.flatten(body(x), 1)
