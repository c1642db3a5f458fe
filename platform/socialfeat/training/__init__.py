"""The plain-torch training step: train_one_epoch and evaluate with explicit arguments."""
