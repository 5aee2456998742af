"""The JobManager's REST API and /metrics on a real cluster (1 JobManager + 1 TaskManager as processes): every route's
JSON against jobs whose parallelism, records and states are known, the Prometheus series against the same numbers,
the token on the write routes, and the HTTP server's answers to bad requests."""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from prometheus_client.parser import text_string_to_metric_families

import weir
from client.gateway import JobManagerClient
from client.local_cluster import LocalCluster
from tests.integration.procs import alive, children, wait_for
from weir.common.restart_strategy import RestartStrategies
from weir.datastream import StreamExecutionEnvironment
from weir.datastream.connectors import NumberSequenceSource
from weir.datastream.execution import ExecutionContext, JobExecutionException, set_context

pytestmark = pytest.mark.integration

TOKEN = "s3cret-rest-token"
STATES = ["CREATED", "RUNNING", "RESTARTING", "CANCELING", "FINISHED", "FAILED", "CANCELED"]


# ---- a small HTTP client ----
def call(c: LocalCluster, method: str, path: str, body: Any = None, token: str | None = None,
         raw_body: bytes | None = None) -> tuple[int, dict[str, str], Any]:
    """(status, headers, JSON body or text) of one request on a fresh connection."""
    conn = http.client.HTTPConnection(c.host, c.rest_port, timeout=30)
    try:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        data = raw_body if raw_body is not None else (json.dumps(body).encode() if body is not None else None)
        if data is not None:
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        payload = resp.read()
        hdrs = {k.lower(): v for k, v in resp.getheaders()}
        if hdrs.get("content-type", "").startswith("application/json"):
            return resp.status, hdrs, json.loads(payload)
        return resp.status, hdrs, payload.decode()
    finally:
        conn.close()


def get(c: LocalCluster, path: str, token: str | None = TOKEN) -> Any:
    status, _, body = call(c, "GET", path, token=token)
    assert status == 200, (path, status, body)
    return body


Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(c: LocalCluster) -> Series:
    status, headers, text = call(c, "GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain"), (status, headers)
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def series(m: Series, name: str, **labels: str) -> float | None:
    return m.get((name, frozenset(labels.items())))


def raw(c: LocalCluster, data: bytes) -> tuple[int, dict[str, str], Any, bool]:
    """Send bytes as they are; (status, headers, JSON body, whether the server closed the connection after)."""
    with socket.create_connection((c.host, c.rest_port), timeout=10) as s:
        s.sendall(data)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            assert chunk, f"no answer to {data[:60]!r}"
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        length = int(headers["content-length"])
        while len(rest) < length:
            rest += s.recv(65536)
        try:
            closed = s.recv(1) == b""
        except (TimeoutError, ConnectionResetError):
            closed = False
        return int(lines[0].split()[1]), headers, json.loads(rest[:length]), closed


# ---- the cluster ----
def _pids(c: LocalCluster) -> list[int]:
    pids = list(c.pids.values())
    for tm in c.taskmanager_procs:
        pids += children(tm.pid)
    return pids


@pytest.fixture(scope="module")
def rest_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """1 JobManager (with a REST token) + 1 TaskManager with 4 slots."""
    home = tmp_path_factory.mktemp("rest-home")
    c = LocalCluster(taskmanagers=1, slots=4, heartbeat_timeout=5, heartbeat_interval=0.5, slot_request_timeout=10,
                     log_dir=str(home / "logs"), checkpoints_dir=f"file://{home}/checkpoints")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WEIR_REST_TOKEN", TOKEN)
        mp.setenv("WEIR_HOME", str(home))
        c.start()
    pids = _pids(c)
    try:
        yield c
    finally:
        c.stop()
        leftover = [p for p in pids if alive(p)]
        assert not leftover, f"processes left running after the cluster stopped: {leftover}"


@pytest.fixture
def on_rest_cluster(rest_cluster: LocalCluster) -> Iterator[LocalCluster]:
    set_context(ExecutionContext(jobmanager_address=rest_cluster.address))
    yield rest_cluster
    set_context(None)


# ---- jobs ----
def even(x: int) -> bool:
    return x % 2 == 0


def double(x: int) -> int:
    return x * 2


def slow_pair(x: int) -> tuple[int, int]:
    if x % 200 == 0:
        time.sleep(0.02)
    return (x % 10, 1)


def add(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    return (a[0], a[1] + b[1])


def boom(x: int) -> int:
    if x == 500:
        raise ValueError("boom at 500")
    return x


def discard(v: Any) -> None:
    pass


# ---- tests ----
def test_overview_taskmanagers_and_config(rest_cluster: LocalCluster) -> None:
    c = rest_cluster
    ov = get(c, "/overview")
    assert ov["taskmanagers"] == 1 and ov["slots-total"] == 4
    assert ov["weir-version"] == weir.__version__
    assert list(ov["jobs"]) == STATES

    jm = JobManagerClient(c.address)
    grpc_tm = jm.overview().taskmanagers[0]
    jm.close()
    [tm] = get(c, "/taskmanagers")["taskmanagers"]
    assert tm["id"] == grpc_tm.taskmanager_id and tm["address"] == grpc_tm.address
    assert tm["pid"] == c.taskmanager_procs[0].pid
    assert tm["slotsNumber"] == 4 and len(tm["dataAddresses"]) == 4
    assert abs(tm["lastHeartbeat"] / 1000 - time.time()) < 5 and 0 <= tm["timeSinceLastHeartbeat"] < 5000

    cfg = get(c, "/config")
    s = cfg["settings"]
    assert f"{s['jobmanager.rpc.address']}:{s['jobmanager.rpc.port']}" == c.address
    assert s["rest.port"] == c.rest_port and s["rest.bind-address"] == c.host
    assert s["rest.token-required"] is True
    assert s["heartbeat.timeout"] == 5000 and s["slot.request.timeout"] == 10_000
    assert s["state.checkpoints.dir"] == c.checkpoints_dir
    home = os.path.dirname(c.log_dir or "")
    assert s["state.savepoints.dir"] == f"file://{home}/savepoints"
    assert s["high-availability.storageDir"] is None
    assert TOKEN not in json.dumps(cfg)


def test_finished_job_routes(on_rest_cluster: LocalCluster) -> None:
    c = on_rest_cluster
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(2)
    (env.from_source(NumberSequenceSource(1, 10_000), None, "nums").filter(even)
     .rebalance().map(double).set_parallelism(1).add_sink(discard))
    job_id = env.execute("rest finished").get_job_id()

    job = get(c, f"/jobs/{job_id}")
    assert job["jid"] == job_id and job["name"] == "rest finished" and job["state"] == "FINISHED"
    assert 0 < job["start-time"] <= job["end-time"] <= job["now"]
    assert job["duration"] == job["end-time"] - job["start-time"]
    assert job["restarts"] == 0 and job["failure-cause"] is None and job["slots-needed"] == 2
    expected = [  # (name part, parallelism, records in, records out)
        ("nums", 2, 10_000, 5_000),
        ("Map", 1, 5_000, 5_000),
        ("Sink", 2, 5_000, 5_000),
    ]
    assert len(job["vertices"]) == len(expected)
    for v, (name, p, rin, rout) in zip(job["vertices"], expected, strict=True):
        assert name in v["name"]
        assert v["parallelism"] == p
        assert v["metrics"] == {"read-records": rin, "write-records": rout}
        assert v["running"] == 0 and v["finished"] == p and v["tasks"] == {"FINISHED": p}
    assert job["status-counts"] == {"FINISHED": 5}

    grpc = JobManagerClient(c.address)
    info = grpc.get_job(job_id)
    grpc.close()
    assert [(v.records_in, v.records_out) for v in info.vertices] == [
        (v["metrics"]["read-records"], v["metrics"]["write-records"]) for v in job["vertices"]]

    [summary] = [j for j in get(c, "/jobs")["jobs"] if j["jid"] == job_id]
    assert summary == {k: job[k] for k in ("jid", "name", "state", "start-time", "end-time", "duration",
                                           "restarts")}

    cps = get(c, f"/jobs/{job_id}/checkpoints")
    assert cps["counts"] == {"completed": 0, "failed": 0, "in_progress": 0, "total": 0}
    assert cps["retained"] == [] and cps["latest"]["completed"] is None
    assert cps["config"]["enabled"] is False and cps["config"]["checkpoint_storage"] == c.checkpoints_dir

    exc = get(c, f"/jobs/{job_id}/exceptions")
    assert exc["root-exception"] is None and exc["last-restart-cause"] is None
    assert exc["exceptionHistory"] == {"entries": [], "truncated": False}

    m = scrape(c)
    assert series(m, "weir_jobmanager_job_restarts_total", job=job_id) == 0
    assert series(m, "weir_jobmanager_checkpoints_total", job=job_id, result="completed") == 0
    assert series(m, "weir_jobmanager_checkpoint_size_bytes", job=job_id) is None


def test_running_job_checkpoints_metrics_savepoint_and_cancel(on_rest_cluster: LocalCluster,
                                                              tmp_path: Path) -> None:
    c = on_rest_cluster
    t0 = time.time()
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(2)
    env.enable_checkpointing(200)
    env.get_checkpoint_config().set_num_retained_checkpoints(2)
    (env.from_source(NumberSequenceSource(0, 10**9), None, "endless").map(slow_pair)
     .key_by(lambda t: t[0]).reduce(add).add_sink(discard))
    client = env.execute_async("rest running")
    job_id = client.get_job_id()
    try:
        wait_for(lambda: get(c, f"/jobs/{job_id}/checkpoints")["counts"]["completed"] >= 3, 60, "3 checkpoints")

        job = get(c, f"/jobs/{job_id}")
        assert job["state"] == "RUNNING" and job["end-time"] == -1
        assert [v["parallelism"] for v in job["vertices"]] == [2, 2]
        for v in job["vertices"]:
            assert v["running"] == 2 and v["tasks"] == {"RUNNING": 2}
        wait_for(lambda: get(c, f"/jobs/{job_id}")["vertices"][0]["metrics"]["write-records"] > 0, 10,
                 "records reported by heartbeats")
        assert [j["state"] for j in get(c, "/jobs")["jobs"] if j["jid"] == job_id] == ["RUNNING"]

        cps = get(c, f"/jobs/{job_id}/checkpoints")
        cfg = cps["config"]
        assert (cfg["enabled"], cfg["interval"], cfg["retained"], cfg["mode"]) == (True, 200, 2, "exactly_once")
        assert cfg["checkpoint_storage"] == c.checkpoints_dir
        retained = cps["retained"]
        assert len(retained) == 2 and retained[0]["id"] > retained[1]["id"]
        assert cps["latest"]["completed"] == retained[0]
        assert cps["counts"]["failed"] == 0
        for cp in retained:
            assert cp["status"] == "COMPLETED" and cp["is_savepoint"] is False
            assert t0 * 1000 <= cp["latest_ack_timestamp"] <= time.time() * 1000
            assert cp["state_size"] > 0
            assert cp["end_to_end_duration"] is not None and 0 <= cp["end_to_end_duration"] < 10_000
            assert cp["trigger_timestamp"] == cp["latest_ack_timestamp"] - cp["end_to_end_duration"]
            assert cp["external_path"] == f"{c.checkpoints_dir}/{job_id}/chk-{cp['id']}"
            assert isinstance(cp["alignment_duration"], int) and 0 <= cp["alignment_duration"] <= \
                cp["end_to_end_duration"] + 1

        # /metrics against the JSON, from a moment when no checkpoint completed between the two JSON reads
        for _ in range(50):
            before = get(c, f"/jobs/{job_id}/checkpoints")
            m = scrape(c)
            overview = get(c, "/overview")
            after = get(c, f"/jobs/{job_id}/checkpoints")
            if before["counts"] == after["counts"] and before["latest"] == after["latest"]:
                break
        else:
            pytest.fail("checkpoints kept completing between reads: no stable moment to compare /metrics")
        latest = after["latest"]["completed"]
        assert series(m, "weir_jobmanager_checkpoints_total", job=job_id,
                      result="completed") == after["counts"]["completed"]
        assert series(m, "weir_jobmanager_checkpoints_total", job=job_id, result="failed") == 0
        assert series(m, "weir_jobmanager_checkpoint_size_bytes", job=job_id) == latest["state_size"]
        took = series(m, "weir_jobmanager_checkpoint_duration_seconds", job=job_id)
        assert took is not None and abs(took * 1000 - latest["end_to_end_duration"]) <= 1
        aligned = series(m, "weir_jobmanager_checkpoint_alignment_seconds", job=job_id)
        assert aligned is not None and abs(aligned * 1000 - latest["alignment_duration"]) <= 1
        age = series(m, "weir_jobmanager_last_checkpoint_age_seconds", job=job_id)
        assert age is not None and 0 <= age <= time.time() - latest["latest_ack_timestamp"] / 1000 + 0.01
        assert series(m, "weir_jobmanager_job_restarts_total", job=job_id) == 0
        assert {s: series(m, "weir_jobmanager_jobs", state=s) for s in STATES} == overview["jobs"]
        assert overview["jobs"]["RUNNING"] == 1
        assert series(m, "weir_jobmanager_taskmanagers") == 1
        assert series(m, "weir_jobmanager_slots", state="total") == 4
        assert series(m, "weir_jobmanager_slots", state="free") == 2 == overview["slots-available"]

        # a savepoint: the token is required, the body is checked
        sp = f"file://{tmp_path}/savepoint"
        status, headers, body = call(c, "POST", f"/jobs/{job_id}/savepoints", {"target": sp})
        assert status == 401 and headers["www-authenticate"].startswith("Bearer") and body["errors"]
        for bad in (b"not json", b'{"target": 5}', b'{"target-dir": "x"}', b"[1]"):
            status, _, body = call(c, "POST", f"/jobs/{job_id}/savepoints", raw_body=bad, token=TOKEN)
            assert status == 400 and body["errors"], bad
        status, _, body = call(c, "POST", f"/jobs/{job_id}/savepoints", {"target": sp}, token=TOKEN)
        assert status == 200, body
        assert body == {"jid": job_id, "location": sp, "state": "RUNNING"}
        assert (tmp_path / "savepoint" / "_metadata").is_file()

        # cancel: refused without the right token, done with it
        assert call(c, "POST", f"/jobs/{job_id}/cancel")[0] == 401
        assert call(c, "POST", f"/jobs/{job_id}/cancel", token="wrong")[0] == 401
        assert get(c, f"/jobs/{job_id}")["state"] == "RUNNING"
        status, _, body = call(c, "POST", f"/jobs/{job_id}/cancel", token=TOKEN)
        assert status == 200 and body == {"jid": job_id, "state": "CANCELED"}
        job = get(c, f"/jobs/{job_id}")
        assert job["state"] == "CANCELED" and job["end-time"] >= job["start-time"] > 0
        m = scrape(c)
        assert series(m, "weir_jobmanager_last_checkpoint_age_seconds", job=job_id) is None  # ended
        assert series(m, "weir_jobmanager_checkpoint_size_bytes", job=job_id) is not None
        assert {s: series(m, "weir_jobmanager_jobs", state=s) for s in STATES} == get(c, "/overview")["jobs"]
        assert series(m, "weir_jobmanager_slots", state="free") == 4
    finally:
        if client.get_job_status() not in ("FINISHED", "FAILED", "CANCELED"):
            client.cancel()


def slow_sink(v: Any) -> None:
    time.sleep(0.002)


def test_busy_and_backpressure_per_vertex(on_rest_cluster: LocalCluster) -> None:
    """A slow sink: the API shows its vertex busy nearly all the time, and a backpressure figure per vertex."""
    c = on_rest_cluster
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(1)
    env.from_source(NumberSequenceSource(0, 10**9), None, "fast source").rebalance().add_sink(slow_sink) \
        .name("slow sink")
    client = env.execute_async("backpressure")
    job_id = client.get_job_id()
    try:
        def busy_sink() -> Any:
            vs = get(c, f"/jobs/{job_id}")["vertices"]
            return vs if vs[1]["busy-ratio"] is not None and vs[1]["busy-ratio"] > 0.5 else None

        vs = wait_for(busy_sink, 60, "the slow sink's vertex to be reported busy")
        for v in vs:
            bp = v["backpressure"]
            assert bp is not None and 0 <= bp["ratio"] <= 1 and bp["level"] in ("ok", "low", "high")
            assert 0 <= v["busy-ratio"] <= 1
        assert vs[1]["backpressure"] == {"ratio": 0.0, "level": "ok"}  # a sink waits for nobody
    finally:
        client.cancel()
        wait_for(lambda: get(c, f"/jobs/{job_id}")["state"] == "CANCELED", 30, "the job to cancel")


def test_failing_job_exceptions_and_restarts(on_rest_cluster: LocalCluster) -> None:
    c = on_rest_cluster
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(1)
    env.set_restart_strategy(RestartStrategies.fixed_delay_restart(1, 100))
    env.from_source(NumberSequenceSource(0, 999), None, "n").map(boom).add_sink(discard)
    with pytest.raises(JobExecutionException) as e:
        env.execute("rest failing")
    job_id = e.value.job_id

    job = get(c, f"/jobs/{job_id}")
    assert job["state"] == "FAILED" and job["restarts"] == 1
    assert "boom at 500" in job["failure-cause"]

    exc = get(c, f"/jobs/{job_id}/exceptions")
    assert exc["restarts"] == 1
    assert exc["root-exception"] == job["failure-cause"] == exc["failure-cause"]["exception"]
    assert job["start-time"] <= exc["timestamp"] <= job["end-time"]
    restart = exc["last-restart-cause"]
    assert "boom at 500" in restart["exception"] and job["start-time"] <= restart["timestamp"] < exc["timestamp"]
    entries = exc["exceptionHistory"]["entries"]
    assert [x["restarted"] for x in entries] == [False, True]  # newest first
    assert entries[0]["timestamp"] == exc["timestamp"] and entries[1]["timestamp"] == restart["timestamp"]
    assert exc["exceptionHistory"]["truncated"] is False

    m = scrape(c)
    assert series(m, "weir_jobmanager_job_restarts_total", job=job_id) == 1


def test_unknown_jobs_and_bad_requests_get_json_errors(rest_cluster: LocalCluster) -> None:
    c = rest_cluster
    for path in ("/jobs/no-such-job", "/jobs/no-such-job/checkpoints", "/jobs/no-such-job/exceptions"):
        status, headers, body = call(c, "GET", path, token=TOKEN)
        assert status == 404 and headers["content-type"].startswith("application/json"), path
        assert "no-such-job" in body["errors"][0]
    for path in ("/jobs/no-such-job/cancel", "/jobs/no-such-job/savepoints"):
        assert call(c, "POST", path, token=TOKEN)[0] == 404
        assert call(c, "POST", path)[0] == 401  # the token is checked first: no probing for job ids

    # reads need the token too unless weir.rest.read-without-token (the token is checked before the job id)
    for path in ("/overview", "/jobs", "/jobs/no-such-job", "/taskmanagers", "/config"):
        status, headers, body = call(c, "GET", path)
        assert status == 401 and headers["www-authenticate"].startswith("Bearer"), path
        assert "token" in body["errors"][0]
        assert call(c, "GET", path, token="wrong")[0] == 401
    # Prometheus and the dashboard's own files (which hold no data) stay open
    assert call(c, "GET", "/metrics")[0] == 200 and call(c, "GET", "/")[0] == 200

    status, _, body = call(c, "GET", "/nothing/here")
    assert status == 404 and body["errors"]
    status, headers, body = call(c, "POST", "/overview")
    assert status == 405 and headers["allow"] == "GET" and body["errors"]
    status, headers, _ = call(c, "GET", "/jobs/x/cancel")
    assert status == 405 and headers["allow"] == "POST"
    assert call(c, "DELETE", "/jobs")[0] == 405

    # malformed or oversized requests: a JSON error, the connection closed, the server still serving
    cases = [
        (b"\x00\x01\x02 garbage\r\n\r\n", 400),
        (b"GET /overview\r\n\r\n", 400),
        (b"GET /overview HTTP/2.0\r\n\r\n", 505),
        (b"GET /overview HTTP/1.1\r\nbad header line\r\n\r\n", 400),
        (b"GET /overview HTTP/1.1\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n", 431),
        (b"POST /jobs/x/savepoints HTTP/1.1\r\nContent-Length: 5000000\r\n\r\n", 413),
        (b"POST /jobs/x/savepoints HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
        (b"POST /jobs/x/savepoints HTTP/1.1\r\nContent-Length: nope\r\n\r\n", 400),
    ]
    for data, expected in cases:
        status, headers, body, closed = raw(c, data)
        assert (status, closed) == (expected, True), data[:60]
        assert headers["connection"] == "close" and body["errors"], data[:60]
    assert get(c, "/overview")["taskmanagers"] == 1


def test_keep_alive_and_pipelining(rest_cluster: LocalCluster) -> None:
    c = rest_cluster
    conn = http.client.HTTPConnection(c.host, c.rest_port, timeout=10)
    try:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        conn.request("GET", "/overview", headers=auth)
        r1 = conn.getresponse()
        assert r1.status == 200 and r1.getheader("Connection") == "keep-alive"
        json.loads(r1.read())
        sock = conn.sock
        conn.request("GET", "/taskmanagers", headers=auth)
        r2 = conn.getresponse()
        assert r2.status == 200 and json.loads(r2.read())["taskmanagers"]
        assert conn.sock is sock, "the second request must reuse the connection"
    finally:
        conn.close()
    # two pipelined requests, then HTTP/1.0 without keep-alive: answered in order, then closed
    with socket.create_connection((c.host, c.rest_port), timeout=10) as s:
        s.sendall(b"GET /overview HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode()
                  + b"\r\n\r\nGET /nothing HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", data) == [b"200", b"404"]


def test_without_a_token_the_write_routes_are_open(tmp_path: Path) -> None:
    c = LocalCluster(taskmanagers=0, log_dir=str(tmp_path / "logs"))
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("WEIR_REST_TOKEN", raising=False)
        mp.setenv("WEIR_HOME", str(tmp_path))
        c.start()
    try:
        assert get(c, "/config")["settings"]["rest.token-required"] is False
        assert get(c, "/overview")["taskmanagers"] == 0
        status, _, body = call(c, "POST", "/jobs/no-such-job/cancel")
        assert status == 404 and "no-such-job" in body["errors"][0]
        assert call(c, "POST", "/jobs/no-such-job/savepoints", {"target": None})[0] == 404
    finally:
        c.stop()
    assert c.jobmanager is not None and not alive(c.jobmanager.pid)


def test_reads_without_the_token_only_when_configured(tmp_path: Path) -> None:
    c = LocalCluster(taskmanagers=0, log_dir=str(tmp_path / "logs"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WEIR_REST_TOKEN", TOKEN)
        mp.setenv("WEIR_REST_READ_WITHOUT_TOKEN", "true")
        mp.setenv("WEIR_HOME", str(tmp_path))
        c.start()
    try:
        settings = get(c, "/config", token=None)["settings"]
        assert settings["rest.token-required"] is True and settings["weir.rest.read-without-token"] is True
        assert get(c, "/overview", token=None)["taskmanagers"] == 0
        assert call(c, "POST", "/jobs/no-such-job/cancel")[0] == 401  # writes still need it
        assert call(c, "POST", "/jobs/no-such-job/cancel", token=TOKEN)[0] == 404
    finally:
        c.stop()


def test_the_openapi_file_documents_every_route() -> None:
    from jobmanager.rest.api import RestApi

    spec = (Path(__file__).parents[2] / "docs" / "rest-api.yaml").read_text()
    documented, path = set(), None
    for line in spec.split("\n"):
        if m := re.fullmatch(r"  (/\S*):", line):
            path = m.group(1)
        elif (m := re.fullmatch(r"    (get|post|put|patch|delete):", line)) and path:
            documented.add((m.group(1).upper(), path))
        elif line and not line.startswith(" "):
            path = None
    api = RestApi(*[cast(Any, None)] * 4)
    assert documented == set(api.router().routes)
