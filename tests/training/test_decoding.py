"""Image decoding on real MovieLens posters: draft-mode JPEG decoding at the target size, and the batch
decoder from JPEG bytes (the GPU input path, run here on the CPU) framing images as the PIL path does."""

import glob
import os

import numpy as np
import pytest

from socialfeat.data.images import decode_rgb, open_image
from socialfeat.vision.decode import load_image, resize_and_crop
from socialfeat.vision.transforms import decode_jpeg_batch

MOVIELENS = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "movielens-posters")


@pytest.fixture(scope="module")
def posters() -> list[bytes]:
    paths = sorted(glob.glob(os.path.join(MOVIELENS, "posters", "*.jpg")))[:12]
    if not paths:
        pytest.skip(f"{MOVIELENS}: the shared MovieLens posters are not beside the project")
    return [open(path, "rb").read() for path in paths]


def test_jpegs_are_decoded_at_the_smallest_scale_that_still_covers_the_target(posters):
    full = open_image(posters[0])
    drafted = open_image(posters[0], at_least=64)
    # libjpeg scales by 1/2, 1/4 or 1/8: the smallest whose sides both stay >= 64
    assert min(drafted.size) >= 64 and min(drafted.size) < 2 * 64
    assert drafted.size[0] < full.size[0]
    assert open_image(posters[0], at_least=10_000).size == full.size  # never upscaled


def test_draft_decoding_changes_pixels_only_slightly(posters):
    drafted = np.stack([load_image(jpeg, 72) for jpeg in posters]).astype(int)
    full = np.stack([resize_and_crop(decode_rgb(jpeg), 72) for jpeg in posters]).astype(int)
    assert drafted.shape == full.shape == (len(posters), 72, 72, 3)
    assert 0 < np.abs(drafted - full).mean() < 8  # a different downscaling filter, the same picture


@pytest.mark.parametrize("size", [64, 200])
def test_the_batch_jpeg_decoder_frames_images_as_the_pil_path(posters, size):
    decoded = decode_jpeg_batch(posters, size).numpy()
    full = np.stack([resize_and_crop(decode_rgb(jpeg), size) for jpeg in posters])
    assert decoded.shape == full.shape and decoded.dtype == np.uint8
    assert np.abs(decoded.astype(int) - full.astype(int)).mean() < 1.0
    other = np.roll(full, 1, axis=0)  # each image against its neighbour's: the comparison can fail
    assert np.abs(decoded.astype(int) - other.astype(int)).mean() > 10
