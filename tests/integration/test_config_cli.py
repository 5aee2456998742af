"""The configuration file through the real CLI: `weir config show`, daemons configured by one file (flags win),
and a bad file stopping a daemon before it starts anything."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from client.gateway import JobManagerClient, JobManagerUnreachableError
from client.local_cluster import free_port
from tests.integration.conftest import REPO, weir_cli
from tests.integration.procs import wait_for

pytestmark = pytest.mark.integration

# keys of the developer's own environment must not leak into these tests
CLEAN = {"WEIR_CONF_DIR": "", "WEIR_JOBMANAGER": "", "WEIR_REST_TOKEN": ""}


def test_config_show_prints_values_and_their_sources(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("jobmanager:\n  rpc:\n    address: jm.example\n    port: 7000\nrest.port: 9000\n"
                    "heartbeat.timeout: 20 s\nstate.backend.type: rocksdb\nweir.rest.token: hunter2\n")
    env = {**CLEAN, "WEIR_HEARTBEAT_TIMEOUT": "30 s", "WEIR_TASKMANAGER_NUMBEROFTASKSLOTS": "6"}
    rc, out, err = weir_cli("config", "show", "--config", str(path), "-D", "metrics.port=9300", env=env)
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0] == f"configuration file: {path}"
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:]}
    assert rows["jobmanager.rpc.address"] == ["jm.example", str(path)]
    assert rows["jobmanager.rpc.port"] == ["7000", str(path)]
    assert rows["rest.port"] == ["9000", str(path)]
    assert rows["heartbeat.timeout"] == ["30", "s", "$WEIR_HEARTBEAT_TIMEOUT"]  # the environment beats the file
    assert rows["taskmanager.numberOfTaskSlots"] == ["6", "$WEIR_TASKMANAGER_NUMBEROFTASKSLOTS"]
    assert rows["metrics.port"] == ["9300", "-D"]
    assert rows["heartbeat.interval"] == ["1", "s", "default"]
    assert rows["weir.rest.token"] == ["******", str(path)]
    assert "hunter2" not in out + err

    rc, out, err = weir_cli("config", "show", "--config", str(path), "--json", env=env)
    assert rc == 0, err
    data = json.loads(out)
    assert data["file"] == str(path)
    assert data["keys"]["heartbeat.timeout"] == {**data["keys"]["heartbeat.timeout"], "value": "30 s",
                                                 "origin": "env", "source": "$WEIR_HEARTBEAT_TIMEOUT"}
    assert data["keys"]["state.backend.type"]["source"] == str(path)
    assert data["keys"]["rest.address"]["origin"] == "default"


def test_config_show_finds_the_file_in_weir_conf_dir(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("rest.port: 9500\n")
    rc, out, err = weir_cli("config", "show", "--json", env={**CLEAN, "WEIR_CONF_DIR": str(tmp_path)})
    assert rc == 0, err
    assert json.loads(out)["keys"]["rest.port"]["source"] == str(tmp_path / "config.yaml")


def test_jobmanager_with_a_bad_key_fails_before_starting(tmp_path: Path) -> None:
    rpc, rest = free_port(), free_port()
    path = tmp_path / "config.yaml"
    path.write_text(f"jobmanager.rpc.port: {rpc}\nrest.port: {rest}\nheartbeat.timout: 5 s\n")
    rc, out, err = weir_cli("jobmanager", "--config", str(path), env=CLEAN, timeout=30)
    assert rc != 0
    assert "invalid configuration, nothing started" in err
    assert "unknown key 'heartbeat.timout' (value '5 s'" in err
    assert str(path) in err
    assert "did you mean 'heartbeat.timeout'?" in err
    assert "listening" not in err and "configuration file:" not in err  # it stopped before announcing a start


@pytest.mark.parametrize(("command", "text", "message"), [
    ("jobmanager", 'rest.port: "abc"\n', "rest.port: 'abc'"),
    ("taskmanager", "state.backend.type: mongo\n", "state.backend.type: 'mongo'"),
])
def test_daemons_with_a_bad_value_fail_before_starting(tmp_path: Path, command: str, text: str,
                                                        message: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("jobmanager.rpc.address: 127.0.0.1\n" + text)
    rc, out, err = weir_cli(command, "--config", str(path), env=CLEAN, timeout=30)
    assert rc != 0
    assert message in err and "nothing started" in err


def test_bad_environment_override_fails_the_taskmanager() -> None:
    rc, out, err = weir_cli("taskmanager", "-m", "127.0.0.1:1", env={**CLEAN, "WEIR_METRICS_PORT": "lots"},
                            timeout=30)
    assert rc != 0
    assert "metrics.port: 'lots' (from $WEIR_METRICS_PORT) is not a whole number" in err


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in reversed(started):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in started:
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _daemon(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as f:
        return subprocess.Popen([sys.executable, "-m", "client", *args], stdout=f, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=REPO, env={**os.environ, **CLEAN, **env})


def test_daemons_configured_by_one_file_flags_win(tmp_path: Path,
                                                   procs: list[subprocess.Popen[bytes]]) -> None:
    """One file for both daemons: the JobManager binds jobmanager.bind-host and advertises jobmanager.rpc.address,
    the TaskManager finds the JobManager through it and advertises taskmanager.host; the environment and flags
    override the file."""
    rpc, rest_file, rest_flag = free_port(), free_port(), free_port()
    path = tmp_path / "config.yaml"
    path.write_text(f"""
jobmanager:
  bind-host: 127.0.0.1
  rpc:
    address: localhost
    port: {rpc}
rest.port: {rest_file}
taskmanager:
  numberOfTaskSlots: 2
  bind-host: 127.0.0.1
  host: localhost
metrics.port: -1
heartbeat:
  interval: 300 ms
  timeout: 5 s
state.savepoints.dir: file://{tmp_path}/savepoints
""")
    env = {"WEIR_HOME": str(tmp_path / "home")}
    procs.append(_daemon(["jobmanager", "--config", str(path), "--rest-port", str(rest_flag)], env,
                         tmp_path / "jm.log"))
    procs.append(_daemon(["taskmanager", "--config", str(path)], {**env, "WEIR_TASKMANAGER_NUMBEROFTASKSLOTS": "3"},
                         tmp_path / "tm.log"))
    client = JobManagerClient(f"127.0.0.1:{rpc}", timeout=5)

    def registered() -> object:
        for p in procs:
            assert p.poll() is None, (tmp_path / "jm.log").read_text() + (tmp_path / "tm.log").read_text()
        try:
            o = client.overview(timeout=2)
        except JobManagerUnreachableError:
            return None
        return o if o.taskmanagers else None

    try:
        overview = wait_for(registered, 60, "the TaskManager to register")
    finally:
        client.close()
    tm = overview.taskmanagers[0]
    assert tm.slots == 3  # the environment beats the file
    assert tm.address.startswith("localhost:")  # advertised taskmanager.host, not the bind address
    with urllib.request.urlopen(f"http://127.0.0.1:{rest_flag}/overview", timeout=5) as r:  # the flag beats the file
        assert json.loads(r.read())["slots-total"] == 3
    jm_log = (tmp_path / "jm.log").read_text()
    assert f"REST API and /metrics on http://127.0.0.1:{rest_flag}" in jm_log
    assert f"listening on localhost:{rpc}" in jm_log  # advertised jobmanager.rpc.address
    assert f"rest.port = {rest_flag}  (--rest-port)" in jm_log
    assert f"heartbeat.timeout = 5 s  ({path})" in jm_log
    tm_log = (tmp_path / "tm.log").read_text()
    assert "taskmanager.numberOfTaskSlots = 3  ($WEIR_TASKMANAGER_NUMBEROFTASKSLOTS)" in tm_log


def test_cluster_start_takes_the_configuration(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("taskmanager.numberOfTaskSlots: 3\nheartbeat.timeout: 4 s\nstate.backend.type: rocksdb\n"
                    "taskmanager.rpc.port: 7777\n")
    env = {**CLEAN, "WEIR_HOME": str(tmp_path / "home")}
    rc, out, err = weir_cli("cluster", "start", "-n", "1", "--port", "0", "--config", str(path), env=env)
    try:
        assert rc == 0, err
        assert "ignored: taskmanager.rpc.port" in err  # a local cluster picks its own ports
        address = next(line.split("=", 1)[1] for line in out.splitlines() if line.startswith("export WEIR_JOBMANAGER="))
        client = JobManagerClient(address, timeout=5)
        try:
            assert client.overview().slots_total == 3
        finally:
            client.close()
        tm_log = (tmp_path / "home" / "log" / "taskmanager-0.log").read_text()
        assert "state.backend.type = rocksdb" in tm_log
        jm_log = (tmp_path / "home" / "log" / "jobmanager.log").read_text()
        assert "heartbeat.timeout = 4 s" in jm_log
    finally:
        rc2, _, err2 = weir_cli("cluster", "stop", env=env)
        assert rc2 == 0 or rc != 0, err2


def test_weir_run_local_cluster_reads_weir_conf_dir(tmp_path: Path) -> None:
    """`weir run` without a JobManager: the local cluster takes the file's job-level keys and ignores its network
    keys (a local cluster lives on loopback with ports of its own), here a TaskManager port that is taken."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        (tmp_path / "config.yaml").write_text(f"taskmanager.rpc.port: {taken.getsockname()[1]}\n"
                                              "state.backend.type: rocksdb\n")
        rc, out, err = weir_cli("run", os.path.join(REPO, "tests", "integration", "jobs", "only_api_names.py"),
                                "300", env={**CLEAN, "WEIR_CONF_DIR": str(tmp_path), "WEIR_HOME": str(tmp_path)})
    assert rc == 0, err
    assert "OK" in out
    assert f"ignored: taskmanager.rpc.port ({tmp_path / 'config.yaml'})" in err
