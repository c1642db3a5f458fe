"""The `socialfeat` command line: run, sweep, report, data, config."""

import argparse
import json
import os
import sys
import time

from socialfeat import artifacts, console, storage
from socialfeat.compare import Column, feature_sets, key_metrics, key_patterns, load_runs, table
from socialfeat.config import ConfigError, SynthConfig, to_yaml
from socialfeat.data.check import dataset_counts, image_census
from socialfeat.data.importers import import_movielens
from socialfeat.data.reader import read_dataset_lenient
from socialfeat.data.synthetic import generate
from socialfeat.errors import UserError
from socialfeat.methods import METHODS, load_config, named
from socialfeat.report import write_summary
from socialfeat.report_html import write_html
from socialfeat.stages import Method, check_inputs, describe, publish, run_experiment, trains
from socialfeat.storage import StorageError

USER_ERRORS = (  # what a user can fix: its message alone, exit 2 (any other exception is a bug: its traceback)
    UserError,
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    PermissionError,
    artifacts.NoSpace,
    ConnectionError,
    StorageError,
)


def _add_run(commands) -> None:
    run = commands.add_parser(
        "run", help="run an experiment (default: collaborative feature learning on synthetic data)"
    )
    run.add_argument("experiment", nargs="?", help="experiment YAML (default: built-in cfl_local)")
    run.add_argument("--data", help="dataset directory (overrides data.path); default: synthesise one")
    run.add_argument("--out", help="run directory (default: runs/<experiment name>)")
    run.add_argument("--until", help="stop after this stage")
    _add_verbose(run)
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set factorization.dim=64 (repeatable)",
    )
    run.add_argument(
        "--weights",
        help="also evaluate this torchvision weights file for training.model "
        "(sets evaluation.weights; loaded with weights_only=True, never downloaded)",
    )
    run.add_argument(
        "--features",
        dest="feature_files",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="also evaluate a feature file (parquet: item_id, vector) as NAME (repeatable)",
    )
    run.add_argument("--address", help="Ray cluster to join (default: RAY_ADDRESS, else a local Ray)")
    run.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="repeat the run N times, every seed key but the data's moved by 0..N-1 (OUT/seed<s>), and report "
        "each metric's mean and spread (OUT/seeds.json)",
    )
    run.set_defaults(handler=cmd_run)


def _add_data(commands) -> None:
    data = commands.add_parser("data", help="create, import and check datasets").add_subparsers(
        dest="data_command", required=True
    )
    check = data.add_parser("check", help="validate a dataset directory and print its counts")
    check.add_argument("directory")
    check.add_argument("--json", action="store_true", help="print the counts as JSON")
    check.add_argument(
        "--max-bytes", type=int, default=None, help="refuse image files larger than this (images.max_bytes; 32 MiB)"
    )
    check.set_defaults(handler=cmd_data_check)
    synth = data.add_parser("synth", help="generate the synthetic social-media dataset")
    synth.add_argument("--out", required=True)
    for flag, kind in (
        ("users", int),
        ("items", int),
        ("styles", int),
        ("seed", int),
        ("mean-views", float),
        ("image-size", int),
        ("tag-probability", float),
        ("foreign-fraction", float),
        ("shards", int),
    ):
        synth.add_argument(
            f"--{flag}", type=kind, help=f"synth.{flag.replace('-', '_')} (see `socialfeat config show`)"
        )
    synth.set_defaults(handler=cmd_data_synth)
    movielens = data.add_parser("import-movielens", help="convert MovieLens CSVs + <movieId>.jpg posters")
    for flag in ("ratings", "movies", "posters", "out"):
        movielens.add_argument(f"--{flag}", required=True)
    movielens.add_argument("--tags")
    movielens.add_argument("--shards", type=int, default=1, help="files per table (1: items.parquet; N: items/ of N)")
    movielens.set_defaults(handler=cmd_import_movielens)


def _add_verbose(parser, default=argparse.SUPPRESS) -> None:
    """-v / --verbose before or after the command (SUPPRESS: a command's flag never resets the global one)."""
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=default,
        help="print every log line (Ray's too) instead of writing them to RUN/logs/ only",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="socialfeat", description="Learn image features from user behaviour, on Ray.")
    _add_verbose(parser, default=False)
    commands = parser.add_subparsers(dest="command", required=True)
    _add_run(commands)
    sweep = commands.add_parser("sweep", help="sweep hyperparameters with Ray Tune + Optuna (see search_spaces/)")
    sweep.add_argument("space", help="search-space YAML")
    _add_verbose(sweep)
    sweep.add_argument("--data", help="dataset directory (overrides the base experiment's data.path)")
    sweep.add_argument("--out", help="sweep directory (default: sweeps/<space name>)")
    sweep.add_argument(
        "--samples", type=int, help="trials (default: the file's samples); the first is the base experiment"
    )
    sweep.add_argument("--concurrency", type=int, help="trials at once (default and cap: what the cluster holds)")
    sweep.add_argument("--resume", action="store_true", help="continue a sweep whose driver died")
    sweep.add_argument(
        "--resume-anyway",
        action="store_true",
        help="resume even though the search space changed since the sweep started (its trials are mixed)",
    )
    sweep.add_argument("--address", help="Ray cluster to join (default: RAY_ADDRESS, else a local Ray)")
    sweep.set_defaults(handler=cmd_sweep)
    report = commands.add_parser("report", help="write a run's report.html and report.md, or a sweep's report.html")
    report.add_argument("run_dir", help="a run directory, or a sweep's --out")
    report.set_defaults(handler=cmd_report)
    compare = commands.add_parser(
        "compare",
        help="one table of the key metrics across runs (or feature sets), with 95%% intervals and a paired "
        "bootstrap test against the first column",
    )
    compare.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    compare.add_argument(
        "--sets",
        type=lambda text: [name for name in text.split(",") if name],
        metavar="A,B,...",
        help="compare these feature sets of one run, e.g. cnn,random_cnn (the first is the reference)",
    )
    compare.add_argument(
        "--metric",
        dest="patterns",
        action="append",
        metavar="GLOB",
        help="metrics to show, e.g. 'retrieval/*/jaccard@*' (repeatable; default: the key ones)",
    )
    compare.add_argument("--format", choices=("text", "csv", "markdown"), default="text")
    compare.set_defaults(handler=cmd_compare)
    _add_data(commands)
    methods = commands.add_parser("methods", help="list the methods and their stages in order")
    methods.set_defaults(handler=cmd_methods)
    config = commands.add_parser("config", help="print an experiment's resolved config")
    config.add_argument("experiment", nargs="?")
    config.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    config.set_defaults(handler=cmd_config)
    return parser


def cmd_run(args) -> int:
    # Ray and Tune load only for the commands that start them
    from socialfeat.distributed.cluster import check_cluster, connect

    started = time.perf_counter()  # run/seconds counts Ray's start too: it is the user's wall time
    if args.seeds < 1:
        raise ConfigError(f"--seeds {args.seeds}: need at least one run")
    cfg = load_config(args.experiment, _overrides(args))
    method = named(cfg.method, args.experiment or "defaults")
    target = args.out or os.path.join("runs", cfg.name)
    remote = target if storage.is_uri(target) else None
    if remote and args.seeds > 1:
        raise ConfigError("--seeds: the repeats write to a local --out (a storage URI is not supported yet)")
    check_inputs(method, cfg, args.until)
    if remote:  # a missing bucket or a refused write fails here, before Ray starts
        storage.check_writable(remote)
    out = storage.cache_dir(remote, "runs") if remote else target
    artifacts.check_writable_dir(out)  # a read-only or misplaced --out fails here, before Ray starts
    where = connect(args.address or cfg.ray.address, cfg.ray.num_cpus)
    check_cluster(where, cfg, out_is_remote=bool(remote), trains=trains(method, args.until))
    if args.seeds > 1:
        return _run_seeds(args, cfg, method, out, where)
    print(f"socialfeat run: {cfg.name} -> {target} (Ray: {where})")
    _run_once(args, cfg, method, out=out, remote=remote, started=started)
    return 0


def _run_once(args, cfg, method: Method, *, out: str, remote: str | None, started: float, stage_root=None) -> dict:
    metrics, run = run_experiment(
        method,
        cfg,
        out,
        until=args.until,
        stage_root=stage_root,
        progress=sys.stderr.isatty(),
        started=started,
        remote=remote,
        on_stage=lambda result, patterns: print(console.stage_line(result, patterns), flush=True),
    )
    write_summary(out)
    report = write_html(out, method)
    publish(out, remote)
    shown = remote or out
    print(f"report: {storage.join(remote, os.path.basename(report)) if remote else report}")
    metrics_file, config_file = storage.join(shown, "metrics.json"), storage.join(shown, "config.yaml")
    print(f"metrics: {metrics_file} ({len(metrics)} values); config: {config_file}")
    print(f"logs: {storage.join(shown, console.LOG_DIR)} ({run.cfg.name} took {metrics['run/seconds']:.0f}s)")
    return metrics


def _run_seeds(args, cfg, method: Method, out: str, where: str) -> int:
    """The run repeated with its seeds moved by 0..N-1, each in OUT/seed<s> (the stages in OUT/stages, so
    the seed-free ones, data and filter, are made once); then each key metric's mean and spread."""
    from socialfeat.seeds import mean_line, seed_keys, seed_overrides, write_seeds

    runs = []
    for repeat in range(args.seeds):
        seeded = load_config(args.experiment, _overrides(args) + seed_overrides(cfg, repeat))
        run_dir = os.path.join(out, f"seed{repeat}")
        print(f"socialfeat run: {cfg.name}, seed +{repeat} of {args.seeds} -> {run_dir} (Ray: {where})")
        stages = os.path.join(out, "stages")
        runs.append(
            _run_once(args, seeded, method, out=run_dir, remote=None, started=time.perf_counter(), stage_root=stages)
        )
    path = write_seeds(out, runs, seed_keys(cfg))
    summary = artifacts.read_json(path)["metrics"]
    shown = [n for n in key_metrics({"seeds": Column(summary)}, key_patterns([method])) if n in summary]
    print(f"over {args.seeds} seeds ({', '.join(seed_keys(cfg))}): mean ± sd (min .. max)")
    for name in shown:
        print(mean_line(name, summary[name]))
    print(f"seeds: {path}")
    return 0


def _overrides(args) -> list[str]:
    """--set, --data, --weights and --features as config overrides."""
    overrides = list(args.overrides) + ([f"data.path={args.data}"] if args.data else [])
    overrides += [f"evaluation.weights={os.path.abspath(args.weights)}"] if args.weights else []
    return overrides + [f"evaluation.feature_files.{_named_file(text)}" for text in args.feature_files]


def _named_file(text: str) -> str:
    """'NAME=PATH' checked, for --features."""
    name, sep, path = text.partition("=")
    if not sep or not name or not path or "." in name:
        raise ConfigError(f"--features {text!r}: expected NAME=PATH (NAME without dots)")
    return f"{name}={os.path.abspath(path)}"


def cmd_compare(args) -> int:

    runs = load_runs(args.run_dirs)
    if args.sets:
        if len(runs) != 1 or len(args.sets) < 2:
            print("error: --sets compares two or more feature sets of one run directory", file=sys.stderr)
            return 2
        runs = feature_sets(next(iter(runs.values())), args.sets)
    patterns = tuple(args.patterns or key_patterns(METHODS.values()))
    names = key_metrics(runs, patterns)
    if not names:
        print(f"error: no metric matches {patterns} in these runs", file=sys.stderr)
        return 1
    print(table(runs, names, args.format))
    return 0


def cmd_data_check(args) -> int:

    dataset, problems = read_dataset_lenient(args.directory, log_as="codes")  # never the log as strings
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if dataset is None or problems:
        return 1
    dataset.max_bytes = args.max_bytes or dataset.max_bytes
    counts = dataset_counts(dataset)
    census = image_census(dataset, progress=sys.stderr.isatty())
    counts.update(census["counts"])
    if args.json:
        print(json.dumps(counts, indent=2))
    else:
        width = max(map(len, counts))
        print(
            "\n".join(
                f"{key:<{width}}  {value:,.6g}" if isinstance(value, float) else f"{key:<{width}}  {value:,}"
                for key, value in counts.items()
            )
        )
    for kind, example in census["examples"].items():
        print(f"note: first {kind} image: {example}", file=sys.stderr)
    for refusal in census["refused"][:20]:
        print(f"note: refused image: {refusal}", file=sys.stderr)
    if len(census["refused"]) > 20:
        print(f"note: ... and {len(census['refused']) - 20} more refused images", file=sys.stderr)
    return 0


def cmd_data_synth(args) -> int:

    given = {k: v for k, v in vars(args).items() if k in SynthConfig.model_fields and v is not None}
    try:
        cfg = SynthConfig(**given)
    except Exception as error:  # pydantic names the field
        raise ConfigError(f"data synth: {error}") from None
    counts = generate(cfg, args.out, progress=sys.stderr.isatty())
    print(json.dumps(counts))
    return 0


def cmd_import_movielens(args) -> int:

    if args.shards < 1:
        raise ConfigError(f"import-movielens: --shards must be 1 or more (got {args.shards})")
    counts = import_movielens(
        args.ratings, args.movies, args.posters, args.out, args.tags, progress=sys.stderr.isatty(), shards=args.shards
    )
    print(json.dumps(counts, indent=2))
    if counts["items_without_poster"]:
        print(
            f"note: {counts['items_without_poster']} movies have no poster: kept for factorisation only",
            file=sys.stderr,
        )
    return 0


def cmd_sweep(args) -> int:
    # Ray, Tune and Optuna load only for the commands that start them
    from socialfeat.sweep.space import load_space

    space = load_space(args.space)
    if args.samples is not None and args.samples < 1:
        raise ConfigError(f"--samples {args.samples}: need at least one trial")
    if args.data and storage.is_uri(args.data):
        storage.check_dataset(args.data)
    elif args.data and not os.path.isdir(args.data):
        raise FileNotFoundError(f"{args.data}: dataset directory does not exist (--data)")
    target = args.out or os.path.join("sweeps", os.path.splitext(os.path.basename(args.space))[0])
    remote = target if storage.is_uri(target) else None
    if remote:
        storage.check_writable(remote)
    out = storage.cache_dir(remote, "sweeps") if remote else os.path.abspath(target)
    artifacts.check_writable_dir(out)
    os.makedirs(out, exist_ok=True)
    with artifacts.run_lock(out, "sweep"):  # one driver per sweep directory, as one run per run directory
        return _sweep_locked(args, space, out, remote)


def _sweep_locked(args, space, out: str, remote: str | None) -> int:
    # Ray, Tune and Optuna load only for the commands that start them
    from socialfeat.distributed.cluster import check_cluster, connect
    from socialfeat.sweep.console import BOARD_DIR, LOG_FILE, top_table
    from socialfeat.sweep.report import write_sweep_report
    from socialfeat.sweep.results import STUDY_DB, write_results
    from socialfeat.sweep.runner import check_resumed_space, finished_trials, run_sweep

    check_resumed_space(space, out, remote, args.resume, args.resume_anyway)
    where = connect(args.address, dashboard=space.trains)
    # the base experiment's training shape; a trial that changes it is Tune's to place
    check_cluster(where, space.base_config(args.data), out_is_remote=bool(remote), trains=space.trains)
    shown = remote or out
    print(f"socialfeat sweep: {args.space} -> {shown} (Ray: {where})", file=sys.stderr)
    print(
        f"dashboards: tensorboard --logdir {os.path.join(out, BOARD_DIR)} | optuna-dashboard "
        f"sqlite:///{os.path.join(out, STUDY_DB)} (pip install 'socialfeat[dashboards]')",
        file=sys.stderr,
    )
    if not args.verbose:
        print(f"Tune's own tables: {os.path.join(out, LOG_FILE)} (--verbose shows them here)", file=sys.stderr)
    data = args.data if args.data and storage.is_uri(args.data) else args.data and os.path.abspath(args.data)
    run_sweep(
        space,
        data,
        out,
        args.samples,
        args.concurrency,
        args.resume or args.resume_anyway,
        verbose=args.verbose,
        remote=remote,
    )
    records = finished_trials(out)
    summary, frame = write_results(records, space, out)
    if remote:
        storage.upload(out, remote, skip=("stages", "trials", "tune", artifacts.SWEEP_LOCK))
    if frame is not None:
        print(top_table(frame, space))
        print(f"report: {write_sweep_report(out)}", file=sys.stderr)
    if "best_trial" not in summary:
        names = ", ".join(o.metric for o in space.objectives)
        errors = [r["error"] for r in records if r.get("error")]
        first = f"; the first trial's error: {errors[0].splitlines()[0]}" if errors else ""
        print(
            f"error: no trial reported {names}{first}; see {shown}/results.csv for every trial's error", file=sys.stderr
        )
        return 1
    _explain(summary, shown)
    return 0


def _explain(summary: dict, out: str) -> None:
    """Which configuration won, and by how much over the base experiment."""
    gains = [
        f"{metric} {value:.4g} (base {summary['base'][metric]:.4g})"
        if metric in summary["base"]
        else f"{metric} {value:.4g}"
        for metric, value in summary["best"].items()
    ]
    params = ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in summary["best_params"].items()
    )
    print(f"best trial {summary['best_trial']}: {'; '.join(gains)} with {params}", file=sys.stderr)
    print(f"results: {out}/results.csv; rerun the winner: socialfeat run {out}/best.yaml", file=sys.stderr)


def cmd_report(args) -> int:
    from socialfeat.sweep.report import is_sweep, write_sweep_report

    if is_sweep(args.run_dir):
        print(write_sweep_report(args.run_dir))
        return 0
    artifacts.check_run_pair(args.run_dir)

    print(write_summary(args.run_dir))
    print(write_html(args.run_dir, method_of_run(args.run_dir)))
    return 0


def method_of_run(run_dir: str) -> Method:
    """The method a finished run directory was made by (its run.json says)."""
    path = os.path.join(run_dir, "run.json")
    try:
        run = artifacts.read_json(path)
    except (OSError, ValueError) as error:
        raise UserError(f"{path}: not a readable run record ({error}); is {run_dir} a run directory?") from None
    if not isinstance(run, dict) or not isinstance(run.get("method", "cfl"), str):
        raise UserError(f"{path}: not a run record (no method name)")
    return named(run.get("method", "cfl"), path)


def cmd_methods(args) -> int:

    for method in METHODS.values():
        print(describe(method))
    return 0


def cmd_config(args) -> int:
    print(to_yaml(load_config(args.experiment, args.overrides)), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console.setup(args.verbose)
    try:
        return args.handler(args)
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # finished stages are whole and kept; the unfinished one's temporary directory is gone (atomic_dir)
        if args.handler is cmd_sweep:
            print("interrupted: finished trials are kept; run the same command with --resume", file=sys.stderr)
        else:
            print("interrupted: finished stages are kept; run the same command again to resume", file=sys.stderr)
        _stop_local_ray()
        return 130


def _stop_local_ray() -> None:
    """Stop the Ray this process started now, not at interpreter exit, so no worker of the run outlives it."""
    if "ray" in sys.modules:
        import ray  # already loaded (checked above): this only names it

        if ray.is_initialized():
            ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
