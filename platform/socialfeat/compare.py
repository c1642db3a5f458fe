"""`socialfeat compare`: the key metrics of several runs side by side."""

import fnmatch
import os

from socialfeat import artifacts


def key_patterns() -> tuple[str, ...]:
    """What a reader compares first: each registered method's stages' key metrics in stage order, then cost."""
    from socialfeat.methods import METHODS

    patterns = [p for method in METHODS.values() for stage in method.stages for p in stage.key_metrics]
    return tuple(dict.fromkeys(patterns)) + ("run/seconds",)


def load_runs(run_dirs: list[str]) -> dict[str, dict]:
    """{run name: metrics}; a directory without metrics.json is an error naming it."""
    runs = {}
    for run_dir in run_dirs:
        path = os.path.join(run_dir, artifacts.METRICS)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{run_dir}: no {artifacts.METRICS} (not a finished socialfeat run directory)")
        name = os.path.basename(os.path.abspath(run_dir))
        runs[name if name not in runs else run_dir] = artifacts.read_json(path)
    return runs


def key_metrics(runs: dict[str, dict], patterns: tuple[str, ...] | None = None) -> list[str]:
    """Metric names present in any run that match `patterns`, in pattern order."""
    present = sorted(set().union(*runs.values()))
    chosen: list[str] = []
    for pattern in patterns or key_patterns():
        chosen += [name for name in present if fnmatch.fnmatchcase(name, pattern) and name not in chosen]
    return chosen


def table(runs: dict[str, dict], names: list[str], fmt: str = "text") -> str:
    """A metrics x runs table as aligned text, CSV or Markdown; '-' where a run lacks a metric."""

    def cell(metrics: dict, name: str) -> str:
        value = metrics.get(name)
        return "-" if value is None else f"{value:.4g}"

    header = ["metric", *runs]
    rows = [[name, *(cell(m, name) for m in runs.values())] for name in names]
    if fmt == "csv":
        return "\n".join(",".join(row) for row in [header, *rows])
    if fmt == "markdown":
        lines = [header, ["---"] * len(header), *rows]
        return "\n".join("| " + " | ".join(row) + " |" for row in lines)
    widths = [max(len(row[c]) for row in [header, *rows]) for c in range(len(header))]
    return "\n".join(
        "  ".join(v.ljust(w) if c == 0 else v.rjust(w) for c, (v, w) in enumerate(zip(row, widths)))
        for row in [header, *rows]
    )
