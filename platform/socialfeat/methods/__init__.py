"""The registry of methods: a method is a folder here and one line below."""

from socialfeat import config
from socialfeat.config import ConfigError, ExperimentConfig
from socialfeat.methods import cfl, comparative, hashtags, words
from socialfeat.stages import Method

METHODS = {"cfl": cfl.METHOD, "words": words.METHOD, "hashtags": hashtags.METHOD, "comparative": comparative.METHOD}


def configs() -> dict[str, type[ExperimentConfig]]:
    """Each registered method's config class (the shared sections and its own)."""
    return {name: method.config for name, method in METHODS.items()}


def load_config(path: str | None = None, overrides: list[str] = ()) -> ExperimentConfig:
    """The experiment at `path` with overrides, validated by the config of the method it names."""
    return config.load_config(path, overrides, configs())


def build_config(raw: dict, source: str = "config") -> ExperimentConfig:
    return config.build_config(raw, source, configs())


def named(name: str, source: str = "config") -> Method:
    """The registered method `name`; an unknown one is a config error naming the key."""
    if name not in METHODS:
        raise ConfigError(f"{source}: config key 'method': unknown method {name!r}; methods: {', '.join(METHODS)}")
    return METHODS[name]
