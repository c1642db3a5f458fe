"""A sweep's results: results.csv / .parquet, best.yaml, the Pareto set and plots."""

import functools
import os

import numpy as np
import pandas as pd
import yaml
from matplotlib.colors import Normalize
from matplotlib.ticker import MaxNLocator, NullFormatter, ScalarFormatter

from socialfeat import artifacts
from socialfeat.config import safe_name
from socialfeat.report_html import save_figure
from socialfeat.sweep.space import SearchSpace, log_scale, spec_of

SUMMARY = "summary.json"  # counts, the best trial and its parameters, its gain over the base experiment
STUDY_DB, STUDY_NAME = "optuna.db", "sweep"


def study_storage(out: str):
    """The sweep's Optuna study storage: SQLite in OUT/optuna.db (`optuna-dashboard sqlite:///OUT/optuna.db`)."""
    import optuna  # only where a study is opened: results.csv readers need no Optuna

    return optuna.storages.RDBStorage(f"sqlite:///{os.path.join(os.path.abspath(out), STUDY_DB)}")


def trials_frame(records: list[dict], space: SearchSpace) -> pd.DataFrame:
    """One row per trial: id, status, parameters, every numeric metric, stage timings, reused stages."""
    rows = []
    for number, record in enumerate(records, start=1):
        metrics = record.get("metrics", {})
        row = {
            "trial_id": record["trial_id"],
            "number": number,
            "is_base": record.get("is_base", False),
            "status": _status(record),
            "error": record.get("error", ""),
            "trial_dir": record["run_dir"],
        }
        row |= {f"param/{k}": v for k, v in record["params"].items()}
        row |= {f"stopped/{k}": v for k, v in record.get("stopped", {}).items()}  # ASHA's last look at it
        row |= {
            k: v
            for k, v in metrics.items()
            if (k.count("/") and isinstance(v, (int, float)) and not isinstance(v, bool)) or k == "reused_stages"
        }
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame["pareto"] = pareto_mask(frame, space)
    return frame


def _status(record: dict) -> str:
    """ERROR (failed for good), STOPPED (ended early by the scheduler) or TERMINATED (ran to the end)."""
    return "ERROR" if "error" in record else "STOPPED" if "stopped" in record else "TERMINATED"


def pareto_mask(frame: pd.DataFrame, space: SearchSpace) -> np.ndarray:
    """Trials no other trial beats on every objective (the best ones for a single objective)."""
    columns = [o.metric for o in space.objectives]
    if not set(columns) <= set(frame.columns):
        return np.zeros(len(frame), bool)
    signs = np.array([1.0 if o.mode == "min" else -1.0 for o in space.objectives])
    values = frame[columns].to_numpy(float) * signs  # everything minimised
    ok = np.isfinite(values).all(axis=1)
    mask = np.zeros(len(frame), bool)
    for i in np.flatnonzero(ok):
        others = values[ok]
        dominated = ((others <= values[i]).all(axis=1) & (others < values[i]).any(axis=1)).any()
        mask[i] = not dominated
    return mask


def best_row(frame: pd.DataFrame, space: SearchSpace) -> pd.Series | None:
    """The best trial on the first objective among the Pareto set."""
    first = space.objectives[0]
    candidates = frame[frame["pareto"]]
    if candidates.empty:
        return None
    index = candidates[first.metric].idxmin() if first.mode == "min" else candidates[first.metric].idxmax()
    return frame.loc[index]


def plots(frame: pd.DataFrame, space: SearchSpace, out: str, importance: dict | None = None) -> list[str]:
    """Optimisation history, each parameter against the first objective (colour: the trial's number), the
    Pareto front for two objectives, and the parameters' importance when given."""
    os.makedirs(out, exist_ok=True)
    first = space.objectives[0]
    done = frame[frame[first.metric].notna()] if first.metric in frame else frame.iloc[:0]
    if done.empty:
        return []
    paths = [save_figure(os.path.join(out, "history.png"), lambda figure: _history(figure, done, first))]
    params = [c for c in frame.columns if c.startswith("param/")]
    if params:
        draw = functools.partial(_parameters, done=done, params=params, space=space)
        paths.append(save_figure(os.path.join(out, "parameters.png"), draw, (4 * len(params) + 1, 3.5)))
    if len(space.objectives) == 2:
        draw = functools.partial(_front, done=done, first=first, second=space.objectives[1])
        paths.append(save_figure(os.path.join(out, "pareto.png"), draw))
    if importance:
        draw = functools.partial(_importance, importance=importance, metric=first.metric)
        paths.append(save_figure(os.path.join(out, "importance.png"), draw, (6, 1 + 0.4 * len(importance))))
    return paths


def _history(figure, done: pd.DataFrame, first) -> None:
    values = done[first.metric].to_numpy(float)
    running = np.minimum.accumulate(values) if first.mode == "min" else np.maximum.accumulate(values)
    axis = figure.add_subplot()
    axis.scatter(done["number"], values, label="trial")
    axis.step(done["number"], running, where="post", color="C1", label=f"best so far ({first.mode})")
    axis.set(xlabel="trial (in suggestion order)", ylabel=first.metric, title="Optimisation history")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.legend(loc="best")


def _parameters(figure, done: pd.DataFrame, params: list[str], space: SearchSpace) -> None:
    first = space.objectives[0]
    axes = figure.subplots(1, len(params), squeeze=False)[0]
    norm = Normalize(done["number"].min(), done["number"].max())  # one colour per trial on every axis
    for n, (axis, column) in enumerate(zip(axes, params)):
        key, has = column.removeprefix("param/"), done[column].notna()  # a branch's key: only its trials
        x, rows = done.loc[has, column], done[has]
        numeric = pd.api.types.is_numeric_dtype(x)
        values = x if numeric else [str(v) for v in x]
        dots = axis.scatter(values, rows[first.metric], c=rows["number"], cmap="viridis", norm=norm)
        integer = numeric and pd.api.types.is_integer_dtype(x)
        if numeric and log_scale(spec_of(space, key)):
            axis.set_xscale("log", base=2 if integer else 10)  # d at 4, 8, 16, ...
            axis.xaxis.set_major_formatter(ScalarFormatter())  # 16 and 0.5, not 2^4 and 5 x 10^-1
            axis.xaxis.set_minor_formatter(NullFormatter())
        elif integer:
            axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set(xlabel=key, ylabel=first.metric if n == 0 else None)
    colours = figure.colorbar(dots, cax=axes[-1].inset_axes([1.04, 0, 0.04, 1]))
    colours.set_label("trial")
    colours.locator = MaxNLocator(integer=True)
    colours.update_ticks()


def _front(figure, done: pd.DataFrame, first, second) -> None:
    axis = figure.add_subplot()
    axis.scatter(done[first.metric], done[second.metric], color="grey", label="trial")
    best = done[done["pareto"]].sort_values(first.metric)
    axis.plot(best[first.metric], best[second.metric], "o-", color="C3", label="Pareto front")
    axis.set(xlabel=f"{first.metric} ({first.mode})", ylabel=f"{second.metric} ({second.mode})")
    axis.legend(loc="best")


def _importance(figure, importance: dict, metric: str) -> None:
    axis = figure.add_subplot()
    names = list(importance)[::-1]
    axis.barh(names, [importance[name] for name in names])
    axis.set(xlabel=f"importance for {metric} (Optuna, fANOVA)", xlim=(0, 1))


def write_results(records: list[dict], space: SearchSpace, out: str) -> tuple[dict, pd.DataFrame | None]:
    """Write every results file, summary.json among them; returns that summary (counts, best trial, its gain
    over the base) and the trials' table (None when no trial finished)."""
    if not records:
        summary = {"trials": 0, "errored": 0, "plots": []}
        artifacts.write_json(os.path.join(out, SUMMARY), summary)
        return summary, None
    frame = trials_frame(records, space)
    frame.to_csv(os.path.join(out, "results.csv"), index=False)
    frame.astype({c: str for c in frame.columns if frame[c].dtype == object}).to_parquet(
        os.path.join(out, "results.parquet"), index=False
    )
    summary = _summary(frame, space, out)
    artifacts.write_json(os.path.join(out, SUMMARY), summary)
    return summary, frame


def _summary(frame: pd.DataFrame, space: SearchSpace, out: str) -> dict:
    summary = {
        "trials": len(frame),
        "errored": int((frame["status"] == "ERROR").sum()),
        "stopped_early": int((frame["status"] == "STOPPED").sum()),
        "plots": plots(frame, space, os.path.join(out, "plots")),
    }
    best = best_row(frame, space)
    if best is None:
        return summary
    config_path = os.path.join(best["trial_dir"], "config.yaml")
    if os.path.exists(config_path):
        config = yaml.safe_load(open(config_path))
        config["name"] = safe_name(f"best_of_{os.path.basename(out)}")  # a --out with spaces, accents
        artifacts.atomic_write_text(os.path.join(out, "best.yaml"), yaml.safe_dump(config, sort_keys=False))
    base = frame[frame["is_base"]].iloc[0] if frame["is_base"].any() else pd.Series(dtype=object)
    return summary | {
        "best_trial": best["trial_id"],
        "best": {o.metric: float(best[o.metric]) for o in space.objectives},
        "base": {o.metric: float(base[o.metric]) for o in space.objectives if pd.notna(base.get(o.metric))},
        "best_params": {
            k.removeprefix("param/"): _plain(v) for k, v in best.items() if k.startswith("param/") and pd.notna(v)
        },
        "pareto_trials": frame.loc[frame["pareto"], "trial_id"].tolist(),
    }


def _plain(value):
    return value.item() if hasattr(value, "item") else value
