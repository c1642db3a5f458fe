"""A run never destroys what it did not make: one run per directory, and failures remove only their own files."""

import glob
import os
import signal
import socket
import subprocess
import sys
import time

import pandas as pd
import psutil
import pytest

from conftest import as_at_a_terminal
from socialfeat import artifacts
from socialfeat.cli import main

TINY = ["--set", "data.synth.users=150", "--set", "data.synth.items=120", "--set", "data.synth.image_size=24"]


def test_a_second_run_on_a_busy_directory_is_refused_and_touches_nothing(ray_session, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "results.txt").write_text("another run's")
    with artifacts.run_lock(str(out)):
        assert main(["run", "--out", str(out), "--until", "split", *TINY]) == 2
    assert "another socialfeat run (pid" in capsys.readouterr().err
    assert sorted(os.listdir(out)) == [".run.lock", "results.txt"]


def test_a_failed_run_removes_only_what_it_made(ray_session, tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    pd.DataFrame({"user_id": ["u"], "item_id": ["x"]}).to_parquet(broken / "interactions.parquet")
    pd.DataFrame({"item_id": ["y"], "image_path": ["y.jpg"]}).to_parquet(broken / "items.parquet")
    shared = tmp_path / "shared"
    (shared / "stages").mkdir(parents=True)
    (shared / "stages" / "theirs.txt").write_text("kept")
    assert main(["run", "--out", str(shared), "--data", str(broken)]) == 2
    assert "absent from items.parquet" in capsys.readouterr().err
    assert os.listdir(shared / "stages") == ["theirs.txt"]
    fresh = tmp_path / "new" / "run"
    assert main(["run", "--out", str(fresh), "--data", str(broken)]) == 2
    assert not (tmp_path / "new").exists()  # made by this run, and empty again: removed


def test_temporary_directories_are_removed_only_once_their_process_is_gone(tmp_path):
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    host = socket.gethostname()
    dead = tmp_path / f".train-k.tmp-{host}.{finished.pid}-aaaa1111"
    alive = tmp_path / f".train-k.tmp-{host}.{os.getpid()}-bbbb2222"
    elsewhere = tmp_path / f".train-k.tmp-other-host.{finished.pid}-cccc3333"
    for path in (dead, alive, elsewhere):
        path.mkdir()
    assert artifacts.remove_abandoned_dirs(str(tmp_path)) == 1
    assert not dead.exists() and alive.exists() and elsewhere.exists()


def _wait_for(pattern: str, process: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not glob.glob(pattern):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the run ended or stalled before {pattern} appeared: {process.stderr.read()[-2000:]}")
        time.sleep(0.5)


@pytest.mark.slow
def test_two_runs_at_once_then_ctrl_c_keeps_the_finished_stages_and_no_ray_process(ray_session, tmp_path, capsys):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "socialfeat", "run", "--out", str(out), *TINY, "--set", "training.epochs=60"]
    first = subprocess.Popen(
        command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, preexec_fn=as_at_a_terminal
    )
    _wait_for(str(out / "stages" / ".checkpoints" / "train-*"), first)  # training has started
    assert main(["run", "--out", str(out), "--until", "kmeans", *TINY]) == 2  # the second run at once
    assert "another socialfeat run" in capsys.readouterr().err
    children = psutil.Process(first.pid).children(recursive=True)  # its Ray: GCS, raylet, workers
    assert children
    first.send_signal(signal.SIGINT)
    _, err = first.communicate(timeout=60)
    assert first.returncode == 130 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("interrupted: finished stages are kept")
    _, alive = psutil.wait_procs(children, timeout=10)
    assert alive == []
    assert glob.glob(str(out / "stages" / "kmeans-*")) and not glob.glob(str(out / "stages" / ".*.tmp-*"))
    assert not glob.glob(str(out / "stages" / "train-*"))
    assert main(["run", "--out", str(out), "--until", "kmeans", *TINY]) == 0  # the stages the first one made
    assert "computed" not in capsys.readouterr().out


def test_a_full_disk_is_one_message_naming_the_directory_and_leaves_no_temporary_files(tmp_path):
    import errno

    store = artifacts.StageStore(str(tmp_path / "stages"))

    def compute(tmp: str) -> dict:
        with open(os.path.join(tmp, "part.npy"), "wb") as handle:
            handle.write(b"x" * 100)
        raise OSError(errno.ENOSPC, "No space left on device")  # what a write on a full disk raises

    with pytest.raises(artifacts.NoSpace, match=r"stages: the disk is full \([\d,]+ MiB free\)"):
        store.run("train", {}, {"dataset": "k"}, compute)
    assert os.listdir(tmp_path / "stages") == [".locks"]


def test_a_killed_runs_temporary_files_are_removed_and_its_pair_is_checked(ray_session, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--out", str(out), "--until", "split", *TINY]) == 0
    run = artifacts.read_json(str(out / "run.json"))
    assert run["metrics"] == artifacts.file_digest(str(out / "metrics.json"))  # written as a pair
    # each stage's driver peak (benchmarks/scale.py reads it): at least the interpreter with numpy and pandas
    assert [s["name"] for s in run["stages"]] == ["synth", "data", "filter", "split"]
    assert all(s["driver_peak_rss_mib"] > 100 for s in run["stages"])
    # what a run killed at its very end leaves: a half-written file, a half-drawn report
    (out / "metrics.json.tmp-0badf00d").write_text("{")
    (out / ".report.tmp-0badf00d").mkdir()
    assert main(["run", "--out", str(out), "--until", "split", *TINY]) == 0
    assert not glob.glob(str(out / "*.tmp-*")) and not glob.glob(str(out / ".report.tmp-*"))
    (out / "metrics.json").write_text('{"data/users": 1}')  # an older run's metrics beside this run.json
    capsys.readouterr()
    assert main(["compare", str(out), str(out)]) == 2
    assert "run.json and metrics.json are not from the same run" in capsys.readouterr().err


def test_a_report_never_shows_another_runs_figures(tmp_path):
    from socialfeat.methods import named
    from socialfeat.report_html import write_html

    run = tmp_path / "run"
    (run / "report").mkdir(parents=True)
    (run / "report" / "word_frequency.png").write_bytes(b"a words run's figure")
    (run / "metrics.json").write_text('{"data/users": 1}')
    (run / "run.json").write_text('{"method": "cfl", "dataset": "", "stages": []}')
    (run / "config.yaml").write_text("name: run\n")
    page = open(write_html(str(run), named("cfl"))).read()
    assert os.listdir(run / "report") == [] and "word_frequency" not in page
