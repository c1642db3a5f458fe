"""Run directories: stage outputs keyed by content hashes, atomic writes, manifests and metrics.json."""

import contextlib
import glob
import hashlib
import json
import logging
import os
import platform
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"
METRICS = "metrics.json"
# Files whose bytes define a dataset; images referenced by path are covered by items.parquet's paths.
FINGERPRINT_FILES = ("interactions.parquet", "items.parquet", "tags.parquet", "social.parquet", "comments.parquet")


@contextlib.contextmanager
def atomic_dir(final: str) -> Iterator[str]:
    """Yield a temporary sibling directory that becomes `final` only if the block succeeds."""
    final = os.path.abspath(final)
    if os.path.exists(final) and os.listdir(final):
        raise FileExistsError(f"{final}: already exists and is not empty")
    parent = os.path.dirname(final)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(final)}.tmp-{uuid.uuid4().hex[:8]}")
    os.makedirs(tmp)
    try:
        yield tmp
        if os.path.isdir(final):
            os.rmdir(final)  # empty, checked above
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def remove_abandoned_dirs(parent: str) -> None:
    """Delete the temporary directories atomic_dir left under `parent` when its process was killed;
    call it only when no process can still be writing there."""
    for path in glob.glob(os.path.join(parent, ".*.tmp-*")):
        shutil.rmtree(path, ignore_errors=True)


def atomic_write_text(path: str, text: str) -> None:
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with open(tmp, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


def write_json(path: str, value) -> None:
    atomic_write_text(path, json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str):
    with open(path) as handle:
        return json.load(handle)


def content_hash(value) -> str:
    """A short stable hash of any JSON-able value."""
    text = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def dataset_fingerprint(root: str) -> str:
    """A hash of the dataset's table files' bytes: any change to the data changes every stage key."""
    digest = hashlib.sha256()
    for name in FINGERPRINT_FILES:
        path = os.path.join(root, name)
        if not os.path.exists(path):
            continue
        digest.update(name.encode())
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def versions() -> dict:
    import numpy
    import pyarrow

    from socialfeat import __version__

    return {
        "socialfeat": __version__,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "pyarrow": pyarrow.__version__,
    }


@contextlib.contextmanager
def _locked(path: str) -> Iterator[None]:
    """An exclusive advisory lock on `path` across processes (fcntl: one host, or NFS with lockd)."""
    import fcntl

    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass
class StageResult:
    name: str
    key: str
    path: str
    metrics: dict
    reused: bool
    seconds: float  # of this run: ~0 when reused
    original_seconds: float  # what computing it took when it was made


class StageStore:
    """Stage outputs under `root`/<stage>-<key>/, each with a manifest; a complete one is reused.

    With `remote` (a storage URI) the local root is a working copy: a stage found only in the remote
    store is fetched, and every stage is uploaded once complete, its manifest last."""

    def __init__(self, root: str, remote: str | None = None):
        self.root = os.path.abspath(root)
        self.remote = remote

    def path(self, name: str, key: str) -> str:
        return os.path.join(self.root, f"{name}-{key}")

    @staticmethod
    def key(name: str, config: dict, inputs: dict[str, str]) -> str:
        from socialfeat import __version__

        # the package version is part of the key: an upgrade never reuses an older release's outputs
        return content_hash({"stage": name, "config": config, "inputs": inputs, "version": __version__})

    def run(self, name: str, config: dict, inputs: dict[str, str], compute: Callable[[str], dict]) -> StageResult:
        """Reuse the stage keyed by (name, config, inputs) or compute it into a fresh directory.

        `compute(tmp_dir)` writes the outputs and returns the stage's metrics (a flat dict)."""
        key = self.key(name, config, inputs)
        final = self.path(name, key)
        os.makedirs(os.path.join(self.root, ".locks"), exist_ok=True)
        # Sweep trials share a store: the first to need a stage computes it, the others wait and reuse it.
        with _locked(os.path.join(self.root, ".locks", f"{name}-{key}")):
            return self._run_locked(name, key, final, config, inputs, compute)

    def _run_locked(self, name, key, final, config, inputs, compute) -> StageResult:
        manifest_path = os.path.join(final, MANIFEST)
        if not os.path.exists(manifest_path) and self.remote:
            self._fetch(final)
        if os.path.exists(manifest_path):
            manifest = read_json(manifest_path)
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
                },
            )
        log.info("stage %s: computed %s in %.1fs", name, os.path.basename(final), seconds)
        self._publish(final)
        return StageResult(name, key, final, metrics, False, seconds, seconds)

    def _fetch(self, final: str) -> None:
        """Copy a stage that is complete in the remote store (its manifest exists) into the local root."""
        from socialfeat import storage

        remote = storage.join(self.remote, os.path.basename(final))
        if not storage.exists(storage.join(remote, MANIFEST)):
            return
        with atomic_dir(final) as tmp:
            storage.download(remote, tmp)
        log.info("stage %s: fetched from %s", os.path.basename(final), remote)

    def _publish(self, final: str) -> None:
        """Upload a complete stage unless the remote store has it already (an earlier upload may have died)."""
        from socialfeat import storage

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
