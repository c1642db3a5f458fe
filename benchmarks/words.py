"""The words method's output layer + loss, full softmax vs sampled softmax, at K = 1k / 10k / 100k words:
seconds per training step and the step's peak memory beyond the parameters; one JSON line each.

    python benchmarks/words.py [--classes 1000,10000,100000] [--batch 128] [--dim 4096] [--negatives 0]

The model is each task's own (socialfeat.training.multilabel) on an identity tower, so the batch is a
batch x dim feature matrix, as a CNN's last layer would hand over; the step is the task's loss, backward and
make_optimizer's SGD step. Rows are class-uniform (a uniformly drawn word each), as the words stage draws them.
Each case runs in a fresh process. Peak memory: on a GPU, torch.cuda.max_memory_allocated during the steps
minus what was allocated before them; on the CPU, the peak resident set (VmHWM, reset through
/proc/self/clear_refs) minus the resident set before the steps.
"""

import argparse
import json
import multiprocessing
import platform
import statistics
import time

import torch
from torch import nn

from socialfeat.training.loop import make_optimizer
from socialfeat.training.multilabel import make_task


def _resident_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # Linux: "5" resets the peak resident set size (VmHWM) to the current one


def _step(model, task, optimizer, batch) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss, _ = task.loss(model, batch)
    loss.backward()
    optimizer.step()


def _case(loss: str, classes: int, args, queue) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    task = make_task(loss, classes, args.negatives)
    model = task.build(nn.Identity(), args.dim).to(device).train()
    optimizer = make_optimizer(model, "sgd", 0.01, weight_decay=0.0, momentum=0.0)
    labels = torch.randint(0, classes, (args.steps + 1, args.batch), device=device)
    features = torch.randn(args.batch, args.dim, device=device, requires_grad=True)

    def batch(n: int) -> dict:
        return {"item": features, "label": labels[n], "words": labels[n][:, None]}

    _step(model, task, optimizer, batch(0))  # warm-up: lazy allocations, kernels
    optimizer.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        before = _resident_kib("VmRSS") * 1024
        _reset_peak()
    seconds = []
    for n in range(1, args.steps + 1):
        started = time.perf_counter()
        _step(model, task, optimizer, batch(n))
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - started)
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else _resident_kib("VmHWM") * 1024
    queue.put(
        {
            "benchmark": "words_output_layer",
            "loss": loss,
            "classes": classes,
            "batch": args.batch,
            "dim": args.dim,
            "negatives": args.negatives if loss == "sampled_softmax" else None,
            "device": torch.cuda.get_device_name() if device.type == "cuda" else f"cpu x{args.threads}",
            "host": platform.node(),
            "seconds_per_step": round(statistics.median(seconds), 5),
            "step_peak_mib": round((peak - before) / 2**20, 1),
            "parameters_mib": round(sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20, 1),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", default="1000,10000,100000")
    parser.add_argument("--losses", default="softmax,sampled_softmax")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--dim", type=int, default=4096)
    parser.add_argument("--negatives", type=int, default=0)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    context = multiprocessing.get_context("spawn")
    results = {}
    for loss in args.losses.split(","):
        for classes in map(int, args.classes.split(",")):
            queue = context.Queue()
            process = context.Process(target=_case, args=(loss, classes, args, queue))
            process.start()
            record = queue.get()
            process.join()
            results[(loss, classes)] = record
            print(json.dumps(record), flush=True)
    for loss in args.losses.split(","):
        sizes = sorted(c for (name, c) in results if name == loss)
        if len(sizes) > 1:
            smallest, largest = results[(loss, sizes[0])], results[(loss, sizes[-1])]
            ratio = largest["step_peak_mib"] / max(smallest["step_peak_mib"], 0.1)
            print(json.dumps({"summary": loss, f"step_peak_ratio_{sizes[-1]}_vs_{sizes[0]}": round(ratio, 2)}))


if __name__ == "__main__":
    main()
