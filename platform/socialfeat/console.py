"""What a run prints: one line per stage and a bar per long stage; every log line goes to RUN/logs/."""

import fnmatch
import logging
import os
import sys
from collections import deque
from contextlib import contextmanager

from tqdm import tqdm

LOG_DIR = "logs"
LOG_FILE = "socialfeat.log"
RAY_LOGS = "ray"  # a link to the Ray session's log directory (what the dashboard shows)
ROUTED = ("socialfeat", "ray", "ray.data", "py.warnings")  # loggers whose records the run's log file takes
_state: dict = {"pending": None, "console": None, "verbose": True}


class _Pending(logging.Handler):
    """Records kept until a run opens its log file (the newest 10,000: a process that never runs keeps no more)."""

    def __init__(self):
        super().__init__()
        self.records: deque = deque(maxlen=10_000)

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def replay(self, target: logging.Handler) -> None:
        while self.records:
            target.handle(self.records.popleft())


def setup(verbose: bool) -> None:
    """The console shows socialfeat's warnings and errors (everything with --verbose); until a run opens
    its log file, records of every level wait in memory for it. A root logger that already has handlers
    (pytest's) is left as it is."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        _state["console"] = root.handlers[0]
    if _state["console"] is not None:
        _state["console"].setLevel(logging.DEBUG if verbose else logging.WARNING)
    logging.getLogger("socialfeat").setLevel(logging.DEBUG if verbose else logging.INFO)
    _state["verbose"] = verbose
    if verbose or _state["pending"] is not None:
        return
    pending = _Pending()
    for name in ROUTED:
        logging.getLogger(name).addHandler(pending)
    logging.getLogger("py.warnings").propagate = False  # library warnings: to the log file, not the console
    logging.captureWarnings(True)
    _state["pending"] = pending


def verbose() -> bool:
    return _state["verbose"]


def quiet_ray() -> None:
    """Ray's driver-side loggers print INFO and warnings about its internals (dataset plans, token auth,
    deprecations inside Ray) that a user of a run cannot act on: keep them for the log file only.
    Call after `import ray.data`, which installs Ray Data's own console handler (Ray 2.60)."""
    if _state["verbose"]:
        return
    for name in ("ray", "ray.data"):
        for handler in logging.getLogger(name).handlers:
            stream = getattr(handler, "stream", None)
            if stream in (sys.stderr, sys.stdout):
                handler.setLevel(max(handler.level, logging.ERROR))


@contextmanager
def run_log(out: str):
    """Write every routed record (buffered ones first) to OUT/logs/socialfeat.log while the run lasts,
    and link Ray's session logs as OUT/logs/ray when this process runs a Ray of its own."""
    directory = os.path.join(out, LOG_DIR)
    os.makedirs(directory, exist_ok=True)
    file_handler = logging.FileHandler(os.path.join(directory, LOG_FILE))
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    pending = _state["pending"]
    if pending is not None:
        pending.replay(file_handler)
    loggers = [logging.getLogger(name) for name in ROUTED]
    for logger in loggers:
        logger.addHandler(file_handler)
        if pending is not None:
            logger.removeHandler(pending)
    _link_ray_logs(directory)
    try:
        yield os.path.join(directory, LOG_FILE)
    finally:
        for logger in loggers:
            logger.removeHandler(file_handler)
            if pending is not None:
                logger.addHandler(pending)
        file_handler.close()


def _link_ray_logs(directory: str) -> None:
    link = os.path.join(directory, RAY_LOGS)
    logs = ray_logs_dir()
    if logs is None or os.path.lexists(link):
        return
    try:
        os.symlink(logs, link)
    except OSError:  # a file system without symlinks: the log file names the directory
        pass
    logging.getLogger("socialfeat").info("Ray's own logs (workers, trainers, Ray Data): %s", logs)


def ray_logs_dir() -> str | None:
    """The log directory of the Ray session this process started, if any (a joined cluster's are remote)."""
    if "ray" not in sys.modules:
        return None
    import ray  # only once a run has started Ray

    if not ray.is_initialized():
        return None
    try:  # no public API names the session directory (Ray 2.60)
        node = ray._private.worker.global_worker.node
        return node.get_logs_dir_path() if node is not None and node.head else None
    except AttributeError:
        return None


def bar(total: int, description: str, enabled: bool, unit: str = "it"):
    """A progress bar on stderr that disappears when done (the stage's line replaces it)."""
    return tqdm(total=total, desc=f"  {description}", unit=unit, leave=False, disable=not enabled, file=sys.stderr)


INTERVALS = ("/ci_low", "/ci_high")  # a metric's bootstrap interval, shown beside it by `compare`, not here


def stage_line(result, patterns: tuple[str, ...], limit: int = 3) -> str:
    """'  factorization  computed  1.8s   mf/pr 0.080  mf/popularity/pr 0.252'."""
    state = "reused" if result.reused else f"computed {result.seconds:6.1f}s"
    shown = []
    for pattern in patterns:
        matched = sorted(fnmatch.filter(result.metrics, pattern))
        shown += [name for name in matched if name not in shown and not name.endswith(INTERVALS)]
    values = "  ".join(f"{name} {_number(result.metrics[name])}" for name in shown[:limit])
    return f"  {result.name:<14} {state:<16} {values}".rstrip()


def _number(value) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:.3f}" if abs(value) < 1000 else f"{value:,.0f}"
