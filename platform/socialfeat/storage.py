"""Storage URIs (local paths, s3://, gs://, ...) through pyarrow filesystems: resolve, check, mirror."""

import hashlib
import logging
import os
import re
import uuid

import pyarrow.fs as pafs

log = logging.getLogger(__name__)
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


class StorageError(OSError):
    """A storage URI that cannot be used: no such bucket, no permission, not a dataset."""


def is_uri(location: str | None) -> bool:
    """True for a remote storage URI (s3://, gs://, hdfs://, ...); plain paths and file:// are local."""
    match = _SCHEME.match(location or "")
    return bool(match) and match.group(1).lower() != "file"


def join(uri: str, *parts: str) -> str:
    return "/".join([uri.rstrip("/"), *parts])


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) for a URI; AWS_ENDPOINT_URL(_S3) and the usual AWS_* variables apply."""
    try:
        return pafs.FileSystem.from_uri(uri)
    except (ValueError, OSError) as error:  # pyarrow's ArrowInvalid is a ValueError
        raise StorageError(f"{uri}: not a usable storage URI ({error})") from error


def _bucket(path: str) -> str:
    return path.split("/", 1)[0]


def _explain(uri: str, error: OSError) -> StorageError:
    text = str(error)
    if "ACCESS_DENIED" in text or "INVALID_ACCESS_KEY" in text or "SIGNATURE" in text or "403" in text:
        reason = "access denied: check the credentials (AWS_* variables, instance role) and the bucket policy"
    elif "NETWORK_CONNECTION" in text or "Couldn't connect" in text or "curlCode" in text:
        reason = "the storage endpoint is unreachable"
    else:
        reason = text.splitlines()[0] if text else type(error).__name__
    return StorageError(f"{uri}: {reason}")


def _info(fs: pafs.FileSystem, path: str, uri: str) -> pafs.FileInfo:
    try:
        return fs.get_file_info(path)
    except OSError as error:
        raise _explain(uri, error) from error


def _bucket_of(uri: str, hint: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path) for a URI whose bucket exists; else a StorageError ending in `hint`."""
    fs, path = resolve(uri)
    bucket = _bucket(path)
    if _info(fs, bucket, uri).type == pafs.FileType.NotFound:
        raise StorageError(f"{uri}: bucket {bucket!r} does not exist ({hint})")
    return fs, path


def check_writable(uri: str) -> None:
    """Fail before any work when the bucket is missing or refuses writes (a probe object is written and removed)."""
    fs, path = _bucket_of(uri, "create it first; socialfeat never creates buckets")
    if _info(fs, path, uri).type == pafs.FileType.File:
        raise StorageError(f"{uri}: is a file, not a directory prefix")
    probe = f"{path.rstrip('/')}/.socialfeat-probe-{uuid.uuid4().hex[:8]}"
    try:
        with fs.open_output_stream(probe) as stream:
            stream.write(b"probe")
        fs.delete_file(probe)
    except OSError as error:
        raise _explain(uri, error) from error


def check_dataset(uri: str) -> None:
    fs, path = _bucket_of(uri, "--data / data.path")
    if _info(fs, path, uri).type != pafs.FileType.Directory:
        raise StorageError(f"{uri}: no dataset there (--data / data.path expects a prefix holding items.parquet ...)")


def exists(uri: str) -> bool:
    fs, path = resolve(uri)
    return _info(fs, path, uri).type != pafs.FileType.NotFound


def _listing(fs: pafs.FileSystem, path: str, uri: str) -> list[pafs.FileInfo]:
    try:
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    except OSError as error:
        raise _explain(uri, error) from error
    return [info for info in infos if info.type == pafs.FileType.File]


def confined(local: str, relative: str, uri: str) -> str:
    """The local path of the object `relative` under `local`, refused unless it stays inside `local`: an
    object store's keys may hold `..`, a leading `/` or empty segments, and a bucket others can write to
    must not place files anywhere but the cache (nor through a symlink inside it)."""
    parts = relative.split("/")
    if relative.startswith("/") or "\\" in relative or any(part in ("", ".", "..") for part in parts):
        raise StorageError(f"{join(uri, relative)}: object key {relative!r} leaves {uri} ('..', '/' or '.'); refused")
    target = os.path.join(local, *parts)
    root = os.path.realpath(local)
    if os.path.commonpath([root, os.path.realpath(target)]) != root:
        raise StorageError(f"{join(uri, relative)}: {target} resolves outside {local} (a symlink); refused")
    return target


def download(uri: str, local: str) -> int:
    """Mirror the files under `uri` into `local`, fetching only those missing or of another size; returns the
    count fetched. Every key is checked before anything is fetched (see `confined`)."""
    fs, path = resolve(uri)
    fetched = 0
    listing = _listing(fs, path, uri)
    targets = [confined(local, info.path[len(path.rstrip("/")) + 1 :], uri) for info in listing]
    for info, target in zip(listing, targets):
        relative = info.path[len(path.rstrip("/")) + 1 :]
        if os.path.exists(target) and os.path.getsize(target) == info.size:
            continue
        os.makedirs(os.path.dirname(target), exist_ok=True)
        partial = f"{target}.part-{uuid.uuid4().hex[:8]}"
        try:
            pafs.copy_files(info.path, partial, source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
        except OSError as error:
            raise _explain(join(uri, relative), error) from error
        os.replace(partial, target)
        fetched += 1
    return fetched


def upload(local: str, uri: str, skip: tuple[str, ...] = (), last: tuple[str, ...] = ()) -> int:
    """Copy the files under `local` to `uri`, leaving out top-level entries in `skip` and writing those
    in `last` after all others (a manifest written last marks a complete upload); returns the count."""
    fs, path = resolve(uri)
    files = []
    for directory, subdirs, names in os.walk(local):
        relative_dir = os.path.relpath(directory, local)
        if relative_dir == ".":
            subdirs[:] = [d for d in subdirs if d not in skip]
            names = [n for n in names if n not in skip]
        files += [os.path.normpath(os.path.join(relative_dir, name)) for name in names]
    files.sort(key=lambda name: name in last)
    for relative in files:
        destination = f"{path.rstrip('/')}/{relative.replace(os.sep, '/')}"
        try:
            pafs.copy_files(
                os.path.join(local, relative),
                destination,
                source_filesystem=pafs.LocalFileSystem(),
                destination_filesystem=fs,
            )
        except OSError as error:
            raise _explain(join(uri, relative), error) from error
    return len(files)


def cache_dir(uri: str, kind: str) -> str:
    """The local working copy of a remote dataset or run: $SOCIALFEAT_CACHE (default ~/.cache/socialfeat)/kind/..."""
    root = os.environ.get("SOCIALFEAT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "socialfeat")
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", _SCHEME.sub(r"\1_", uri.rstrip("/")))[-80:]
    digest = hashlib.sha256(uri.rstrip("/").encode()).hexdigest()[:8]
    return os.path.join(root, kind, f"{readable}-{digest}")


def local_dataset(location: str) -> str:
    """A local directory holding the dataset at `location` (fetched into the cache when it is a URI)."""
    if not is_uri(location):
        return location
    check_dataset(location)
    local = cache_dir(location, "data")
    fetched = download(location, local)
    log.info("dataset %s: %d files fetched into %s", location, fetched, local)
    return local
