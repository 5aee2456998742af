"""Garbage on every port a cluster listens on gets an error (or a closed connection) and leaves the daemons serving:
afterwards a job still runs correctly."""

from __future__ import annotations

import os
import socket
import struct
import urllib.error
import urllib.request
from typing import Any

import pytest

from client.gateway import JobManagerClient, JobManagerError
from client.local_cluster import LocalCluster
from tests.integration.procs import children
from weir.datastream import StreamExecutionEnvironment
from weir.datastream.execution import ExecutionContext, set_context

pytestmark = pytest.mark.integration


def listening_ports(pid: int) -> set[int]:
    """TCP ports a process listens on (from /proc/net/tcp and the process's socket inodes)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            parts = line.split()
            if parts[3] == "0A" and parts[9] in inodes:  # LISTEN
                ports.add(int(parts[1].split(":")[1], 16))
    return ports


def throw(port: int, payload: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        try:
            s.sendall(payload)
            s.settimeout(2)
            s.recv(4096)
        except OSError:
            pass


GARBAGE = [
    b"\x00" * 64,
    os.urandom(4096),
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + os.urandom(512),  # an HTTP/2 preface, then noise (gRPC ports)
    struct.pack("!IBI", 2**31, 2, 7),  # a data-plane frame header announcing 2 GiB
    struct.pack("!IBI", 10, 99, 0) + b"0123456789",  # an unknown frame kind
]


def test_garbage_on_every_port_leaves_the_cluster_serving(tmp_path: Any) -> None:
    with LocalCluster(taskmanagers=1, slots=2, log_dir=str(tmp_path)) as c:
        assert c.jobmanager is not None
        pids = [c.jobmanager.pid, c.taskmanager_procs[0].pid]
        workers = children(c.taskmanager_procs[0].pid)
        data_ports = [listening_ports(w) for w in workers]
        assert len(data_ports) == 2 and all(data_ports), data_ports  # each slot worker's data-plane server
        ports = set().union(*(listening_ports(p) for p in pids), *data_ports) | {c.port, c.rest_port,
                                                                                 *c.metrics_ports}
        for port in sorted(ports):
            for payload in GARBAGE:
                throw(port, payload)
        # oversized and malformed HTTP, unknown job ids over gRPC and REST
        try:
            urllib.request.urlopen(f"http://{c.rest_address}/jobs/nope", timeout=5)
        except urllib.error.HTTPError as e:
            assert e.code == 404
        jm = JobManagerClient(c.address)
        with pytest.raises(JobManagerError, match="no job with id"):
            jm.get_job("0" * 32)
        with pytest.raises(JobManagerError):
            jm.cancel("no-such-job")
        with pytest.raises(JobManagerError):
            jm.submit("bogus", b"not a pickle", b"not a pickle either")
        # every daemon is alive and a job runs correctly
        assert all(p.poll() is None for p in [c.jobmanager, *c.taskmanager_procs])
        set_context(ExecutionContext(jobmanager_address=c.address))
        try:
            env = StreamExecutionEnvironment.get_execution_environment()
            env.set_parallelism(2)
            out = env.from_collection(list(range(1000))).rebalance().map(lambda x: x + 1).execute_and_collect()
            assert sorted(out) == list(range(1, 1001))
        finally:
            set_context(None)
            jm.close()
