"""Every registered backbone: the whole network, its tower and each tap give the widths the config table
declares, and the table and the registry name the same architectures."""

import pytest
import torch

from socialfeat.architectures import DIMS, TAPS
from socialfeat.vision.backbones import BACKBONES, at_tap, backbone, build, tower_of


def test_the_config_table_and_the_registry_agree():
    assert set(TAPS) == set(DIMS) == set(BACKBONES)


@pytest.mark.parametrize("name", list(BACKBONES))
def test_each_backbone_tower_and_tap_has_the_declared_width(name):
    torch.manual_seed(0)
    images = torch.rand(1, 3, 96, 96)
    whole = build(name, 7).eval()
    assert whole(images).shape == (1, 7)
    assert tower_of(whole, name)(images).shape == (1, DIMS[name])
    tower, dim = backbone(name)
    assert dim == DIMS[name]
    for tap in TAPS[name]:
        assert at_tap(tower, name, tap).eval()(images).shape == (1, DIMS[name])
    with pytest.raises(ValueError, match="does not exist"):
        at_tap(tower, name, "nowhere")
