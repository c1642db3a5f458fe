"""The factorisation stage alone on a run's sampled entries: its seconds and this process's peak RSS above
its start, one JSON line (the stage's own function, the run's config defaults; labels left out).

    python benchmarks/factorization_stage.py RUN_DIR [--label NAME] [--phases]

--phases adds each phase's peak RSS (the entry reads, the fit, the metrics): the peak is restarted as each
phase begins, so the stage's peak is the largest of them.

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

PHASES = ("read_entries", "fit_entries", "evaluate", "neighbour_metrics", "pr_samples")


def _record_phases(phases: list) -> None:
    """Wrap the stage's phases (module globals of pipeline.factorization) to append (name, RSS at its start,
    its peak, seconds) to `phases`."""
    for name in PHASES:
        function = getattr(stage, name)

        def timed(*args, _function=function, _name=name, **kwargs):
            memory.reset_peak_rss()
            before, started = memory.peak_rss_mib(), time.perf_counter()
            out = _function(*args, **kwargs)
            phases.append([_name, round(before), round(memory.peak_rss_mib()), round(time.perf_counter() - started, 1)])
            return out

        setattr(stage, name, timed)


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
    parser.add_argument("--phases", action="store_true", help="each phase's peak RSS too")
    args = parser.parse_args()
    phases = []
    if args.phases:
        _record_phases(phases)
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
        "peak_rss_mib": max([round(memory.peak_rss_mib())] + [peak for _, _, peak, _ in phases]),
        "mf/pr": result["mf/pr"],
        "mf/fit_seconds": round(result["mf/fit_seconds"], 1),
    }
    print(json.dumps(line | ({"phases": phases} if args.phases else {})))


if __name__ == "__main__":
    main()
