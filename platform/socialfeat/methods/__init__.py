"""The registry of methods: a method is a folder here and one line below."""

from socialfeat.config import ConfigError
from socialfeat.methods import cfl, comparative, hashtags, words
from socialfeat.stages import Method

METHODS = {"cfl": cfl.METHOD, "words": words.METHOD, "hashtags": hashtags.METHOD, "comparative": comparative.METHOD}


def named(name: str, source: str = "config") -> Method:
    """The registered method `name`; an unknown one is a config error naming the key."""
    if name not in METHODS:
        raise ConfigError(f"{source}: config key 'method': unknown method {name!r}; methods: {', '.join(METHODS)}")
    return METHODS[name]
