"""socialfeat: image features from user behaviour."""

__version__ = "0.5.11"
