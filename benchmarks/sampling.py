"""The sampling stage's work on a ladder of view logs: read the split's log, draw the log-popularity negatives
on a local Ray (sharded over blocks of users) and write the entries, each size and read form in a fresh
process, with its seconds, views per second per core and the driver's peak RSS above its start.

    python benchmarks/sampling.py [--sizes 30000:12000:60 75000:20000:60 300000:60000:60] [--out DIR]

A size is USERS:ITEMS:MEAN_VIEWS for `socialfeat data synth`. `--reads codes strings` compares the stage's read
(ids and folds as Parquet dictionaries, pandas categoricals) with reading them as a Python string per row (the
read before 0.3.4); both then sample alike. With PYTHONPATH at an older checkout's platform/ and `--reads
strings`, the same measurement runs that checkout's sampling. One JSON line per size and read on stdout.
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

import pandas as pd

from socialfeat.config import SplitConfig
from socialfeat.data.splits import split_interactions

CPUS = 2


def prepare(size: str, root: str) -> tuple[str, int]:
    """A synthetic dataset of this size, split as the split stage splits it: the sampling stage's input."""
    users, items, mean_views = size.split(":")
    data = os.path.join(root, "data")
    command = ["socialfeat", "data", "synth", "--out", data, "--users", users, "--items", items]
    subprocess.run([*command, "--mean-views", mean_views, "--shards", "8"], check=True, capture_output=True)
    frame, _, _ = split_interactions(pd.read_parquet(os.path.join(data, "interactions")), SplitConfig())
    path = os.path.join(root, "split.parquet")
    frame.to_parquet(path, index=False)
    return path, len(frame)


def measure(path: str, read: str) -> None:
    """In this process: one sampling stage's work, printed as JSON (run by `main` in a fresh process)."""
    from socialfeat.config import SamplingConfig
    from socialfeat.distributed.cluster import start_local
    from socialfeat.distributed.data import negative_blocks_sharded
    from socialfeat.factorization.mf import write_sampled_entries
    from socialfeat.memory import peak_rss_mib, reset_peak_rss

    start_local(CPUS)
    reset_peak_rss()
    start_mib = peak_rss_mib()
    started = time.perf_counter()
    if read == "codes":
        from socialfeat.pipeline.factorization import split_log  # absent before 0.3.4, whose stage read strings

        frame = split_log(path)
    else:
        frame = pd.read_parquet(path)  # the whole log, a Python string per id and fold, as the stage read it
    entries = path + ".entries.parquet"  # written as the stage writes it, a block of users at a time
    _, _, counts = write_sampled_entries(frame, SamplingConfig(), SplitConfig(), entries, negative_blocks_sharded)
    seconds = time.perf_counter() - started
    positives = counts["sampling/positives"]
    print(
        json.dumps(
            {
                "seconds": round(seconds, 2),
                "positives_per_second_per_core": round(positives / seconds / CPUS),
                "driver_peak_rss_above_start_mib": round(peak_rss_mib() - start_mib),
                "bytes_per_view": round((peak_rss_mib() - start_mib) * 2**20 / max(1, positives), 1),
                "negatives": counts["sampling/negatives"],
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["30000:12000:60", "75000:20000:60", "300000:60000:60"])
    parser.add_argument("--reads", nargs="+", default=["codes", "strings"], choices=["codes", "strings"])
    parser.add_argument("--out", default=None, help="where the datasets go (a temporary folder by default)")
    parser.add_argument("--measure", nargs=2, metavar=("SPLIT", "READ"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        return measure(*args.measure)
    for size in args.sizes:
        root = tempfile.mkdtemp(prefix="sampling-", dir=args.out)
        path, views = prepare(size, root)
        for read in args.reads:
            command = [sys.executable, __file__, "--measure", path, read]
            shown = subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip().splitlines()
            row = {"size": size, "views": views, "read": read, **json.loads(shown[-1])}
            print(json.dumps(row | {"machine": f"{os.cpu_count()} cores, {platform.machine()}"}), flush=True)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
