"""Across hosts: a JobManager and TaskManagers in separate network namespaces ("hosts") joined by a bridge.

Three hosts (JobManager, two TaskManagers with one slot each) run the parallelism-2 job of test_exactly_once;
then one TaskManager's link is cut at the switch. Its processes keep running, unreachable: the JobManager must
declare it lost at its heartbeat timeout and, with a replacement TaskManager on a fourth host, recover the job
with exactly-once output. All namespaces share the filesystem, so checkpoints and output live in tmp_path.

Needs root (or CAP_SYS_ADMIN + CAP_NET_ADMIN) and ``ip``; skips only where a network namespace cannot be created.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.procs import wait_for
from tests.integration.test_exactly_once import committed_lines, reference

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
JOB = REPO / "tests" / "integration" / "jobs" / "multihost_job.py"
SUBNET = "10.213.7"  # the test's own addresses, only ever configured inside the namespaces it creates
JM_PORT = 6123
HEARTBEAT_TIMEOUT = 2.0
HEARTBEAT_INTERVAL = 0.3

# Run inside the JobManager's namespace: the cluster's state as one JSON line ("null" while it does not answer).
_QUERY = """
import json, sys
from client.gateway import JobManagerClient, JobManagerUnreachableError
c = JobManagerClient(sys.argv[1], timeout=3)
try:
    o = c.overview(timeout=3)
    jobs = c.list_jobs()
except JobManagerUnreachableError:
    print("null")
else:
    print(json.dumps({"taskmanagers": [t.address for t in o.taskmanagers],
                      "jobs": {j.job_id: {"state": j.state, "restarts": j.restarts,
                                          "checkpoints": j.checkpoints_completed,
                                          "failure": j.failure_cause, "last_failure": j.last_failure}
                               for j in jobs}}))
finally:
    c.close()
"""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


def _namespaces_unavailable() -> str | None:
    """Why network namespaces cannot be created here (None: they can), by a trial ``ip netns add``."""
    if shutil.which("ip") is None:
        return "the 'ip' command (iproute2) is not installed"
    trial = f"weir-trial-{os.getpid()}"
    try:
        r = _ip("netns", "add", trial, check=False)
    except OSError as e:
        return f"'ip netns add' cannot run: {e}"
    if r.returncode != 0:
        return f"cannot create a network namespace ('ip netns add' failed: {r.stderr.strip() or r.returncode})"
    _ip("netns", "del", trial, check=False)
    return None


class Hosts:
    """Namespaces joined by a bridge in a switch namespace; daemons started in them; torn down by close()."""

    def __init__(self, tag: str, log_dir: Path, env: dict[str, str]) -> None:
        self.tag = tag
        self.log_dir = log_dir
        self.env = env
        self.switch = f"weir{tag}-sw"
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen[bytes]] = []
        self.port_of: dict[str, str] = {}  # host namespace -> its veth end in the switch namespace

    def ns(self, role: str) -> str:
        return f"weir{self.tag}-{role}"

    def create_switch(self) -> None:
        _ip("netns", "add", self.switch)
        self.namespaces.append(self.switch)
        _ip("-n", self.switch, "link", "set", "lo", "up")
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")

    def add_host(self, role: str, index: int) -> str:
        """A namespace with address SUBNET.index/24 on a veth whose other end is on the switch's bridge."""
        ns = self.ns(role)
        _ip("netns", "add", ns)
        self.namespaces.append(ns)
        _ip("-n", ns, "link", "set", "lo", "up")
        host_end, switch_end = f"eth{index}", f"port{index}"
        _ip("link", "add", host_end, "netns", ns, "type", "veth", "peer", "name", switch_end, "netns", self.switch)
        _ip("-n", self.switch, "link", "set", switch_end, "master", "br0")
        _ip("-n", self.switch, "link", "set", switch_end, "up")
        _ip("-n", ns, "addr", "add", f"{SUBNET}.{index}/24", "dev", host_end)
        _ip("-n", ns, "link", "set", host_end, "up")
        self.port_of[ns] = switch_end
        return f"{SUBNET}.{index}"

    def cut(self, ns: str) -> None:
        """Pull the host's cable out of the switch: its processes keep running, unreachable."""
        _ip("-n", self.switch, "link", "set", self.port_of[ns], "down")

    def command(self, ns: str, *args: str) -> list[str]:
        return ["ip", "netns", "exec", ns, sys.executable, *args]

    def start(self, ns: str, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        p = subprocess.Popen(self.command(ns, "-m", "client", *args), cwd=REPO, env=self.env, stdin=subprocess.DEVNULL,
                             stdout=log, stderr=log, start_new_session=True)
        log.close()
        self.procs.append(p)
        return p

    def run(self, ns: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(ns, *args), cwd=REPO, env=self.env, capture_output=True, text=True,
                              timeout=timeout)

    def close(self) -> list[str]:
        """Kill every process started (by pid, then whatever still runs in the namespaces); delete them all."""
        problems: list[str] = []
        for p in self.procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                problems.append(f"pid {p.pid} did not die")
        for ns in self.namespaces:  # e.g. the workers of the cut TaskManager, reparented away from it
            for _ in range(50):
                r = _ip("netns", "pids", ns, check=False)
                pids = [int(x) for x in r.stdout.split()]
                if not pids:
                    break
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                time.sleep(0.1)
            else:
                problems.append(f"processes still running in {ns}: {pids}")
        for ns in reversed(self.namespaces):  # deleting a namespace deletes its veth ends, and so their peers
            r = _ip("netns", "del", ns, check=False)
            if r.returncode != 0:
                problems.append(f"ip netns del {ns}: {r.stderr.strip()}")
        self.namespaces.clear()
        return problems


@pytest.mark.timeout(240)
def test_taskmanager_link_cut_job_recovers_exactly_once_across_hosts(tmp_path: Path) -> None:
    reason = _namespaces_unavailable()
    if reason:
        pytest.skip(f"needs network namespaces: {reason}")
    logs, out = tmp_path / "logs", tmp_path / "out"
    logs.mkdir()
    env = dict(os.environ)
    env.pop("WEIR_DIE_WITH_PARENT", None)
    env.pop("WEIR_JOBMANAGER", None)
    env.pop("WEIR_CONF_DIR", None)
    env["WEIR_HOME"] = str(tmp_path / "weir-home")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    hosts = Hosts(str(os.getpid() % 100000), logs, env)
    jm_ns = hosts.ns("jm")

    def state() -> Any:
        r = hosts.run(jm_ns, "-c", _QUERY, jm_address, timeout=30)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout.strip().splitlines()[-1])

    def job() -> dict[str, Any]:
        s = state()
        return s["jobs"][job_id] if s else {}

    def logs_tail() -> str:
        return "\n".join(f"--- {f.name}\n{f.read_text()[-3000:]}" for f in sorted(logs.iterdir()))

    try:
        hosts.create_switch()
        jm_host = hosts.add_host("jm", 1)
        tm_hosts = {role: hosts.add_host(role, i) for role, i in (("tm1", 2), ("tm2", 3), ("tm3", 4))}
        jm_address = f"{jm_host}:{JM_PORT}"

        def taskmanager(role: str) -> subprocess.Popen[bytes]:
            h = tm_hosts[role]
            return hosts.start(hosts.ns(role), f"taskmanager-{role}", "taskmanager", "--jobmanager", jm_address,
                               "--host", h, "--advertised-host", h, "--slots", "1", "--metrics-port", "-1",
                               "--heartbeat-interval", str(HEARTBEAT_INTERVAL))

        jm = hosts.start(jm_ns, "jobmanager", "jobmanager", "--host", jm_host, "--port", str(JM_PORT),
                         "--advertised-host", jm_host, "--rest-port", "8081",
                         "--heartbeat-timeout", str(HEARTBEAT_TIMEOUT),
                         "--checkpoints-dir", f"file://{tmp_path}/jm-checkpoints")
        taskmanager("tm1")
        taskmanager("tm2")
        try:
            registered = wait_for(lambda: (s := state()) and len(s["taskmanagers"]) >= 2 and s["taskmanagers"], 60,
                                  "two TaskManagers to register")
        except AssertionError:
            raise AssertionError(f"the cluster did not come up\n{logs_tail()}") from None
        assert jm.poll() is None
        assert all(a.split(":")[0] in (tm_hosts["tm1"], tm_hosts["tm2"]) for a in registered), registered

        submit = hosts.run(jm_ns, "-m", "client", "run", "-d", "--jobmanager", jm_address, str(JOB),
                           f"file://{tmp_path}/checkpoints", str(out))
        assert submit.returncode == 0, f"submit failed:\n{submit.stdout}\n{submit.stderr}"
        job_id = submit.stdout.strip().splitlines()[-1]

        try:
            wait_for(lambda: job().get("checkpoints", 0) >= 2, 60, "two checkpoints", interval=0.2)
        except AssertionError:
            raise AssertionError(f"no checkpoints: {job()}\n{logs_tail()}") from None
        before = job()
        assert before["state"] == "RUNNING", before
        assert before["restarts"] == 0, before

        cut_at = time.monotonic()
        hosts.cut(hosts.ns("tm1"))
        taskmanager("tm3")
        try:
            wait_for(lambda: job().get("restarts", 0) >= 1, 30, "a restart after the cut", interval=0.2)
        except AssertionError:
            raise AssertionError(f"no restart after the cut: {job()}\n{logs_tail()}") from None
        lost_after = time.monotonic() - cut_at
        # declared lost at its heartbeat timeout, not after calls to it time out (each poll here costs ~0.5 s)
        assert lost_after <= HEARTBEAT_TIMEOUT + 5, f"the restart came {lost_after:.1f} s after the cut"
        jm_log = (logs / "jobmanager.log").read_text()
        assert any("lost" in line and tm_hosts["tm1"] in line for line in jm_log.splitlines()), \
            f"the JobManager did not declare {tm_hosts['tm1']} lost:\n{jm_log[-3000:]}"
        s = state()
        assert not any(a.startswith(tm_hosts["tm1"] + ":") for a in s["taskmanagers"]), s

        try:
            info = wait_for(lambda: (j := job()).get("state") in ("FINISHED", "FAILED", "CANCELED") and j, 180,
                            "the job to finish", interval=0.5)
        except AssertionError:
            raise AssertionError(f"the job did not finish: {job()}\n{logs_tail()}") from None
        assert info["state"] == "FINISHED", f"{info}\n{logs_tail()}"
        got, expected = committed_lines(out), reference()
        missing, extra = expected - got, got - expected
        assert not missing and not extra, (f"{sum(missing.values())} missing, {sum(extra.values())} extra; "
                                           f"e.g. {list(missing)[:3]} {list(extra)[:3]}")
        print(f"recovered: restart {lost_after:.1f} s after the cut; {info}")
    finally:
        failing = sys.exc_info()[0] is not None
        problems = hosts.close()
        if not failing:  # do not mask the test's own failure
            assert not problems, f"cleanup: {problems}"
