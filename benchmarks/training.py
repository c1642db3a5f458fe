"""Image throughput of the CNN stages: decode + augment (Ray Data against a plain PIL loop on the
same cores), the training step, and feature extraction; on a GPU also ResNet-50 bf16 training.

    python benchmarks/training.py [--data DIR] [--no-ray] [--steps 30]

--data is a contract dataset with images (default: the MovieLens posters imported into a temporary
directory). Prints one JSON line per measurement. Without Ray installed (a GPU box) use --no-ray.
"""

import argparse
import json
import os
import tempfile
import time

import numpy as np
import pyarrow.parquet as pq
import torch

from socialfeat.data.images import item_image_bytes
from socialfeat.features.extract import embed_images
from socialfeat.methods.cfl.tasks import PseudoClassTask
from socialfeat.training.loop import make_optimizer, train_one_epoch
from socialfeat.vision.backbones import backbone
from socialfeat.vision.transforms import load_image, to_input

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "movielens-posters")


def _emit(**record) -> None:
    print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in record.items()}), flush=True)


def _encoded(root: str) -> tuple[list, list]:
    table = pq.read_table(os.path.join(root, "items.parquet"), columns=["item_id", "image"]).to_pydict()
    pairs = [(i, b) for i, b in zip(table["item_id"], table["image"]) if b]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def bench_pil(images: list, size: int, crop: int) -> None:
    started = time.perf_counter()
    decoded = [load_image(item_image_bytes("", b, None), size) for b in images]
    batch = torch.from_numpy(np.stack([d for d in decoded if d is not None]))
    to_input(batch, crop, train=True)
    _emit(
        stage="decode+augment",
        impl="plain PIL loop",
        images=len(images),
        cpus=os.cpu_count(),
        images_per_second=len(images) / (time.perf_counter() - started),
    )


def bench_ray(root: str, item_ids: list, size: int, crop: int) -> None:
    import ray

    from socialfeat.distributed.inference import item_images

    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    warm = item_images(root, "image", item_ids[:64], size).count()  # start the workers outside the timing
    started = time.perf_counter()
    rows = 0
    dataset = item_images(root, "image", item_ids, size).drop_columns(["item_id"])
    for batch in dataset.iter_torch_batches(batch_size=256):
        to_input(batch["item"], crop, train=True)
        rows += len(batch["item"])
    _emit(
        stage="decode+augment",
        impl="Ray Data",
        images=rows,
        warmup_rows=warm,
        cpus=os.cpu_count(),
        images_per_second=rows / (time.perf_counter() - started),
    )
    ray.shutdown()


def bench_step(model_name: str, size: int, crop: int, batch: int, steps: int, device: str) -> None:
    """Training and extraction images/second on random uint8 images (decode excluded)."""
    torch.manual_seed(0)
    task = PseudoClassTask(1000)
    model = task.build(*backbone(model_name)).to(device)
    if device == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, "sgd", 0.01, 1e-4, 0.9)
    images = torch.randint(0, 255, (batch, size, size, 3), dtype=torch.uint8)
    batches = [{"item": images, "label": torch.randint(0, 1000, (batch,))}] * steps
    train_one_epoch(model, task, batches[:3], optimizer, None, torch.device(device), crop)  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    train_one_epoch(model, task, batches, optimizer, None, torch.device(device), crop)
    if device == "cuda":
        torch.cuda.synchronize()
    train_rate = batch * steps / (time.perf_counter() - started)
    started = time.perf_counter()
    for _ in range(steps):
        embed_images(task.encoder(model), images.numpy(), crop, device)
    extract_rate = batch * steps / (time.perf_counter() - started)
    name = torch.cuda.get_device_name() if device == "cuda" else f"cpu x{os.cpu_count()}"
    _emit(
        stage="train+extract",
        model=model_name,
        crop=crop,
        batch=batch,
        device=name,
        precision="bf16 autocast" if device == "cuda" else "fp32",
        train_images_per_second=train_rate,
        extract_images_per_second=extract_rate,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data")
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        root = args.data
        if root is None:
            from socialfeat.data.importers import import_movielens

            root = os.path.join(work, "movielens")
            import_movielens(f"{SHARED}/ratings.csv", f"{SHARED}/movies.csv", f"{SHARED}/posters", root)
        item_ids, images = _encoded(root)
        bench_pil(images, 72, 64)
        if not args.no_ray:
            bench_ray(root, item_ids, 72, 64)
    bench_step("small", 72, 64, 64, args.steps, "cpu")
    if torch.cuda.is_available():
        bench_step("small", 72, 64, 256, args.steps, "cuda")
        bench_step("resnet50", 256, 224, 256, args.steps, "cuda")


if __name__ == "__main__":
    main()
