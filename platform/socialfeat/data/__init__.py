"""Datasets: the on-disk contract, its validating reader, generators and importers."""
