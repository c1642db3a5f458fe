"""What an object store or a dataset row names stays where it belongs: keys with '..' never leave the local
cache, remote image references never leave the dataset's prefix (issue 31, security)."""

import os

import boto3
import pytest

from socialfeat import storage
from socialfeat.data.images import reference_problem


def _client():
    return boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1")


def test_a_key_with_dot_dot_in_a_shared_bucket_writes_nothing_outside_the_cache(bucket, tmp_path):
    name = bucket.removeprefix("s3://")
    client = _client()
    client.put_object(Bucket=name, Key="p/ds/ok.txt", Body=b"fine")
    client.put_object(Bucket=name, Key="p/ds/../../../../lab/zz/ESCAPED", Body=b"attacker")
    cache = tmp_path / "deep" / "er" / "cache"
    with pytest.raises(storage.StorageError) as refused:
        storage.download(f"{bucket}/p/ds", str(cache))
    assert "../../../../lab/zz/ESCAPED" in str(refused.value) and "refused" in str(refused.value)
    written = [os.path.join(d, n) for d, _, names in os.walk(tmp_path) for n in names]
    assert written == []  # every key is checked before anything is fetched, the good one included


def test_a_symlink_inside_the_cache_does_not_carry_a_download_out(bucket, tmp_path):
    name = bucket.removeprefix("s3://")
    _client().put_object(Bucket=name, Key="p/ds/sub/file.txt", Body=b"attacker")
    cache, outside = tmp_path / "cache", tmp_path / "outside"
    cache.mkdir()
    outside.mkdir()
    os.symlink(outside, cache / "sub")
    with pytest.raises(storage.StorageError, match="resolves outside"):
        storage.download(f"{bucket}/p/ds", str(cache))
    assert os.listdir(outside) == []


def test_confined_refuses_absolute_empty_and_dot_segments(tmp_path):
    for key in ("/etc/passwd", "a//b", "./a", "a/../../b", "a\\..\\b"):
        with pytest.raises(storage.StorageError, match="refused"):
            storage.confined(str(tmp_path), key, "s3://b/p")
    assert storage.confined(str(tmp_path), "a/b.txt", "s3://b/p") == os.path.join(str(tmp_path), "a", "b.txt")


def test_a_remote_image_reference_with_dot_dot_cannot_leave_the_dataset_prefix():
    source = "s3://lab/p/ds2"
    assert reference_problem("s3://lab/p/ds2/img/1.jpg", True, source) is None
    for escaping in (
        "s3://lab/p/ds2/../../../other/1.jpg",
        "s3://lab/p/ds2/img/%2e%2e/%2E%2E/x.jpg",  # percent-encoded dots
        "s3://lab/p/ds2//img/1.jpg",
        "s3://lab/p/ds2/./img/1.jpg",
    ):
        problem = reference_problem(escaping, True, source)
        assert problem is not None and "segment" in problem, escaping


def test_the_local_ray_listens_on_loopback_only_and_its_token_is_private(ray_session):
    import psutil

    ray_session.get([ray_session.remote(lambda: 1).remote()])  # a worker up too
    ours = {p.pid for p in psutil.Process().children(recursive=True)}
    listening = {(c.laddr.ip, c.pid) for c in psutil.net_connections("inet") if c.status == "LISTEN" and c.pid in ours}
    names = {psutil.Process(pid).name() for _, pid in listening}
    assert {"gcs_server", "raylet"} <= names  # the test sees Ray's servers
    assert {ip for ip, _ in listening} <= {"127.0.0.1", "::ffff:127.0.0.1", "::1"}, listening
    token = os.path.expanduser(os.path.join("~", ".ray", "auth_token"))
    assert os.stat(token).st_mode & 0o777 == 0o600
