"""Stages that declare their inputs, methods as graphs of them, and the engine that runs a graph: cache keys,
--until, metrics and run.json all follow from what each stage declares."""

import contextlib
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from socialfeat import artifacts, console, storage
from socialfeat.config import ExperimentConfig, to_yaml
from socialfeat.data.reader import Dataset, read_dataset

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stage:
    name: str
    inputs: tuple[str, ...]  # the stages it reads; a stage with none reads the dataset itself
    config: Callable[[ExperimentConfig], dict]  # the slice of the config that keys its cache entry
    compute: Callable[["StageContext", str], dict]  # (context, temporary output directory) -> metrics
    metrics: tuple[str, ...] = ()  # the metric families it reports ("mf" for mf/pr, ...)
    trains: bool = False  # reports per epoch, so a scheduler (ASHA) may stop it
    key_metrics: tuple[str, ...] = ()  # glob patterns `socialfeat compare` shows first
    report: Callable | None = None  # (report context) -> [(title, png file name)] for report.html


@dataclass(frozen=True)
class Method:
    name: str
    description: str
    stages: tuple[Stage, ...]  # declared in an order where every stage follows its inputs
    tasks: Callable[[ExperimentConfig], dict]  # every training task the method offers, sized by the config
    task: Callable[[ExperimentConfig], object] | None = None  # the one the config selects


def stage_map(method: Method) -> dict[str, Stage]:
    return {stage.name: stage for stage in method.stages}


def check_graph(method: Method) -> None:
    """Stage names are unique and every stage follows the stages it reads (so the graph is acyclic)."""
    seen: set[str] = set()
    for stage in method.stages:
        if stage.name in seen:
            raise ValueError(f"method {method.name}: stage {stage.name!r} is declared twice")
        missing = [name for name in stage.inputs if name not in seen]
        if missing:
            raise ValueError(
                f"method {method.name}: stage {stage.name!r} reads {missing}, which are not declared "
                "before it (unknown stages, or a cycle)"
            )
        seen.add(stage.name)


def upstream(method: Method, until: str | None = None) -> list[Stage]:
    """The stages a run up to `until` computes: it and everything it reads, in order (None: every stage)."""
    stages = stage_map(method)
    if until is None:
        return list(method.stages)
    if until not in stages:
        raise ValueError(f"--until {until!r}: not a stage of {method.name}; stages are {', '.join(stages)}")
    needed, pending = set(), [until]
    while pending:
        name = pending.pop()
        if name not in needed:
            needed.add(name)
            pending += stages[name].inputs
    return [stage for stage in method.stages if stage.name in needed]


def metric_stages(method: Method) -> dict[str, str]:
    """{metric family: the stage that reports it}; run/ and stage/ come with every run."""
    first = method.stages[0].name
    return {"run": first, "stage": first} | {family: s.name for s in method.stages for family in s.metrics}


def trains(method: Method, until: str | None = None) -> bool:
    """Whether a run up to `until` trains (a TorchTrainer that reports every epoch)."""
    return any(stage.trains for stage in upstream(method, until))


def describe(method: Method) -> str:
    return f"{method.name}: " + " -> ".join(stage.name for stage in method.stages)


@dataclass
class StageContext:
    """What the stages of one run share: config, stage store, results so far and the dataset."""

    cfg: ExperimentConfig
    out: str
    store: artifacts.StageStore
    progress: bool = False
    remote: str | None = None  # the storage URI this run publishes to; `out` is then its local working copy
    tune_objectives: tuple[str, ...] | None = None  # inside a sweep trial: what its searcher optimises
    # told (result, its key metric patterns) as each stage finishes: the CLI prints a line
    on_stage: Callable[[artifacts.StageResult, tuple[str, ...]], None] | None = None
    results: dict[str, artifacts.StageResult] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    dataset_root: str = ""
    dataset_key: str = ""
    _dataset: Dataset | None = None

    def dataset(self) -> Dataset:
        if self._dataset is None:
            source = self.cfg.data.path if storage.is_uri(self.cfg.data.path) else None
            self._dataset = read_dataset(self.dataset_root, source, self.cfg.images.max_bytes)
        return self._dataset

    def path(self, stage: str, *parts: str) -> str:
        """A completed input stage's directory (or a file in it)."""
        return os.path.join(self.results[stage].path, *parts)

    def checkpoints(self, stage: str) -> str:
        """Where a training stage keeps its checkpoints: keyed by the stage key, not its temporary directory,
        so a retried run (a Tune retry, a rerun after a crash) resumes; a remote run's are in shared storage."""
        name = f"{stage}-{self.keys[stage]}"
        if self.remote:
            return storage.join(self.remote, "checkpoints", name)
        return os.path.join(self.store.root, ".checkpoints", name)


def _synthesise(ctx: StageContext) -> str:
    """Generate the synthetic dataset as a cached stage of its own; returns its directory."""
    from socialfeat.data.synthetic import generate

    synth = ctx.cfg.data.synth

    def compute(tmp: str) -> dict:
        counts = generate(synth, os.path.join(tmp, "dataset"), progress=ctx.progress)
        for name in os.listdir(os.path.join(tmp, "dataset")):
            os.replace(os.path.join(tmp, "dataset", name), os.path.join(tmp, name))
        os.rmdir(os.path.join(tmp, "dataset"))
        return {f"synth/{k}": v for k, v in counts.items()}

    ctx.results["synth"] = ctx.store.run("synth", synth.model_dump(), {}, compute)
    if ctx.on_stage is not None:
        ctx.on_stage(ctx.results["synth"], ("synth/items", "synth/interactions"))
    return ctx.results["synth"].path


def resolve_dataset(ctx: StageContext) -> None:
    """Locate (or synthesise) the dataset; its key covers its source and its table files' bytes."""
    if ctx.cfg.data.path is None:
        ctx.dataset_root = _synthesise(ctx)
        source = f"synth-{ctx.results['synth'].key}"
    else:
        ctx.dataset_root = os.path.abspath(storage.local_dataset(ctx.cfg.data.path))
        # the source, not the local copy's path: a remote run's stages stay valid on any node and cache dir
        source = ctx.cfg.data.path if storage.is_uri(ctx.cfg.data.path) else ctx.dataset_root
    ctx.dataset_key = artifacts.content_hash(
        {"source": source, "bytes": artifacts.dataset_fingerprint(ctx.dataset_root)}
    )


def run_stage(ctx: StageContext, stage: Stage) -> artifacts.StageResult:
    """Reuse or compute one stage, keyed by its config slice and its inputs' keys."""
    config = stage.config(ctx.cfg)
    inputs = {name: ctx.results[name].key for name in stage.inputs} or {"dataset": ctx.dataset_key}
    ctx.keys[stage.name] = ctx.store.key(stage.name, config, inputs)
    result = ctx.store.run(stage.name, config, inputs, lambda tmp: stage.compute(ctx, tmp))
    ctx.results[stage.name] = result
    if ctx.on_stage is not None:
        ctx.on_stage(result, stage.key_metrics)
    if stage.trains and not ctx.remote:  # the stage holds what training made; a remote run's stay shared
        shutil.rmtree(ctx.checkpoints(stage.name), ignore_errors=True)
    return result


def _finish(ctx: StageContext, started: float) -> dict:
    metrics: dict = {}
    for result in ctx.results.values():
        metrics.update(result.metrics)
    reused = [r for r in ctx.results.values() if r.reused]
    metrics.update(
        {
            "run/seconds": time.perf_counter() - started,
            "run/stages": len(ctx.results),
            "run/stages_reused": len(reused),
            "run/seconds_saved_by_reuse": sum(r.original_seconds for r in reused),
        }
    )
    artifacts.write_json(
        os.path.join(ctx.out, "run.json"),
        {
            "experiment": ctx.cfg.name,
            "method": ctx.cfg.method,
            "dataset": ctx.dataset_root,
            "stages": [
                {"name": r.name, "key": r.key, "path": r.path, "reused": r.reused, "seconds": r.seconds}
                for r in ctx.results.values()
            ],
        },
    )
    artifacts.write_json(os.path.join(ctx.out, artifacts.METRICS), metrics)
    return metrics


def method_of(cfg: ExperimentConfig) -> Method:
    from socialfeat.methods import METHODS

    return METHODS[cfg.method]


def check_inputs(cfg: ExperimentConfig, until: str | None) -> None:
    """Fail before any work on a stage name or dataset location that cannot be used."""
    stages = upstream(method_of(cfg), until)  # an unknown --until fails here
    if cfg.data.path is not None and storage.is_uri(cfg.data.path):
        storage.check_dataset(cfg.data.path)
    elif cfg.data.path is not None and not os.path.isdir(cfg.data.path):
        raise FileNotFoundError(f"{cfg.data.path}: dataset directory does not exist (data.path / --data)")
    for stage in stages:
        stage.config(cfg)  # a config slice that reads files (feature files, weights) fails here, before any work


def run_experiment(
    cfg: ExperimentConfig,
    out: str,
    until: str | None = None,
    stage_root: str | None = None,
    progress: bool = False,
    started: float | None = None,
    remote: str | None = None,
    remote_stages: str | None = None,
    tune_objectives: tuple[str, ...] | None = None,
    on_stage: Callable[[artifacts.StageResult, tuple[str, ...]], None] | None = None,
) -> tuple[dict, StageContext]:
    """Run the method's stages up to `until` (inclusive) into `out`; returns (metrics, context).

    With `remote` (a storage URI), `out` is the local working copy: stages are fetched from and
    published to `remote_stages` (default remote/stages) and checkpoints go to remote/checkpoints;
    `publish` then uploads the run's own files. A run directory this call created is removed again if
    the first stage fails, so bad input leaves nothing half-written; a completed stage is always whole.
    One run at a time holds `out` (artifacts.run_lock), and a failed run removes only what it made."""
    check_inputs(cfg, until)
    out = os.path.abspath(out)
    made = _missing_dirs(out)
    os.makedirs(out, exist_ok=True)
    remote_stages = remote_stages or (storage.join(remote, "stages") if remote else None)
    store = artifacts.StageStore(stage_root or os.path.join(out, "stages"), remote_stages)
    ctx = StageContext(cfg, out, store, progress, remote, tune_objectives, on_stage)
    started = started or time.perf_counter()
    with artifacts.run_lock(out), console.run_log(out):
        try:
            artifacts.remove_abandoned_dirs(store.root)
            resolve_dataset(ctx)
            for stage in upstream(method_of(cfg), until):
                run_stage(ctx, stage)
        except BaseException:
            if not ctx.results:
                _remove_own(out, made, store)
            raise
        artifacts.atomic_write_text(os.path.join(out, "config.yaml"), to_yaml(cfg))
        return _finish(ctx, started), ctx


def _missing_dirs(path: str) -> list[str]:
    """`path` and those of its parents that do not exist yet, deepest first."""
    missing = []
    while not os.path.exists(path):
        missing.append(path)
        path = os.path.dirname(path)
    return missing


def _remove_own(out: str, made: list[str], store: artifacts.StageStore) -> None:
    """Undo a run that produced nothing: its lock files, then the directories it made if they are empty.
    Nothing another process wrote is removed (rmdir refuses a non-empty directory)."""
    logs = os.path.join(out, console.LOG_DIR)
    own = [
        os.path.join(out, artifacts.RUN_LOCK),
        os.path.join(logs, console.LOG_FILE),
        os.path.join(logs, console.RAY_LOGS),
    ]
    for path in [*store.lock_files, *(own if made else [])]:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
    for directory in [os.path.join(store.root, ".locks"), store.root, logs, *made]:
        with contextlib.suppress(OSError):
            os.rmdir(directory)


def publish(out: str, remote: str | None) -> None:
    """Upload a run's own files (metrics, config, reports; its stages are uploaded as they complete)."""
    if remote:
        count = storage.upload(out, remote, skip=("stages", artifacts.RUN_LOCK))  # logs/ray, a link, is not walked
        log.info("run %s: %d files published to %s", out, count, remote)
