"""A local cluster: one JobManager and N TaskManagers as child processes on loopback.

Used by ``weir run`` without ``--jobmanager`` (torn down after the run), by ``weir cluster start`` (detached,
its pids kept in a state file for ``weir cluster stop``), and by the tests.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from client.gateway import JobManagerClient, JobManagerUnreachableError


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def state_file() -> Path:
    return Path(os.environ.get("WEIR_HOME", Path.home() / ".weir")) / "cluster.json"


@dataclass
class LocalCluster:
    taskmanagers: int = 1
    slots: int = 2
    host: str = "127.0.0.1"
    port: int = 0
    heartbeat_timeout: float = 10.0
    heartbeat_interval: float = 1.0
    slot_request_timeout: float = 60.0
    detached: bool = False  # survive this process (weir cluster start)
    log_dir: str | None = None
    quiet: bool = False  # daemons' logs to files/devnull instead of this terminal
    ha_dir: str | None = None
    checkpoints_dir: str | None = None
    jobmanager: subprocess.Popen[bytes] | None = None
    taskmanager_procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    metrics_ports: list[int] = field(default_factory=list)
    address: str = ""
    rest_port: int = 0  # the JobManager's REST port (0: a free one, picked at start)

    @property
    def rest_address(self) -> str:
        """HOST:PORT of the JobManager's REST API and /metrics."""
        return f"{self.host}:{self.rest_port}"

    def _popen(self, args: list[str], name: str) -> subprocess.Popen[bytes]:
        out: int | object = None
        err: int | object = None
        if self.log_dir:
            os.makedirs(self.log_dir, exist_ok=True)
            f = open(os.path.join(self.log_dir, f"{name}.log"), "ab")  # noqa: SIM115 - owned by the child
            out = err = f
        elif self.quiet:
            err = subprocess.DEVNULL
        env = dict(os.environ)
        env.pop("WEIR_DIE_WITH_PARENT", None)
        if not self.detached:  # attached daemons die with this process (see client/__main__.py)
            env["WEIR_DIE_WITH_PARENT"] = str(os.getpid())
        return subprocess.Popen(
            [sys.executable, "-m", "client", *args],
            stdout=out,  # type: ignore[arg-type]
            stderr=err,  # type: ignore[arg-type]
            stdin=subprocess.DEVNULL,
            start_new_session=self.detached,
            env=env,
        )

    def start(self, timeout: float = 60.0) -> str:
        self.port = self.port or free_port(self.host)
        while not self.rest_port or self.rest_port == self.port:
            self.rest_port = free_port(self.host)
        self.address = f"{self.host}:{self.port}"
        self.start_jobmanager()
        for i in range(self.taskmanagers):
            self.add_taskmanager(name=f"taskmanager-{i}")
        try:
            self.wait_ready(self.taskmanagers, timeout)
        except BaseException:
            self.stop()
            raise
        return self.address

    def start_jobmanager(self) -> subprocess.Popen[bytes]:
        """(Re)start the JobManager on the cluster's address (after a kill, with the same HA directory)."""
        args = ["jobmanager", "--host", self.host, "--port", str(self.port), "--rest-port", str(self.rest_port),
                "--heartbeat-timeout", str(self.heartbeat_timeout),
                "--slot-request-timeout", str(self.slot_request_timeout)]
        if self.ha_dir:
            args += ["--ha-dir", self.ha_dir]
        if self.checkpoints_dir:
            args += ["--checkpoints-dir", self.checkpoints_dir]
        self.jobmanager = self._popen(args, "jobmanager")
        return self.jobmanager

    def add_taskmanager(self, slots: int | None = None, name: str | None = None) -> subprocess.Popen[bytes]:
        metrics_port = free_port(self.host)
        self.metrics_ports.append(metrics_port)
        p = self._popen(
            ["taskmanager", "--jobmanager", self.address, "--host", self.host,
             "--slots", str(slots or self.slots), "--heartbeat-interval", str(self.heartbeat_interval),
             "--metrics-port", str(metrics_port)],
            name or f"taskmanager-{len(self.taskmanager_procs)}",
        )
        self.taskmanager_procs.append(p)
        return p

    def wait_ready(self, taskmanagers: int, timeout: float = 60.0) -> None:
        """Wait until the JobManager answers and ``taskmanagers`` TaskManagers are registered."""
        deadline = time.monotonic() + timeout
        client = JobManagerClient(self.address, timeout=2)
        try:
            while True:
                for p in [self.jobmanager, *self.taskmanager_procs]:
                    if p is not None and p.poll() is not None:
                        raise RuntimeError(f"a daemon of the local cluster exited with code {p.returncode} "
                                           f"while starting: {' '.join(map(str, p.args))}")  # type: ignore[arg-type]
                try:
                    if len(client.overview(timeout=2).taskmanagers) >= taskmanagers:
                        return
                except JobManagerUnreachableError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the local cluster at {self.address} was not ready within {timeout:g} s")
                time.sleep(0.05)
        finally:
            client.close()

    @property
    def pids(self) -> dict[str, int]:
        out = {"jobmanager": self.jobmanager.pid} if self.jobmanager else {}
        for i, p in enumerate(self.taskmanager_procs):
            out[f"taskmanager-{i}"] = p.pid
        return out

    def stop(self, timeout: float = 10.0) -> None:
        procs = [p for p in [*self.taskmanager_procs, self.jobmanager] if p is not None]
        for p in procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for p in procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- detached clusters (weir cluster start/stop) ----
    def save_state(self) -> Path:
        path = state_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"address": self.address, "pids": self.pids}, indent=2))
        return path


def stop_saved_cluster(timeout: float = 10.0) -> dict[str, int]:
    """Stop the cluster recorded by ``weir cluster start``; returns the pids it signalled."""
    path = state_file()
    if not path.exists():
        raise FileNotFoundError(f"no local cluster is recorded in {path}: start one with 'weir cluster start'")
    data = json.loads(path.read_text())
    pids: dict[str, int] = data["pids"]
    alive = []
    for pid in pids.values():
        try:
            os.kill(pid, signal.SIGTERM)
            alive.append(pid)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if _alive(p)]
        time.sleep(0.05)
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    path.unlink()
    return pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as f:
        if f.read().split(") ", 1)[1].startswith("Z"):
            return False
    return True
