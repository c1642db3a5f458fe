"""Joining a Ray cluster (RAY_ADDRESS or --address) or starting a local one."""

import logging
import math
import os
import secrets
import socket
import stat
import sys
import time

import psutil
import ray
import ray._private.ray_constants as ray_constants
import ray.data
from ray.data import DataContext

from socialfeat import console
from socialfeat.distributed import reaper
from socialfeat.errors import UserError

log = logging.getLogger(__name__)

TRAIN_POLL_ENV, TRAIN_POLL_SECONDS = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2"


def quiet_data_progress() -> None:
    """Ray Data draws a progress bar per dataset and epoch (dozens per run); the CLI prints its own
    stage summary, so keep the terminal readable (the Ray dashboard still shows progress)."""

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


TOKEN_FILE = os.path.join("~", ".ray", "auth_token")  # where Ray 2.60 keeps the token of a local cluster


def private_token() -> str:
    """Ray's token file, readable by its owner alone: Ray writes it mode 644, and anyone who reads it may
    run code on the cluster. Created here (0600, as Ray would: 64 hex characters) when it is missing."""
    path = os.path.expanduser(TOKEN_FILE)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if stat.S_IMODE(os.stat(path).st_mode) & 0o077 and os.stat(path).st_uid == os.getuid():
            os.chmod(path, 0o600)
            log.info("%s: made readable by its owner only (it was readable by others)", path)
        return path
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secrets.token_hex(32))
    return path


def loopback_only() -> None:
    """A local Ray serves this machine alone, so its GCS, raylet, workers and agents listen on 127.0.0.1.
    Ray 2.60 turns a loopback node address into the machine's external one, except in its single-host
    mode (the macOS and Windows default), which this selects for the Ray this process starts."""
    ray_constants.ENABLE_RAY_CLUSTER = False


def start_local(num_cpus: int | None, dashboard: bool = False, log_to_driver: bool = False) -> None:
    """A Ray of this process's own on this machine: loopback only, its token private."""
    private_token()
    loopback_only()
    # Ray Train's controller polls its workers every 2 s, and a worker's ray.train.report with a checkpoint
    # waits for that poll: 1.8 s an epoch, most of an epoch on a laptop-sized dataset (measured, Ray 2.60).
    # Workers inherit the variable from the raylet this call starts; a `ray start` cluster keeps its own.
    os.environ.setdefault(TRAIN_POLL_ENV, TRAIN_POLL_SECONDS)
    ray.init(
        # "local": always a Ray of our own; without it ray.init joins a `ray start` head on this machine
        # (or trips on the ray_current_cluster file a dead one left), and then refuses num_cpus
        address="local",
        num_cpus=num_cpus or os.cpu_count(),
        include_dashboard=dashboard,
        log_to_driver=log_to_driver,
        **({"dashboard_host": "127.0.0.1"} if dashboard else {}),
    )
    watch_raylet()


_watchers = []  # the pipe to each watcher stays open for as long as this process lives: its end is the signal


def watch_raylet() -> None:
    """A watcher that ends this Ray's agents and workers should this process die without shutting it down."""
    raylets = [child for child in psutil.Process().children() if child.name() == "raylet"]
    if raylets:
        _watchers.append(reaper.watch(raylets[-1].pid))


def connect(address: str | None = None, num_cpus: int | None = None, dashboard: bool = False) -> str:
    """Start or join Ray once per process; returns 'local' or the cluster address joined.

    `dashboard` starts a local Ray with its dashboard on 127.0.0.1: it serves the State API, which Ray
    Train needs to release the workers of a trainer whose trial Tune stopped (ASHA); without it each
    stopped CNN trial kept its workers' CPUs and the next trial's image loading waited for ever."""

    quiet_data_progress()
    console.quiet_ray()  # before ray.init, whose token-authentication notice is for operators (Ray 2.60)
    to_driver = console.verbose()  # workers' output: in the Ray session's logs (RUN/logs/ray), or printed

    if ray.is_initialized():
        return "existing"
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        check_reachable(address)
        ray.init(address=address, log_to_driver=to_driver)
        log.info("joined the Ray cluster at %s", address)
        return address
    start_local(num_cpus, dashboard, to_driver)
    log.info("started a local Ray with %s CPUs", num_cpus or os.cpu_count())
    return "local"


class NoSharedStorage(UserError):
    """A cluster of several nodes with the run in a local directory: checkpoints written by a worker on one
    node would be read by the driver on another."""


def check_shared_storage(out_is_remote: bool, shared_filesystem: bool, training=None, joined: bool = False) -> None:
    """Stages and checkpoints in storage every node reaches, once the work may leave the driver's node: the
    cluster has several nodes now, or it was joined and must grow to hold training's workers."""
    if out_is_remote or shared_filesystem:
        return
    alive = [node for node in ray.nodes() if node.get("Alive", False)]
    slots = worker_slots(alive, training.cpus_per_worker, training.use_gpu) if training is not None else 0
    must_grow = joined and training is not None and slots < training.num_workers
    if len(alive) < 2 and not must_grow:
        return
    shape = f"{len(alive)} nodes" if len(alive) > 1 else "one node and must grow to hold training's workers"
    raise NoSharedStorage(
        f"this Ray cluster has {shape}, and --out is a local directory: training checkpoints written on "
        "one node would be missing on another. Put the run in storage every node reaches (--out s3://BUCKET/"
        "PREFIX, gs://, abfs://), or set ray.shared_filesystem=true when --out is on a filesystem every node mounts"
    )


class UnsatisfiableResources(UserError):
    """Training asks for more than the Ray cluster has: without this check Ray Train waits for ever."""


def worker_slots(nodes: list[dict], cpus_per_worker: float, use_gpu: bool) -> int:
    """How many training workers of this shape the alive nodes can hold at once (a worker lives on one node)."""
    slots = 0
    for node in nodes:
        if not node.get("Alive", False):
            continue
        resources = node.get("Resources", {})
        fit = math.floor(resources.get("CPU", 0) / cpus_per_worker + 1e-9) if cpus_per_worker > 0 else 10**9
        if use_gpu:
            fit = min(fit, math.floor(resources.get("GPU", 0) + 1e-9))
        slots += fit
    return slots


def check_training_resources(training, wait_s: float = 0.0) -> None:
    """Fail with one message naming the keys when the cluster cannot hold training's workers; a cluster that
    may scale up (a joined one) is given `wait_s` seconds to grow first."""

    deadline = time.monotonic() + wait_s
    announced = False
    while True:
        slots = worker_slots(ray.nodes(), training.cpus_per_worker, training.use_gpu)
        if slots >= training.num_workers:
            return
        if time.monotonic() >= deadline:
            break
        if not announced:  # once, on the console: a job's log otherwise shows nothing while it waits
            print(f"waiting up to {wait_s:.0f}s (ray.resource_wait_s) for {_demand(training, slots)}", file=sys.stderr)
            announced = True
        time.sleep(min(5.0, max(0.1, deadline - time.monotonic())))
    raise UnsatisfiableResources(
        f"{_demand(training, slots)}"
        + (f", after waiting {wait_s:.0f}s (ray.resource_wait_s)" if wait_s else "")
        + ". Lower those keys, or join a larger cluster (--address)"
    )


def _demand(training, slots: int) -> str:
    """What training asks of the cluster, by its keys, beside what the cluster has."""
    totals = ray.cluster_resources()
    shape = f"{training.cpus_per_worker:g} CPU" + (" + 1 GPU" if training.use_gpu else "")
    return (
        f"training.num_workers = {training.num_workers} workers of {shape} each (training.cpus_per_worker"
        f"{', training.use_gpu' if training.use_gpu else ''}); this Ray cluster has "
        f"{totals.get('CPU', 0):g} CPUs and {totals.get('GPU', 0):g} GPUs in all, room for {slots} such worker(s)"
    )


def check_cluster(where: str, cfg, out_is_remote: bool, trains: bool) -> None:
    """Before any stage, on the cluster `connect` reported: storage every node reaches, and room for
    training's workers (Ray Train would otherwise wait for ever for workers the cluster cannot hold)."""
    joined = where not in ("local", "existing")  # only a cluster joined by address may grow
    training = cfg.training if trains else None
    check_shared_storage(out_is_remote, cfg.ray.shared_filesystem, training, joined)
    if training is not None:
        check_training_resources(training, wait_s=cfg.ray.resource_wait_s if joined else 0.0)
