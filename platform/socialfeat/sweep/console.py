"""What a sweep prints: one line per finished trial with the best so far, a progress bar at a terminal and
the top trials at the end; Tune's own tables go to OUT/sweep.log, its TensorBoard logs to OUT/tensorboard."""

import math
import os
import sys

import numpy as np
import pandas as pd
from ray import tune
from ray.tune.logger import TBXLoggerCallback
from tensorboardX import SummaryWriter
from tensorboardX.summary import hparams

from socialfeat import console
from socialfeat.sweep.space import SearchSpace, finite

LOG_FILE = "sweep.log"  # Tune's progress tables and trial boxes, unless --verbose shows them
BOARD_DIR = "tensorboard"  # one run per trial: HParams, objectives, per-epoch training metrics
TOP = 5  # trials in the closing table


def _value(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def params_text(params: dict) -> str:
    """'k=8 engine=als' with each key's last dotted part (the section is in the space file)."""
    return " ".join(f"{key.rsplit('.', 1)[-1]}={_value(value)}" for key, value in params.items())


class TrialLines(tune.Callback):
    """One line per trial that ends (done, stopped by the scheduler or failed), numbered, with its objectives,
    its seconds and the best value so far; at a terminal a bar below them counts the trials."""

    def __init__(self, space: SearchSpace, total: int, done_before: int, trials_root: str):
        self.objectives = space.objectives
        self.trials_root = trials_root  # each trial's error.txt: what a failed one raised
        self.total, self.ended = total, done_before
        self.best: tuple[float, str] | None = None
        self.bar = None  # made when the sweep starts: Tune pickles its callbacks with the tuner

    def setup(self, **info) -> None:
        self.bar = console.bar(self.total, "trials", enabled=sys.stderr.isatty(), unit="trial")
        self.bar.update(self.ended)

    def __getstate__(self) -> dict:
        return self.__dict__ | {"bar": None}

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        result = trial.last_result or {}
        first = self.objectives[0].metric
        state = "done" if finite(result.get(first)) else f"stopped at epoch {result.get('epoch', '?')}"
        self._line(trial, state)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        path = os.path.join(self.trials_root, trial.trial_id, "error.txt")
        raised = (
            open(path).read().strip().splitlines()[:1] if os.path.exists(path) else []
        )  # a remote trial's: not here
        self._line(trial, f"ERROR {raised[0][:120] if raised else '(see its error.txt)'}")

    def on_experiment_end(self, trials: list, **info) -> None:
        if self.bar is not None:
            self.bar.close()

    def _line(self, trial, state: str) -> None:
        self.ended += 1
        result = trial.last_result or {}
        scores = "  ".join(
            f"{o.metric} {_value(float(result[o.metric]))}" for o in self.objectives if finite(result.get(o.metric))
        )
        self._track(result.get(self.objectives[0].metric), trial.trial_id)
        best = f"best {_value(self.best[0])} ({self.best[1]})" if self.best else "no best yet"
        seconds = result.get("time_total_s", 0.0)
        text = (
            f"[{self.ended}/{self.total}] {trial.trial_id}  {params_text(trial.config)}  {scores}  {state}  "
            f"{seconds:.1f}s  | {best}"
        )
        if self.bar is None:
            self.setup()
        self.bar.write(text, file=sys.stderr)
        self.bar.update(1)

    def _track(self, value, trial_id: str) -> None:
        if not finite(value):
            return
        lower = self.objectives[0].mode == "min"
        if self.best is None or (value < self.best[0] if lower else value > self.best[0]):
            self.best = (float(value), trial_id)


class SweepBoard(TBXLoggerCallback):
    """The sweep's TensorBoard, OUT/tensorboard/<trial>: each trial's parameters as HParams with its objectives,
    and its trainers' per-epoch metrics. Tune's own logger wrote every one of ~70 metrics (the data counts
    first) per trial; being a TBXLoggerCallback, this one takes its place."""

    def __init__(self, out: str, space: SearchSpace):
        super().__init__()
        self.root = os.path.join(out, BOARD_DIR)
        self.objectives = [o.metric for o in space.objectives]
        self.epoch_metrics = [m for m in space.epoch_metrics if m != "epoch"]

    def log_trial_start(self, trial) -> None:
        if trial in self._trial_writer:
            self._trial_writer[trial].close()
        self._trial_writer[trial] = SummaryWriter(os.path.join(self.root, trial.trial_id), flush_secs=30)
        self._trial_result[trial] = {}

    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        if trial not in self._trial_writer:
            self.log_trial_start(trial)
        writer, epoch = self._trial_writer[trial], result.get("epoch")
        scores = {name: float(result[name]) for name in self.objectives if finite(result.get(name))}
        if finite(epoch) and not scores:  # the final report repeats the last epoch's numbers
            for name in self.epoch_metrics:
                if finite(result.get(name)):
                    writer.add_scalar(f"train/{name}", float(result[name]), global_step=int(epoch))
        self._trial_result[trial] = scores or self._trial_result[trial]
        writer.flush()

    def log_trial_end(self, trial, failed: bool = False) -> None:
        writer = self._trial_writer.pop(trial, None)
        scores = self._trial_result.pop(trial, {})
        if writer is None:
            return
        if scores:
            params = {k: v.item() if isinstance(v, np.generic) else v for k, v in trial.config.items()}
            for summary in hparams(hparam_dict=params, metric_dict=scores):
                writer.file_writer.add_summary(summary)
            for name, value in scores.items():
                writer.add_scalar(name, value, global_step=0)
        writer.close()


def top_table(frame: pd.DataFrame, space: SearchSpace, limit: int = TOP) -> str:
    """The best `limit` trials by the first objective, with their parameters (those of the branches each took),
    objectives, status and seconds."""
    first = space.objectives[0]
    if first.metric not in frame:
        return ""
    ranked = frame.sort_values(first.metric, ascending=first.mode == "min", na_position="last").head(limit)
    params = [c for c in frame.columns if c.startswith("param/")]
    shown = pd.DataFrame({"trial": ranked["trial_id"]})
    shown["parameters"] = [
        params_text({c.removeprefix("param/"): row[c] for c in params if not _missing(row[c])})
        for _, row in ranked.iterrows()
    ]
    for column in [o.metric for o in space.objectives] + ["status", "run/seconds"]:
        if column in ranked:
            shown[column.replace("run/seconds", "seconds")] = ranked[column].map(
                lambda v: "" if _missing(v) else _value(v)
            )
    if len(space.objectives) > 1:
        shown["pareto"] = ranked["pareto"].map(lambda v: "yes" if v else "")
    modes = ", ".join(f"{o.metric} ({o.mode})" for o in space.objectives)
    return f"top {len(shown)} of {len(frame)} trials by {modes}:\n" + shown.to_string(index=False, justify="left")


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
