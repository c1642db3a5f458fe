"""`socialfeat compare`: the key metrics of several runs (or of several feature sets of one run) side by side,
with their 95% bootstrap intervals and a paired bootstrap test against the first column."""

import fnmatch
import os
from dataclasses import dataclass, field

import pandas as pd

from socialfeat import artifacts
from socialfeat.console import INTERVALS
from socialfeat.errors import UserError
from socialfeat.report import run_samples
from socialfeat.seeds import SEEDS_FILE
from socialfeat.stats import significance

ALPHA = 0.05
SEED = 0  # the bootstrap's draws: one seed, so a comparison printed twice reads the same
SET_FIELD = "<set>"  # stands for the feature set's name in a --sets comparison


@dataclass
class Column:
    """One column of the table: a run (or one feature set of a run), its metrics and per-query values."""

    metrics: dict
    samples: dict[str, pd.Series] = field(default_factory=dict)
    seeds: int = 0  # a `run --seeds` column: means over this many seeds, samples per seed


def key_patterns(methods) -> tuple[str, ...]:
    """What a reader compares first: the methods' stages' key metrics in stage order, then cost."""
    patterns = [p for method in methods for stage in method.stages for p in stage.key_metrics]
    return tuple(dict.fromkeys(patterns)) + ("run/seconds", "run/stage_seconds")


class UnreadableRun(UserError):
    """A run directory whose metrics.json or run.json is not what a socialfeat run writes."""


def _json_object(path: str) -> dict:
    """A run file that must hold one JSON object; anything else is one message naming the file."""
    try:
        value = artifacts.read_json(path)
    except ValueError as error:  # json.JSONDecodeError, UnicodeDecodeError
        raise UnreadableRun(f"{path}: not valid JSON ({error}); a socialfeat run writes it whole") from None
    if not isinstance(value, dict):
        raise UnreadableRun(f"{path}: holds a JSON {type(value).__name__}, not the object a socialfeat run writes")
    return value


def _metrics(path: str) -> dict:
    """metrics.json: an object of numbers (a value of another type is named with its metric)."""
    metrics = _json_object(path)
    for name, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) and value is not None:
            raise UnreadableRun(f"{path}: metric {name!r} is {value!r}, not a number")
    return metrics


def _checked_samples(run_dir: str) -> dict[str, pd.Series]:
    """The run's per-query values (report.run_samples); a run.json whose stages are not a list of stages is
    an error naming it."""
    path = os.path.join(run_dir, "run.json")
    if os.path.isfile(path):
        stages = _json_object(path).get("stages")
        if not isinstance(stages, list) or not all(
            isinstance(t, dict) and isinstance(t.get("path"), str) for t in stages
        ):
            raise UnreadableRun(f"{path}: 'stages' is not the list of stages a socialfeat run writes")
    return run_samples(run_dir)


def seeds_column(directory: str) -> Column | None:
    """A `run --seeds` directory as one column: each metric's mean over the seeds with mean ± 1.96 sd/sqrt(n)
    as its interval, and the per-seed values as its samples (tests against it pair the seeds); None when the
    directory holds no seeds.json."""
    path = os.path.join(directory, SEEDS_FILE)
    if not os.path.isfile(path):
        return None
    metrics, samples = {}, {}
    for name, entry in _json_object(path).get("metrics", {}).items():
        mean, half = entry["mean"], 1.96 * entry["sd"] / max(1, entry["n"]) ** 0.5
        metrics |= {name: mean, f"{name}/ci_low": mean - half, f"{name}/ci_high": mean + half}
        samples[name] = pd.Series(entry["values"], index=[f"seed{i}" for i in range(entry["n"])])
    return Column(metrics, samples, seeds=len(next(iter(samples.values()), [])))


def sweep_trials(directory: str) -> list[str]:
    """A sweep directory's finished trials (their run directories, in the order they were suggested), or
    [directory] itself when it is not a sweep."""
    results = os.path.join(directory, "results.csv")
    if not (os.path.isfile(results) and os.path.isdir(os.path.join(directory, "trials"))):
        return [directory]
    frame = pd.read_csv(results).sort_values("number")
    return [
        os.path.join(directory, "trials", trial)
        for trial in frame["trial_id"]
        if os.path.isfile(os.path.join(directory, "trials", trial, artifacts.METRICS))
    ]


def _method(run_dir: str) -> str | None:
    path = os.path.join(run_dir, "run.json")
    return _json_object(path).get("method") if os.path.isfile(path) else None


def load_runs(run_dirs: list[str]) -> dict[str, Column]:
    """{run name: its column}, a sweep directory's finished trials each a column; a directory without
    metrics.json is an error naming it. Runs of several methods are named with their method."""
    run_dirs = [run for directory in run_dirs for run in sweep_trials(directory)]
    methods = [_method(run_dir) for run_dir in run_dirs]
    runs = {}
    for run_dir, method in zip(run_dirs, methods):
        seeded = seeds_column(run_dir)
        if seeded is not None:
            runs[f"{os.path.basename(os.path.abspath(run_dir))} ({seeded.seeds} seeds)"] = seeded
            continue
        path = os.path.join(run_dir, artifacts.METRICS)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{run_dir}: no {artifacts.METRICS} (not a finished socialfeat run directory)")
        name = os.path.basename(os.path.abspath(run_dir))
        name += f" ({method})" if len(set(methods)) > 1 else ""
        metrics, samples = _metrics(path), _checked_samples(run_dir)
        artifacts.check_run_pair(run_dir)
        runs[name if name not in runs else run_dir] = Column(metrics, samples)
    return runs


def feature_sets(run: Column, sets: list[str]) -> dict[str, Column]:
    """One column per feature set of a run: metric names with the set's name replaced by <set>."""
    missing = [name for name in sets if not any(f"/{name}/" in metric for metric in run.metrics)]
    if missing:
        raise UserError(f"--sets: no metric of this run names the feature set(s) {', '.join(missing)}")

    def renamed(values: dict, name: str) -> dict:
        return {k.replace(f"/{name}/", f"/{SET_FIELD}/", 1): v for k, v in values.items() if f"/{name}/" in k}

    return {name: Column(renamed(run.metrics, name), renamed(run.samples, name)) for name in sets}


def key_metrics(runs: dict[str, Column], patterns: tuple[str, ...]) -> list[str]:
    """Metric names present in any run that match `patterns`, in pattern order (intervals go beside them): those
    every run reports first (the common evaluation of several methods), then those only some report."""
    present = sorted(name for name in set().union(*(r.metrics for r in runs.values())) if not name.endswith(INTERVALS))
    chosen: list[str] = []
    for pattern in patterns:
        chosen += [name for name in present if fnmatch.fnmatchcase(name, pattern) and name not in chosen]
    common = [name for name in chosen if all(name in run.metrics for run in runs.values())]
    return common + [name for name in chosen if name not in common]  # what all report first, each one's own below


@dataclass(frozen=True)
class Test:
    p: float
    paired: bool  # False: the two columns measured different queries (an unpaired bootstrap)


def tests(runs: dict[str, Column], names: list[str]) -> dict[tuple[str, str], Test]:
    """{(metric, column): the bootstrap test of that column against the first}, where both kept per-query values."""
    first, *others = runs.values()
    found = {}
    for run_name, column in zip(list(runs)[1:], others):
        for name in names:
            if name in first.samples and name in column.samples:
                if first.seeds or column.seeds:  # a few seeds: an exact sign-flip test, paired by seed
                    pair = first.samples[name].align(column.samples[name], join="inner")
                    found[(name, run_name)] = Test(significance.sign_flip_p_value(*pair, SEED), True)
                    continue
                p, paired = significance.p_value(first.samples[name], column.samples[name], SEED)
                found[(name, run_name)] = Test(p, paired)
    return found


def _cell(metrics: dict, name: str, test: Test | None) -> str:
    value = metrics.get(name)
    if value is None:
        return "-"
    text = f"{value:.4g}"
    low, high = metrics.get(f"{name}/ci_low"), metrics.get(f"{name}/ci_high")
    if low is not None and high is not None:
        text += f" [{low:.4g}, {high:.4g}]"
    if test is not None and test.p < ALPHA:
        text += " *" if test.paired else " *†"
    elif test is not None and not test.paired:
        text += " †"
    return text


def legend(runs: dict[str, Column], found: dict) -> list[str]:
    """The lines under the table that say what its marks mean, and what could not be tested."""
    lines = []
    if found:
        first = next(iter(runs))
        over = "see (N seeds) below" if all(c.seeds for c in runs.values()) else "95% bootstrap interval over queries"
        lines.append(f"[low, high]: {over}; * differs from {first} (p < {ALPHA})")
    if any(column.seeds for column in runs.values()):
        lines.append(
            "(N seeds): mean over seeds, interval mean ± 1.96 sd/sqrt(N), tests paired by seed (an exact sign-flip "
            "test: 3 seeds cannot reach p < 0.05, 5 can)"
        )
    if any(not t.paired for t in found.values()):
        lines.append("†: the two were measured on different queries (test sets differ): an unpaired bootstrap")
    without = [name for name, column in runs.items() if not column.samples]
    if len(runs) > 1 and without:
        lines.append(f"no per-query values in {', '.join(without)}: no significance test against it")
    return lines


def table(runs: dict[str, Column], names: list[str], fmt: str = "text") -> str:
    """A metrics x runs table as aligned text, CSV or Markdown; '-' where a run lacks a metric."""
    found = tests(runs, names)
    if fmt == "csv":
        return _csv(runs, names, found)
    header = ["metric", *runs]
    rows = [[name, *(_cell(c.metrics, name, found.get((name, r))) for r, c in runs.items())] for name in names]
    notes = legend(runs, found)
    if fmt == "markdown":
        lines = [header, ["---"] * len(header), *rows]
        return "\n".join(["| " + " | ".join(row) + " |" for row in lines] + ([""] + notes if notes else []))
    widths = [max(len(row[c]) for row in [header, *rows]) for c in range(len(header))]
    aligned = [
        "  ".join(v.ljust(w) if c == 0 else v.rjust(w) for c, (v, w) in enumerate(zip(row, widths)))
        for row in [header, *rows]
    ]
    return "\n".join(aligned + notes)


def _csv(runs: dict[str, Column], names: list[str], found: dict) -> str:
    """One value column per run, then its interval and p-value columns where any run has them."""

    def number(value) -> str:
        return "-" if value is None else f"{value:.4g}"

    intervals = any(f"{n}/ci_low" in c.metrics for c in runs.values() for n in names)
    header, rows = ["metric"], [[name] for name in names]
    for run_name, column in runs.items():
        suffixes = ["", *(INTERVALS if intervals else ())]
        header += [run_name + suffix for suffix in suffixes]
        for name, row in zip(names, rows):
            row += [number(column.metrics.get(name + suffix)) for suffix in suffixes]
        if any(key[1] == run_name for key in found):
            header.append(f"{run_name}/p")
            for name, row in zip(names, rows):
                row.append(number(found[(name, run_name)].p) if (name, run_name) in found else "-")
    return "\n".join(",".join(row) for row in [header, *rows])
