"""S3CheckpointStorage against a real S3 server (SeaweedFS on loopback, started by the ``s3`` fixture): the same
behaviours as the file system storage, plus multipart uploads, pagination, buckets and credentials."""

from __future__ import annotations

import errno
import hashlib
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from state.s3 import S3CheckpointStorage
from state.storage import CheckpointStorageError, checkpoint_storage_for
from tests.integration.s3server import S3Endpoint, free_ports, s3  # noqa: F401

pytestmark = pytest.mark.integration
BUCKET = "weir-checkpoints"


@pytest.fixture
def storage(s3: S3Endpoint) -> Iterator[S3CheckpointStorage]:  # noqa: F811
    """A storage under a fresh prefix of a bucket the storage creates on first use."""
    st = S3CheckpointStorage(f"s3://{BUCKET}/tests/{uuid.uuid4().hex}", s3.options(**{"s3.create-bucket": "true"}))
    yield st
    st.close()


def count_calls(st: S3CheckpointStorage, operation: str) -> list[int]:
    counter = [0]

    def count(**kwargs: Any) -> None:
        counter[0] += 1

    st._client.meta.events.register(f"before-call.s3.{operation}", count)
    return counter


def raw_keys(st: S3CheckpointStorage) -> list[str]:
    """Every key under the storage's prefix, straight from the server."""
    resp = st._client.list_objects_v2(Bucket=st.bucket, Prefix=st.prefix + "/")
    return sorted(o["Key"] for o in resp.get("Contents", ()))


# -- configuration (no server needed)


def test_configuration_from_options(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(var, raising=False)
    st = S3CheckpointStorage("s3://bkt/a/b/", {"s3.endpoint": "http://127.0.0.1:1", "s3.region": "eu-west-3",
                                               "s3.access-key": "AK", "s3.secret-key": "SK"})
    assert (st.bucket, st.prefix, st.base_uri) == ("bkt", "a/b", "s3://bkt/a/b")
    assert st.uri("chk-1/_metadata") == "s3://bkt/a/b/chk-1/_metadata"
    assert st._client.meta.endpoint_url == "http://127.0.0.1:1"
    assert st._client.meta.region_name == "eu-west-3"
    assert st._client.meta.config.s3["addressing_style"] == "path"  # the default with an endpoint
    creds = st._client._request_signer._credentials
    assert (creds.access_key, creds.secret_key) == ("AK", "SK")
    virtual = S3CheckpointStorage("s3://bkt", {"s3.endpoint": "http://127.0.0.1:1", "s3.path-style-access": "false"})
    assert virtual._client.meta.config.s3["addressing_style"] == "auto"
    assert virtual.base_uri == "s3://bkt" and virtual.uri("x") == "s3://bkt/x"
    aws = S3CheckpointStorage("s3://bkt/p", {})
    assert aws._client.meta.region_name == "us-east-1"
    assert aws._client.meta.config.s3["addressing_style"] == "auto"  # no endpoint: virtual-host style on AWS
    assert not aws.create_bucket


def test_configuration_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:2")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:3")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-south-1")
    monkeypatch.delenv("AWS_REGION", raising=False)
    st = S3CheckpointStorage("s3://bkt/p", {})
    assert st._client.meta.endpoint_url == "http://127.0.0.1:3"  # the S3-specific variable wins
    assert st._client.meta.region_name == "ap-south-1"
    assert st._client.meta.config.s3["addressing_style"] == "path"
    monkeypatch.setenv("AWS_REGION", "sa-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    st = S3CheckpointStorage("s3://bkt/p", {})
    assert (st._client.meta.endpoint_url, st._client.meta.region_name) == ("http://127.0.0.1:2", "sa-east-1")
    st = S3CheckpointStorage("s3://bkt/p", {"s3.endpoint": "http://127.0.0.1:4", "s3.region": "us-west-2"})
    assert (st._client.meta.endpoint_url, st._client.meta.region_name) == ("http://127.0.0.1:4", "us-west-2")


def test_invalid_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    for bad_uri in ("s3://", "s3:///prefix", "s3://bkt/a//b", "s3://bkt/../x"):
        with pytest.raises(ValueError, match="S3 URI"):
            S3CheckpointStorage(bad_uri, {})
    with pytest.raises(ValueError, match="s3.access-key and s3.secret-key"):
        S3CheckpointStorage("s3://bkt", {"s3.access-key": "AK"})
    with pytest.raises(ValueError, match="s3.path-style-access"):
        S3CheckpointStorage("s3://bkt", {"s3.path-style-access": "maybe"})
    st = S3CheckpointStorage("s3://bkt", {"s3.endpoint": "http://127.0.0.1:1"})
    for bad_path in ("", "/abs", "a//b", "../x"):
        with pytest.raises(ValueError, match="invalid checkpoint storage path"):
            st.read(bad_path)


def test_checkpoint_storage_for_picks_s3() -> None:
    st = checkpoint_storage_for("s3://bkt/prefix", {"s3.endpoint": "http://127.0.0.1:1", "s3.region": "eu-west-1"})
    assert isinstance(st, S3CheckpointStorage)
    assert st._client.meta.region_name == "eu-west-1"


# -- against the server


def test_write_read_overwrite(storage: S3CheckpointStorage) -> None:
    storage.write("job/chk-1/op-0/state", b"one")
    assert storage.read("job/chk-1/op-0/state") == b"one"
    storage.write("job/chk-1/op-0/state", b"two, longer")
    assert storage.read("job/chk-1/op-0/state") == b"two, longer"
    assert storage.size("job/chk-1/op-0/state") == len(b"two, longer")
    storage.write("empty", b"")
    assert storage.read("empty") == b"" and storage.exists("empty") and storage.size("empty") == 0
    assert raw_keys(storage) == [f"{storage.prefix}/empty", f"{storage.prefix}/job/chk-1/op-0/state"]


def test_credentials_and_endpoint_from_the_environment(s3: S3Endpoint,  # noqa: F811
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_key)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    st = S3CheckpointStorage(f"s3://{BUCKET}/env-{uuid.uuid4().hex}", {"s3.create-bucket": "true"})
    st.write("x", b"through env")
    assert st.read("x") == b"through env"


def test_readers_never_see_a_partial_object(storage: S3CheckpointStorage) -> None:
    versions = [bytes([i]) * (1 << 20) for i in range(3)]
    storage.write("chk/_metadata", versions[0])
    stop = threading.Event()
    bad: list[str] = []
    reads = [0]

    def reader() -> None:
        while not stop.is_set():
            data = storage.read("chk/_metadata")
            reads[0] += 1
            if data not in versions:
                bad.append(f"read {len(data)} bytes that are no version")

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for i in range(15):
            storage.write("chk/_metadata", versions[i % 3])
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not bad, bad[:5]
    assert reads[0] > 0


def test_multipart_upload_that_fails_midway_leaves_no_object(storage: S3CheckpointStorage, tmp_path: Path) -> None:
    storage.write("shared/000007.sst", b"previous version")
    src = tmp_path / "000007.sst"
    src.write_bytes(os.urandom(20 << 20))
    parts = [0]

    def fail_after_first_part(**kwargs: Any) -> None:
        parts[0] += 1
        if parts[0] > 1:
            raise EndpointConnectionError(endpoint_url="simulated: connection lost mid-upload")

    storage._client.meta.events.register("before-call.s3.UploadPart", fail_after_first_part)
    with pytest.raises(CheckpointStorageError, match=f"{storage.uri('shared/000007.sst')}.*connection lost"):
        storage.upload_file(str(src), "shared/000007.sst")
    with pytest.raises(CheckpointStorageError, match="connection lost"):
        storage.upload_file(str(src), "shared/000008.sst")
    assert parts[0] > 1  # it did fail midway, after uploading a part
    assert storage.read("shared/000007.sst") == b"previous version"
    assert not storage.exists("shared/000008.sst")
    assert storage.list("") == ["shared/000007.sst"]
    uploads = storage._client.list_multipart_uploads(Bucket=storage.bucket, Prefix=storage.prefix + "/")
    assert not uploads.get("Uploads"), "the failed multipart uploads were not aborted"


def test_multipart_upload_download_round_trip_20mb(storage: S3CheckpointStorage, tmp_path: Path) -> None:
    data = os.urandom(20 << 20) + b"tail"
    src = tmp_path / "000123.sst"
    src.write_bytes(data)
    uploads = count_calls(storage, "UploadPart")
    assert storage.upload_file(str(src), "shared/000123.sst") == len(data)
    assert uploads[0] == 3  # 8 MiB parts
    head = storage._client.head_object(Bucket=storage.bucket, Key=storage.key("shared/000123.sst"))
    assert head["ETag"].strip('"').endswith("-3")  # the server assembled a 3-part object
    assert storage.size("shared/000123.sst") == len(data)
    assert storage.list("shared") == ["shared/000123.sst"]
    dest = tmp_path / "restore" / "db" / "000123.sst"
    assert storage.download_file("shared/000123.sst", str(dest)) == len(data)
    assert hashlib.sha256(dest.read_bytes()).digest() == hashlib.sha256(data).digest()
    assert sorted(os.listdir(dest.parent)) == ["000123.sst"]  # no temporary file left
    small = tmp_path / "small"
    small.write_bytes(b"tiny")
    assert storage.upload_file(str(small), "shared/small") == 4
    assert storage.read("shared/small") == b"tiny"


def test_list_paginates_and_is_relative_sorted(storage: S3CheckpointStorage, s3: S3Endpoint) -> None:  # noqa: F811
    names = ["b/2", "a/b/c/d", "a/bc", "a/b/x", "a/a", "top", "ax"]
    for p in names:
        storage.write(p, p.encode())
    sibling = S3CheckpointStorage(storage.base_uri + "-sibling", s3.options())  # shares the key prefix as a string
    sibling.write("a/a", b"not ours")
    storage.list_page_size = 2
    requests = count_calls(storage, "ListObjectsV2")
    assert storage.list("") == sorted(names)
    assert requests[0] == 4  # 7 keys, 2 a page
    assert storage.list("/") == sorted(names)
    assert storage.list("a/b") == ["a/b/c/d", "a/b/x"]  # a directory: not a/bc
    assert storage.list("a/b/") == ["a/b/c/d", "a/b/x"]
    assert storage.list("a") == ["a/a", "a/b/c/d", "a/b/x", "a/bc"]
    assert storage.list("nothing/here") == []
    assert storage.list("top") == []
    assert all(storage.read(p) == p.encode() for p in storage.list(""))
    assert sibling.list("") == ["a/a"]


def test_delete_is_idempotent(storage: S3CheckpointStorage) -> None:
    storage.write("chk-1/a", b"a")
    storage.write("chk-1/b", b"b")
    storage.delete("chk-1/a")
    assert not storage.exists("chk-1/a")
    assert storage.list("") == ["chk-1/b"]
    storage.delete("chk-1/a")
    storage.delete("never/existed")
    storage.delete("chk-1")  # not an object: what is "in" it stays
    assert storage.read("chk-1/b") == b"b"


def test_missing_objects_raise_file_not_found_naming_the_s3_uri(storage: S3CheckpointStorage,
                                                                tmp_path: Path) -> None:
    storage.write("chk-1/present", b"x")
    full = f"s3://{BUCKET}/{storage.prefix}/chk-1/missing"
    assert storage.uri("chk-1/missing") == full
    for call in (lambda: storage.read("chk-1/missing"), lambda: storage.size("chk-1/missing"),
                 lambda: storage.download_file("chk-1/missing", str(tmp_path / "out"))):
        with pytest.raises(FileNotFoundError) as info:
            call()
        assert info.value.errno == errno.ENOENT
        assert info.value.filename == full
        assert full in str(info.value)
    assert not storage.exists("chk-1/missing")
    assert os.listdir(tmp_path) == []  # the failed download left no file
    with pytest.raises(FileNotFoundError, match="chk-1'"):
        storage.read("chk-1")


def test_upload_of_a_missing_local_file(storage: S3CheckpointStorage, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no-such-file"):
        storage.upload_file(str(tmp_path / "no-such-file"), "x")
    assert storage.list("") == []


def test_concurrent_use_from_threads(storage: S3CheckpointStorage) -> None:
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(10):
                storage.write(f"chk-3/sub-{n}/part-{i}", f"{n}:{i}".encode())
                assert storage.read(f"chk-3/sub-{n}/part-{i}") == f"{n}:{i}".encode()
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(storage.list("chk-3")) == 80


# -- buckets and errors


def test_missing_bucket_is_an_error_unless_create_bucket(s3: S3Endpoint) -> None:  # noqa: F811
    name = f"weir-new-{uuid.uuid4().hex[:12]}"
    plain = S3CheckpointStorage(f"s3://{name}/p", s3.options())
    with pytest.raises(CheckpointStorageError, match=rf"s3://{name}/p/x.*s3.create-bucket=true"):
        plain.write("x", b"1")
    with pytest.raises(CheckpointStorageError, match=rf"s3://{name}/p/x"):
        plain.read("x")
    buckets = [b["Name"] for b in plain._client.list_buckets()["Buckets"]]
    assert name not in buckets  # not created behind our back
    creating = S3CheckpointStorage(f"s3://{name}/p", s3.options(**{"s3.create-bucket": "true"}))
    creating.write("x", b"1")
    assert plain.read("x") == b"1"
    again = S3CheckpointStorage(f"s3://{name}/q", s3.options(**{"s3.create-bucket": "true"}))
    again.write("y", b"2")  # the bucket exists already: fine
    assert again.list("") == ["y"]


def test_bad_credentials_are_a_storage_error_naming_the_uri(storage: S3CheckpointStorage,
                                                            s3: S3Endpoint) -> None:  # noqa: F811
    storage.write("x", b"1")
    wrong = S3CheckpointStorage(storage.base_uri, s3.options(**{"s3.secret-key": "wrong-secret"}))
    for call in (lambda: wrong.read("x"), lambda: wrong.write("x", b"2"), lambda: wrong.exists("x"),
                 lambda: wrong.list(""), lambda: wrong.delete("x")):
        with pytest.raises(CheckpointStorageError, match=storage.base_uri):
            call()
    assert storage.read("x") == b"1"


def test_unreachable_endpoint_is_a_storage_error(tmp_path: Path) -> None:
    port = free_ports(1)[0]  # nothing listens there
    st = S3CheckpointStorage("s3://bkt/p", {"s3.endpoint": f"http://127.0.0.1:{port}", "s3.access-key": "a",
                                            "s3.secret-key": "b", "s3.max-attempts": "1"})
    with pytest.raises(CheckpointStorageError, match="s3://bkt/p/x"):
        st.read("x")
    with pytest.raises(CheckpointStorageError, match="s3://bkt/p/x"):
        st.write("x", b"1")
    src = tmp_path / "f"
    src.write_bytes(b"123")
    with pytest.raises(CheckpointStorageError, match="s3://bkt/p/y"):
        st.upload_file(str(src), "y")
