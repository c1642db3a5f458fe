"""Training augmentation: every output is a crop of its own image (flipped or not), normalised; evaluation
takes the centre crop."""

import torch

from socialfeat.vision.transforms import MEAN, STD, to_input


def _normalised(window):
    return (window.permute(2, 0, 1).float() / 255.0 - MEAN) / STD


def _crop(image, y: int, x: int, flipped: bool):
    """The 8 x 8 window of `image` at (y, x), normalised, mirrored left to right when `flipped`."""
    window = _normalised(image[y : y + 8, x : x + 8])
    return window.flip(-1) if flipped else window


def test_each_training_input_is_a_crop_of_its_own_image_and_both_flips_occur():
    images = torch.randint(0, 256, (64, 12, 12, 3), dtype=torch.uint8)
    batch = to_input(images, 8, train=True, generator=torch.Generator().manual_seed(0))
    assert batch.shape == (64, 3, 8, 8) and batch.is_contiguous(memory_format=torch.channels_last)
    seen = set()
    for image, augmented in zip(images, batch):
        placements = [(y, x, flipped) for y in range(5) for x in range(5) for flipped in (False, True)]
        matches = {p for p in placements if torch.allclose(augmented, _crop(image, *p), atol=1e-6)}
        assert matches, "an augmented image is no crop of its own image"
        seen |= matches
    assert {flipped for _, _, flipped in seen} == {False, True}
    assert len({(y, x) for y, x, _ in seen}) > 5  # the offsets vary across the batch


def test_evaluation_inputs_are_the_centre_crop():
    images = torch.randint(0, 256, (4, 12, 12, 3), dtype=torch.uint8)
    batch = to_input(images, 8, train=False)
    expected = torch.stack([_normalised(image[2:10, 2:10]) for image in images])
    assert torch.allclose(batch, expected, atol=1e-6)


def test_training_inputs_at_the_crop_size_are_flipped_copies_and_the_images_are_left_as_they_were():
    images = torch.randint(0, 256, (32, 8, 8, 3), dtype=torch.uint8)
    before = images.clone()
    batch = to_input(images, 8, train=True, generator=torch.Generator().manual_seed(0))
    flipped = [torch.allclose(out, _crop(image, 0, 0, True), atol=1e-6) for image, out in zip(images, batch)]
    kept = [torch.allclose(out, _crop(image, 0, 0, False), atol=1e-6) for image, out in zip(images, batch)]
    assert all(f or k for f, k in zip(flipped, kept)) and any(flipped) and any(kept)
    assert torch.equal(images, before)
