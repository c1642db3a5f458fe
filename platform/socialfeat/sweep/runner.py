"""`socialfeat sweep`: a Ray Tune Tuner with OptunaSearch (TPE, define-by-run) over a search space,
every trial a cached pipeline run in the sweep's shared stage store.

Each trial's directory (OUT/trials/<id>: trial.json, then trial_metrics.json, error.txt or stopped.json)
is the record of the sweep. --resume reads it rather than Tune's experiment state, which Ray 2.60
rewrites in place: a driver killed mid-write left it empty in our tests, and Tuner.restore then lost
every trial."""

import contextlib
import difflib
import glob
import logging
import os
import shutil
import sys
import time

import numba
import optuna
import optuna.distributions as d
import ray
import ray.tune
import torch
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch
from ray.util.state import list_actors
from threadpoolctl import threadpool_limits

from socialfeat import storage
from socialfeat.artifacts import atomic_write_text, content_hash, read_json, remove_abandoned_dirs, write_json
from socialfeat.config import ConfigError, ExperimentConfig
from socialfeat.methods import build_config, named
from socialfeat.stages import publish, run_experiment
from socialfeat.sweep.console import LOG_FILE, SweepBoard, TrialLines
from socialfeat.sweep.results import STUDY_NAME, study_storage
from socialfeat.sweep.space import METHOD, SearchSpace, finite, spec_of, suggest, swept_methods, trial_config
from socialfeat.training.task import stage_metric

log = logging.getLogger(__name__)
TUNE_NAME = "tune"
STOPPED = "stopped.json"  # the scheduler (ASHA) ended the trial early: its last per-epoch report
SPACE_RECORD = os.path.join("space", "space.json")  # what the sweep searches, as it started (see check_resumed_space)
NO_STATE_API = (
    "warning: the Ray State API (served by the Ray dashboard) is not reachable, so Ray Train cannot release the "
    "workers of trials that ASHA stops: each keeps its CPUs until this driver exits and later trials may wait for "
    "them. Use a Ray started with its dashboard (`ray start --head` starts it; so does `socialfeat sweep` on a "
    "local Ray)"
)


def trial(
    params: dict,
    base: dict,
    base_params: dict,
    stage_root: str,
    trials_root: str,
    until: str,
    objectives: tuple[str, ...],
    scheduler_metric: str | None = None,
    remote: str | None = None,
) -> None:
    """One Tune trial: the base experiment with `params`, run up to `until` in the shared stage store.

    With `remote` (the sweep's storage URI) stages are shared through remote/stages and the trial's
    record is uploaded to remote/trials/<id>, so trials on any node see each other's work."""

    context = ray.tune.get_context()
    cap_threads(ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0))
    run_dir = _start_record(trials_root, context, params, base_params)
    cfg = trial_config(build_config(base, "the sweep's base experiment"), params, context.get_trial_id())
    remote_trial = storage.join(remote, "trials", context.get_trial_id()) if remote else None
    try:
        metrics, run = run_experiment(
            named(cfg.method),
            cfg,
            run_dir,
            until=until,
            stage_root=stage_root,
            remote=remote_trial,
            remote_stages=remote and storage.join(remote, "stages"),
            tune_objectives=objectives,
        )
        check_objectives(objectives, metrics)
    except Exception as error:
        atomic_write_text(os.path.join(run_dir, "error.txt"), f"{type(error).__name__}: {error}\n")
        publish(run_dir, remote_trial)
        raise
    metrics |= _trial_metrics(metrics, run.results.values(), scheduler_metric)
    write_json(os.path.join(run_dir, "trial_metrics.json"), metrics)  # complete: the resume record
    publish(run_dir, remote_trial)
    ray.tune.report(metrics)


class MissingObjective(ConfigError):
    """The trial ran but reported no value of an objective: its name is not one the stages report."""


def check_objectives(objectives: tuple[str, ...], metrics: dict) -> None:
    """Every objective among the trial's metrics, else one message with the nearest names it did report (the
    check before Ray matches declared patterns: `retrieval/nosuch/jaccard@10` passes it, as a feature set)."""
    for name in objectives:
        if name not in metrics:
            family = [m for m in metrics if m.split("/")[0] == name.split("/")[0]]
            near = difflib.get_close_matches(name, family, n=5, cutoff=0.0)
            raise MissingObjective(
                f"objective metric '{name}' is not among the {len(metrics)} metrics the trial reported "
                f"(nearest: {', '.join(near) or 'none of its family'}); fix 'objectives' in the search space"
            )


def cap_threads(cpus: float) -> int:
    """Hold BLAS, torch and numba to the trial's CPU share (at least one thread): each library otherwise
    starts a thread per core in every concurrent trial, and two trials on 2 cores ran 4+ busy threads."""

    threads = max(1, int(cpus))
    threadpool_limits(limits=threads)  # process-wide from here (a trial owns its worker process)
    torch.set_num_threads(threads)
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    return threads


def _start_record(trials_root: str, context, params: dict, base_params: dict) -> str:
    """The trial's directory with its trial.json (the process it runs in, for operators and failure tests)."""
    run_dir = os.path.join(trials_root, context.get_trial_id())
    os.makedirs(run_dir, exist_ok=True)
    if os.path.exists(os.path.join(run_dir, "error.txt")):
        os.remove(os.path.join(run_dir, "error.txt"))  # a retry
    record = {
        "params": params,
        "started": time.time(),
        "pid": os.getpid(),
        "experiment": context.get_experiment_name(),
        "is_base": bool(base_params) and params == base_params,
    }
    write_json(os.path.join(run_dir, "trial.json"), record)
    return run_dir


def _trial_metrics(metrics: dict, results, scheduler_metric: str | None) -> dict:
    """What each stage took (computed or reused from other trials) and, for trials that trained, ASHA's time
    attribute and metric as the workers reported them in the last epoch."""

    extra = {"reused_stages": ",".join(r.name for r in results if r.reused)}
    for result in results:
        extra |= {f"stage/{result.name}/seconds": result.seconds, f"stage/{result.name}/reused": int(result.reused)}
    if "train/epochs" in metrics:
        extra["epoch"] = metrics["train/epochs"]
        if scheduler_metric:
            extra[scheduler_metric] = metrics[stage_metric(scheduler_metric)]
    return extra


def finished_trials(out: str) -> list[dict]:
    """Trials of this sweep that completed, failed for good or were stopped by the scheduler, oldest
    first: {id, params, metrics|error|stopped}."""
    found = []
    for path in glob.glob(os.path.join(out, "trials", "*", "trial.json")):
        run_dir = os.path.dirname(path)
        record = read_json(path) | {"trial_id": os.path.basename(run_dir), "run_dir": run_dir}
        if os.path.exists(os.path.join(run_dir, "trial_metrics.json")):
            found.append(record | {"metrics": read_json(os.path.join(run_dir, "trial_metrics.json"))})
        elif os.path.exists(os.path.join(run_dir, STOPPED)):
            found.append(record | {"stopped": read_json(os.path.join(run_dir, STOPPED))})
        elif os.path.exists(os.path.join(run_dir, "error.txt")):
            found.append(record | {"error": open(os.path.join(run_dir, "error.txt")).read().strip()})
    return sorted(found, key=lambda r: r["started"])


def base_point(space: SearchSpace, base: ExperimentConfig) -> dict:
    """The base experiment's values for the space's parameters: the sweep's first trial, the yardstick."""
    point = _point_of(space, base)
    outside = [key for key, found in point.items() if not within(spec_of(space, key, point), found)]
    if outside:
        log.warning("the base experiment lies outside the space at %s: it is not evaluated as a trial", outside)
        return {}
    return point


def _point_of(space: SearchSpace, config: ExperimentConfig) -> dict:
    """A config's values for the space's parameters, into the branch of each choice it makes."""
    raw = config.model_dump(mode="json")

    def value(key):
        node = raw
        for part in key.split("."):
            node = node[part]
        return node

    point = {}

    def add(parameters: dict) -> None:
        for key, spec in parameters.items():
            point[key] = value(key)
            choices = spec.get("choice")
            if isinstance(choices, dict) and choices.get(point[key]):
                add(choices[point[key]])

    add(space.parameters)
    return point


def first_points(space: SearchSpace, base: ExperimentConfig, base_params: dict) -> list[dict]:
    """The trials run before Optuna steers: the base experiment (`base_params`, when within the space), then,
    when the method is swept, each other method at its own defaults, so every method is measured at least once."""
    points = [base_params] if base_params else []
    for name in swept_methods(space, base):
        if name == base.method:
            continue
        point = _point_of(space, trial_config(base, {METHOD: name}, f"{name}_defaults"))
        points.append({key: into(spec_of(space, key, point), found) for key, found in point.items()})
    return points


def into(spec: dict, value):
    """`value` if the distribution can produce it, else the nearest it can (a choice's first value)."""
    if within(spec, value):
        return value
    if "choice" in spec:
        return list(spec["choice"])[0]
    low, high = next(spec[k] for k in ("uniform", "loguniform", "int") if k in spec)
    nearest = min(max(value, low), high) if isinstance(value, (int, float)) else low
    return int(round(nearest)) if "int" in spec else float(nearest)


def within(spec: dict, value) -> bool:
    """Whether a distribution can produce `value`."""
    if "choice" in spec:
        return value in list(spec["choice"])
    low, high = next(spec[k] for k in ("uniform", "loguniform", "int") if k in spec)
    return isinstance(value, (int, float)) and low <= value <= high


def max_concurrency(space: SearchSpace, base: ExperimentConfig) -> int:
    """How many trials the cluster holds at once: CPUs (and GPUs) over what one trial needs."""

    resources = ray.cluster_resources()
    needs_cpu = space.trial_cpus + space.data_cpus
    if space.trains:
        needs_cpu += base.training.num_workers * base.training.cpus_per_worker
    fits = int(resources.get("CPU", 1) // max(needs_cpu, 1e-9))
    if space.trial_gpus:
        fits = min(fits, int(resources.get("GPU", 0) // space.trial_gpus))
    if fits < 1:
        raise ConfigError(
            f"{space.path}: one trial needs {needs_cpu:g} CPUs / {space.trial_gpus:g} GPUs; "
            f"the cluster has {resources.get('CPU', 0):g} / {resources.get('GPU', 0):g}"
        )
    return fits


def state_api_reachable() -> bool:
    """Whether this cluster serves the State API (Ray Train's clean-up of stopped trainers needs it)."""

    try:
        list_actors(address=ray.get_runtime_context().gcs_address, limit=1, timeout=5)
        return True
    except Exception:  # any failure means the same here: no State API to rely on
        return False


class DefineByRun:
    """Optuna's define-by-run callback for a space (a class, so Tune can pickle the searcher to resume)."""

    def __init__(self, parameters: dict):
        self.parameters = parameters

    def __call__(self, trial) -> dict:
        return suggest(trial, self.parameters)  # the constants among them are not Optuna's parameters


def _searcher(space: SearchSpace, points: list[dict], done: list[dict], out: str):

    metrics = [o.metric for o in space.objectives]
    modes = [o.mode for o in space.objectives]
    single = len(metrics) == 1

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return ObjectiveOptunaSearch(
        DefineByRun(space.parameters),
        metric=metrics[0] if single else metrics,
        mode=modes[0] if single else modes,
        sampler=optuna.samplers.TPESampler(seed=space.seed + len(done), n_startup_trials=space.startup_trials),
        points_to_evaluate=[p for p in points if p not in [r["params"] for r in done]] or None,  # not yet run
        storage=_resumed_storage(out, done, space),
        study_name=STUDY_NAME,
    )


def _resumed_storage(out: str, done: list[dict], space: SearchSpace):
    """OUT/optuna.db as the earlier driver left it, its trials that were running when it died marked failed.
    Without it (a sweep begun by an earlier socialfeat, or a driver on another machine) the finished trial
    records are replayed into a new one, so TPE goes on from where it was either way."""

    storage = study_storage(out)
    if STUDY_NAME in optuna.get_all_study_names(storage):
        study = optuna.load_study(study_name=STUDY_NAME, storage=storage)
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
    elif done:
        _study_with(done, space, storage)
    return storage


class ObjectiveOptunaSearch(OptunaSearch):
    """OptunaSearch that passes over per-epoch reports (their objectives are NaN placeholders): Ray's
    single-objective OptunaSearch would tell Optuna each one as an intermediate value. The study names its
    objectives after the metrics, so optuna-dashboard's plots read "kmeans/silhouette", not "Objective 0"."""

    def _setup_study(self, mode) -> None:
        super()._setup_study(mode)
        self._ot_study.set_metric_names([self._metric] if isinstance(self._metric, str) else list(self._metric))

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if isinstance(self.metric, str) and finite(result.get(self.metric)):
            super().on_trial_result(trial_id, result)


def _distribution(spec: dict):

    if "choice" in spec:
        return d.CategoricalDistribution(list(spec["choice"]))
    if "int" in spec:
        return d.IntDistribution(int(spec["int"][0]), int(spec["int"][1]), log=bool(spec.get("log", False)))
    low, high = spec.get("uniform") or spec["loguniform"]
    return d.FloatDistribution(low, high, log="loguniform" in spec)


def _study_with(done: list[dict], space: SearchSpace, storage) -> None:
    """The study `storage` filled with an earlier driver's finished trials, from their records."""

    directions = ["minimize" if o.mode == "min" else "maximize" for o in space.objectives]
    study = optuna.create_study(storage=storage, study_name=STUDY_NAME, directions=directions)
    for record in done:
        values = [record.get("metrics", {}).get(o.metric) for o in space.objectives]
        distributions = {key: _distribution(spec_of(space, key, record["params"])) for key in record["params"]}
        state = (
            optuna.trial.TrialState.COMPLETE
            if None not in values
            else optuna.trial.TrialState.PRUNED
            if "stopped" in record
            else optuna.trial.TrialState.FAIL
        )
        study.add_trial(
            optuna.trial.create_trial(
                params=record["params"],
                distributions=distributions,
                state=state,
                values=values if state == optuna.trial.TrialState.COMPLETE else None,
            )
        )


def _scheduler(space: SearchSpace):
    if space.scheduler is None:
        return None

    s = space.scheduler
    # stop_last_trials=False: a trial that trains all max_epochs goes on to evaluate and report its objectives
    return ASHAScheduler(
        time_attr="epoch",
        metric=s.metric,
        mode=s.mode,
        max_t=s.max_epochs,
        grace_period=s.grace_period,
        reduction_factor=s.reduction_factor,
        stop_last_trials=False,
    )


def _trainable(space: SearchSpace, base: ExperimentConfig, point: dict, out: str, remote: str | None):

    fn = tune.with_parameters(
        trial,
        base=base.model_dump(mode="json", exclude_unset=True),
        base_params=point,
        stage_root=os.path.join(out, "stages"),
        trials_root=os.path.join(out, "trials"),
        until=space.until,
        objectives=tuple(o.metric for o in space.objectives),
        scheduler_metric=space.scheduler and space.scheduler.metric,
        remote=remote,
    )
    # One bundle: Ray Data (2.60) schedules its tasks and its parquet footer readers "SPREAD", outside the
    # trial's placement group, so a data bundle inside it would sit idle while the reads wait for CPUs it
    # holds (our CNN trials stalled so). data_cpus is left free instead (see max_concurrency).
    return tune.with_resources(fn, tune.PlacementGroupFactory([{"CPU": space.trial_cpus, "GPU": space.trial_gpus}]))


def space_fingerprint(space: SearchSpace) -> dict:
    """What makes two sweeps the same search: everything but how many trials and where they run."""
    experiment = None
    if space.experiment:
        with open(space.experiment) as handle:
            experiment = handle.read()
    return {
        "experiment": content_hash(experiment),
        "objectives": [[o.metric, o.mode] for o in space.objectives],
        "parameters": space.parameters,
        "until": space.until,
        "seed": space.seed,
        "fixed": space.fixed,
        "startup_trials": space.startup_trials,
        "scheduler": space.scheduler and vars(space.scheduler),
    }


def check_resumed_space(space: SearchSpace, out: str, remote: str | None, resume: bool, anyway: bool) -> None:
    """--resume continues the search it started: another space (or base experiment) would mix its trials with
    the earlier ones, so it is refused unless --resume-anyway says so (before Ray starts)."""
    path = os.path.join(out, SPACE_RECORD)
    if not (resume or anyway):
        return
    if remote:
        storage.download(storage.join(remote, "space"), os.path.dirname(path))
    if not os.path.exists(path):
        return
    recorded, now = read_json(path), space_fingerprint(space)
    changed = sorted(key for key in now if recorded.get(key) != now[key])
    if not changed:
        return
    if not anyway:
        raise ConfigError(
            f"{space.path}: the search space changed since the sweep in {out} started ({', '.join(changed)}); "
            "resuming would mix the trials of both. Use another --out, or --resume-anyway to mix them"
        )
    print(f"warning: resuming with a changed search space ({', '.join(changed)}), as asked", file=sys.stderr)


def _check_out(out: str, resume: bool, remote: str | None) -> None:
    """A new sweep needs an empty `out`, a resumed one an earlier sweep's trial records there."""
    if remote:
        storage.download(storage.join(remote, "trials"), os.path.join(out, "trials"))
    started = bool(glob.glob(os.path.join(out, "trials", "*", "trial.json")))
    if resume and not started:
        raise FileNotFoundError(f"{out}: no sweep to resume here (start one without --resume)")
    if started and not resume:
        raise FileExistsError(f"{out}: holds a sweep already; add --resume to continue it, or choose another --out")
    os.makedirs(out, exist_ok=True)


def _concurrency(space: SearchSpace, base: ExperimentConfig, asked: int | None) -> int:
    fits = max_concurrency(space, base)
    if asked is not None and asked > fits:
        print(f"warning: --concurrency {asked} capped to {fits}: that is what the cluster holds", file=sys.stderr)
    return min(asked or fits, fits)


def run_sweep(
    space: SearchSpace,
    data: str | None,
    out: str,
    samples: int | None = None,
    concurrency: int | None = None,
    resume: bool = False,
    verbose: bool = False,
    remote: str | None = None,
):
    """Run (or resume) the sweep into `out`; the results are in out/trials (see finished_trials). The console
    gets a line per trial; Tune's own tables go to out/sweep.log (`verbose`: to the console too).

    With `remote` (a storage URI) `out` is the driver's working copy: trial records, stages and Tune's
    own files live in `remote`, and out/trials is refreshed from it before and after the trials run."""

    out = os.path.abspath(out)
    base = space.base_config(data)
    _check_out(out, resume, remote)
    if not resume:
        os.makedirs(os.path.join(out, os.path.dirname(SPACE_RECORD)), exist_ok=True)
        write_json(os.path.join(out, SPACE_RECORD), space_fingerprint(space))
        if remote:
            storage.upload(os.path.join(out, "space"), storage.join(remote, "space"))
    concurrency = _concurrency(space, base, concurrency)
    done = finished_trials(out)
    remaining = (samples or space.samples) - len(done)
    if remaining <= 0:
        return None
    name = TUNE_NAME if not resume else f"{TUNE_NAME}-resumed-{len(glob.glob(os.path.join(out, TUNE_NAME + '*')))}"
    if resume:
        print(f"resuming: {len(done)} trial(s) finished earlier are kept", file=sys.stderr)
    objectives = ", ".join(f"{o.metric} ({o.mode})" for o in space.objectives)
    print(
        f"{remaining} trial(s) to run, {concurrency} at a time, each "
        f"{f'up to stage {space.until}' if space.until else 'running its whole method'}; "
        f"objective: {objectives}",
        file=sys.stderr,
    )
    if space.scheduler and not state_api_reachable():
        print(NO_STATE_API, file=sys.stderr)
    point = base_point(space, base)
    points = first_points(space, base, point)
    tuner = tune.Tuner(
        _trainable(space, base, point, out, remote),
        tune_config=tune.TuneConfig(
            search_alg=_searcher(space, points, done, out),
            scheduler=_scheduler(space),
            num_samples=remaining,
            max_concurrent_trials=concurrency,
            # A trial's process is kept for the next one: a fresh actor costs a Python start and the torch
            # and socialfeat imports, ~6 s of CPU per trial on 2 cores. Not under a scheduler: Tune (2.60)
            # errors the next trial when a stopped trial's thread has not ended within 2 s of the stop.
            reuse_actors=space.scheduler is None,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=remote or out,
            verbose=1,
            failure_config=tune.FailureConfig(max_failures=space.max_failures),
            callbacks=[
                TrialLines(space, len(done) + remaining, len(done), os.path.join(out, "trials")),
                SweepBoard(out, space),
            ],
        ),
    )
    # Ctrl-C is a KeyboardInterrupt like anywhere else in the CLI (exit 130, Ray stopped, nothing reported as
    # final): Tune's own handler ends the run as if it had finished, and the driver then printed a best trial
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    with _tune_output(out, verbose):
        results = tuner.fit()
    if remote:  # trials that ran on other nodes left their records only there
        storage.download(storage.join(remote, "trials"), os.path.join(out, "trials"))
    record_stopped(results, out, space.epoch_metrics, remote)
    # stages half-written by killed trials (ASHA stops, a dead driver): with the trials over, nothing finishes them
    remove_abandoned_dirs(os.path.join(out, "stages"), writers_done=True)
    shutil.rmtree(os.path.join(out, "stages", ".checkpoints"), ignore_errors=True)  # of trials that never finished
    return results


@contextlib.contextmanager
def _tune_output(out: str, verbose: bool):
    """Tune prints its tables and a ~90-line box per trial to stdout, and logs each failed attempt's traceback
    (~60 lines): both into OUT/sweep.log, or to the console too. The trial's own line says it failed."""
    if verbose:
        yield
        return
    tune_log = logging.getLogger("ray.tune")
    with open(os.path.join(out, LOG_FILE), "a") as log_file, contextlib.redirect_stdout(log_file):
        handler = logging.StreamHandler(log_file)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        tune_log.addHandler(handler)
        tune_log.propagate = False  # Ray's own console handler sits on the "ray" logger above it
        try:
            yield
        finally:
            tune_log.removeHandler(handler)
            tune_log.propagate = True


def record_stopped(results, out: str, epoch_metrics: tuple[str, ...], remote: str | None) -> None:
    """Write stopped.json for each trial the scheduler ended early (Tune kills its process, so the trial
    cannot say so itself): its last per-epoch report, so results and --resume count it as done."""
    for result in results:
        trial_id = (result.metrics or {}).get("trial_id")
        run_dir = os.path.join(out, "trials", trial_id or "")
        if (
            result.error is not None
            or not os.path.exists(os.path.join(run_dir, "trial.json"))
            or os.path.exists(os.path.join(run_dir, "trial_metrics.json"))
        ):
            continue  # failed, not ours, or finished
        if os.path.exists(os.path.join(run_dir, "error.txt")):  # what the dying trainer raised as Tune stopped it
            os.remove(os.path.join(run_dir, "error.txt"))
        last = {k: result.metrics[k] for k in epoch_metrics if k in result.metrics}
        write_json(os.path.join(run_dir, STOPPED), last)
        log.info("trial %s stopped by the scheduler at epoch %s", trial_id, last.get("epoch"))
        if remote:
            storage.upload(run_dir, storage.join(remote, "trials", trial_id))
