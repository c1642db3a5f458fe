"""The registry of methods: a method is a folder here and one line below."""

from socialfeat.methods import cfl, comparative, hashtags, words

METHODS = {"cfl": cfl.METHOD, "words": words.METHOD, "hashtags": hashtags.METHOD, "comparative": comparative.METHOD}
