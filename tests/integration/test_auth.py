"""A cluster token (WEIR_AUTH_TOKEN): calls without it are refused, so nobody submits code without credentials."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from client.gateway import JobManagerClient
from client.local_cluster import LocalCluster
from tests.integration.procs import wait_for
from weir.datastream import StreamExecutionEnvironment
from weir.datastream.execution import ExecutionContext, set_context

pytestmark = pytest.mark.integration


def test_cluster_token_is_required(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEIR_AUTH_TOKEN", "s3cret-token")
    with LocalCluster(taskmanagers=1, slots=1, log_dir=str(tmp_path)) as c:
        # with the token (daemons and this client share the environment) everything works
        set_context(ExecutionContext(jobmanager_address=c.address))
        try:
            env = StreamExecutionEnvironment.get_execution_environment()
            assert sorted(env.from_collection([3, 1, 2]).map(lambda x: x * 10).execute_and_collect()) == [10, 20, 30]
        finally:
            set_context(None)

        # a client without it (or with a wrong one) is refused
        for token in ("", "wrong"):
            p = subprocess.run([sys.executable, "-m", "client", "list", "--jobmanager", c.address],
                               capture_output=True, text=True, timeout=60,
                               env={**os.environ, "WEIR_AUTH_TOKEN": token})
            assert p.returncode != 0
            assert "cluster token" in p.stderr and "WEIR_AUTH_TOKEN" in p.stderr

        # a TaskManager without it cannot register, so the JobManager never deploys code to it
        log = tmp_path / "rogue.log"
        with open(log, "wb") as out:
            rogue = subprocess.Popen([sys.executable, "-m", "client", "taskmanager", "--jobmanager", c.address,
                                      "--slots", "1", "--metrics-port", "-1"], stdout=out, stderr=out,
                                     env={**os.environ, "WEIR_AUTH_TOKEN": ""})
        try:
            wait_for(lambda: "UNAUTHENTICATED" in log.read_text(), 30, "the rogue TaskManager to be refused")
            assert len(JobManagerClient(c.address).overview().taskmanagers) == 1
        finally:
            rogue.kill()
            rogue.wait()
