"""socialfeat: image features from user behaviour."""

__version__ = "0.3.4"
