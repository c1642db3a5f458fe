"""Batches as tensors: JPEG batches decoded by torchvision, augmented and normalised model inputs."""

import warnings

import torch
import torch.nn.functional as F

from socialfeat.vision.decode import frame

MEAN, STD = 0.5, 0.25  # images are mean-centred per channel after scaling to [0, 1]


def decode_jpeg_batch(encoded: list[bytes], size: int, device: str = "cpu"):
    """JPEG bytes -> N x size x size x 3 uint8 tensor on `device`, framed as load_image frames them (short
    side to `size`, antialiased bilinear; the centre square). torchvision's decode_jpeg takes the batch in
    one call; on a CUDA device nvJPEG decodes it there, so only the encoded bytes cross PCIe."""
    from torchvision.io import ImageReadMode, decode_jpeg  # torchvision costs seconds: only this path needs it

    data = [torch.frombuffer(bytearray(jpeg), dtype=torch.uint8) for jpeg in encoded]
    with warnings.catch_warnings():
        # torchvision 0.29 deprecates its image I/O for TorchCodec's; decode_jpeg still works there, and the
        # GPU machines we benchmark on have torchvision but not torchcodec
        warnings.simplefilter("ignore", DeprecationWarning)
        images = decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
    return torch.stack([_framed(image, size) for image in images]).permute(0, 2, 3, 1).contiguous()


def _framed(image, size: int):
    """A 3 x H x W uint8 tensor resized (short side `size`) and centre-cropped to 3 x size x size."""

    height, width = image.shape[-2:]
    new_width, new_height, left, top = frame(width, height, size)
    if (new_height, new_width) != (height, width):
        resized = F.interpolate(
            image[None].float(), size=(new_height, new_width), mode="bilinear", antialias=True, align_corners=False
        )
        image = resized[0].round_().clamp_(0, 255).to(image.dtype)
    return image[:, top : top + size, left : left + size]


def to_input(images, crop: int, train: bool, generator=None):
    """uint8 N x S x S x 3 -> float N x 3 x crop x crop (channels-last in memory): random crop and flip when
    training, centre crop otherwise; normalised."""

    size = images.shape[1]
    if not train or size == crop:
        offset = (size - crop) // 2
        window = images[:, offset : offset + crop, offset : offset + crop]
    else:
        offsets = torch.randint(0, size - crop + 1, (len(images), 2), generator=generator)  # on the CPU
        window = torch.stack([image[y : y + crop, x : x + crop] for image, (y, x) in zip(images, offsets.tolist())])
    if train:
        flip = (torch.rand(len(images), generator=generator) < 0.5).to(images.device)
        window = torch.where(flip[:, None, None, None], window.flip(2), window)
    # cropped and flipped while still uint8: a quarter of the bytes of float, and only the crop is converted.
    # Channels-last is the images' own layout (no transpose): a small-tower SGD step 1.2-1.5x, its inference
    # 2-2.8x faster than NCHW on 2 CPU cores (benchmarks/channels_last.py), and the layout GPUs prefer
    shape = (len(images), 3, crop, crop)
    batch = torch.empty(shape, device=images.device, memory_format=torch.channels_last)
    batch.copy_(window.permute(0, 3, 1, 2))
    return batch.div_(255.0).sub_(MEAN).div_(STD)
