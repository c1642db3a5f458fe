"""What `socialfeat run` prints: a line per stage on the console, every log line in RUN/logs/."""

import os
import subprocess
import sys

import pytest

TINY = ["--set", "data.synth.users=150", "--set", "data.synth.items=120", "--set", "data.synth.image_size=24"]
STAGES = (
    *("synth", "data", "filter", "split", "sampling", "factorization", "kmeans", "train", "features", "rounds"),
    *("evaluate", "coldstart"),
)


def _run(out, *arguments: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "socialfeat", "run", "--out", str(out), *TINY, *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=os.environ | {"RAY_ADDRESS": ""})


@pytest.mark.slow
def test_a_default_run_prints_a_line_per_stage_and_logs_the_rest_which_verbose_brings_back(tmp_path):
    small = ("training.epochs=1", "training.image_size=28", "training.crop_size=24")
    finished = _run(tmp_path / "run", *(arg for setting in small for arg in ("--set", setting)))
    assert finished.returncode == 0, finished.stderr[-3000:]
    console = (finished.stdout + finished.stderr).splitlines()
    assert len(console) <= 18, "\n".join(console)  # 12 stage lines, the header and the closing lines
    for banned in ("WARNING", "ERROR", "Traceback", "core_worker", "(pid=", "factorization epoch"):
        assert banned not in finished.stdout + finished.stderr, banned  # Ray's, workers' and the log's own lines
    named = [line.split()[0] for line in finished.stdout.splitlines() if line.startswith("  ")]
    assert named == list(STAGES)
    assert any(line.split()[0] == "factorization" and "mf/pr" in line for line in finished.stdout.splitlines())
    log = (tmp_path / "run" / "logs" / "socialfeat.log").read_text()
    assert "factorization epoch 1:" in log and "Started a local Ray instance" in log
    assert os.path.isdir(tmp_path / "run" / "logs" / "ray")  # the Ray session's logs, linked
    # --verbose, with the factorisation moved so that it runs again and logs its epochs
    verbose = _run(tmp_path / "run", "--until", "factorization", "--set", "factorization.epochs=3", "--verbose")
    assert verbose.returncode == 0, verbose.stderr[-3000:]
    assert "factorization epoch 1:" in verbose.stderr
    assert verbose.stdout.count("reused") == 5  # synth .. sampling
