"""A sweep's results: results.csv / .parquet, best.yaml, the Pareto set and plots."""

import os

import numpy as np
import pandas as pd
import yaml

from socialfeat import artifacts
from socialfeat.config import safe_name
from socialfeat.report_html import save_figure
from socialfeat.sweep.space import SearchSpace, log_scale, spec_of


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


def plots(frame: pd.DataFrame, space: SearchSpace, out: str) -> list[str]:
    """Optimisation history, each parameter against the first objective, the Pareto front for two."""
    os.makedirs(out, exist_ok=True)
    first = space.objectives[0]
    done = frame[frame[first.metric].notna()] if first.metric in frame else frame.iloc[:0]
    if done.empty:
        return []
    values = done[first.metric].to_numpy(float)
    running = np.minimum.accumulate(values) if first.mode == "min" else np.maximum.accumulate(values)

    def history(figure):
        axis = figure.add_subplot()
        axis.scatter(done.index, values, label="trial")
        axis.step(done.index, running, where="post", color="C1", label=f"best so far ({first.mode})")
        axis.set(xlabel="trial (in suggestion order)", ylabel=first.metric, title="Optimisation history")
        axis.legend()

    paths = [save_figure(os.path.join(out, "history.png"), history)]
    params = [c for c in frame.columns if c.startswith("param/")]

    def parameters(figure):
        for n, column in enumerate(params):
            axis = figure.add_subplot(1, len(params), n + 1)
            key = column.removeprefix("param/")
            x = done[column]
            numeric = pd.api.types.is_numeric_dtype(x)
            axis.scatter(x if numeric else x.astype(str), values, c=done.index, cmap="viridis")
            if numeric and log_scale(spec_of(space, key)):
                axis.set_xscale("log")
            axis.set(xlabel=key, ylabel=first.metric if n == 0 else None)

    if params:
        paths.append(save_figure(os.path.join(out, "parameters.png"), parameters, (4 * len(params), 3.5)))
    if len(space.objectives) == 2:
        second = space.objectives[1]

        def front(figure):
            axis = figure.add_subplot()
            axis.scatter(done[first.metric], done[second.metric], color="grey", label="trial")
            best = done[done["pareto"]].sort_values(first.metric)
            axis.plot(best[first.metric], best[second.metric], "o-", color="C3", label="Pareto front")
            axis.set(xlabel=f"{first.metric} ({first.mode})", ylabel=f"{second.metric} ({second.mode})")
            axis.legend()

        paths.append(save_figure(os.path.join(out, "pareto.png"), front))
    return paths


def write_results(records: list[dict], space: SearchSpace, out: str) -> dict:
    """Write every results file; returns a summary (counts, best trial, its gain over the base)."""
    if not records:
        return {"trials": 0, "errored": 0, "plots": []}
    frame = trials_frame(records, space)
    frame.to_csv(os.path.join(out, "results.csv"), index=False)
    frame.astype({c: str for c in frame.columns if frame[c].dtype == object}).to_parquet(
        os.path.join(out, "results.parquet"), index=False
    )
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
    summary |= {
        "best_trial": best["trial_id"],
        "best": {o.metric: float(best[o.metric]) for o in space.objectives},
        "base": {o.metric: float(base[o.metric]) for o in space.objectives if pd.notna(base.get(o.metric))},
        "best_params": {
            k.removeprefix("param/"): _plain(v) for k, v in best.items() if k.startswith("param/") and pd.notna(v)
        },
        "pareto_trials": frame.loc[frame["pareto"], "trial_id"].tolist(),
    }
    return summary


def _plain(value):
    return value.item() if hasattr(value, "item") else value
