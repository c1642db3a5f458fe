"""A sweep's report.html: the answer first (best trial against the base), then the objective per trial with the
best so far, the parameters' importance (Optuna's), each parameter against the objective, the Pareto front of
two objectives and the table of trials."""

import html
import logging
import os

import pandas as pd

from socialfeat import artifacts
from socialfeat.errors import UserError
from socialfeat.sweep.results import STUDY_NAME, SUMMARY, plots, study_storage
from socialfeat.sweep.space import Objective, SearchSpace

log = logging.getLogger(__name__)
REPORT = "report.html"
PLOTS = "plots"
STYLE = (
    "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}td,th{padding:2px 10px;"
    "text-align:right;border-bottom:1px solid #ddd}tr.best{font-weight:bold;background:#eef6ee}"
    "img{max-width:100%}.figures{display:flex;flex-wrap:wrap;gap:1em}.summary{font-size:1.1em}"
)


def is_sweep(directory: str) -> bool:
    return os.path.exists(os.path.join(directory, "results.csv")) and os.path.exists(_space_record(directory))


def _space_record(out: str) -> str:
    return os.path.join(out, "space", "space.json")


def recorded_space(out: str) -> SearchSpace:
    """The search space as the sweep recorded it when it started (objectives, parameters)."""
    record = artifacts.read_json(_space_record(out))
    objectives = [Objective(metric, mode) for metric, mode in record["objectives"]]
    return SearchSpace(_space_record(out), None, objectives, record["parameters"], until=record["until"])


def importance(out: str, space: SearchSpace) -> tuple[dict, str]:
    """Optuna's parameter importance for the first objective (fANOVA over the completed trials), or the reason
    there is none (too few trials, one value tried)."""
    import optuna

    try:
        study = optuna.load_study(study_name=STUDY_NAME, storage=study_storage(out))
        target = None if len(space.objectives) == 1 else (lambda trial: trial.values[0])
        found = optuna.importance.get_param_importances(study, target=target)
        return {name: float(value) for name, value in found.items()}, ""
    except (ValueError, RuntimeError, KeyError) as error:  # Optuna's words for "cannot tell from these trials"
        return {}, f"no parameter importance: {error}"


def write_sweep_report(out: str) -> str:
    """OUT/report.html and its figures in OUT/plots; returns the HTML's path."""
    if not is_sweep(out):
        raise UserError(f"{out}: not a sweep directory (it needs results.csv and space/space.json)")
    space = recorded_space(out)
    frame = pd.read_csv(os.path.join(out, "results.csv"))
    found, why_not = importance(out, space)
    base_trial = frame.loc[frame["is_base"], "trial_id"].iloc[0] if frame["is_base"].any() else None
    figures = plots(frame, space, os.path.join(out, PLOTS), found)
    summary = artifacts.read_json(os.path.join(out, SUMMARY)) if os.path.exists(os.path.join(out, SUMMARY)) else {}
    sections = "".join(
        f"<figure><img src='{PLOTS}/{os.path.basename(path)}' alt='{os.path.basename(path)}'></figure>"
        for path in figures
    )
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>socialfeat sweep</title><style>{STYLE}"
        f"</style></head><body><h1>socialfeat sweep: {html.escape(os.path.basename(os.path.abspath(out)))}</h1>"
        f"<p class='summary'>{_summary_line(summary, space, len(frame), base_trial)}</p>"
        f"<div class='figures'>{sections}</div>{f'<p>{html.escape(why_not)}</p>' if why_not else ''}"
        f"<h2>Trials</h2>{_table(frame, space, summary.get('best_trial'))}</body></html>"
    )
    path = os.path.join(out, REPORT)
    artifacts.atomic_write_text(path, page)
    return path


def _summary_line(summary: dict, space: SearchSpace, trials: int, base_trial: str | None) -> str:
    counts = f"{trials} trials ({summary.get('errored', 0)} failed, {summary.get('stopped_early', 0)} stopped early)"
    if "best_trial" not in summary:
        return html.escape(f"{counts}; no trial reported {space.objectives[0].metric}")
    scores = "; ".join(
        f"{metric} {value:.4g}"
        + (f" against the base experiment's {summary['base'][metric]:.4g}" if metric in summary.get("base", {}) else "")
        for metric, value in ((o.metric, summary["best"][o.metric]) for o in space.objectives)
    )
    params = ", ".join(f"{key}={value}" for key, value in summary.get("best_params", {}).items())
    if summary["best_trial"] == base_trial:
        scores = "; ".join(f"{metric} {summary['best'][metric]:.4g}" for metric in (o.metric for o in space.objectives))
        return html.escape(f"The base experiment (trial {base_trial}) stays best: {scores}, with {params}. {counts}.")
    return html.escape(f"Best trial {summary['best_trial']}: {scores}, with {params}. {counts}.")


def _table(frame: pd.DataFrame, space: SearchSpace, best: str | None) -> str:
    objectives = [o.metric for o in space.objectives]
    columns = ["number", "trial_id", "status", *(c for c in frame if c.startswith("param/")), *objectives]
    columns += [c for c in ("run/seconds", "pareto") if c in frame]
    shown = frame[[c for c in columns if c in frame]]
    head = "".join(f"<th>{html.escape(c.removeprefix('param/'))}</th>" for c in shown.columns)
    rows = "".join(
        f"<tr class='{'best' if row.trial_id == best else ''}'>"
        + "".join(f"<td>{html.escape(_cell(value))}</td>" for value in row)
        + "</tr>"
        for row in shown.itertuples(index=False)
    )
    return f"<table><tr>{head}</tr>{rows}</table>"


def _cell(value) -> str:
    if isinstance(value, float):
        return "" if pd.isna(value) else f"{value:.4g}"
    return str(value)
