"""Ends the processes a local Ray leaves behind when its driver dies without shutting it down (kill -9).

Ray 2.60's GCS and raylet die with the driver, and the workers with the raylet, but the dashboard and
runtime-env agents first try to report the raylet's death to the dead GCS and live on for about a minute.
The driver starts this watcher with a pipe on its stdin: the first line names the raylet's pid, and end of
file means the driver is gone. Then every process the raylet started (they carry RAY_RAYLET_PID) is ended.
It imports psutil alone, so that it starts in a fraction of a second beside the driver.
"""

import subprocess
import sys
import time

import psutil

GRACE_S = 1.0  # the driver's own shutdown, when it had one, ends these processes first


def raylet_children(raylet_pid: int, started_after: float) -> list[psutil.Process]:
    """Processes started by that raylet: the environment Ray gives them names it (create time rules out a
    later process that reused the pid number)."""
    mark = f"RAY_RAYLET_PID={raylet_pid}".encode()
    found = []
    for process in psutil.process_iter(["pid", "create_time"]):
        try:
            if process.info["create_time"] >= started_after and mark in environment(process.pid):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def environment(pid: int) -> list[bytes]:
    """A process's environment entries, read raw: Ray's agents and workers set their process title over the
    start of theirs, and psutil's parser stops at the zeroed bytes."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            return handle.read().split(b"\0")
    except OSError:
        return []


def end(processes: list[psutil.Process], timeout: float = 3.0) -> None:
    for process in processes:
        try:
            process.terminate()
        except psutil.NoSuchProcess:
            continue
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            continue


def watch(raylet_pid: int) -> subprocess.Popen:
    """Start the watcher for the raylet this process started; it outlives this process by design."""
    watcher = subprocess.Popen(
        [sys.executable, "-m", __name__],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C at the terminal is the driver's to handle, not the watcher's
    )
    watcher.stdin.write(f"{raylet_pid}\n".encode())
    watcher.stdin.flush()
    return watcher


def main() -> None:
    raylet_pid = int(sys.stdin.readline())
    started_after = psutil.Process(raylet_pid).create_time() if psutil.pid_exists(raylet_pid) else 0.0
    sys.stdin.read()  # returns at end of file: the driver has exited, cleanly or not
    time.sleep(GRACE_S)
    end(raylet_children(raylet_pid, started_after))


if __name__ == "__main__":
    main()
