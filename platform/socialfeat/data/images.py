"""Image bytes from the contract (embedded, or by a path confined to the dataset), decoded robustly to RGB."""

import concurrent.futures
import io
import logging
import os
import stat
import urllib.parse
import warnings
from dataclasses import dataclass

import numpy as np
import yaml
from PIL import Image, ImageFile, UnidentifiedImageError

from socialfeat import storage

log = logging.getLogger(__name__)
ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated JPEG is undecodable, not silently grey
Image.MAX_IMAGE_PIXELS = 64_000_000  # Pillow raises DecompressionBombError past twice this: 128 MP
MAX_BYTES = 32 << 20
EXTERNAL_KEY = "allow_external_images"  # the dataset.yaml key that lets image_path leave the dataset


class ImageRefused(Exception):
    """An image reference the policy does not let socialfeat read; the message says why."""


@dataclass(frozen=True)
class ImagePolicy:
    """What an image reference may name: by default only regular files inside the dataset directory.

    With `allow_external` (dataset.yaml: allow_external_images: true) absolute paths are read too, and URIs
    under `source`, the storage URI the dataset itself was read from (same scheme and bucket, its endpoint
    and credentials): a row can never make socialfeat connect to a host of its choosing."""

    root: str
    allow_external: bool = False
    source: str | None = None
    max_bytes: int = MAX_BYTES
    timeout_s: float = 30.0

    @classmethod
    def of(cls, where: "str | ImagePolicy") -> "ImagePolicy":
        """The policy itself, or the one a dataset directory's dataset.yaml asks for."""
        if isinstance(where, ImagePolicy):
            return where
        return cls(os.path.abspath(where), allow_external=external_allowed(where))


def external_allowed(root: str) -> bool:

    try:
        with open(os.path.join(root, "dataset.yaml")) as handle:
            meta = yaml.safe_load(handle)
    except (OSError, ValueError, yaml.YAMLError):
        return False
    return isinstance(meta, dict) and meta.get(EXTERNAL_KEY) is True


def _scheme(reference: str) -> str | None:
    head, sep, _ = reference.partition("://")
    return head.lower() if sep and head.isalnum() else None


def reference_problem(image_path: str, allow_external: bool, source: str | None = None) -> str | None:
    """Why the reader rejects an image_path outright (None: it may be read, subject to read-time checks)."""
    scheme = _scheme(image_path)
    if scheme is not None and scheme != "file":
        if not allow_external:
            return f"is a URI ({scheme}://), allowed only with {EXTERNAL_KEY}: true in dataset.yaml"
        if "?" in image_path or not (source and image_path.startswith(source.rstrip("/") + "/")):
            return f"is a URI outside the storage the dataset was read from ({source or 'a local directory'})"
        segments = [urllib.parse.unquote(part) for part in image_path.partition("://")[2].split("/")]
        if any(part in ("", ".", "..") for part in segments) or "\\" in image_path:
            # an object store resolves '..' itself: the prefix test above would pass a key outside the prefix
            return f"is a URI with an empty, '.' or '..' segment (it could leave {source})"
        return None
    path = image_path.removeprefix("file://")
    if os.path.isabs(path):
        return None if allow_external else f"is an absolute path, allowed only with {EXTERNAL_KEY}: true"
    if os.path.normpath(path).split(os.sep)[0] == os.pardir:
        return "leaves the dataset directory"
    return None


def _inside(path: str, root: str) -> bool:
    real_root = os.path.realpath(root)
    return os.path.commonpath([os.path.realpath(path), real_root]) == real_root


def _read_regular_file(path: str, max_bytes: int) -> bytes:
    """A regular file's bytes; a FIFO, device or directory is refused without blocking on it."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(descriptor, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ImageRefused("not a regular file")
        if info.st_size > max_bytes:
            raise ImageRefused(f"{info.st_size:,} bytes, over images.max_bytes = {max_bytes:,}")
        return handle.read(max_bytes + 1)


def _read_uri(uri: str, policy: ImagePolicy) -> bytes | None:

    filesystem, path = storage.resolve(uri)
    with filesystem.open_input_stream(path) as stream:
        data = stream.read(policy.max_bytes + 1)
    if len(data) > policy.max_bytes:
        raise ImageRefused(f"over images.max_bytes = {policy.max_bytes:,}")
    return data


_REFUSALS_LOGGED = [0]
_URI_READS = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="image-read")


def fetch_bytes(policy: ImagePolicy, image_path: str) -> bytes | None:
    """The bytes an image_path names, None when nothing is there; ImageRefused when the policy forbids it."""
    problem = reference_problem(image_path, policy.allow_external, policy.source)
    if problem:
        raise ImageRefused(problem)
    if _scheme(image_path) not in (None, "file"):
        future = _URI_READS.submit(_read_uri, image_path, policy)
        try:
            return future.result(timeout=policy.timeout_s)
        except concurrent.futures.TimeoutError:
            raise ImageRefused(f"not read within {policy.timeout_s:g}s") from None
        except (FileNotFoundError, OSError):
            return None
    path = image_path.removeprefix("file://")
    location = path if os.path.isabs(path) else os.path.join(policy.root, path)
    try:
        if not policy.allow_external and not _inside(location, policy.root):
            raise ImageRefused("a symbolic link out of the dataset directory")
        return _read_regular_file(location, policy.max_bytes)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
    except OSError as error:  # a name too long, a symlink loop, no permission: unreadable, never fatal
        raise ImageRefused(error.strerror or type(error).__name__) from None


def open_image(data: bytes | None, at_least: int | None = None) -> Image.Image | None:
    """The decoded image in its stored mode, or None when the bytes are empty or undecodable. With
    `at_least`, a JPEG is decoded at the smallest of 1/8, 1/4, 1/2 or full scale whose sides are both still
    at least that many pixels (libjpeg's DCT scaling: a 4x smaller decode costs about a quarter)."""
    if not data:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = Image.open(io.BytesIO(data))
            if at_least:
                image.draft(image.mode, (at_least, at_least))  # a no-op for formats other than JPEG
            image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None
    return image


def _to_8_bit(image: Image.Image) -> Image.Image:
    """16-bit and 32-bit greyscale scaled to 0..255 by their mode's range (Pillow's convert clips instead,
    which turns a 16-bit image nearly white); float images in 0..1 scaled likewise."""
    values = np.asarray(image, dtype=np.float64)
    if image.mode.startswith("I;16") or (image.mode == "I" and values.max(initial=0) > 255):
        values = values / 257.0
    elif image.mode == "F" and values.max(initial=0) <= 1.0:
        values = values * 255.0
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), mode="L")


def to_rgb(image: Image.Image) -> Image.Image:
    """Greyscale (8, 16 or 32 bits), palette and CMYK converted; transparency composited on white so a
    logo with an alpha channel does not turn black."""
    if image.mode.startswith("I") or image.mode == "F":
        image = _to_8_bit(image)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return image.convert("RGB") if image.mode != "RGB" else image


def decode_rgb(data: bytes | None, at_least: int | None = None) -> Image.Image | None:
    """An RGB image, or None when the bytes are empty or not a decodable image (`at_least`: see open_image)."""
    image = open_image(data, at_least)
    return None if image is None else to_rgb(image)


def encode_jpeg(pixels: np.ndarray, quality: int = 90) -> bytes:
    """JPEG bytes of an HxWx3 uint8 array."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def image_bytes_or_refusal(
    where: "str | ImagePolicy", image: bytes | None, image_path: str | None
) -> tuple[bytes | None, str | None]:
    """(the encoded image of one item row or None, why it was refused or None); embedded bytes win."""
    if image is not None:
        return image, None
    if not image_path:
        return None, None
    try:
        return fetch_bytes(ImagePolicy.of(where), image_path), None
    except ImageRefused as refusal:
        return None, str(refusal)


def item_image_bytes(where: "str | ImagePolicy", image: bytes | None, image_path: str | None) -> bytes | None:
    """The encoded image of one item row, or None: a missing or refused image is skipped, never fatal."""
    data, refusal = image_bytes_or_refusal(where, image, image_path)
    if refusal:
        _REFUSALS_LOGGED[0] += 1
        if _REFUSALS_LOGGED[0] <= 5:  # per process; `socialfeat data check` lists them all
            log.warning("image %s refused: %s", image_path, refusal)
    return data
