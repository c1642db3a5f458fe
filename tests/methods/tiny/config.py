"""The test-only method's own config section, declared like a real method's."""

from typing import Literal

from socialfeat.config import ExperimentConfig, Strict


class TinyConfig(Strict):
    label: Literal["first", "last"] = "first"  # which of an item's labels is its class


class Config(ExperimentConfig):
    tiny: TinyConfig = TinyConfig()
