"""Checkpoint storage on S3 or any S3-compatible store: ``s3://bucket/prefix``.

A path ``p`` is the object ``<prefix>/p`` of the bucket. A PUT (and the completion of a multipart upload) is atomic
on S3: readers see the old object or the whole new one. ``upload_file``/``download_file`` use boto3's transfer
manager, so large files go in parts (multipart above ``MULTIPART_THRESHOLD``); a failed multipart upload is aborted
and leaves no object, and a download goes to a temporary file renamed into place.

Options (all strings; the usual AWS environment variables and config files apply otherwise):

``s3.endpoint``
    endpoint URL of an S3-compatible store; else ``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL``, else AWS.
``s3.region``
    else ``AWS_REGION``, ``AWS_DEFAULT_REGION``, else ``us-east-1``.
``s3.access-key``, ``s3.secret-key`` (and optionally ``s3.session-token``)
    both or neither; else boto3's credential chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, profiles, ...).
``s3.path-style-access``
    ``true``/``false``; path-style addressing is the default when an endpoint is set, virtual-host style otherwise.
``s3.create-bucket``
    ``true`` to create the bucket on first use when it does not exist (default ``false``: a missing bucket is an
    error).
``s3.max-attempts``
    attempts per request, retries included (botocore "standard" retry mode; default 5).

One boto3 client per storage (boto3 clients are thread-safe), so an instance may be used from several threads.
Failures raise CheckpointStorageError naming the ``s3://`` URI; a missing object raises FileNotFoundError whose
``filename`` is the object's ``s3://`` URI.
"""

from __future__ import annotations

import errno
import os
import threading
from typing import Any, NoReturn

import boto3
import botocore.session
from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from botocore.loaders import create_loader

from state.filesystem import check_path, check_prefix
from state.storage import CheckpointStorageError

MULTIPART_THRESHOLD = 8 << 20
MULTIPART_CHUNKSIZE = 8 << 20
TRANSFER_CONCURRENCY = 4
NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})
_ERRORS = (ClientError, BotoCoreError, Boto3Error)
# botocore's API models, parsed once per process: a fresh session would parse them again (~0.15 s a storage).
_MODEL_LOADER = create_loader()


def _new_session() -> boto3.session.Session:
    """A private session (sessions are not thread-safe) that reads the environment now, sharing parsed models."""
    core = botocore.session.get_session()
    session = boto3.session.Session(botocore_session=core)
    core.register_component("data_loader", _MODEL_LOADER)  # after boto3 set up its own loader's search path
    return session


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, prefix without leading or trailing '/') of ``s3://bucket/prefix``."""
    if not uri.startswith("s3://"):
        raise ValueError(f"not an S3 URI: {uri!r} (expected s3://bucket/prefix)")
    bucket, _, prefix = uri[len("s3://"):].partition("/")
    if not bucket:
        raise ValueError(f"invalid S3 URI {uri!r}: no bucket (expected s3://bucket/prefix)")
    prefix = prefix.strip("/")
    if prefix:
        try:
            check_path(prefix)
        except ValueError as e:
            raise ValueError(f"invalid S3 URI {uri!r}: bad prefix ({e})") from e
    return bucket, prefix


def _flag(options: dict[str, str], name: str, default: bool) -> bool:
    value = options.get(name)
    if value is None or value.strip() == "":
        return default
    v = value.strip().lower()
    if v in ("true", "1", "yes", "on"):
        return True
    if v in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"option {name}={value!r}: expected true or false")


def _code(e: BaseException) -> str:
    if isinstance(e, ClientError):
        return str(e.response.get("Error", {}).get("Code", ""))
    return ""


class S3CheckpointStorage:
    """The CheckpointStorage role on ``s3://bucket/prefix`` (see the module docstring for ``options``)."""

    list_page_size = 1000  # keys per ListObjectsV2 request (the S3 maximum)

    def __init__(self, uri: str, options: dict[str, str] | None = None) -> None:
        opts = dict(options or {})
        self.bucket, self.prefix = parse_s3_uri(uri)
        self.base_uri = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

        env = os.environ
        self.endpoint_url: str | None = (opts.get("s3.endpoint") or env.get("AWS_ENDPOINT_URL_S3")
                                         or env.get("AWS_ENDPOINT_URL") or None)
        self.region: str = (opts.get("s3.region") or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
                            or "us-east-1")
        self.path_style = _flag(opts, "s3.path-style-access", default=self.endpoint_url is not None)
        self.create_bucket = _flag(opts, "s3.create-bucket", default=False)
        access_key, secret_key = opts.get("s3.access-key") or None, opts.get("s3.secret-key") or None
        if (access_key is None) != (secret_key is None):
            raise ValueError("options s3.access-key and s3.secret-key go together: set both or neither")
        try:
            max_attempts = int(opts.get("s3.max-attempts", "5"))
        except ValueError as e:
            raise ValueError(f"option s3.max-attempts={opts['s3.max-attempts']!r}: expected an integer") from e

        config = Config(
            region_name=self.region,
            signature_version="s3v4",
            s3={"addressing_style": "path" if self.path_style else "auto"},
            retries={"mode": "standard", "max_attempts": max(1, max_attempts)},
            connect_timeout=10,
            read_timeout=60,
            max_pool_connections=32,
        )
        # A session is not thread-safe, a client is: one private session makes this instance's one client.
        self._client: Any = _new_session().client(
            "s3", endpoint_url=self.endpoint_url, region_name=self.region, aws_access_key_id=access_key,
            aws_secret_access_key=secret_key, aws_session_token=opts.get("s3.session-token") or None,
            config=config)
        self._transfer = TransferConfig(multipart_threshold=MULTIPART_THRESHOLD,
                                        multipart_chunksize=MULTIPART_CHUNKSIZE,
                                        max_concurrency=TRANSFER_CONCURRENCY)
        self._bucket_ready = not self.create_bucket
        self._bucket_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"S3CheckpointStorage({self.base_uri!r}, endpoint={self.endpoint_url!r})"

    def close(self) -> None:
        """Release the client's connections (optional; the instance is unusable afterwards)."""
        self._client.close()

    # -- names

    def key(self, path: str) -> str:
        """The object key of ``path``."""
        check_path(path)
        return f"{self.prefix}/{path}" if self.prefix else path

    def uri(self, path: str) -> str:
        return f"s3://{self.bucket}/{self.key(path)}"

    # -- errors

    def _fail(self, op: str, target: str, e: BaseException) -> NoReturn:
        if _code(e) == "NoSuchBucket" or "NoSuchBucket" in str(e):
            raise CheckpointStorageError(
                f"checkpoint storage: cannot {op} {target}: bucket {self.bucket!r} does not exist"
                f"{' at ' + self.endpoint_url if self.endpoint_url else ''} (create it, or set the option "
                f"s3.create-bucket=true): {e}") from e
        raise CheckpointStorageError(f"checkpoint storage: cannot {op} {target}: {e}") from e

    def _missing(self, path: str, e: BaseException) -> NoReturn:
        raise FileNotFoundError(errno.ENOENT, "no such object in checkpoint storage", self.uri(path)) from e

    def _ensure_bucket(self) -> None:
        """With s3.create-bucket=true: create the bucket once, on first use, if it does not exist."""
        if self._bucket_ready:
            return
        with self._bucket_lock:
            if self._bucket_ready:
                return
            try:
                self._client.head_bucket(Bucket=self.bucket)
            except ClientError as e:
                if _code(e) not in ("404", "NoSuchBucket", "NotFound"):
                    self._fail("check bucket of", self.base_uri, e)
                self._create_bucket()
            except BotoCoreError as e:
                self._fail("check bucket of", self.base_uri, e)
            self._bucket_ready = True

    def _create_bucket(self) -> None:
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        if self.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            self._client.create_bucket(**kwargs)
        except ClientError as e:
            if _code(e) != "BucketAlreadyOwnedByYou":  # created meanwhile by another process of ours
                self._fail("create bucket for", self.base_uri, e)
        except BotoCoreError as e:
            self._fail("create bucket for", self.base_uri, e)

    # -- writes

    def write(self, path: str, data: bytes) -> None:
        key = self.key(path)
        self._ensure_bucket()
        try:
            self._client.put_object(Bucket=self.bucket, Key=key, Body=bytes(data))
        except _ERRORS as e:
            self._fail("write", self.uri(path), e)

    def upload_file(self, local_path: str, path: str) -> int:
        key = self.key(path)
        size = os.stat(local_path).st_size  # a missing local file: FileNotFoundError naming it
        self._ensure_bucket()
        try:
            self._client.upload_file(local_path, self.bucket, key, Config=self._transfer)
        except _ERRORS as e:
            self._fail(f"upload {local_path} to", self.uri(path), e)
        return size

    def delete(self, path: str) -> None:
        key = self.key(path)
        self._ensure_bucket()
        try:
            self._client.delete_object(Bucket=self.bucket, Key=key)
        except ClientError as e:
            if _code(e) not in NOT_FOUND:  # S3 answers 204 for a missing key; some stores say 404
                self._fail("delete", self.uri(path), e)
        except _ERRORS as e:
            self._fail("delete", self.uri(path), e)

    # -- reads

    def read(self, path: str) -> bytes:
        key = self.key(path)
        self._ensure_bucket()
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=key)
            with response["Body"] as body:
                data: bytes = body.read()  # botocore checks the length against Content-Length
            return data
        except ClientError as e:
            if _code(e) in NOT_FOUND:
                self._missing(path, e)
            self._fail("read", self.uri(path), e)
        except _ERRORS as e:
            self._fail("read", self.uri(path), e)

    def download_file(self, path: str, local_path: str) -> int:
        key = self.key(path)
        self._ensure_bucket()
        os.makedirs(os.path.dirname(os.path.abspath(local_path)), exist_ok=True)
        try:
            # s3transfer writes to a temporary file next to local_path and renames it when complete
            self._client.download_file(self.bucket, key, local_path, Config=self._transfer)
        except ClientError as e:
            if _code(e) in NOT_FOUND:
                self._missing(path, e)
            self._fail(f"download to {local_path}:", self.uri(path), e)
        except _ERRORS as e:
            self._fail(f"download to {local_path}:", self.uri(path), e)
        return os.stat(local_path).st_size

    def _head(self, path: str) -> dict[str, Any] | None:
        key = self.key(path)
        self._ensure_bucket()
        try:
            head: dict[str, Any] = self._client.head_object(Bucket=self.bucket, Key=key)
            return head
        except ClientError as e:
            if _code(e) in NOT_FOUND:
                return None
            self._fail("stat", self.uri(path), e)
        except _ERRORS as e:
            self._fail("stat", self.uri(path), e)

    def exists(self, path: str) -> bool:
        return self._head(path) is not None

    def size(self, path: str) -> int:
        head = self._head(path)
        if head is None:
            raise FileNotFoundError(errno.ENOENT, "no such object in checkpoint storage", self.uri(path))
        return int(head["ContentLength"])

    def list(self, prefix: str) -> list[str]:
        """Every object under the directory ``prefix`` ('' for all), as paths relative to the base, sorted."""
        prefix = check_prefix(prefix)
        base = f"{self.prefix}/" if self.prefix else ""
        list_prefix = base + (prefix + "/" if prefix else "")
        self._ensure_bucket()
        out: list[str] = []
        try:
            paginator = self._client.get_paginator("list_objects_v2")
            pages = paginator.paginate(Bucket=self.bucket, Prefix=list_prefix,
                                       PaginationConfig={"PageSize": self.list_page_size})
            for page in pages:
                for obj in page.get("Contents", ()):
                    key = obj["Key"]
                    if key.endswith("/"):
                        continue  # a "directory marker" some tools create, not an object of ours
                    out.append(key[len(base):])
        except _ERRORS as e:
            self._fail("list", f"s3://{self.bucket}/{list_prefix}", e)
        return sorted(out)
