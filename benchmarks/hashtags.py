"""The hashtags method's tensor model at the paper's sizes (D = F = 300, E = 50, 100k hashtags) for 10k to
1M users, dense tables with AdamW vs sparse tables with SGD: seconds per training step and the memory the
model and its optimiser hold; one JSON line each, then the memory per million users.

    python benchmarks/hashtags.py [--users 10000,100000,1000000] [--tags 100000] [--batch 64]

The model is the task's own (socialfeat.methods.hashtags.tasks) on an identity tower (a batch is a batch x
--dim feature matrix); the step is the task's ranking loss with its six in-batch negatives, backward and
make_optimizer's step. Each case runs in a fresh process; memory is the resident set (VmRSS) after the steps
minus before the model was built (on a GPU, torch.cuda.memory_allocated).
"""

import argparse
import json
import multiprocessing
import platform
import statistics
import time

import torch
from torch import nn

from socialfeat.methods.hashtags.tasks import Sizes, make_task
from socialfeat.training.loop import make_optimizer


def _resident_bytes() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))


def _held(device) -> int:
    return torch.cuda.memory_allocated() if device.type == "cuda" else _resident_bytes()


def _case(users: int, sparse: bool, args, queue) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    before = _held(device)
    task = make_task("tensor", args.tags, users, Sizes(300, 300, 50, 256, sparse))
    model = task.build(nn.Identity(), args.dim).to(device).train()
    optimizer = make_optimizer(model, "sgd" if sparse else "adamw", 1e-3, weight_decay=0.0, momentum=0.0)
    seconds = []
    for _ in range(args.steps + 1):
        tag = torch.randint(0, args.tags, (args.batch,), device=device)
        batch = {
            "item": torch.randn(args.batch, args.dim, device=device),
            "post_item": torch.arange(args.batch, device=device),
            "user": torch.randint(0, users, (args.batch,), device=device),
            "tag": tag,
            "tags": tag[:, None],
        }
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        task.loss(model, batch)[0].backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - started)
    queue.put(
        {
            "benchmark": "hashtags_tensor_tables",
            "users": users,
            "tags": args.tags,
            "tables": "sparse+sgd" if sparse else "dense+adamw",
            "device": torch.cuda.get_device_name() if device.type == "cuda" else f"cpu x{args.threads}",
            "host": platform.node(),
            "seconds_per_step": round(statistics.median(seconds[1:]), 5),
            "held_mib": round((_held(device) - before) / 2**20, 1),
            "parameters_mib": round(sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20, 1),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", default="10000,100000,1000000")
    parser.add_argument("--tags", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    context = multiprocessing.get_context("spawn")
    results = {}
    for sparse in (False, True):
        for users in map(int, args.users.split(",")):
            queue = context.Queue()
            process = context.Process(target=_case, args=(users, sparse, args, queue))
            process.start()
            results[(sparse, users)] = queue.get()
            process.join()
            print(json.dumps(results[(sparse, users)]), flush=True)
    sizes = sorted(map(int, args.users.split(",")))
    for sparse in (False, True):
        small, large = results[(sparse, sizes[0])], results[(sparse, sizes[-1])]
        per_million = (large["held_mib"] - small["held_mib"]) / ((sizes[-1] - sizes[0]) / 1e6)
        print(json.dumps({"summary": small["tables"], "held_mib_per_million_users": round(per_million, 1)}))


if __name__ == "__main__":
    main()
