"""Run directories: stage outputs keyed by content hashes, atomic writes, manifests and metrics.json."""

import contextlib
import errno
import fcntl
import glob
import hashlib
import json
import logging
import os
import platform
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy
import pandas
import pyarrow
import pyarrow.parquet

from socialfeat import __version__, storage
from socialfeat.errors import UserError

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"
METRICS = "metrics.json"
RUN_LOCK = ".run.lock"  # held by the one run writing a run directory
SWEEP_LOCK = ".sweep.lock"  # held by the one sweep driver writing a sweep directory


class RunDirBusy(FileExistsError):
    """Another live process holds the run directory's lock."""


class NoSpace(OSError):
    """The disk under a stage or run directory filled up; the message names it and the space left."""


def _owner_tag() -> str:
    # host and pid in a temporary directory's name: a later run removes it only once that process is gone
    return f"{socket.gethostname()}.{os.getpid()}"


@contextlib.contextmanager
def atomic_dir(final: str) -> Iterator[str]:
    """Yield a temporary sibling directory that becomes `final` only if the block succeeds."""
    final = os.path.abspath(final)
    if os.path.exists(final) and os.listdir(final):
        raise FileExistsError(f"{final}: already exists and is not empty")
    parent = os.path.dirname(final)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(final)}.tmp-{_owner_tag()}-{uuid.uuid4().hex[:8]}")
    os.makedirs(tmp)
    try:
        yield tmp
        if os.path.isdir(final):
            os.rmdir(final)  # empty, checked above
        os.replace(tmp, final)
    except OSError as error:
        if error.errno == errno.ENOSPC:
            raise no_space(parent) from None
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def no_space(directory: str) -> NoSpace:
    free = shutil.disk_usage(directory).free if os.path.isdir(directory) else 0
    return NoSpace(
        f"{directory}: the disk is full ({free / 2**20:,.0f} MiB free); free space there or choose another --out "
        "(the unfinished stage was removed; finished ones are kept and reused)",
    )


def _process_gone(tag: str) -> bool:
    host, _, pid = tag.rpartition(".")
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another machine's (a shared store): only that machine knows whether it still writes
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def remove_abandoned_dirs(parent: str, writers_done: bool = False) -> int:
    """Delete the temporary directories atomic_dir left under `parent` when its process was killed (this
    host's, whose process is gone; or all of them when the caller knows every writer is done: a sweep
    after its trials, whose Ray worker processes outlive the trials Tune stopped); returns how many."""
    removed = 0
    for path in glob.glob(os.path.join(parent, ".*.tmp-*-*")):
        tag = path.rsplit(".tmp-", 1)[1].rsplit("-", 1)[0]
        if writers_done or _process_gone(tag):
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    if removed:
        log.info("%s: removed %d temporary directories of killed runs", parent, removed)
    return removed


def remove_abandoned_files(out: str) -> int:
    """Delete the temporary files atomic_write_text left in a run directory (and its report/) when its run
    was killed mid-write; the caller holds the run lock, so no live writer owns one. Returns how many."""
    paths = glob.glob(os.path.join(out, "*.tmp-*")) + glob.glob(os.path.join(out, "report", "*.tmp-*"))
    paths += glob.glob(os.path.join(out, ".report.tmp-*")) + glob.glob(os.path.join(out, ".report.old-*"))
    for path in paths:
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
    return len(paths)


class TornRun(UserError):
    """A run directory whose run.json and metrics.json are not from the same run (killed while finishing)."""


def file_digest(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()[:16]


def check_run_pair(run_dir: str) -> None:
    """run.json names the hash of the metrics.json it was written with (older runs name none: not checked)."""
    run_path, metrics_path = os.path.join(run_dir, "run.json"), os.path.join(run_dir, METRICS)
    if not (os.path.isfile(run_path) and os.path.isfile(metrics_path)):
        return
    try:
        recorded = read_json(run_path).get("metrics")
    except (ValueError, AttributeError):
        return  # the reader of run.json names what is wrong with it
    if recorded is not None and recorded != file_digest(metrics_path):
        raise TornRun(
            f"{run_dir}: run.json and metrics.json are not from the same run (it was stopped while writing "
            "them); run it again (its finished stages are reused)"
        )


@contextlib.contextmanager
def run_lock(out: str, kind: str = "run") -> Iterator[None]:
    """Hold `out`/.run.lock (a sweep: .sweep.lock) for a run's lifetime: a second run on the same directory
    fails at once, naming the first one's pid, instead of writing into (or cleaning up) the other's files."""

    path = os.path.join(out, RUN_LOCK if kind == "run" else SWEEP_LOCK)
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise RunDirBusy(
                f"{out}: another socialfeat {kind} ({holder}) is using this directory; wait for it "
                "to finish or choose another --out"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def check_writable_dir(path: str) -> None:
    """Fail before any work when `path` (or the nearest existing parent it would be made in) refuses writes."""
    existing = os.path.abspath(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise NotADirectoryError(f"{path}: {existing} is a file, not a directory (--out)")
    try:  # a probe, not os.access: a read-only mount refuses even root
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise PermissionError(f"{path}: {existing} is not writable ({error.strerror}) (--out)") from None


def atomic_write_text(path: str, text: str) -> None:
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with open(tmp, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


ROWS_PER_GROUP = 1 << 20  # pyarrow's own default row group, so a table's files keep the layout they had


def _plain(group):
    """A frame's categorical columns as their values: a categorical log writes the file its plain form does."""
    categorical = [name for name, dtype in group.dtypes.items() if getattr(dtype, "name", "") == "category"]
    return group.assign(**{name: _strings(group[name]) for name in categorical}) if categorical else group


def _strings(column):
    """A categorical column as the string column astype("str") gives, taken in Arrow where its categories are
    strings (astype built them at ~85 ms a million rows, Arrow at ~8)."""
    categories = column.cat.categories
    if not pandas.api.types.is_string_dtype(categories.dtype):
        return column.astype("str")
    codes, values = column.cat.codes.to_numpy(), pyarrow.array(categories.array)  # Arrow's own buffers, no copy
    taken = pyarrow.DictionaryArray.from_arrays(pyarrow.array(codes, mask=codes < 0), values).cast(pyarrow.string())
    return pandas.Series(pandas.array(taken, dtype="str"), index=column.index, name=column.name)


def write_parquet(frame, path: str, rows: int = ROWS_PER_GROUP) -> None:
    """A pandas frame to Parquet a row group at a time: the conversion to Arrow and the encoders hold one
    group, where `frame.to_parquet` converted the whole log at once (2-3 copies of it at the peak)."""
    write_tables(_arrow_groups(frame, rows), path)


def _arrow_groups(frame, rows: int):
    """A frame's groups of `rows` rows as Arrow tables in the first one's schema, categoricals as their values."""
    schema = None
    for start in range(0, max(1, len(frame)), rows):
        table = pyarrow.Table.from_pandas(_plain(frame.iloc[start : start + rows]), schema=schema, preserve_index=False)
        schema = schema or table.schema
        yield table


def pandas_schema(table: pyarrow.Table) -> pyarrow.Schema:
    """The schema write_parquet gives the pandas frame of `table` (its types and pandas' metadata), so that a
    file written from Arrow keeps the layout it has when written from pandas."""
    return pyarrow.Table.from_pandas(table.slice(0, 0).to_pandas(), preserve_index=False).schema


def write_tables(tables, path: str) -> None:
    """Arrow tables (at least one) to one Parquet file, a row group each, in the first one's schema."""
    writer = None
    try:
        for table in tables:
            writer = writer or pyarrow.parquet.ParquetWriter(path, table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()


def write_json(path: str, value) -> None:
    atomic_write_text(path, json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str):
    with open(path) as handle:
        return json.load(handle)


def content_hash(value) -> str:
    """A short stable hash of any JSON-able value."""
    text = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def versions() -> dict:

    return {
        "socialfeat": __version__,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "pyarrow": pyarrow.__version__,
    }


@contextlib.contextmanager
def _locked(path: str) -> Iterator[None]:
    """An exclusive advisory lock on `path` across processes (fcntl: one host, or NFS with lockd)."""

    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def file_records(directory: str) -> dict[str, dict]:
    """{relative path: {bytes, sha256}} of every file under `directory` (the manifest's own record of them)."""
    records = {}
    for parent, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(parent, name)
            with open(path, "rb") as handle:
                digest = hashlib.file_digest(handle, "sha256").hexdigest()
            records[os.path.relpath(path, directory)] = {"bytes": os.path.getsize(path), "sha256": digest}
    return records


def damage(directory: str, manifest: dict) -> str | None:
    """What is wrong with a completed stage's files (missing, resized, rewritten, added), or None."""
    recorded = manifest.get("files", {})
    found = file_records(directory)
    found.pop(MANIFEST, None)
    for name, record in recorded.items():
        if name not in found:
            return f"{name} is missing"
        if found[name]["bytes"] != record["bytes"]:
            return f"{name} has {found[name]['bytes']:,} bytes, {record['bytes']:,} when it was written"
        if found[name]["sha256"] != record["sha256"]:
            return f"{name} changed since it was written (sha256)"
    extra = sorted(set(found) - set(recorded))
    return f"{extra[0]} was added after the stage completed" if extra else None


class UnsafeFile(UserError):
    """A stage file that is not plain tensors (a pickle with code in it, or not a torch file at all)."""


def load_tensors(path: str):
    """A torch file of tensors and plain values, loaded without running code (weights_only=True): stage
    outputs and checkpoints are data, never code, whoever wrote the store they were read from."""
    import torch  # the base layer stays free of torch: data tools never load it

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:  # UnpicklingError for a pickle that names code; RuntimeError for garbage
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UnsafeFile(f"{path}: refused: not a file of plain tensors ({reason[:200]})") from None


@dataclass
class StageResult:
    name: str
    key: str
    path: str
    metrics: dict
    reused: bool
    seconds: float  # of this run: ~0 when reused
    original_seconds: float  # what computing it took when it was made
    driver_peak_rss_mib: float | None = None  # this process's peak while the stage ran (Linux), set by the runner


class StageStore:
    """Stage outputs under `root`/<stage>-<key>/, each with a manifest; a complete one is reused.

    With `remote` (a storage URI) the local root is a working copy: a stage found only in the remote
    store is fetched, and every stage is uploaded once complete, its manifest last."""

    def __init__(self, root: str, remote: str | None = None):
        self.root = os.path.abspath(root)
        self.remote = remote
        self.lock_files: list[str] = []  # the lock files this store created (a failed run removes them)

    def path(self, name: str, key: str) -> str:
        return os.path.join(self.root, f"{name}-{key}")

    @staticmethod
    def key(name: str, config: dict, inputs: dict[str, str]) -> str:
        # `config` holds the stage's code fingerprint (stages.stage_key), so no release number is needed here
        return content_hash({"stage": name, "config": config, "inputs": inputs})

    def run(self, name: str, config: dict, inputs: dict[str, str], compute: Callable[[str], dict]) -> StageResult:
        """Reuse the stage keyed by (name, config, inputs) or compute it into a fresh directory.

        `compute(tmp_dir)` writes the outputs and returns the stage's metrics (a flat dict)."""
        key = self.key(name, config, inputs)
        final = self.path(name, key)
        os.makedirs(os.path.join(self.root, ".locks"), exist_ok=True)
        lock = os.path.join(self.root, ".locks", f"{name}-{key}")
        if not os.path.exists(lock):
            self.lock_files.append(lock)
        # Sweep trials share a store: the first to need a stage computes it, the others wait and reuse it.
        with _locked(lock):
            return self._run_locked(name, key, final, config, inputs, compute)

    def _run_locked(self, name, key, final, config, inputs, compute) -> StageResult:
        manifest_path = os.path.join(final, MANIFEST)
        if not os.path.exists(manifest_path) and self.remote:
            self._fetch(final)
        if os.path.exists(manifest_path):
            manifest = self._intact(final, manifest_path)
            if manifest is not None:
                log.info("stage %s: reused %s (saved %.1fs)", name, os.path.basename(final), manifest["seconds"])
                self._publish(final)
                return StageResult(name, key, final, manifest["metrics"], True, 0.0, manifest["seconds"])
        started = time.perf_counter()
        with atomic_dir(final) as tmp:
            metrics = compute(tmp) or {}
            seconds = time.perf_counter() - started
            write_json(
                os.path.join(tmp, MANIFEST),
                {
                    "stage": name,
                    "key": key,
                    "config": config,
                    "inputs": inputs,
                    "metrics": metrics,
                    "seconds": seconds,
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "versions": versions(),
                    "files": file_records(tmp),
                },
            )
        log.info("stage %s: computed %s in %.1fs", name, os.path.basename(final), seconds)
        self._publish(final)
        return StageResult(name, key, final, metrics, False, seconds, seconds)

    @staticmethod
    def _intact(final: str, manifest_path: str) -> dict | None:
        """The manifest of a stage whose files are as written; a damaged stage is set aside (removed) and None
        returned, so the caller recomputes it."""
        try:
            manifest = read_json(manifest_path)
            problem = damage(final, manifest) if isinstance(manifest, dict) else "manifest.json is not a mapping"
        except (OSError, ValueError) as error:
            problem = f"manifest.json is unreadable ({error})"
        if problem is None:
            return manifest
        log.warning("stage %s is damaged (%s): recomputing it", os.path.basename(final), problem)
        aside = os.path.join(os.path.dirname(final), f".{os.path.basename(final)}.damaged-{uuid.uuid4().hex[:8]}")
        os.replace(final, aside)
        shutil.rmtree(aside, ignore_errors=True)
        return None

    def _fetch(self, final: str) -> None:
        """Copy a stage that is complete in the remote store (its manifest exists) into the local root."""

        remote = storage.join(self.remote, os.path.basename(final))
        if not storage.exists(storage.join(remote, MANIFEST)):
            return
        with atomic_dir(final) as tmp:
            storage.download(remote, tmp)
        log.info("stage %s: fetched from %s", os.path.basename(final), remote)

    def _publish(self, final: str) -> None:
        """Upload a complete stage unless the remote store has it already (an earlier upload may have died)."""

        if not self.remote:
            return
        remote = storage.join(self.remote, os.path.basename(final))
        if not storage.exists(storage.join(remote, MANIFEST)):
            storage.upload(final, remote, last=(MANIFEST,))


def merge_metrics(run_dir: str, metrics: dict) -> dict:
    """Merge a flat name -> number map into run_dir/metrics.json (written atomically)."""
    path = os.path.join(run_dir, METRICS)
    merged = read_json(path) if os.path.exists(path) else {}
    merged.update({k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
    write_json(path, merged)
    return merged
