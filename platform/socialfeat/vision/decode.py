"""Decode, resize and centre-crop one image to a uint8 array: numpy and PIL only, so a decoding worker never
imports torch."""

import numpy as np
from PIL import Image

from socialfeat.data.images import decode_rgb


def frame(width: int, height: int, size: int) -> tuple[int, int, int, int]:
    """(width, height) with the short side resized to `size`, and the (left, top) of its centre square."""
    scale = size / min(width, height)
    resized = max(size, round(width * scale)), max(size, round(height * scale))
    return *resized, (resized[0] - size) // 2, (resized[1] - size) // 2


def resize_and_crop(image: Image.Image, size: int) -> np.ndarray:
    """Short side resized to `size`, then the centre size x size square: H x W x 3 uint8."""
    width, height, left, top = frame(*image.size, size)
    resized = image.resize((width, height), Image.BILINEAR)
    return np.asarray(resized.crop((left, top, left + size, top + size)), dtype=np.uint8)


def load_image(data: bytes | None, size: int) -> np.ndarray | None:
    """The stored image as a size x size x 3 uint8 array, or None when it cannot be decoded."""
    image = decode_rgb(data, at_least=size)
    return None if image is None else resize_and_crop(image, size)
