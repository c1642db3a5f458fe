"""Search-space files: a base experiment, objectives and distributions over dotted config keys."""

import difflib
import math
import os
from dataclasses import dataclass, field

import yaml
from pydantic import BaseModel

from socialfeat import stages
from socialfeat.config import ConfigError, ExperimentConfig, set_dotted
from socialfeat.methods import NAMES, build_config, configs, load_config, named
from socialfeat.training.task import epoch_metric_names

KINDS = ("uniform", "loguniform", "int", "choice")
METHOD = "method"  # a space key like any other, but each of its choices brings its own config sections


@dataclass
class Objective:
    metric: str
    mode: str  # "min" or "max"


@dataclass
class Scheduler:
    """ASHA over training epochs: trials that trail at a rung stop early."""

    grace_period: int
    max_epochs: int
    metric: str = "holdout_loss"  # reported by the Train workers every epoch
    mode: str = "min"
    reduction_factor: int = 2


@dataclass
class SearchSpace:
    path: str
    experiment: str | None  # the base experiment file (None: the built-in defaults)
    objectives: list[Objective]
    parameters: dict  # dotted key -> distribution (choice values may carry conditional sub-spaces)
    until: str | None = "evaluate"  # None ("all" in the file): every stage of the trial's method
    samples: int = 16
    seed: int = 0
    trial_cpus: float = 1.0
    trial_gpus: float = 0.0
    data_cpus: float = 0.0  # CPUs left free for the Ray Data work a trial starts (it runs outside the trial's group)
    max_failures: int = 1
    startup_trials: int = 10  # random trials before TPE models the results (Optuna's default)
    scheduler: Scheduler | None = None
    fixed: list[str] = field(default_factory=list)  # KEY=VALUE overrides every trial gets
    trains: bool = False  # trials run a stage that trains (a TorchTrainer reporting every epoch)
    epoch_metrics: tuple[str, ...] = ()  # what the trials' trainers report every epoch

    def base_config(self, data: str | None) -> ExperimentConfig:
        overrides = list(self.fixed) + ([f"data.path={data}"] if data else [])
        return load_config(self.experiment, overrides)


def _config_field(source: str, key: str, model: type[BaseModel]):
    """The pydantic field behind a dotted key of `model` (the base experiment's config class), or a
    ConfigError naming the key."""
    parts = key.split(".")
    for depth, part in enumerate(parts):
        if part not in model.model_fields:
            where = ".".join(parts[:depth]) or "the experiment"
            raise ConfigError(
                f"{source}: space key '{key}': '{part}' is not a key of {where} "
                f"(valid: {', '.join(sorted(model.model_fields))})"
            )
        annotation = model.model_fields[part].annotation
        if depth < len(parts) - 1:
            if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
                raise ConfigError(f"{source}: space key '{key}': '{part}' is a value, not a section")
            model = annotation
    return model.model_fields[parts[-1]]


def _check_distribution(source: str, key: str, spec, model: type[BaseModel]) -> None:
    where = f"{source}: space.{key}"
    if not isinstance(spec, dict) or len(set(spec) & set(KINDS)) != 1:
        raise ConfigError(f"{where}: give exactly one of {', '.join(KINDS)} (got {spec!r})")
    kind = next(k for k in KINDS if k in spec)
    _config_field(source, key, model)
    if key == METHOD:
        _check_methods(where, spec)
    if kind == "choice":
        values = spec["choice"]
        if not values:
            raise ConfigError(f"{where}: choice needs at least one value")
        if isinstance(values, dict):  # value -> conditional sub-space
            for value, sub in values.items():
                within = configs()[value] if key == METHOD else model  # a method's branch keys its own sections
                for sub_key, sub_spec in (sub or {}).items():
                    _check_distribution(source, sub_key, sub_spec, within)
        return
    bounds = spec[kind]
    if not (isinstance(bounds, list) and len(bounds) == 2 and all(isinstance(b, (int, float)) for b in bounds)):
        raise ConfigError(f"{where}: {kind} needs [low, high] (got {bounds!r})")
    low, high = bounds
    if not low < high:
        raise ConfigError(f"{where}: empty or inverted range [{low}, {high}]")
    if kind == "loguniform" and low <= 0:
        raise ConfigError(f"{where}: loguniform needs a positive low bound (got {low})")
    if kind == "int" and (low != int(low) or high != int(high)):
        raise ConfigError(f"{where}: int bounds must be whole numbers (got [{low}, {high}])")
    if kind == "int" and spec.get("log") and low < 1:
        raise ConfigError(f"{where}: an int range with log: true needs a low bound of at least 1 (got {low})")


def _check_branch_keys(source: str, parameters: dict) -> None:
    """Optuna knows a parameter by its key, and a categorical one by its values: a key chosen in several branches
    must be chosen from the same values (a single-valued choice is a constant, never drawn); ranges may differ."""
    drawn: dict[str, dict] = {}

    def visit(space: dict) -> None:
        for key, spec in space.items():
            values = spec.get("choice") if isinstance(spec, dict) else None
            if not (values is not None and len(values) == 1):
                if key in drawn and drawn[key] != spec and "choice" in (drawn[key].keys() | spec.keys()):
                    raise ConfigError(
                        f"{source}: space key '{key}' is drawn from {drawn[key]} in one branch and {spec} in "
                        "another; Optuna needs one set of choices per key (a single-valued choice is a constant)"
                    )
                drawn[key] = spec
            for branch in values.values() if isinstance(values, dict) else ():
                visit(branch or {})

    visit(parameters)


def _check_methods(where: str, spec: dict) -> None:
    """`method` is swept as a choice of registered methods, each branch its own sub-space."""
    values = spec.get("choice")
    if values is None:
        raise ConfigError(f"{where}: the method is chosen, not drawn: give choice: {{{', '.join(NAMES)}}}")
    unknown = [name for name in values if name not in NAMES]
    if unknown:
        raise ConfigError(f"{where}: unknown method(s) {unknown}; methods: {', '.join(NAMES)}")


def swept_methods(space: "SearchSpace", base: ExperimentConfig) -> list[str]:
    """The methods a space's trials run: those of a `method` choice, else the base experiment's."""
    return list(space.parameters[METHOD]["choice"]) if METHOD in space.parameters else [base.method]


def _objectives(source: str, raw) -> list[Objective]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{source}: 'objectives' must be a list of {{metric: NAME, mode: min|max}}")
    found = []
    for entry in raw:
        if not isinstance(entry, dict) or set(entry) != {"metric", "mode"} or entry["mode"] not in ("min", "max"):
            raise ConfigError(f"{source}: objective {entry!r}: expected {{metric: NAME, mode: min|max}}")
        found.append(Objective(entry["metric"], entry["mode"]))
    return found


def _check_reported(source: str, objectives: list[Objective], method: stages.Method, until: str) -> None:
    """An objective no stage up to `until` reports would leave every trial unscored: its name must match one
    a stage declares (the contract test holds every run's metrics to those declarations)."""
    ran = {stage.name for stage in stages.upstream(method, until)}
    for objective in objectives:
        reporting = stages.reporting_stages(method, objective.metric)
        if not reporting:
            near = difflib.get_close_matches(objective.metric, stages.declared_metrics(method), n=4, cutoff=0.0)
            raise ConfigError(
                f"{source}: objective metric '{objective.metric}' is reported by no stage of {method.name} "
                f"(nearest names its stages report: {', '.join(near)}; `*` stands for a feature set, model or k)"
            )
        if not ran & set(reporting):
            raise ConfigError(
                f"{source}: objective metric '{objective.metric}' comes from the {reporting[0]} stage, "
                f"but trials stop after {until} (until)"
            )


def _scheduler(path: str, raw: dict | None, space: "SearchSpace") -> Scheduler | None:
    """ASHA's settings, checked: it needs per-epoch reports, so trials must train."""
    if not raw:
        return None
    fields = {"grace_period", "max_epochs", "metric", "mode", "reduction_factor"}
    if not isinstance(raw, dict) or not {"grace_period", "max_epochs"} <= set(raw) <= fields:
        raise ConfigError(
            f"{path}: scheduler needs grace_period and max_epochs (optional: metric, mode, "
            f"reduction_factor); got {raw!r}"
        )
    scheduler = Scheduler(**raw)
    if METHOD in space.parameters:
        raise ConfigError(
            f"{path}: scheduler: ASHA compares trials by one training metric, and each method trains "
            "a different model on a different loss; sweep the method without a scheduler"
        )
    if not space.trains:
        raise ConfigError(
            f"{path}: scheduler (ASHA over epochs) needs trials that train the CNN; they stop after {space.until}"
        )
    if scheduler.metric not in space.epoch_metrics[1:]:
        raise ConfigError(
            f"{path}: scheduler metric {scheduler.metric!r} is not reported every epoch "
            f"(one of: {', '.join(space.epoch_metrics[1:])})"
        )
    if scheduler.mode not in ("min", "max"):
        raise ConfigError(f"{path}: scheduler mode {scheduler.mode!r} must be min or max")
    if not 1 <= scheduler.grace_period <= scheduler.max_epochs:
        raise ConfigError(
            f"{path}: scheduler grace_period {scheduler.grace_period} must lie in 1..max_epochs {scheduler.max_epochs}"
        )
    return scheduler


def _number(path: str, key: str, value, kind: type, low: float):
    """A search-space number, checked: the file and key named, not Python's or Ray's words."""
    whole = kind is int
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (whole and value != int(value)):
        raise ConfigError(f"{path}: {key} = {value!r} is not {'a whole number' if whole else 'a number'}")
    if value < low:
        raise ConfigError(f"{path}: {key} = {value!r} must be at least {low:g}")
    return kind(value)


def load_space(path: str) -> SearchSpace:
    """Read and validate a search-space file; every error names the file and the key."""
    try:
        with open(path) as handle:
            raw = yaml.safe_load(handle) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: search-space file does not exist") from None
    known = {
        "experiment",
        "objectives",
        "space",
        "until",
        "samples",
        "seed",
        "trial_resources",
        "max_failures",
        "scheduler",
        "fixed",
        "startup_trials",
    }
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown search-space key(s) {unknown} (valid: {', '.join(sorted(known))})")
    if not raw.get("space"):
        raise ConfigError(f"{path}: 'space' is empty: nothing to sweep")
    experiment = raw.get("experiment")
    if experiment is not None:
        experiment = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(path)), experiment))
    resources = raw.get("trial_resources") or {}
    if not isinstance(resources, dict):
        raise ConfigError(f"{path}: trial_resources must be a mapping of cpu, gpu and data_cpus (got {resources!r})")

    def number(where: dict, key: str, default, kind: type, low: float, name: str | None = None):
        return _number(path, name or key, where.get(key, default), kind, low)

    space = SearchSpace(
        path=path,
        experiment=experiment,
        objectives=_objectives(path, raw.get("objectives")),
        parameters=raw["space"],
        until=None if raw.get("until", "evaluate") in (None, "all") else raw.get("until", "evaluate"),
        samples=number(raw, "samples", 16, int, 1),
        seed=number(raw, "seed", 0, int, -(2**31)),
        trial_cpus=number(resources, "cpu", 1, float, 0, "trial_resources.cpu"),
        trial_gpus=number(resources, "gpu", 0, float, 0, "trial_resources.gpu"),
        data_cpus=number(resources, "data_cpus", 0, float, 0, "trial_resources.data_cpus"),
        max_failures=number(raw, "max_failures", 1, int, 0),
        startup_trials=number(raw, "startup_trials", 10, int, 1),
        fixed=list(raw.get("fixed") or []),
    )
    model = type(space.base_config(None))
    for key, spec in raw["space"].items():
        _check_distribution(path, key, spec, model)
    _check_branch_keys(path, raw["space"])
    _derive_from_method(space)
    space.scheduler = _scheduler(path, raw.get("scheduler"), space)
    return space


def _derive_from_method(space: SearchSpace) -> None:
    """Check `until` and the objectives against the base experiment's method, and note whether (and what)
    its trials report every epoch."""

    base = build_config(space.base_config(None).model_dump(), space.path)  # the base experiment itself must load
    epoch_metrics: list[str] = []
    for name in swept_methods(space, base):  # every method a trial may run must reach `until` and report
        method = named(name, space.path)
        if space.until is not None and space.until not in stages.stage_map(method):
            raise ConfigError(
                f"{space.path}: until {space.until!r} is not a stage of {method.name} "
                f"({', '.join(stages.stage_map(method))})"
            )
        _check_reported(space.path, space.objectives, method, space.until)
        space.trains = space.trains or stages.trains(method, space.until)
        if stages.trains(method, space.until) and method.task is not None:
            config = trial_config(base, {METHOD: name}, f"{name}_check")
            epoch_metrics += [m for m in epoch_metric_names(method.task(config)) if m not in epoch_metrics]
    space.epoch_metrics = tuple(epoch_metrics)


def suggest(trial, parameters: dict) -> dict:
    """Define-by-run: ask the Optuna trial for every parameter (and the sub-space of each choice made)."""
    chosen = {}
    for key, spec in parameters.items():
        if "uniform" in spec:
            chosen[key] = trial.suggest_float(key, *spec["uniform"])
        elif "loguniform" in spec:
            chosen[key] = trial.suggest_float(key, *spec["loguniform"], log=True)
        elif "int" in spec:
            low, high = spec["int"]
            chosen[key] = trial.suggest_int(key, int(low), int(high), log=bool(spec.get("log", False)))
        else:
            values = spec["choice"]
            options = list(values)
            # one value is a constant, not a question for Optuna: a branch's own setting (training.epochs: 15 in
            # one method's branch, 8 in another's) would otherwise be one parameter with two value sets
            chosen[key] = options[0] if len(options) == 1 else trial.suggest_categorical(key, options)
            if isinstance(values, dict) and values[chosen[key]]:
                chosen |= suggest(trial, values[chosen[key]])
    return chosen


def trial_config(base: ExperimentConfig, params: dict, name: str) -> ExperimentConfig:
    """The base experiment with a trial's parameters set (validated like any config); keys the base
    left unset stay unset, so a trial's engine takes its own defaults."""
    raw = base.model_dump(mode="json", exclude_unset=True)
    if params.get(METHOD, base.method) != base.method:  # the base's own method sections stay behind
        sections = configs()[params[METHOD]].model_fields
        raw = {key: value for key, value in raw.items() if key in sections}
    for key, value in params.items():
        set_dotted(raw, key, value)
    raw["name"] = name
    return build_config(raw, f"trial {name}")


def spec_of(space: SearchSpace, key: str, point: dict | None = None) -> dict:
    """The distribution of `key`, looking into conditional sub-spaces too: the branch `point` chose
    where given (a key may range differently per branch), else the first branch that has it."""

    def find(parameters: dict) -> dict:
        if key in parameters:
            return parameters[key]
        for choice_key, spec in parameters.items():
            branches = spec.get("choice")
            if isinstance(branches, dict):
                names = [point[choice_key]] if point and choice_key in point else list(branches)
                for name in names:
                    found = find(branches.get(name) or {})
                    if found:
                        return found
        return {}

    return find(space.parameters)


def log_scale(spec: dict) -> bool:
    return "loguniform" in spec or bool(spec.get("log", False))


def finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
