"""How a run ends when Ctrl-C lands in it: start the tiny default run again and again, interrupt each one in
training (or in the stage after it), and count the exit codes (130 is a clean end; -11 a SIGSEGV).

    python benchmarks/interrupts.py [--runs 40] [--after-training] [--busy] [--work DIR]

--busy keeps another local Ray cluster beside the runs, one core busy in 3 s bursts (as the test session's
own Ray and tests are beside the Ctrl-C test in CI). Prints one JSON line per run, then a summary line.
"""

import argparse
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

TINY = ["--set", "data.synth.users=150", "--set", "data.synth.items=120", "--set", "data.synth.image_size=24"]
BUSY = """
import time, ray
ray.init(num_cpus=2, include_dashboard=False)
@ray.remote
def spin(seconds):
    end = time.time() + seconds
    while time.time() < end:
        pass
while True:
    ray.get(spin.remote(3))
    time.sleep(1)
"""


def _as_at_a_terminal() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a shell started in the background ignores SIGINT


def _wait_for(pattern: str, run: subprocess.Popen, timeout: float = 300) -> bool:
    deadline = time.monotonic() + timeout
    while not glob.glob(pattern):
        if run.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def interrupt_once(out: str, turn: int, after_training: bool) -> dict:
    """One run to `out`, interrupted once training has started (or finished, `after_training`)."""
    shutil.rmtree(out, ignore_errors=True)
    epochs = "training.epochs=2" if after_training else "training.epochs=60"
    command = [sys.executable, "-m", "socialfeat", "run", "--out", out, *TINY, "--set", epochs]
    started = time.monotonic()
    run = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, preexec_fn=_as_at_a_terminal
    )
    pattern = "train-*" if after_training else os.path.join(".checkpoints", "train-*")
    reached = _wait_for(os.path.join(out, "stages", pattern), run)
    time.sleep((turn % 5) * 0.4)  # where in the stage the interrupt lands, varied
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=120)
    lines = err.strip().splitlines()
    return {
        "turn": turn,
        "reached": reached,
        "exit_code": run.returncode,
        "seconds": round(time.monotonic() - started, 1),
        "last_line": lines[-1][:80] if lines else "",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--after-training", action="store_true", help="interrupt the stage after training")
    parser.add_argument("--busy", action="store_true", help="another Ray cluster busy beside the runs")
    parser.add_argument("--work", default=None, help="where the runs go (default: a temporary directory)")
    args = parser.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="socialfeat-interrupts-")
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    busy = subprocess.Popen([sys.executable, "-c", BUSY], **quiet) if args.busy else None
    codes = []
    try:
        for turn in range(args.runs):
            record = interrupt_once(os.path.join(work, "run"), turn, args.after_training)
            codes.append(record["exit_code"])
            print(json.dumps(record), flush=True)
    finally:
        if busy is not None:
            busy.terminate()
            busy.wait(30)
    where = "after training" if args.after_training else "in training"
    summary = {"runs": len(codes), "interrupted": where, "busy_ray_beside": args.busy}
    print(json.dumps(summary | {"clean_130": codes.count(130), "other_exit_codes": sorted(set(codes) - {130})}))


if __name__ == "__main__":
    main()
