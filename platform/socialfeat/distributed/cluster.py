"""Joining a Ray cluster (RAY_ADDRESS or --address) or starting a local one."""

import logging
import os
import socket

log = logging.getLogger(__name__)


def quiet_data_progress() -> None:
    """Ray Data draws a progress bar per dataset and epoch (dozens per run); the CLI prints its own
    stage summary, so keep the terminal readable (the Ray dashboard still shows progress)."""
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = False


class UnreachableCluster(ConnectionError):
    """RAY_ADDRESS / --address names a cluster nobody answers at."""


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds, not after Ray's long retries, when nothing listens at host:port."""
    if address == "auto":
        return
    hostport = address.split("://", 1)[-1].split("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        return  # a form Ray resolves itself
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as error:
        raise UnreachableCluster(
            f"Ray cluster at {address} (RAY_ADDRESS / --address) is unreachable: {error}. "
            "Start one (`ray start --head`), fix the address, or unset RAY_ADDRESS for a local Ray"
        ) from None


def connect(address: str | None = None, num_cpus: int | None = None, dashboard: bool = False) -> str:
    """Start or join Ray once per process; returns 'local' or the cluster address joined.

    `dashboard` starts a local Ray with its dashboard on 127.0.0.1: it serves the State API, which Ray
    Train needs to release the workers of a trainer whose trial Tune stopped (ASHA); without it each
    stopped CNN trial kept its workers' CPUs and the next trial's image loading waited for ever."""
    import ray

    quiet_data_progress()

    if ray.is_initialized():
        return "existing"
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        check_reachable(address)
        ray.init(address=address, log_to_driver=True)
        log.info("joined the Ray cluster at %s", address)
        return address
    ray.init(
        num_cpus=num_cpus or os.cpu_count(),
        include_dashboard=dashboard,
        log_to_driver=True,
        **({"dashboard_host": "127.0.0.1"} if dashboard else {}),
    )
    log.info("started a local Ray with %s CPUs", num_cpus or os.cpu_count())
    return "local"
