"""Hyperparameter sweeps: search-space files, Ray Tune + Optuna runs, and their results."""
