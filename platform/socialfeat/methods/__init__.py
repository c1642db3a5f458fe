"""The registry of methods: a method is a folder here and one line below."""

import importlib

from socialfeat import config
from socialfeat.config import ConfigError, ExperimentConfig
from socialfeat.stages import Method

# Each method's graph lives in its method.py and is imported on first use: a Ray worker unpickling a
# method's task imports this package and the method's own first, and the pipeline with sklearn and scipy
# would add seconds to every train worker and Ray Data task.
NAMES = ("cfl", "words", "hashtags", "comparative")


def _load(name: str) -> Method:
    return importlib.import_module(f"socialfeat.methods.{name}.method").METHOD


def methods() -> dict[str, Method]:
    """Every registered method by name."""
    return {name: _load(name) for name in NAMES}


def __getattr__(attribute: str):
    if attribute == "METHODS":
        return methods()
    raise AttributeError(f"module {__name__!r} has no attribute {attribute!r}")


def configs() -> dict[str, type[ExperimentConfig]]:
    """Each registered method's config class (the shared sections and its own)."""
    return {name: method.config for name, method in methods().items()}


def load_config(path: str | None = None, overrides: list[str] = ()) -> ExperimentConfig:
    """The experiment at `path` with overrides, validated by the config of the method it names."""
    return config.load_config(path, overrides, configs())


def build_config(raw: dict, source: str = "config") -> ExperimentConfig:
    return config.build_config(raw, source, configs())


def named(name: str, source: str = "config") -> Method:
    """The registered method `name`; an unknown one is a config error naming the key."""
    if name not in NAMES:
        raise ConfigError(f"{source}: config key 'method': unknown method {name!r}; methods: {', '.join(NAMES)}")
    return _load(name)
