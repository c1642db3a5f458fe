"""A run's summary (report.md): the resolved config and the metrics table; and the verdicts a report leads
with: each key metric of the method beside its baselines, with intervals and paired tests."""

import fnmatch
import os
from dataclasses import dataclass

import pandas as pd

from socialfeat import artifacts
from socialfeat.console import INTERVALS
from socialfeat.stats import significance

ALPHA = 0.05
SEED = 0  # the bootstrap's draws: a report written twice reads the same
BOUNDS = ("oracle", "latent")  # upper bounds (from the views themselves) a model is shown against, not held to
LOWER_IS_BETTER = ("*/pr", "*loss*", "*/rmse")


@dataclass(frozen=True)
class Verdict:
    """A key metric of the model against the baselines measured beside it."""

    metric: str
    value: float
    interval: str
    baselines: list[tuple[str, float, str, float | None]]  # (name, value, interval, paired p or None)
    lower_is_better: bool

    def beaten(self) -> list[str]:
        """The baselines the model beats significantly."""
        return [name for name, value, _, p in self.baselines if self._better(value) and p is not None and p < ALPHA]

    def _better(self, value: float) -> bool:
        return self.value < value if self.lower_is_better else self.value > value

    def sentence(self) -> str:
        rivals = [b for b in self.baselines if _part(b[0]) not in BOUNDS]
        beaten = [name for name in self.beaten() if _part(name) not in BOUNDS]
        if not rivals:
            return "no baseline measured beside it"
        if len(beaten) == len(rivals):
            return "beats every baseline (paired p < 0.05)"
        untested = [_part(name) for name, _, _, p in rivals if p is None]
        tested = [(name, value, p) for name, value, _, p in rivals if p is not None and name not in beaten]
        worse = [_part(name) for name, value, p in tested if p < ALPHA and not self._better(value)]
        held = [_part(name) for name, value, p in tested if _part(name) not in worse]
        said = [f"significantly worse than {', '.join(worse)}"] if worse else []
        said += [f"does not beat {', '.join(held)} significantly"] if held else []
        return "; ".join(said + ([f"untested against {', '.join(untested)} (no per-query values)"] if untested else []))


def _part(name: str) -> str:
    """The feature set or baseline a metric name is about: random_cnn in retrieval/random_cnn/jaccard@10."""
    return name.split("/")[-2] if name.count("/") > 1 else name


def run_samples(run_dir: str) -> dict[str, pd.Series]:
    """Every stage's per-query values, found through run.json (none for a run without it)."""
    path = os.path.join(run_dir, "run.json")
    if not os.path.isfile(path):
        return {}
    samples = {}
    for stage in artifacts.read_json(path).get("stages", []):
        if isinstance(stage, dict) and os.path.isdir(str(stage.get("path"))):
            samples |= significance.read_samples(stage["path"])
    return samples


def _family(name: str) -> tuple[str, str]:
    """A metric's comparison family: its first and last parts ("retrieval", "jaccard@10")."""
    parts = name.split("/")
    return parts[0], parts[-1]


def _headline(names: list[str]) -> str | None:
    """The model's entry of a family: `a/b` itself (mf/pr against mf/popularity/pr), else the CNN's."""
    two = [n for n in names if n.count("/") == 1]
    cnn = [n for n in names if n.count("/") == 2 and n.split("/")[1] == "cnn"]
    return (two or cnn or [None])[0]


def verdicts(metrics: dict, samples: dict[str, pd.Series], patterns: tuple[str, ...]) -> list[Verdict]:
    """For each family of the key metrics (`patterns`, in order) that has a model and a baseline: the model's
    value and interval, each baseline's, and the paired bootstrap p of their difference."""
    names = [n for n in metrics if not n.endswith(INTERVALS) and isinstance(metrics[n], (int, float))]
    found, seen = [], set()
    for pattern in patterns:
        for name in sorted(fnmatch.filter(names, pattern)):
            family = _family(name)
            if family in seen or name.count("/") > 2:
                continue
            members = [n for n in names if _family(n) == family and n.count("/") <= 2]
            headline = _headline(members)
            if headline is None or len(members) < 2:
                continue
            seen.add(family)
            found.append(_verdict(metrics, samples, headline, [m for m in sorted(members) if m != headline]))
    return found


def _verdict(metrics: dict, samples: dict, headline: str, rivals: list[str]) -> Verdict:
    def interval(name: str) -> str:
        low, high = metrics.get(f"{name}/ci_low"), metrics.get(f"{name}/ci_high")
        return f"[{low:.3g}, {high:.3g}]" if low is not None and high is not None else ""

    def p(name: str) -> float | None:
        if headline not in samples or name not in samples:
            return None
        value, paired = significance.p_value(samples[headline], samples[name], SEED)
        return value if paired else None

    def itself(name: str) -> bool:  # the model under its own name too (comparative/cdl/... beside comparative/...)
        return headline in samples and name in samples and samples[headline].equals(samples[name])

    baselines = [(name, float(metrics[name]), interval(name), p(name)) for name in rivals if not itself(name)]
    lower = any(fnmatch.fnmatchcase(headline, pattern) for pattern in LOWER_IS_BETTER)
    return Verdict(headline, float(metrics[headline]), interval(headline), baselines, lower)


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
