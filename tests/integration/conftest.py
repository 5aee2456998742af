"""Fixtures: real JobManager and TaskManager processes on loopback, stopped after use."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

from client.gateway import JobManagerClient
from client.local_cluster import LocalCluster
from tests.integration.procs import alive, children
from weir.datastream.execution import ExecutionContext, set_context

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _all_pids(cluster: LocalCluster) -> list[int]:
    pids = list(cluster.pids.values())
    for tm in cluster.taskmanager_procs:
        pids += children(tm.pid)
    return pids


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """1 JobManager + 2 TaskManagers with 2 slots each, shared by the session's tests."""
    c = LocalCluster(taskmanagers=2, slots=2, heartbeat_timeout=3, heartbeat_interval=0.5,
                     slot_request_timeout=4, log_dir=str(tmp_path_factory.mktemp("cluster-logs")))
    c.start()
    pids = _all_pids(c)
    try:
        yield c
    finally:
        c.stop()
        leftover = [p for p in pids if alive(p)]
        assert not leftover, f"processes left running after the cluster stopped: {leftover}"


@pytest.fixture
def jm(cluster: LocalCluster) -> Iterator[JobManagerClient]:
    client = JobManagerClient(cluster.address)
    yield client
    client.close()


@pytest.fixture
def on_cluster(cluster: LocalCluster) -> Iterator[str]:
    """env.execute() in this test runs on the shared cluster."""
    set_context(ExecutionContext(jobmanager_address=cluster.address))
    yield cluster.address
    set_context(None)


def weir_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> tuple[int, str, str]:
    import subprocess

    p = subprocess.run([sys.executable, "-m", "client", *args], capture_output=True, text=True, timeout=timeout,
                       cwd=REPO, env={**os.environ, **(env or {})})
    return p.returncode, p.stdout, p.stderr
