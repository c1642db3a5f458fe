"""A run's summary (report.md): the resolved config and the metrics table."""

import os

from socialfeat import artifacts
from socialfeat.console import INTERVALS


def with_intervals(metrics: dict) -> list[tuple[str, object, str]]:
    """(name, value, "[low, high]" or "") per metric, sorted; a metric's interval goes beside it, not below."""
    rows = []
    for name, value in sorted(metrics.items()):
        if name.endswith(INTERVALS):
            continue
        low, high = metrics.get(f"{name}/ci_low"), metrics.get(f"{name}/ci_high")
        rows.append((name, value, f"[{low:.4g}, {high:.4g}]" if low is not None and high is not None else ""))
    return rows


def metrics_table(metrics: dict) -> str:
    rows = [
        f"| {name} | {value:.6g} | {interval} |" if isinstance(value, float) else f"| {name} | {value} | {interval} |"
        for name, value, interval in with_intervals(metrics)
    ]
    return "\n".join(["| metric | value | 95% interval |", "|---|---|---|", *rows])


def _state(stage: dict) -> str:
    return "reused" if stage["reused"] else "computed in {:.1f}s".format(stage["seconds"])


def write_summary(run_dir: str) -> str:
    """Write run_dir/report.md from metrics.json, config.yaml and run.json; returns its path."""
    metrics_path = os.path.join(run_dir, artifacts.METRICS)
    if not os.path.exists(metrics_path):
        raise FileNotFoundError(f"{metrics_path}: not a finished run directory (no metrics.json)")
    metrics = artifacts.read_json(metrics_path)
    stages = artifacts.read_json(os.path.join(run_dir, "run.json"))["stages"]
    config = open(os.path.join(run_dir, "config.yaml")).read()
    stage_lines = [f"- {s['name']}: {_state(s)} ({s['key']})" for s in stages]
    text = (
        "\n\n".join(
            [
                "# socialfeat run",
                "## Stages",
                "\n".join(stage_lines),
                "## Metrics",
                metrics_table(metrics),
                "## Config",
                f"```yaml\n{config}```",
            ]
        )
        + "\n"
    )
    path = os.path.join(run_dir, "report.md")
    artifacts.atomic_write_text(path, text)
    return path
