"""Joining a Ray cluster (RAY_ADDRESS or --address) or starting a local one."""
import logging
import os

log = logging.getLogger(__name__)


def quiet_data_progress() -> None:
    """Ray Data draws a progress bar per dataset and epoch (dozens per run); the CLI prints its own
    stage summary, so keep the terminal readable (the Ray dashboard still shows progress)."""
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = False


def connect(address: str | None = None, num_cpus: int | None = None) -> str:
    """Start or join Ray once per process; returns 'local' or the cluster address joined."""
    import ray

    quiet_data_progress()

    if ray.is_initialized():
        return "existing"
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
        log.info("joined the Ray cluster at %s", address)
        return address
    ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=True)
    log.info("started a local Ray with %s CPUs", num_cpus or os.cpu_count())
    return "local"
