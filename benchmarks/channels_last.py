"""Training steps and inference of the CNN towers on a CPU with NCHW inputs against channels-last inputs (what
socialfeat.vision.transforms.to_input hands the model), at the crops the experiments and tests use.

    python benchmarks/channels_last.py [--models small alexnet resnet18] [--batch 32] [--reps 10] [--threads 2]

Prints one JSON line per (model, crop): milliseconds per SGD step and per inference batch in each layout, the
speed-up, and the largest difference between the two layouts' outputs for the same weights and images.
"""

import argparse
import json
import os
import platform
import time

import torch
from torch import nn

from socialfeat.vision.backbones import DIMS, backbone

CROPS = {"small": (28, 32, 64), "alexnet": (112, 224), "resnet18": (112, 224), "resnet50": (112, 224)}


def model_of(name: str, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    tower, dim = backbone(name)
    return nn.Sequential(tower, nn.Linear(dim, 10))


def milliseconds(work, reps: int) -> float:
    for _ in range(2):  # warm-up: allocator and kernel selection
        work()
    started = time.perf_counter()
    for _ in range(reps):
        work()
    return (time.perf_counter() - started) / reps * 1000


def measure(name: str, crop: int, batch: int, reps: int) -> dict:
    images = torch.randn(batch, 3, crop, crop)
    result = {"model": name, "crop": crop, "batch": batch}
    outputs = {}
    for layout, memory_format in (("nchw", torch.contiguous_format), ("channels_last", torch.channels_last)):
        x = images.contiguous(memory_format=memory_format)
        model = model_of(name, seed=0)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def step(model=model, optimizer=optimizer, x=x):
            optimizer.zero_grad(set_to_none=True)
            model(x).sum().backward()
            optimizer.step()

        result[f"{layout}/step_ms"] = milliseconds(step, reps)
        frozen = model_of(name, seed=1).eval()
        with torch.no_grad():
            result[f"{layout}/inference_ms"] = milliseconds(lambda frozen=frozen, x=x: frozen(x), reps)
            outputs[layout] = frozen(x)
    result["step_speedup"] = result["nchw/step_ms"] / result["channels_last/step_ms"]
    result["inference_speedup"] = result["nchw/inference_ms"] / result["channels_last/inference_ms"]
    result["max_output_difference"] = float((outputs["nchw"] - outputs["channels_last"]).abs().max())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["small", "alexnet", "resnet18"], choices=sorted(DIMS))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    machine = {"cpus": os.cpu_count(), "threads": args.threads, "torch": torch.__version__}
    machine["processor"] = platform.processor() or platform.machine()
    for name in args.models:
        for crop in CROPS[name]:
            print(json.dumps(measure(name, crop, args.batch, args.reps) | machine), flush=True)


if __name__ == "__main__":
    main()
