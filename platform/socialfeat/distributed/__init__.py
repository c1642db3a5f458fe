"""The Ray layer: the only modules that import ray."""
