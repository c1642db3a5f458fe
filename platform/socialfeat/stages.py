"""Stages that declare their inputs, methods as graphs of them, and the engine that runs a graph: cache keys,
--until, metrics and run.json all follow from what each stage declares."""

import contextlib
import dataclasses
import fnmatch
import functools
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from socialfeat import artifacts, console, memory, storage
from socialfeat.config import ConfigView, ExperimentConfig, declared_values, to_yaml
from socialfeat.data import keys
from socialfeat.data.reader import Dataset, read_dataset
from socialfeat.data.synthetic import generate
from socialfeat.errors import UserError
from socialfeat.fingerprint import code_fingerprint

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rounds:
    """A sub-stage that runs once per round r = first..R (R: the config key `count`), each round cached as
    the stage `<name><r>`: round r reads round r-1 besides `inputs`, so raising R reuses the earlier rounds.
    The stage that declares it reads every round (cfl's iterative pseudo classes)."""

    name: str
    count: str
    first: int
    inputs: tuple[str, ...]
    reads: tuple[str, ...]
    compute: Callable[["StageContext", str, int], dict]  # (context, temporary output directory, r) -> metrics
    outputs: tuple[str, ...] = ()
    key_metrics: Callable[[int], tuple[str, ...]] = lambda r: ()
    trains: bool = False
    images: bool = False


@dataclass(frozen=True)
class Stage:
    """One step of a method. Its cache key is built from what it declares: the config keys it `reads` (its
    compute gets a view that refuses any other), its inputs' keys and a fingerprint of the code it runs."""

    name: str
    inputs: tuple[str, ...]  # the stages it reads; a stage with none reads the dataset itself
    reads: tuple[str, ...]  # config keys or whole sections ("split.seed", "training") it reads
    compute: Callable[["StageContext", str], dict]  # (context, temporary output directory) -> metrics
    outputs: tuple[str, ...] = ()  # the files it writes, what later stages may open; "*" patterns, "?" optional
    unkeyed: tuple[str, ...] = ()  # keys it may read that steer how it runs, never what it makes (not keyed)
    derived: Callable[[ConfigView], dict] | None = None  # values from its reads that key it too (file hashes);
    # called before any stage runs, so a missing or unusable file fails first
    metrics: tuple[str, ...] = ()  # the names it reports, as glob patterns ("mf/pr", "retrieval/*/jaccard@*"); an
    # interval's /ci_low and /ci_high come with its name. Runs are held to them (the contract test), sweeps'
    # objectives are checked against them before Ray starts
    trains: bool = False  # reports per epoch, so a scheduler (ASHA) may stop it
    key_metrics: tuple[str, ...] = ()  # glob patterns `socialfeat compare` shows first
    report: Callable | None = None  # (report context) -> [(title, png file name)] for report.html
    rounds: Rounds | None = None  # a sub-stage it runs once per round before itself
    images: bool = False  # reads the dataset's image files: keyed by their fingerprint too (see images_fingerprint)


@dataclass(frozen=True)
class Method:
    name: str
    description: str
    stages: tuple[Stage, ...]  # declared in an order where every stage follows its inputs
    tasks: Callable[[ExperimentConfig], dict]  # every training task the method offers, sized by the config
    task: Callable[[ExperimentConfig], object] | None = None  # the one the config selects
    config: type[ExperimentConfig] = ExperimentConfig  # the shared sections and the method's own


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


def expand(method: Method, cfg: ExperimentConfig | None = None) -> list[Stage]:
    """The method's stages with each Rounds sub-stage laid out as its rounds (none without a config)."""
    stages = []
    for stage in method.stages:
        if stage.rounds is not None and cfg is not None:
            names = _round_stages(stage.rounds, cfg, stage.metrics)
            stages += names
            stage = dataclasses.replace(stage, inputs=(*stage.inputs, *(s.name for s in names)))
        stages.append(stage)
    return stages


def _round_stages(rounds: Rounds, cfg: ExperimentConfig, families: tuple[str, ...]) -> list[Stage]:
    count = declared_values(cfg, (rounds.count,))[rounds.count]
    stages, previous = [], ()
    for number in range(rounds.first, count + 1):
        name = f"{rounds.name}{number}"
        stages.append(
            Stage(
                name,
                (*rounds.inputs, *previous),
                rounds.reads,
                functools.partial(rounds.compute, number=number),
                outputs=rounds.outputs,
                metrics=families,
                trains=rounds.trains,
                key_metrics=rounds.key_metrics(number),
                images=rounds.images,
            )
        )
        previous = (name,)
    return stages


def upstream(method: Method, until: str | None = None, cfg: ExperimentConfig | None = None) -> list[Stage]:
    """The stages a run up to `until` computes: it and everything it reads, in order (None: every stage)."""
    graph = expand(method, cfg)
    stages = {stage.name: stage for stage in graph}
    if until is None:
        return graph
    if until not in stages:
        raise UserError(f"--until {until!r}: not a stage of {method.name}; stages are {', '.join(stages)}")
    needed, pending = set(), [until]
    while pending:
        name = pending.pop()
        if name not in needed:
            needed.add(name)
            pending += stages[name].inputs
    return [stage for stage in graph if stage.name in needed]


# what the engine reports of every run, and a sweep of every trial
RUN_METRICS = (
    "run/seconds",
    "run/stages",
    "run/stages_reused",
    "run/seconds_saved_by_reuse",
    "run/stage_seconds",
    "stage/*/seconds",
    "stage/*/reused",
)
INTERVAL_SUFFIXES = ("/ci_low", "/ci_high")


def declares(patterns: tuple[str, ...], name: str) -> bool:
    """Whether `name` (or the value whose interval it bounds) matches one of the declared patterns."""
    value = next((name.removesuffix(s) for s in INTERVAL_SUFFIXES if name.endswith(s)), name)
    return any(fnmatch.fnmatchcase(value, pattern) for pattern in patterns)


def reporting_stages(method: Method, name: str) -> list[str]:
    """The stages whose declared metrics include `name` (the first stage for the engine's run/ and stage/)."""
    if declares(RUN_METRICS, name):
        return [method.stages[0].name]
    return [stage.name for stage in method.stages if declares(stage.metrics, name)]


def declared_metrics(method: Method) -> list[str]:
    return [*RUN_METRICS, *(pattern for stage in method.stages for pattern in stage.metrics)]


def trains(method: Method, until: str | None = None) -> bool:
    """Whether a run up to `until` trains (a TorchTrainer that reports every epoch)."""
    return any(stage.trains or (stage.rounds and stage.rounds.trains) for stage in upstream(method, until))


def describe(method: Method) -> str:
    return f"{method.name}: " + " -> ".join(stage.name for stage in method.stages)


class UndeclaredOutput(RuntimeError):
    """A stage opened a file another stage does not declare, or wrote or left out one it declares."""


@dataclass
class StageContext:
    """What the stages of one run share: config, stage store, results so far and the dataset. Inside a stage
    it is that stage's own: `cfg` is a view of its declared keys, `results` hold only its inputs."""

    cfg: ExperimentConfig | ConfigView
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
    images_key: str = ""  # the image files' fingerprint, keying the stages that declare images=True
    stage: Stage | None = None  # the stage this context is for (None: the engine's own)
    graph: dict[str, Stage] = field(default_factory=dict)
    _shared: dict = field(default_factory=dict)  # one per run: the dataset, read once, and how to read it

    def dataset(self, log_as: str = "skip") -> Dataset:
        """The run's dataset, read once, without its interactions: the data stage reads them (`log_as` "codes")
        and writes them as codes for the stages after it. A stage that does not declare images=True gets one
        that refuses image reads (its key does not cover the image files)."""
        if log_as != "skip" or "dataset" not in self._shared:
            dataset = self._shared["read"](log_as)
            self._shared["dataset"] = dataclasses.replace(dataset, interactions=None, log=None)
        else:
            dataset = self._shared["dataset"]
        if self.stage is not None and not self.stage.images:
            return dataclasses.replace(dataset, images_refused_for=self.stage.name)
        return dataset

    def forget_tables(self) -> None:
        """Drop the dataset's side tables (tags, social, comments) read by the stage that just ran."""
        if "dataset" in self._shared:
            self._shared["dataset"].side.forget()

    def path(self, stage: str, *parts: str) -> str:
        """A completed input stage's directory (or a file it declares)."""
        if self.stage is not None:
            _check_read(self.stage, self.graph.get(stage), stage, parts)
        return os.path.join(self.results[stage].path, *parts)

    def checkpoints(self, stage: str) -> str:
        """Where a training stage keeps its checkpoints: keyed by the stage key, not its temporary directory,
        so a retried run (a Tune retry, a rerun after a crash) resumes; a remote run's are in shared storage."""
        name = f"{stage}-{self.keys[stage]}"
        if self.remote:
            return storage.join(self.remote, "checkpoints", name)
        return os.path.join(self.store.root, ".checkpoints", name)


def _declares(stage: Stage, name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern.rstrip("?")) for pattern in stage.outputs)


def _check_read(reader: Stage, source: Stage | None, name: str, parts: tuple[str, ...]) -> None:
    if name not in reader.inputs:
        raise UndeclaredOutput(f"stage {reader.name!r} read stage {name!r}, which is not among its inputs")
    if parts and source is not None and not _declares(source, parts[0]):
        raise UndeclaredOutput(
            f"stage {reader.name!r} opened {parts[0]!r} of stage {name!r}, which does not declare it "
            f"(it declares: {', '.join(source.outputs) or 'nothing'})"
        )


def check_outputs(stage: Stage, tmp: str) -> None:
    """A stage wrote exactly what it declares: every required output, and no file it does not name."""
    written = sorted(os.path.relpath(os.path.join(d, f), tmp) for d, _, files in os.walk(tmp) for f in files)
    extra = [name for name in written if not _declares(stage, name)]
    missing = [p for p in stage.outputs if not p.endswith("?") and "*" not in p and p not in written]
    if extra or missing:
        raise UndeclaredOutput(
            f"stage {stage.name!r} wrote {extra or 'every declared file'} and left out {missing or 'nothing'}; "
            f"it declares {', '.join(stage.outputs) or 'no files'}"
        )


def _measured(store: artifacts.StageStore, name: str, key: dict, inputs: dict, compute) -> artifacts.StageResult:
    """store.run with this process's peak RSS while the stage ran (reset first, so not an earlier stage's)."""
    memory.reset_peak_rss()
    result = store.run(name, key, inputs, compute)
    return dataclasses.replace(result, driver_peak_rss_mib=memory.peak_rss_mib())


def _synthesise(ctx: StageContext) -> str:
    """Generate the synthetic dataset as a cached stage of its own; returns its directory."""
    synth = ctx.cfg.data.synth

    def compute(tmp: str) -> dict:
        counts = generate(synth, os.path.join(tmp, "dataset"), progress=ctx.progress)
        for name in os.listdir(os.path.join(tmp, "dataset")):
            os.replace(os.path.join(tmp, "dataset", name), os.path.join(tmp, name))
        os.rmdir(os.path.join(tmp, "dataset"))
        return {f"synth/{k}": v for k, v in counts.items()}

    key = {"synth": synth.model_dump(), "code": code_fingerprint(generate)}
    ctx.results["synth"] = _measured(ctx.store, "synth", key, {}, compute)
    if ctx.on_stage is not None:
        ctx.on_stage(ctx.results["synth"], ("synth/items", "synth/interactions"))
    return ctx.results["synth"].path


def resolve_dataset(ctx: StageContext) -> None:
    """Locate (or synthesise) the dataset; its key covers its source, its table files' bytes, the image
    limits it is read with and the reader's code."""
    if ctx.cfg.data.path is None:
        ctx.dataset_root = _synthesise(ctx)
        source = f"synth-{ctx.results['synth'].key}"
    else:
        ctx.dataset_root = os.path.abspath(storage.local_dataset(ctx.cfg.data.path))
        # the source, not the local copy's path: a remote run's stages stay valid on any node and cache dir
        source = ctx.cfg.data.path if storage.is_uri(ctx.cfg.data.path) else ctx.dataset_root
    uri = ctx.cfg.data.path if storage.is_uri(ctx.cfg.data.path) else None
    root, max_bytes = ctx.dataset_root, ctx.cfg.images.max_bytes
    ctx._shared["read"] = lambda log_as: read_dataset(root, uri, max_bytes, log_as)
    ctx.dataset_key = artifacts.content_hash(
        {
            "source": source,
            "bytes": keys.dataset_fingerprint(ctx.dataset_root),
            "images": ctx.cfg.images.model_dump(),
            "reader": code_fingerprint(read_dataset),
        }
    )
    ctx.images_key = keys.images_fingerprint(ctx.dataset_root)


def _inputs(stage: Stage, keys: dict[str, str], dataset_key: str, images_key: str) -> dict[str, str]:
    """What keys a stage besides its config and code: its inputs' keys (the dataset's for a first stage)
    and, when it reads image files, their fingerprint."""
    inputs = {name: keys[name] for name in stage.inputs} or {"dataset": dataset_key}
    return inputs | ({"images": images_key} if stage.images else {})


def view_of(cfg: ExperimentConfig, stage: Stage) -> ConfigView:
    """The config as `stage` may read it: the keys it declares (keyed or not), nothing else."""
    return ConfigView(cfg, frozenset(stage.reads + stage.unkeyed), stage.name)


def stage_key(cfg: ExperimentConfig, stage: Stage, inputs: dict[str, str]) -> dict:
    """What a stage's cache key is made of: its declared config values, its inputs' keys and its code."""
    return {
        "reads": declared_values(cfg, stage.reads, stage.unkeyed),
        "derived": stage.derived(view_of(cfg, stage)) if stage.derived else {},
        "inputs": inputs,
        "code": code_fingerprint(stage.compute),
    }


def stage_context(ctx: StageContext, stage: Stage) -> StageContext:
    """The context a stage's compute gets: a view of its declared config keys and only its inputs' results."""
    own = (*stage.inputs, stage.name)
    return dataclasses.replace(
        ctx,
        cfg=view_of(ctx.cfg, stage),
        stage=stage,
        results={name: ctx.results[name] for name in stage.inputs},
        keys={name: ctx.keys[name] for name in own if name in ctx.keys},
    )


def plan_keys(
    method: Method, cfg: ExperimentConfig, dataset_key: str, until: str | None = None, images_key: str = ""
) -> dict[str, str]:
    """{stage: its cache key} for a run up to `until`, from the declarations alone (nothing runs): what a
    config change, a code edit or a redrawn image would recompute."""
    keys: dict[str, str] = {}
    for stage in upstream(method, until, cfg):
        inputs = _inputs(stage, keys, dataset_key, images_key)
        keys[stage.name] = artifacts.StageStore.key(stage.name, stage_key(cfg, stage, inputs), inputs)
    return keys


def run_stage(ctx: StageContext, stage: Stage) -> artifacts.StageResult:
    """Reuse or compute one stage, keyed by its declared config values, its inputs' keys and its code."""
    inputs = _inputs(stage, {name: ctx.results[name].key for name in stage.inputs}, ctx.dataset_key, ctx.images_key)
    key = stage_key(ctx.cfg, stage, inputs)
    ctx.keys[stage.name] = ctx.store.key(stage.name, key, inputs)
    own = stage_context(ctx, stage)

    def compute(tmp: str) -> dict:
        metrics = stage.compute(own, tmp)
        check_outputs(stage, tmp)
        return metrics

    try:
        result = _measured(ctx.store, stage.name, key, inputs, compute)
    finally:
        ctx.forget_tables()
        memory.release_arrow()
    ctx.results[stage.name] = result
    if ctx.on_stage is not None:
        ctx.on_stage(result, stage.key_metrics)
    if stage.trains and not ctx.remote:  # the stage holds what training made; a remote run's stay shared
        shutil.rmtree(ctx.checkpoints(stage.name), ignore_errors=True)
    return result


def _finish(ctx: StageContext, method: Method, started: float) -> dict:
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
            # what the method costs whatever the cache held: each stage's seconds, a reused one's when it was made
            "run/stage_seconds": sum(r.original_seconds if r.reused else r.seconds for r in ctx.results.values()),
        }
    )
    # metrics.json, then run.json naming its hash: a run killed between the two leaves a pair that
    # artifacts.check_run_pair refuses, never a new run.json beside an old metrics.json read as one run
    artifacts.write_json(os.path.join(ctx.out, artifacts.METRICS), metrics)
    artifacts.write_json(
        os.path.join(ctx.out, "run.json"),
        {
            "experiment": ctx.cfg.name,
            "method": method.name,
            "dataset": ctx.dataset_root,
            "metrics": artifacts.file_digest(os.path.join(ctx.out, artifacts.METRICS)),
            "stages": [
                {
                    "name": r.name,
                    "key": r.key,
                    "path": r.path,
                    "reused": r.reused,
                    "seconds": r.seconds,
                    "driver_peak_rss_mib": r.driver_peak_rss_mib,
                }
                for r in ctx.results.values()
            ],
        },
    )
    return metrics


def check_inputs(method: Method, cfg: ExperimentConfig, until: str | None) -> None:
    """Fail before any work on a stage name or dataset location that cannot be used."""
    stages = upstream(method, until, cfg)  # an unknown --until fails here
    if cfg.data.path is not None and storage.is_uri(cfg.data.path):
        storage.check_dataset(cfg.data.path)
    elif cfg.data.path is not None and not os.path.isdir(cfg.data.path):
        raise FileNotFoundError(f"{cfg.data.path}: dataset directory does not exist (data.path / --data)")
    for stage in stages:
        if stage.derived is not None:  # reads files (feature files, weights): fails here, before any work
            stage.derived(view_of(cfg, stage))


def run_experiment(
    method: Method,
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
    """Run `method`'s stages up to `until` (inclusive) into `out`; returns (metrics, context).

    With `remote` (a storage URI), `out` is the local working copy: stages are fetched from and
    published to `remote_stages` (default remote/stages) and checkpoints go to remote/checkpoints;
    `publish` then uploads the run's own files. A run directory this call created is removed again if
    the first stage fails, so bad input leaves nothing half-written; a completed stage is always whole.
    One run at a time holds `out` (artifacts.run_lock), and a failed run removes only what it made."""
    check_inputs(method, cfg, until)
    out = os.path.abspath(out)
    made = _missing_dirs(out)
    os.makedirs(out, exist_ok=True)
    remote_stages = remote_stages or (storage.join(remote, "stages") if remote else None)
    store = artifacts.StageStore(stage_root or os.path.join(out, "stages"), remote_stages)
    graph = upstream(method, until, cfg)
    ctx = StageContext(cfg, out, store, progress, remote, tune_objectives, on_stage)
    ctx.graph = {stage.name: stage for stage in graph}
    started = started or time.perf_counter()
    with artifacts.run_lock(out), console.run_log(out):
        try:
            artifacts.remove_abandoned_dirs(store.root)
            artifacts.remove_abandoned_files(out)  # this run holds the lock: a .tmp- file there is a dead run's
            resolve_dataset(ctx)
            for stage in graph:
                run_stage(ctx, stage)
        except BaseException:
            if not ctx.results:
                _remove_own(out, made, store)
            raise
        artifacts.atomic_write_text(os.path.join(out, "config.yaml"), to_yaml(cfg))
        return _finish(ctx, method, started), ctx


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
