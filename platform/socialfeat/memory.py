"""Memory a stage is about to allocate, estimated from its config and data and refused, naming the key, when
this machine cannot hold it (instead of growing until the kernel kills the run)."""

import psutil
import pyarrow

from socialfeat.errors import UserError

HEADROOM = 0.8  # of the memory available now: the rest is the process, its libraries and its other arrays


class TooLarge(UserError):
    """A setting whose arrays would not fit in this machine's memory."""


def check_fits(key: str, value, needed_bytes: float, what: str, available: float | None = None) -> None:
    """Refuse `key` = `value` when `what` needs more than HEADROOM of the memory available."""
    available = psutil.virtual_memory().available if available is None else available
    if needed_bytes > HEADROOM * available:
        raise TooLarge(
            f"{key} = {value}: {what} would need about {needed_bytes / 2**30:.1f} GiB, and this machine has "
            f"{available / 2**30:.1f} GiB available; lower {key}"
        )


def factor_bytes(users: int, items: int, dim: int) -> float:
    """Factorisation's arrays: user and item factors in float32, with as much again for the solver's
    working copies and as much again for the evaluation's scores of them (measured peak ~3x the factors)."""
    return 4.0 * (users + items) * dim * 4


def reset_peak_rss() -> bool:
    """Restart this process's peak RSS (Linux VmHWM) from its current RSS; False where the kernel offers no way."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


def peak_rss_mib() -> float | None:
    """This process's peak RSS since start or the last reset_peak_rss (Linux; None elsewhere)."""
    try:
        with open("/proc/self/status") as status:
            line = next(line for line in status if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return None
    return int(line.split()[1]) / 1024


def release_arrow() -> None:
    """Return to the OS the buffers Arrow's pool (mimalloc) keeps after they are freed: after a log-sized read
    is converted and dropped, the pool would otherwise carry it into every later peak (measured: the
    factorisation stage's peak above its start 1,105 -> 793 MiB at 4.5M views)."""
    pyarrow.default_memory_pool().release_unused()
