"""socialfeat: image features from user behaviour."""

__version__ = "0.2.0"
