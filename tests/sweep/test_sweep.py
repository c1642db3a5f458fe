"""`socialfeat sweep`: search-space files, shared stages across trials, failed trials, a killed driver."""

import glob
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pandas as pd
import psutil
import pytest
import yaml

from conftest import SHRINK, _free_port, as_at_a_terminal, space_file
from socialfeat.cli import main
from socialfeat.config import ConfigError
from socialfeat.methods import load_config
from socialfeat.sweep.space import load_space, spec_of, trial_config


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"space": {"factorization.lambda": {"loguniform": [0.1, 1]}}}, "'lambda' is not a key of factorization"),
        ({"space": {"factorization.reg": {"loguniform": [1, 0.1]}}}, "empty or inverted range [1, 0.1]"),
        ({"space": {"factorization.reg": {"uniform": [0.5, 0.5]}}}, "empty or inverted range"),
        ({"space": {"factorization.reg": {"normal": [0, 1]}}}, "give exactly one of uniform, loguniform, int, choice"),
        ({"objectives": [{"metric": "accuracy", "mode": "max"}]}, "'accuracy' is reported by no stage"),
        ({"objectives": [{"metric": "retrieval/cnn/jaccard@10", "mode": "max"}]}, "trials stop after kmeans"),
        # a name in a stage's family that no stage declares, refused before Ray starts, with the nearest ones
        ({"objectives": [{"metric": "mf/nosuch", "mode": "min"}]}, "'mf/nosuch' is reported by no stage of cfl"),
        ({"objectives": [{"metric": "kmeans/nmii", "mode": "max"}]}, "(nearest names its stages report: kmeans/nmi"),
        ({"objectives": [{"metric": "retrieval/cnn/jacard@10", "mode": "max"}]}, "retrieval/*/jaccard@*"),
        # the method as a dimension: registered methods, each branch keyed by its own method's sections
        ({"space": {"method": {"choice": {"cfl": None, "nosuch": None}}}}, "unknown method(s) ['nosuch']"),
        ({"space": {"method": {"int": [1, 2]}}}, "the method is chosen, not drawn"),
        (
            {"space": {"method": {"choice": {"words": {"clustering.k": {"int": [4, 8]}}}}}},
            "space key 'clustering.k': 'clustering' is not a key of the experiment",
        ),
        (
            {"until": "rounds", "space": {"method": {"choice": ["cfl", "words"]}}},
            "until 'rounds' is not a stage of words",
        ),
        (
            {
                "space": {
                    "method": {
                        "choice": {
                            "cfl": {"training.epochs": {"choice": [1, 3]}},
                            "words": {"training.epochs": {"choice": [1, 5]}},
                        }
                    }
                }
            },
            "space key 'training.epochs' is drawn from {'choice': [1, 3]} in one branch and {'choice': [1, 5]}",
        ),
        (
            {
                "until": "train",
                "objectives": [{"metric": "train/holdout_loss_vs_chance", "mode": "min"}],
                "scheduler": {"grace_period": 1, "max_epochs": 3},
                "space": {"method": {"choice": ["cfl", "words"]}},
            },
            "sweep the method without a scheduler",
        ),
        ({"space": {}}, "'space' is empty"),
        ({"samples": "two"}, "samples = 'two' is not a whole number"),
        ({"samples": 0}, "samples = 0 must be at least 1"),
        ({"trial_resources": {"cpu": -1}}, "trial_resources.cpu = -1 must be at least 0"),
        ({"space": {"clustering.k": {"int": [0, 50], "log": True}}}, "log: true needs a low bound of at least 1"),
        ({"sampels": 3}, "unknown search-space key(s) ['sampels']"),
        (
            {"scheduler": {"grace_period": 1, "max_epochs": 3}},
            "needs trials that train the CNN; they stop after kmeans",
        ),
        (
            {"until": "train", "scheduler": {"grace_period": 1, "max_epochs": 3, "metric": "val_acc"}},
            "scheduler metric 'val_acc' is not reported every epoch",
        ),
        ({"until": "train", "scheduler": {"grace_period": 1}}, "scheduler needs grace_period and max_epochs"),
        (
            {"until": "train", "scheduler": {"grace_period": 5, "max_epochs": 3}},
            "grace_period 5 must lie in 1..max_epochs 3",
        ),
    ],
)
def test_bad_search_spaces_are_named(tmp_path, fields, message):
    with pytest.raises(ConfigError) as error:
        load_space(space_file(tmp_path, **fields))
    assert message in str(error.value) and "space.yaml" in str(error.value)


def test_shipped_search_spaces_load():
    spaces = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "..", "search_spaces", "*.yaml")))
    assert len(spaces) >= 3
    for path in spaces:
        assert load_space(path).parameters


def test_a_trial_that_switches_engine_gets_that_engines_defaults_and_range():
    space = load_space(os.path.join(os.path.dirname(__file__), "..", "..", "search_spaces", "cfl_factorization.yaml"))
    base = space.base_config(None)
    assert (base.factorization.engine, base.factorization.reg, base.factorization.epochs) == ("als", 5.0, 15)
    point = {"factorization.engine": "implicit_bpr", "factorization.reg": 0.02, "factorization.dim": 32}
    bpr = trial_config(base, point, "t1").factorization
    assert (bpr.reg, bpr.epochs, bpr.learning_rate, bpr.dim) == (0.02, 105, 0.01, 32)  # epochs: BPR's, not als's
    assert spec_of(space, "factorization.reg", point) == {"loguniform": [0.001, 0.1]}
    assert spec_of(space, "factorization.reg", {"factorization.engine": "als"}) == {"loguniform": [0.5, 50.0]}
    pinned = load_config(None, ["factorization.epochs=30", "factorization.engine=implicit_bpr"]).factorization
    assert (pinned.epochs, pinned.reg) == (30, 0.01)  # a value the experiment sets is kept


@pytest.mark.slow
def test_a_k_sweep_factorises_once_and_reports_which_stages_each_trial_reused(ray_session, synth_dir, tmp_path, capsys):
    out = str(tmp_path / "sweep")
    assert main(["sweep", space_file(tmp_path), "--data", synth_dir, "--out", out, "--concurrency", "5"]) == 0
    printed = capsys.readouterr()
    assert "capped to 2" in printed.err  # 2 CPUs, 1 per trial
    _check_console(printed, out, trials=3, objective="kmeans/silhouette")
    results = pd.read_csv(os.path.join(out, "results.csv"))
    assert len(results) == 3 and results["trial_id"].is_unique and (results["status"] == "TERMINATED").all()
    assert results["is_base"].sum() == 1 and results.loc[results["is_base"], "param/clustering.k"].item() == 6
    assert results["stage/factorization/reused"].sum() == 2  # computed by one trial, reused by the others
    assert results["reused_stages"].fillna("").str.contains("factorization").sum() == 2
    assert len(glob.glob(os.path.join(out, "stages", "factorization-*"))) == 1
    pids = [json.load(open(p))["pid"] for p in glob.glob(os.path.join(out, "trials", "*", "trial.json"))]
    assert len(pids) == 3 and len(set(pids)) <= 2  # the third trial ran in a process a finished one left
    assert results["stage/kmeans/reused"].sum() == len(results) - results["param/clustering.k"].nunique()
    best = yaml.safe_load(open(os.path.join(out, "best.yaml")))
    winner = results.loc[results["kmeans/silhouette"].idxmax()]
    assert best["clustering"]["k"] == winner["param/clustering.k"] and best["data"]["path"] == os.path.abspath(
        synth_dir
    )
    for plot in ("history.png", "parameters.png", "importance.png"):
        assert os.path.getsize(os.path.join(out, "plots", plot)) > 1000
    page = open(os.path.join(out, "report.html")).read()  # the sweep's report: the answer, plots, every trial
    assert page.count("<tr class=") == 3 and page.count("<tr class='best'>") == 1
    assert f"{winner['trial_id']}" in page.split("<p class='summary'>")[1].split("</p>")[0]
    os.remove(os.path.join(out, "report.html"))
    assert main(["report", out]) == 0 and os.path.exists(os.path.join(out, "report.html"))
    boards = _board_runs(out)
    assert sorted(boards) == sorted(results["trial_id"])  # one TensorBoard run per trial
    for trial_id, board in boards.items():  # its objective and parameters, not the ~70 data counts
        silhouette = results.set_index("trial_id").loc[trial_id, "kmeans/silhouette"]
        assert board.Tags()["scalars"] == ["kmeans/silhouette"]
        assert board.Scalars("kmeans/silhouette")[0].value == pytest.approx(silhouette, rel=1e-6)
        assert "_hparams_/session_start_info" in board.PluginTagToContent("hparams")
    assert not glob.glob(os.path.join(out, "tune", "**", "events.out.tfevents.*"), recursive=True)  # Tune's own
    assert main(["sweep", space_file(tmp_path), "--data", synth_dir, "--out", out]) == 2  # no silent overwrite
    assert "--resume" in capsys.readouterr().err
    study = _dashboard_study(os.path.join(out, "optuna.db"))  # the study, as optuna-dashboard shows it
    assert study["objective_names"] == ["kmeans/silhouette"]  # the plots' axis, not "Objective 0"
    served = study["trials"]
    assert [t["state"] for t in served] == ["Complete"] * 3
    served_k = sorted(int(t["params"][0]["param_external_value"]) for t in served)
    assert served_k == sorted(results["param/clustering.k"])  # numbered by Optuna in its own order


def _check_console(printed, out: str, trials: int, objective: str) -> None:
    """A sweep's console: a few lines of header, one per trial (numbered, with its objective and the best so
    far), the top trials; Tune's tables and trial boxes are in sweep.log instead."""
    lines = (printed.out + printed.err).strip().splitlines()
    assert len(lines) <= 25 + trials, "\n".join(lines)
    ended = [line for line in lines if line.startswith("[") and f"/{trials}]" in line]
    assert [line.split("]")[0] for line in ended] == [f"[{n}/{trials}" for n in range(1, trials + 1)]
    assert all("| best" in line for line in ended)
    assert sum(f"{objective} " in line for line in ended) == trials
    assert f"by {objective}" in printed.out and printed.out.count("\n") <= 2 + 5  # title, header, top 5
    assert printed.err.count("tensorboard --logdir") == 1 and "Trial status" not in printed.out + printed.err
    assert "Trial status" in open(os.path.join(out, "sweep.log")).read()


def _board_runs(out: str) -> dict:
    """The sweep's TensorBoard runs (OUT/tensorboard/<trial>), each read back as TensorBoard reads it."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    boards = {}
    for directory in glob.glob(os.path.join(out, "tensorboard", "*")):
        boards[os.path.basename(directory)] = EventAccumulator(directory)
        boards[os.path.basename(directory)].Reload()
    return boards


def _dashboard_study(db: str) -> dict:
    """The sweep's study (its trials, its metric names) as optuna-dashboard, started on 127.0.0.1 and stopped
    after, serves it."""
    port = _free_port()
    command = [os.path.join(os.path.dirname(sys.executable), "optuna-dashboard"), f"sqlite:///{db}"]
    server = subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    api = f"http://127.0.0.1:{port}/api/studies"
    try:
        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(api, timeout=5) as reply:
                    studies = json.load(reply)["study_summaries"]
                break
            except OSError:
                assert server.poll() is None and time.time() < deadline, "optuna-dashboard did not start"
                time.sleep(0.5)
        (study,) = [s for s in studies if s["study_name"] == "sweep"]
        with urllib.request.urlopen(f"{api}/{study['study_id']}", timeout=30) as reply:
            return json.load(reply)
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.mark.slow
def test_a_failing_trial_is_retried_then_recorded_without_stopping_the_sweep(ray_session, synth_dir, tmp_path, capsys):
    # the base trial (k=6) works; a k drawn from up to 100,000 exceeds the ~360 items and raises
    space = space_file(tmp_path, samples=2, max_failures=1, space={"clustering.k": {"int": [4, 100000]}})
    out = str(tmp_path / "sweep")
    assert main(["sweep", space, "--data", synth_dir, "--out", out]) == 0
    failed = [line for line in capsys.readouterr().err.splitlines() if line.startswith("[2/2]")]
    assert len(failed) == 1 and "ERROR ClusteringError" in failed[0]  # its own line, once, after its retry
    results = pd.read_csv(os.path.join(out, "results.csv")).set_index("number")
    assert results.loc[1, "status"] == "TERMINATED" and results.loc[2, "status"] == "ERROR"
    assert "is larger than the" in results.loc[2, "error"] and "items to cluster" in results.loc[2, "error"]
    attempts = glob.glob(os.path.join(out, "tune", "trial_*_2_*", "error*.txt"))
    assert attempts, "the failure is kept beside the trial"


def _finished(out: str) -> dict:
    return {path: os.path.getmtime(path) for path in glob.glob(os.path.join(out, "trials", "*", "metrics.json"))}


def _driver(space: str, data: str, out: str, *extra: str, ray_address: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "socialfeat", "sweep", space, "--data", data, "--out", out, "--concurrency", "1"]
    return subprocess.Popen(
        [*command, *extra],
        env=os.environ | {"RAY_ADDRESS": ray_address},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=as_at_a_terminal,
    )


def _wait_for(out: str, trials: int, driver: subprocess.Popen) -> None:
    deadline = time.time() + 240
    while len(_finished(out)) < trials and driver.poll() is None and time.time() < deadline:
        time.sleep(0.5)
    assert driver.poll() is None, driver.stderr.read()[-2000:]


@pytest.mark.slow
def test_an_interrupted_then_killed_sweep_resumes_without_rerunning_finished_trials(
    ray_session, synth_dir, tmp_path, capsys
):
    # a thousand ALS epochs make a trial last a second or two, so that each signal lands mid-sweep
    fields = {"samples": 6, "until": "factorization", "objectives": [{"metric": "mf/pr", "mode": "min"}]}
    fields["fixed"] = [*SHRINK, "factorization.epochs=1000"]
    parameters = {"factorization.reg": {"loguniform": [0.5, 20]}, "factorization.dim": {"int": [4, 24]}}
    space, out = space_file(tmp_path, **fields, space=parameters), str(tmp_path / "sweep")
    # Ctrl-C, on a Ray of the driver's own (so that what it leaves behind can be counted)
    driver = _driver(space, synth_dir, out, ray_address="")
    _wait_for(out, 1, driver)
    assert main(["sweep", space, "--data", synth_dir, "--out", out, "--resume"]) == 2  # one driver per sweep
    assert "another socialfeat sweep (pid" in capsys.readouterr().err
    ray_processes = psutil.Process(driver.pid).children(recursive=True)
    driver.send_signal(signal.SIGINT)
    assert driver.wait(timeout=120) == 130
    err = driver.stderr.read()
    assert "interrupted: finished trials are kept; run the same command with --resume" in err, err[-2000:]
    assert "best trial" not in err and not os.path.exists(os.path.join(out, "results.csv"))
    deadline = time.time() + 15
    while any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in ray_processes) and time.time() < deadline:
        time.sleep(0.5)
    assert not [p.pid for p in ray_processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    # another space is not mixed in
    changed = space_file(tmp_path, name="changed.yaml", **fields, space={"factorization.reg": {"uniform": [1, 2]}})
    assert main(["sweep", changed, "--data", synth_dir, "--out", out, "--resume"]) == 2
    assert "the search space changed since the sweep" in capsys.readouterr().err
    # kill -9 of a resumed driver, then resumed to the end (a local Ray listens on loopback only, and a
    # driver on another address cannot join it: each driver here starts its own)
    interrupted = len(_finished(out))
    driver = _driver(space, synth_dir, out, "--resume", ray_address="")
    _wait_for(out, interrupted + 1, driver)
    ray_processes = psutil.Process(driver.pid).children(recursive=True)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    # its Ray outlives it for a while, and a trial still running there could finish beside the resumed one; the
    # driver's watcher ends what its raylet started (Ray 2.60's two agents would otherwise live on for a minute)
    _, alive = psutil.wait_procs(ray_processes, timeout=15)
    assert alive == [], [(p.pid, p.name()) for p in alive]
    before = _finished(out)
    assert 2 <= len(before) < 6 and not os.path.exists(os.path.join(out, "results.csv"))
    assert main(["sweep", space, "--data", synth_dir, "--out", out, "--resume"]) == 0
    results = pd.read_csv(os.path.join(out, "results.csv"))
    assert len(results) == 6 and results["trial_id"].is_unique and sorted(results["number"]) == list(range(1, 7))
    assert (results["status"] == "TERMINATED").all()
    after = _finished(out)
    assert all(after[path] == mtime for path, mtime in before.items())  # finished trials did not run again
    assert len(after) == 6


@pytest.mark.slow
def test_cnn_trials_train_under_asha_which_stops_the_trailing_one(
    release_stopped_trainers, synth_dir, tmp_path, capsys
):
    # The base (k=6) trains first. A k=48 trial's cross-entropy after one epoch (~ln 48) trails it,
    # so ASHA (keep the better half at each rung) stops that trial at epoch 1; the others evaluate.
    space = space_file(
        tmp_path,
        until="evaluate",
        samples=3,
        seed=1,
        startup_trials=3,
        objectives=[{"metric": "retrieval/cnn/jaccard@10", "mode": "max"}],
        trial_resources={"cpu": 0.01, "data_cpus": 1},
        fixed=SHRINK
        + ["training.epochs=3", "training.batch_size=32", "training.cpus_per_worker=0.99", "features.random_cnn=false"]
        + ["training.image_size=32", "training.crop_size=28"],
        scheduler={"grace_period": 1, "max_epochs": 3, "metric": "holdout_loss", "mode": "min"},
        space={"clustering.k": {"choice": [6, 48]}},
    )
    out = str(tmp_path / "sweep")
    assert main(["sweep", space, "--data", synth_dir, "--out", out]) == 0
    printed = capsys.readouterr()
    assert "Ray State API (served by the Ray dashboard) is not reachable" in printed.err
    assert "stopped at epoch" in printed.err  # the line of the trial ASHA stopped
    results = pd.read_csv(os.path.join(out, "results.csv")).set_index("number")
    assert len(results) == 3 and results["trial_id"].is_unique and not (results["status"] == "ERROR").any()
    assert results.loc[1, "status"] == "TERMINATED" and results.loc[1, "param/clustering.k"] == 6
    stopped, finished = results[results["status"] == "STOPPED"], results[results["status"] == "TERMINATED"]
    assert len(stopped) >= 1 and (stopped["param/clustering.k"] == 48).all()
    # a second k=48 trial has the first one's train-stage key, so it resumes that trial's checkpoint and can be
    # stopped at its first report, epoch 3 (checkpoints are keyed by stage key, as completed stages are)
    assert (stopped["stopped/epoch"] <= 3).all() and stopped["stopped/holdout_loss"].notna().all()
    assert stopped["retrieval/cnn/jaccard@10"].isna().all()  # stopped before they evaluated
    assert (finished["train/epochs"] == 3).all() and finished["retrieval/cnn/jaccard@10"].notna().all()
    assert not glob.glob(os.path.join(out, "stages", ".*.tmp-*"))  # the stopped trial's half-trained stage is gone
    assert not glob.glob(os.path.join(out, "stages", ".checkpoints", "*"))  # and its checkpoints
    assert results["stage/factorization/reused"].sum() == len(finished) - 1  # one factorisation for all
    progress = glob.glob(os.path.join(out, "tune", "trial_*", "progress.csv"))
    assert max(len(pd.read_csv(p)) for p in progress) >= 3  # every epoch reached Tune through Ray Train
    boards = _board_runs(out)
    for trial_id, row in results.set_index("trial_id").iterrows():  # per-epoch training curves, each trial
        epochs = [event.step for event in boards[trial_id].Scalars("train/holdout_loss")]
        last = row["train/epochs"] if row["status"] == "TERMINATED" else row["stopped/epoch"]
        assert epochs == sorted(set(epochs)) and epochs[-1] == last  # a resumed trial's curve starts later
    assert max(len(board.Scalars("train/holdout_loss")) for board in boards.values()) == 3
    best = yaml.safe_load(open(os.path.join(out, "best.yaml")))
    assert best["clustering"]["k"] == 6
    assert main(["sweep", space, "--data", synth_dir, "--out", out, "--resume"]) == 0  # nothing left to run
    again = pd.read_csv(os.path.join(out, "results.csv")).set_index("number")
    assert (again["status"] == results["status"]).all()


@pytest.mark.slow
def test_a_methods_sweep_evaluates_the_four_methods_on_the_same_te_queries(ray_session, synth_dir, tmp_path, capsys):
    # search_spaces/methods.yaml, shrunk: one epoch of 32 px images; its first four trials are the four methods
    shipped = yaml.safe_load(open(os.path.join(os.path.dirname(__file__), "..", "..", "search_spaces", "methods.yaml")))
    for branch in shipped["space"]["method"]["choice"].values():
        branch.pop("training.epochs", None)  # the fixed single epoch below, for every method
    small = ["training.epochs=1", "training.image_size=32", "training.crop_size=28", "factorization.epochs=4"]
    small += ["features.random_cnn=false"]  # the methods' own features are what this sweep compares
    space = space_file(tmp_path, **(shipped | {"experiment": None, "samples": 4, "fixed": shipped["fixed"] + small}))
    out = str(tmp_path / "sweep")
    assert main(["sweep", space, "--data", synth_dir, "--out", out]) == 0
    results = pd.read_csv(os.path.join(out, "results.csv"))
    assert sorted(results["param/method"]) == ["cfl", "comparative", "hashtags", "words"]
    assert (results["status"] == "TERMINATED").all() and (results["run/stage_seconds"] > 0).all()
    queries = {}  # each trial's evaluation: the te items it queried, per query its jaccard@10
    for trial_dir, method in zip(results["trial_dir"], results["param/method"]):
        run = json.load(open(os.path.join(trial_dir, "run.json")))
        (evaluate,) = [stage["path"] for stage in run["stages"] if stage["name"] == "evaluate"]
        samples = pd.read_parquet(os.path.join(evaluate, "samples.parquet"))
        queries[method] = sorted(samples.loc[samples["metric"] == "retrieval/cnn/jaccard@10", "query"].astype(str))
    assert len(queries["cfl"]) > 10 and all(found == queries["cfl"] for found in queries.values())  # paired
    for shared in ("data", "filter", "split", "sampling", "factorization"):  # computed once, for every method
        assert len(glob.glob(os.path.join(out, "stages", f"{shared}-*"))) == 1, shared
    assert len(glob.glob(os.path.join(out, "stages", "evaluate-*"))) == 4
    for made in ("report.html", "plots/pareto.png", "summary.json"):
        assert os.path.getsize(os.path.join(out, made)) > 1000 or made == "summary.json"
    assert "method=comparative" in capsys.readouterr().err
    assert main(["compare", out]) == 0  # the trials side by side: the common evaluation first, tested in pairs
    header, *lines = capsys.readouterr().out.splitlines()
    assert all(f"({method})" in header for method in queries)  # one column per trial, named with its method
    rows = {line.split()[0]: line for line in lines if line.strip()}
    order = list(rows)
    assert order.index("retrieval/cnn/jaccard@10") < order.index("kmeans/nmi")  # common first, cfl's own below
    assert rows["kmeans/nmi"].split()[1:].count("-") == 3 and "[" in rows["retrieval/cnn/jaccard@10"]


def test_a_trial_holds_blas_torch_and_numba_to_its_cpu_share():
    """In a fresh process: the caps are process-wide, as they are in a trial's own worker process."""
    probe = (
        "import numba, torch; from threadpoolctl import threadpool_info;"
        "from socialfeat.sweep.runner import cap_threads;"
        "assert cap_threads(0.01) == 1;"
        "blas = max(p['num_threads'] for p in threadpool_info() if p['user_api'] == 'blas');"
        "print(numba.get_num_threads(), torch.get_num_threads(), blas)"
    )
    shown = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert shown == ["1", "1", "1"]
