"""Ends the processes a local Ray leaves behind when its driver dies without shutting it down (kill -9).

Ray 2.60's GCS and raylet die with the driver, and the workers with the raylet, but the dashboard and
runtime-env agents first try to report the raylet's death to the dead GCS and live on for about a minute.
The driver starts this watcher with the raylet's pid and a pipe on its stdin, whose end of file means the
driver is gone. Until then the watcher notes the raylet's descendants every second; then it ends every one
of them still alive, and any other process whose environment names that raylet (RAY_RAYLET_PID). It
imports psutil alone, so that it starts in a fraction of a second beside the driver.
"""

import os
import select
import subprocess
import sys
import time

import psutil

GRACE_S = 1.0  # the driver's own shutdown, when it had one, ends these processes first
POLL_S = 1.0


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


def descendants(raylet_pid: int) -> dict[int, psutil.Process]:
    """The raylet's processes now, by pid (psutil's is_running later tells a reused pid apart)."""
    try:
        return {process.pid: process for process in psutil.Process(raylet_pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return {}


def still_alive(processes) -> list[psutil.Process]:
    alive = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except psutil.NoSuchProcess:
            continue
    return alive


def watch(raylet_pid: int) -> subprocess.Popen:
    """Start the watcher for the raylet this process started; it outlives this process by design."""
    return subprocess.Popen(
        [sys.executable, "-m", __name__, str(raylet_pid)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C at the terminal is the driver's to handle, not the watcher's
    )


def main(raylet_pid: int) -> None:
    started_after = psutil.Process(raylet_pid).create_time() if psutil.pid_exists(raylet_pid) else 0.0
    noted: dict = {}
    while True:  # until end of file: the driver has exited, cleanly or not
        readable, _, _ = select.select([0], [], [], POLL_S)
        if readable and not os.read(0, 4096):
            break
        noted |= descendants(raylet_pid)
    time.sleep(GRACE_S)
    marked = {process.pid: process for process in raylet_children(raylet_pid, started_after)}
    end(still_alive((noted | marked).values()))


if __name__ == "__main__":
    main(int(sys.argv[1]))
