"""The factorisation stage alone on a run's sampled entries: its seconds and this process's peak RSS above
its start, one JSON line (the stage's own function, the run's config defaults; labels left out).

    python benchmarks/factorization_stage.py RUN_DIR [--label NAME]

RUN_DIR is a `socialfeat run --out` directory whose stages/ hold a sampling stage (a scale ladder's run
kept with --keep). Run it with another checkout on PYTHONPATH to compare code side by side.
"""

import argparse
import glob
import json
import os
import tempfile
import time

from socialfeat import memory
from socialfeat.methods import load_config
from socialfeat.pipeline import factorization as stage


class _Context:
    """What the stage function reads from its context: the config, the sampling stage's files, no bar."""

    progress = False

    def __init__(self, sampling: str):
        self.cfg, self.sampling = load_config(None, ["method=cfl"]), sampling

    def path(self, name: str, *parts: str) -> str:
        return os.path.join(self.sampling, *parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--label", default="")
    args = parser.parse_args()
    sampling = glob.glob(os.path.join(args.run, "stages", "sampling-*"))[0]
    stage.single_labels = lambda ctx, ids: None  # the dataset is not opened: no label analysis
    memory.reset_peak_rss()
    start, started = memory.peak_rss_mib(), time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        result = stage.factorization(_Context(sampling), tmp)
    line = {
        "label": args.label,
        "run": args.run,
        "seconds": round(time.perf_counter() - started, 1),
        "start_rss_mib": round(start),
        "peak_rss_mib": round(memory.peak_rss_mib()),
        "mf/pr": result["mf/pr"],
        "mf/fit_seconds": round(result["mf/fit_seconds"], 1),
    }
    print(json.dumps(line))


if __name__ == "__main__":
    main()
