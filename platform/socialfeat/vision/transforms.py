"""Decode, resize and crop images to uint8 arrays; augment and normalise batches as tensors."""

import numpy as np
from PIL import Image

from socialfeat.data.images import decode_rgb

MEAN, STD = 0.5, 0.25  # images are mean-centred per channel after scaling to [0, 1]


def resize_and_crop(image: Image.Image, size: int) -> np.ndarray:
    """Short side resized to `size`, then the centre size x size square: H x W x 3 uint8."""
    width, height = image.size
    scale = size / min(width, height)
    resized = image.resize((max(size, round(width * scale)), max(size, round(height * scale))), Image.BILINEAR)
    left, top = (resized.width - size) // 2, (resized.height - size) // 2
    return np.asarray(resized.crop((left, top, left + size, top + size)), dtype=np.uint8)


def load_image(data: bytes | None, size: int) -> np.ndarray | None:
    """The stored image as a size x size x 3 uint8 array, or None when it cannot be decoded."""
    image = decode_rgb(data)
    return None if image is None else resize_and_crop(image, size)


def to_input(images, crop: int, train: bool, generator=None):
    """uint8 N x S x S x 3 -> float N x 3 x crop x crop: random crop and flip when training,
    centre crop otherwise; normalised."""
    import torch

    batch = images.permute(0, 3, 1, 2).float().div_(255.0)
    size = batch.shape[-1]
    if not train or size == crop:
        offset = (size - crop) // 2
        batch = batch[:, :, offset : offset + crop, offset : offset + crop]
    else:
        offsets = torch.randint(0, size - crop + 1, (len(batch), 2), generator=generator)  # on the CPU
        batch = torch.stack([img[:, y : y + crop, x : x + crop] for img, (y, x) in zip(batch, offsets.tolist())])
    if train:
        flip = (torch.rand(len(batch), generator=generator) < 0.5).to(batch.device)
        batch[flip] = batch[flip].flip(-1)
    return batch.sub_(MEAN).div_(STD).contiguous()
