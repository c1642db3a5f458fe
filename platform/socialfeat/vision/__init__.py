"""Images to tensors, and the CNN backbones with their feature taps."""
