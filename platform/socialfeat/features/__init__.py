"""Feature extraction and quick checks of feature quality."""
