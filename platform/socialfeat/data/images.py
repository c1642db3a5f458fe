"""Image bytes from the contract (embedded or by path/URI), decoded robustly to RGB."""

import io
import logging
import os
import warnings

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

log = logging.getLogger(__name__)
ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated JPEG is undecodable, not silently grey


def resolve_path(root: str, image_path: str) -> str:
    """An image_path is relative to the dataset directory unless it is absolute or a URI."""
    if "://" in image_path or os.path.isabs(image_path):
        return image_path
    return os.path.join(root, image_path)


def read_bytes(location: str) -> bytes | None:
    """The file's bytes, or None when it does not exist; URIs go through pyarrow filesystems."""
    if "://" in location and not location.startswith("file://"):
        from pyarrow import fs

        filesystem, path = fs.FileSystem.from_uri(location)
        try:
            with filesystem.open_input_stream(path) as stream:
                return stream.read()
        except (FileNotFoundError, OSError):
            return None
    path = location.removeprefix("file://")
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


def open_image(data: bytes | None) -> Image.Image | None:
    """The decoded image in its stored mode, or None when the bytes are empty or undecodable."""
    if not data:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = Image.open(io.BytesIO(data))
            image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None
    return image


def to_rgb(image: Image.Image) -> Image.Image:
    """Greyscale, palette and CMYK converted; transparency composited on white so a logo with an
    alpha channel does not turn black."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return image.convert("RGB") if image.mode != "RGB" else image


def decode_rgb(data: bytes | None) -> Image.Image | None:
    """An RGB image, or None when the bytes are empty or not a decodable image."""
    image = open_image(data)
    return None if image is None else to_rgb(image)


def encode_jpeg(pixels: np.ndarray, quality: int = 90) -> bytes:
    """JPEG bytes of an HxWx3 uint8 array."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def item_image_bytes(root: str, image: bytes | None, image_path: str | None) -> bytes | None:
    """The encoded image of one item row: embedded bytes win over a path."""
    if image:
        return image
    if image_path:
        return read_bytes(resolve_path(root, image_path))
    return None
