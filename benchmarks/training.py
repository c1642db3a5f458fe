"""Image throughput of the CNN stages: decode + augment (Ray Data against a plain PIL loop on the
same cores), the training step, and feature extraction; on a GPU also ResNet-50 bf16 training.

    python benchmarks/training.py [--data DIR] [--repeat 1,8] [--no-ray] [--steps 30] [--decode-only]

--data is a contract dataset with images, single-file or sharded (default: the MovieLens posters imported
into a temporary directory); --repeat R also measures decoding on a copy whose items.parquet holds every
image R times (as distinct items), where Ray Data's fixed cost per execution (~1 s) weighs less. Ray Data
decodes training rows (image and label) through `distributed.data.image_rows`, as the training stage does.
Decoding is reported in images/s per core: the PIL loop uses one (torch capped at one thread), Ray Data
every CPU of its local cluster; the same loop in one process per CPU shows what concurrent decoders get
from the machine. Prints one JSON line per measurement. Without Ray installed (a GPU box) use --no-ray.
"""

import argparse
import json
import os
import tempfile
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import torch
from PIL import Image

from socialfeat.data import schema
from socialfeat.data.images import encode_jpeg, item_image_bytes
from socialfeat.data.synthetic import write_table
from socialfeat.features.extract import embed_images
from socialfeat.methods.cfl.tasks import PseudoClassTask
from socialfeat.training.loop import make_optimizer, train_one_epoch
from socialfeat.vision.backbones import backbone
from socialfeat.vision.decode import load_image
from socialfeat.vision.transforms import decode_jpeg_batch, to_input

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "movielens-posters")


def _emit(**record) -> None:
    print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in record.items()}), flush=True)


def _encoded(root: str) -> tuple[list, list]:
    table = schema.read_columns(root, schema.ITEMS, ["item_id", "image"]).to_pydict()
    pairs = [(i, b) for i, b in zip(table["item_id"], table["image"]) if b]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _repeated(root: str, work: str, times: int) -> str:
    """A copy of dataset `root` whose items.parquet holds each item with an image `times` times."""
    if times == 1:
        return root
    copy = os.path.join(work, f"x{times}")
    os.makedirs(copy)
    for name in os.listdir(root):
        if name not in (schema.ITEMS, schema.shard_folder(schema.ITEMS)):
            os.symlink(os.path.join(root, name), os.path.join(copy, name))
    items = schema.read_columns(root, schema.ITEMS, ["item_id", "image"])
    items = items.filter(pc.is_valid(items["image"]))
    ids = items["item_id"].cast(pa.string())
    copies = [items.set_column(0, "item_id", pc.binary_join_element_wise(f"{r}-", ids, "")) for r in range(times)]
    write_table(copy, schema.ITEMS, pa.concat_tables(copies))  # as the importers write items
    os.sync()  # written back now, not by the kernel during a timed arm
    return copy


def _decode_and_augment(images: list, size: int, crop: int) -> int:
    """The plain loop: decode 256 images, augment them as one batch, and so on, on one thread; how many
    images it took."""
    torch.set_num_threads(1)  # one core: torch's intra-op threads would borrow the other one
    for start in range(0, len(images), 256):
        decoded = [load_image(item_image_bytes("", b, None), size) for b in images[start : start + 256]]
        to_input(torch.from_numpy(np.stack(decoded)), crop, train=True)
    return len(images)


def _emit_decode(impl: str, images: int, size: int, cores: int, rate: float, **extra) -> None:
    _emit(
        stage="decode+augment",
        impl=impl,
        images=images,
        image_size=size,
        **extra,
        cores=cores,
        images_per_second=rate,
        images_per_second_per_core=rate / cores,
    )


def bench_pil(images: list, size: int, crop: int) -> None:
    threads = torch.get_num_threads()
    started = time.perf_counter()
    _decode_and_augment(images, size, crop)
    rate = len(images) / (time.perf_counter() - started)
    torch.set_num_threads(threads)
    _emit_decode("plain PIL loop", len(images), size, 1, rate)


def _in_processes(work, shares: list[tuple]) -> tuple[int, float]:
    """work(*share) in one forked process per share, the pool started outside the timing: the images the
    shares took in all, and images/s."""
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(len(shares)) as pool:
        pool.map(torch.set_num_threads, [1] * len(shares))  # workers up
        started = time.perf_counter()
        images = sum(pool.starmap(work, shares))
        return images, images / (time.perf_counter() - started)


_SHARES: list = []  # each forked process's images, inherited rather than sent through the pool's pipe


def _decode_share(rank: int, size: int, crop: int) -> int:
    return _decode_and_augment(_SHARES[rank], size, crop)


def bench_pil_processes(images: list, size: int, crop: int) -> None:
    """The plain loop in one process per CPU, each on its share of the images (forked with its share in
    memory): what two decoders at once get from the machine, with no Ray in between."""
    cpus = os.cpu_count()
    _SHARES[:] = [images[rank::cpus] for rank in range(cpus)]
    taken, rate = _in_processes(_decode_share, [(rank, size, crop) for rank in range(cpus)])
    _SHARES.clear()
    _emit_decode(f"plain PIL loop x{cpus} processes", taken, size, cpus, rate)


def _labelled(item_ids: list) -> pd.DataFrame:
    """Training rows of one image each, labelled by position (a pass-through column, as pseudo classes are)."""
    return pd.DataFrame({"item": item_ids, "label": np.arange(len(item_ids))})


def _read_and_decode_share(root: str, rank: int, cpus: int, size: int, crop: int) -> int:
    """The plain loop reading its images itself: its cpus-th share of the item files' rows (rank `rank`),
    from the row groups they are in (a group on a boundary is read by both processes), 256 at a time."""
    groups = [
        (parquet, group)
        for parquet in schema.parquet_files(root, schema.ITEMS)
        for group in range(parquet.num_row_groups)
    ]
    sizes = [parquet.metadata.row_group(group).num_rows for parquet, group in groups]
    starts = np.cumsum([0, *sizes])
    low, high = starts[-1] * rank // cpus, starts[-1] * (rank + 1) // cpus
    taken = 0
    for (parquet, group), start, rows in zip(groups, starts, sizes):
        first, last = max(low, start) - start, min(high, start + rows) - start
        if first >= last:
            continue
        images = parquet.read_row_group(group, columns=["image"]).column(0).slice(first, last - first)
        for batch in range(0, len(images), 256):
            taken += _decode_and_augment([b for b in images.slice(batch, 256).to_pylist() if b], size, crop)
    return taken


def bench_pil_processes_reading(root: str, size: int, crop: int) -> None:
    """The plain loop in one process per CPU, each reading its share of the row groups from the item files:
    what Ray Data also does, and the bytes-in-memory loop above does not."""
    cpus = os.cpu_count()
    taken, rate = _in_processes(_read_and_decode_share, [(root, rank, cpus, size, crop) for rank in range(cpus)])
    _emit_decode(f"plain PIL loop x{cpus} processes, reading the item files", taken, size, cpus, rate)


def bench_ray(root: str, item_ids: list, size: int, crop: int) -> None:
    """Ray Data decoding every item of `root` with an image into training rows (image and label, on all local
    CPUs), the batches augmented on the driver as a training worker does; timed from building the dataset to
    the last batch."""
    import ray

    from socialfeat.distributed.data import MIN_ITEMS_PER_TASK, image_rows

    cpus = os.cpu_count()
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one consumer thread, as each plain loop has (a Train worker sets its own)
    # not timed: every CPU's worker up and through the decode path (two tasks a CPU; one task left the
    # other worker to import Ray Data's modules, ~0.6 CPU-s, inside the timed run)
    warm = image_rows(root, "image", _labelled(item_ids[: 2 * cpus * MIN_ITEMS_PER_TASK]), size=size).count()
    started = time.perf_counter()
    rows = 0
    dataset = image_rows(root, "image", _labelled(item_ids), size=size)
    for batch in dataset.iter_torch_batches(batch_size=256):
        to_input(batch["item"], crop, train=True)
        rows += len(batch["item"])
    rate = rows / (time.perf_counter() - started)
    _emit_decode("Ray Data", rows, size, cpus, rate, warmup_rows=warm)
    torch.set_num_threads(threads)
    ray.shutdown()


def _jpegs(count: int, size: int, seed: int = 0) -> list[bytes]:
    """`count` distinct size x size JPEGs (quality 90): smooth random colour fields with fine noise."""
    rng = np.random.default_rng(seed)
    jpegs = []
    for field in rng.integers(0, 256, (count, max(1, size // 16), max(1, size // 16), 3), dtype=np.uint8):
        smooth = np.asarray(Image.fromarray(field).resize((size, size), Image.BICUBIC), np.int16)
        jpegs.append(encode_jpeg(np.clip(smooth + rng.integers(-12, 13, smooth.shape), 0, 255).astype(np.uint8)))
    return jpegs


def _train_rate(model, task, make_batch, batch: int, steps: int, device: str, crop: int) -> float:
    """Training images/second over `steps` batches from make_batch(), after 3 warm-up steps."""
    optimizer = make_optimizer(model, "sgd", 0.01, 1e-4, 0.9)
    train_one_epoch(model, task, (make_batch() for _ in range(3)), optimizer, None, torch.device(device), crop)
    if device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    train_one_epoch(model, task, (make_batch() for _ in range(steps)), optimizer, None, torch.device(device), crop)
    if device == "cuda":
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - started)


def bench_step(model_name: str, size: int, crop: int, batch: int, steps: int, device: str) -> None:
    """Training images/second from decoded uint8 images and from JPEG bytes decoded on `device` by
    decode_jpeg_batch (nvJPEG on a GPU), then extraction images/second (decode excluded)."""
    torch.manual_seed(0)
    task = PseudoClassTask(1000)
    model = task.build(*backbone(model_name)).to(device)
    if device == "cuda":
        model = model.to(memory_format=torch.channels_last)
    labels = torch.randint(0, 1000, (batch,))
    jpegs = _jpegs(batch, size)
    images = decode_jpeg_batch(jpegs, size)  # the same pictures, decoded once up front
    decoded_rate = _train_rate(model, task, lambda: {"item": images, "label": labels}, batch, steps, device, crop)
    jpeg_rate = _train_rate(
        model,
        task,
        lambda: {"item": decode_jpeg_batch(jpegs, size, device), "label": labels},
        batch,
        steps,
        device,
        crop,
    )
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
        train_images_per_second=decoded_rate,
        train_from_jpeg_images_per_second=jpeg_rate,
        jpeg_over_decoded=jpeg_rate / decoded_rate,
        jpeg_kb_mean=sum(map(len, jpegs)) / len(jpegs) / 1024,
        extract_images_per_second=extract_rate,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data")
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeat", default="1,8", help="comma-separated copies of the images to decode")
    parser.add_argument("--decode-only", action="store_true", help="skip the training and extraction step")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        root = args.data
        if root is None:
            from socialfeat.data.importers import import_movielens

            root = os.path.join(work, "movielens")
            import_movielens(f"{SHARED}/ratings.csv", f"{SHARED}/movies.csv", f"{SHARED}/posters", root)
        for times in map(int, args.repeat.split(",")):
            copy = _repeated(root, work, times)
            item_ids, images = _encoded(copy)
            bench_pil(images, 72, 64)
            bench_pil_processes(images, 72, 64)
            bench_pil_processes_reading(copy, 72, 64)
            if not args.no_ray:
                bench_ray(copy, item_ids, 72, 64)
    if args.decode_only:
        return
    bench_step("small", 72, 64, 64, args.steps, "cpu")
    if torch.cuda.is_available():
        bench_step("small", 72, 64, 256, args.steps, "cuda")
        bench_step("resnet50", 256, 224, 256, args.steps, "cuda")


if __name__ == "__main__":
    main()
