"""The scale ladder: sharded synthetic datasets of growing size, each run through the default method for one
epoch in a fresh `socialfeat run`, with per-stage seconds and driver peak RSS (from run.json), the process
tree's peak RSS, and each stage's growth exponent against the previous size.

    python benchmarks/scale.py [--sizes 800:1200:40 8000:12000:40 ...] [--shards 8] [--out DIR] [--keep]
                               [--reuse-data]   # with --out: a size's dataset kept by an earlier ladder
    python benchmarks/scale.py --table benchmarks/results/scale-cpu2-2026-12-04.jsonl   # README's table
    python benchmarks/scale.py --peaks benchmarks/results/scale-cpu2-2026-12-06.jsonl   # driver peak per stage

A size is USERS:ITEMS:MEAN_VIEWS for `socialfeat data synth`. One JSON line per size on stdout (append them to
benchmarks/results/scale-<machine>-<date>.jsonl). A size that fails (a refused setting, the kernel's OOM
killer) prints its line with `failed` and the last lines of its log, and the ladder stops there: the next
size would fail the same way. `tree_peak_rss_mib` sums RSS over the run's processes (the driver, Ray's
daemons and workers), sampled every 0.5 s, so it counts pages shared between them (the object store) once
per process: an upper bound. `system_used_peak_mib` is the machine's used memory above the ladder's start.
"""

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import psutil

DEFAULT_SIZES = ("800:1200:40", "8000:6000:40", "40000:20000:50", "100000:40000:50")
RUN_SETTINGS = ("training.epochs=1",)  # the default method and its defaults otherwise; one epoch of training


class PeakSampler:
    """Samples, every `interval` seconds, the summed RSS of a process and its descendants and the machine's
    used memory, keeping the peaks."""

    def __init__(self, pid: int, interval: float = 0.5):
        self.root = psutil.Process(pid)
        self.interval = interval
        self.baseline_used = psutil.virtual_memory().used
        self.tree_peak = 0
        self.used_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _tree_rss(self) -> int:
        total = 0
        try:
            processes = [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0
        for process in processes:
            try:
                total += process.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        return total

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.tree_peak = max(self.tree_peak, self._tree_rss())
            self.used_peak = max(self.used_peak, psutil.virtual_memory().used - self.baseline_used)


def _socialfeat() -> list[str]:
    return [sys.executable, "-m", "socialfeat"]


def _synthesise(size: str, root: str, shards: int) -> float:
    users, items, mean_views = size.split(":")
    started = time.perf_counter()
    subprocess.run(
        [
            *_socialfeat(),
            "data",
            "synth",
            "--out",
            root,
            "--users",
            users,
            "--items",
            items,
            "--mean-views",
            mean_views,
            "--shards",
            str(shards),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def _run(data: str, out: str, log_path: str) -> tuple[int, float, PeakSampler]:
    command = [*_socialfeat(), "run", "--data", data, "--out", out]
    for setting in RUN_SETTINGS:
        command += ["--set", setting]
    started = time.perf_counter()
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=os.environ | {"CI": "true"})
        with PeakSampler(process.pid) as sampler:
            returncode = process.wait()
    return returncode, time.perf_counter() - started, sampler


def _counts(out: str) -> dict:
    with open(os.path.join(out, "metrics.json")) as f:
        metrics = json.load(f)
    return {
        name: metrics.get(f"data/{key}")
        for name, key in (("views", "interactions"), ("users", "users"), ("items", "items"))
    }


def _stages(out: str) -> dict:
    with open(os.path.join(out, "run.json")) as f:
        stages = json.load(f)["stages"]
    return {
        s["name"]: {"seconds": round(s["seconds"], 1), "driver_peak_rss_mib": _mib(s["driver_peak_rss_mib"])}
        for s in stages
    }


def _mib(value: float | None) -> int | None:
    return None if value is None else round(value)


def _exponent(now: float, before: float, size_now: float, size_before: float) -> float | None:
    if not (now > 0 and before > 0 and size_now > size_before > 0):
        return None
    return round(math.log(now / before) / math.log(size_now / size_before), 2)


def _with_exponents(line: dict, previous: dict | None) -> dict:
    """Each stage's seconds exponent in views and in items, and the totals', against the previous size."""
    if previous is None or "stages" not in previous:
        return line
    for name, stage in line["stages"].items():
        before = previous["stages"].get(name)
        if before is None:
            continue
        stage["seconds_exponent_in_views"] = _exponent(
            stage["seconds"], before["seconds"], line["views"], previous["views"]
        )
        stage["seconds_exponent_in_items"] = _exponent(
            stage["seconds"], before["seconds"], line["items"], previous["items"]
        )
    line["total_seconds_exponent_in_views"] = _exponent(
        line["total_seconds"], previous["total_seconds"], line["views"], previous["views"]
    )
    line["driver_peak_rss_exponent_in_views"] = _exponent(
        line["driver_peak_rss_mib"], previous["driver_peak_rss_mib"], line["views"], previous["views"]
    )
    return line


def _tail(path: str, lines: int = 8) -> list[str]:
    with open(path, errors="replace") as f:
        return [line.rstrip() for line in f.readlines()[-lines:]]


def _shard_count(data: str) -> int:
    folder = os.path.join(data, "interactions")
    return len(os.listdir(folder)) if os.path.isdir(folder) else 1


def one_size(size: str, work: str, shards: int, reuse: bool = False) -> dict:
    """Synthesise one size (or, with `reuse`, take the dataset a kept earlier ladder left in `work`) and run
    the default method on it; the JSON line for it."""
    data, out = os.path.join(work, "data"), os.path.join(work, "run")
    reused = reuse and os.path.isfile(os.path.join(data, "dataset.yaml"))
    synth_seconds = None if reused else round(_synthesise(size, data, shards), 1)
    shutil.rmtree(out, ignore_errors=True)
    returncode, seconds, sampler = _run(data, out, os.path.join(work, "run.log"))
    line = {
        "size": size,
        "shards": _shard_count(data),
        "synth_seconds": synth_seconds,
        "data_reused": reused,
        "total_seconds": round(seconds, 1),
        "tree_peak_rss_mib": round(sampler.tree_peak / 2**20),
        "system_used_peak_mib": round(sampler.used_peak / 2**20),
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "machine": platform.machine(),
        "settings": list(RUN_SETTINGS),
    }
    if returncode != 0:
        return line | {"failed": returncode, "log_tail": _tail(os.path.join(work, "run.log"))}
    stages = _stages(out)
    peaks = [s["driver_peak_rss_mib"] for s in stages.values() if s["driver_peak_rss_mib"] is not None]
    return line | _counts(out) | {"driver_peak_rss_mib": round(max(peaks)) if peaks else None, "stages": stages}


TABLE_STAGES = (
    "data",
    "filter",
    "split",
    "sampling",
    "factorization",
    "kmeans",
    "train",
    "features",
    "evaluate",
    "coldstart",
)


def table(path: str) -> str:
    """README's markdown table of a ladder's JSON lines: seconds per stage (growth exponent in views), peaks."""
    lines = [json.loads(text) for text in open(path) if text.strip()]
    head = ["views", "items", *TABLE_STAGES, "total", "driver peak", "tree peak"]
    rows = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for line in lines:
        if "failed" in line:
            rows.append(f"| {line['size']} | failed ({line['failed']}) |" + " |" * (len(head) - 2))
            continue
        cells = [f"{line['views']:,}", f"{line['items']:,}"]
        for name in TABLE_STAGES:
            stage = line["stages"].get(name, {})
            exponent = stage.get("seconds_exponent_in_views")
            cells.append(f"{stage.get('seconds', '')} s" + (f" ({exponent})" if exponent is not None else ""))
        cells += [
            f"{line['total_seconds']} s",
            f"{line['driver_peak_rss_mib']:,} MiB",
            f"{line['tree_peak_rss_mib']:,} MiB",
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def peaks_table(path: str) -> str:
    """Each stage's driver peak RSS (MiB) at each size of a ladder's JSON lines."""
    lines = [json.loads(text) for text in open(path) if text.strip() and "failed" not in text]
    head = ["views", *TABLE_STAGES]
    rows = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for line in lines:
        peaks = [line["stages"].get(name, {}).get("driver_peak_rss_mib") for name in TABLE_STAGES]
        rows.append("| " + " | ".join([f"{line['views']:,}", *(f"{p:,}" if p else "" for p in peaks)]) + " |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=list(DEFAULT_SIZES), help="USERS:ITEMS:MEAN_VIEWS ...")
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--out", help="working directory (default: a temporary one, removed after each size)")
    parser.add_argument("--keep", action="store_true", help="keep each size's dataset and run under --out")
    parser.add_argument("--reuse-data", action="store_true", help="take a size's dataset kept under --out")
    parser.add_argument("--table", metavar="JSONL", help="print README's table of a ladder's results and stop")
    parser.add_argument("--peaks", metavar="JSONL", help="print each stage's driver peak of a ladder and stop")
    args = parser.parse_args()
    if args.table or args.peaks:
        print(table(args.table) if args.table else peaks_table(args.peaks))
        return
    previous = None
    for size in args.sizes:
        work = os.path.join(args.out, size.replace(":", "-")) if args.out else tempfile.mkdtemp(prefix="scale-")
        os.makedirs(work, exist_ok=True)
        try:
            line = _with_exponents(one_size(size, work, args.shards, args.reuse_data), previous)
        finally:
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)
        print(json.dumps(line), flush=True)
        if "failed" in line:
            break
        previous = line


if __name__ == "__main__":
    main()
