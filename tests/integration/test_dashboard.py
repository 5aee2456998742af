"""The web dashboard in a real browser: Debian's chromium, headless, driven over the DevTools protocol (a websocket
client from the standard library below), against a cluster of 1 JobManager (with a REST token) + 1 TaskManager
running an endless job. Asserts on the rendered DOM (job list, job graph, rates, checkpoints, TaskManagers), saves
a screenshot, then uses the token-gated buttons: a wrong token is refused, a savepoint is written, the job is
cancelled. ``make install`` installs chromium; without it this test fails (it does not skip)."""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from client.local_cluster import LocalCluster
from tests.integration.procs import alive, children, wait_for
from weir.datastream import StreamExecutionEnvironment
from weir.datastream.connectors import NumberSequenceSource
from weir.datastream.execution import ExecutionContext, JobClient, set_context

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
TOKEN = "dashboard-test-token"
VIEWPORT = (1400, 900)


# ---- the cluster and its job ----
def pair(x: int) -> tuple[int, int]:
    return (x % 16, 1)


def add(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    return (a[0], a[1] + b[1])


def key(t: tuple[int, int]) -> int:
    return t[0]


def discard(v: Any) -> None:
    pass


def get(c: LocalCluster, path: str) -> tuple[int, str, bytes, dict[str, str]]:
    conn = http.client.HTTPConnection(c.host, c.rest_port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, resp.getheader("Content-Type") or "", body, {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()


def get_json(c: LocalCluster, path: str) -> Any:
    status, _, body, _ = get(c, path)
    assert status == 200, (path, status, body)
    return json.loads(body)


@pytest.fixture(scope="module")
def dash_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    home = tmp_path_factory.mktemp("dashboard-home")
    c = LocalCluster(taskmanagers=1, slots=4, heartbeat_timeout=5, heartbeat_interval=0.5, slot_request_timeout=10,
                     log_dir=str(home / "logs"), checkpoints_dir=f"file://{home}/checkpoints")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WEIR_REST_TOKEN", TOKEN)
        mp.setenv("WEIR_REST_READ_WITHOUT_TOKEN", "true")  # the page shows the job; its buttons need the token
        mp.setenv("WEIR_HOME", str(home))
        c.start()
    pids = list(c.pids.values())
    for tm in c.taskmanager_procs:
        pids += children(tm.pid)
    try:
        yield c
    finally:
        c.stop()
        leftover = [p for p in pids if alive(p)]
        assert not leftover, f"processes left running after the cluster stopped: {leftover}"


@pytest.fixture
def running_job(dash_cluster: LocalCluster) -> Iterator[tuple[LocalCluster, JobClient]]:
    """NumberSequenceSource(1..10**10) -> map -> key_by -> reduce -> discarding sink at parallelism 2, running."""
    c = dash_cluster
    set_context(ExecutionContext(jobmanager_address=c.address))
    try:
        env = StreamExecutionEnvironment.get_execution_environment()
        env.set_parallelism(2)
        env.enable_checkpointing(500)
        (env.from_source(NumberSequenceSource(1, 10**10), None, "numbers").map(pair)
         .key_by(key).reduce(add).add_sink(discard))
        client = env.execute_async("dashboard job")
    finally:
        set_context(None)
    job_id = client.get_job_id()
    try:
        wait_for(lambda: (j := get_json(c, f"/jobs/{job_id}"))["state"] == "RUNNING"
                 and all(v["metrics"]["write-records"] > 0 for v in j["vertices"]), 30, "the job running with records")
        yield c, client
    finally:
        if client.get_job_status() not in ("FINISHED", "FAILED", "CANCELED"):
            client.cancel()


# ---- a minimal websocket client (RFC 6455, text frames) and the DevTools protocol over it ----
class WebSocket:
    def __init__(self, url: str, timeout: float = 30) -> None:
        u = urlsplit(url)
        assert u.hostname and u.port, url
        self.sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {u.path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                           ).encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            assert chunk, "the DevTools endpoint closed during the websocket handshake"
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        assert head.split(b"\r\n")[0].split(b" ")[1] == b"101", head

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(max(65536, n - len(self.buf)))
            if not chunk:
                raise ConnectionError("the DevTools websocket closed")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 1 << 16:
            head += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + masked)

    def send(self, text: str) -> None:
        self._send_frame(0x1, text.encode())

    def recv(self) -> str:
        message = b""
        while True:
            b0, b1 = self._read(2)
            opcode, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            mask = self._read(4) if b1 & 0x80 else b""
            payload = self._read(n)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if opcode == 0x8:
                raise ConnectionError("the DevTools websocket closed")
            if opcode == 0x9:
                self._send_frame(0xA, payload)
                continue
            if opcode in (0x0, 0x1, 0x2):
                message += payload
                if b0 & 0x80:
                    return message.decode()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._send_frame(0x8, b"")
        self.sock.close()


class Browser:
    """Headless chromium in its own process group, with one page driven over the DevTools protocol."""

    def __init__(self, workdir: Path) -> None:
        profile = workdir / "chromium-profile"
        profile.mkdir()
        self.log = open(workdir / "chromium.log", "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--no-default-browser-check",
             "--disable-extensions", f"--user-data-dir={profile}", "--remote-debugging-port=0",
             f"--window-size={VIEWPORT[0]},{VIEWPORT[1]}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log, start_new_session=True)
        self.ws: WebSocket | None = None
        self.next_id = 0
        self.errors: list[str] = []  # uncaught exceptions and console.error calls in the page
        try:
            port_file = profile / "DevToolsActivePort"
            wait_for(lambda: self.proc.poll() is not None or (port_file.exists() and port_file.read_text().strip()),
                     20, "chromium's DevTools port")
            assert self.proc.poll() is None, f"chromium exited with {self.proc.returncode}: see {workdir}/chromium.log"
            port = int(port_file.read_text().split()[0])
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/json/list")
            pages = [t for t in json.loads(conn.getresponse().read()) if t["type"] == "page"]
            conn.close()
            assert pages, "chromium has no page target"
            self.ws = WebSocket(pages[0]["webSocketDebuggerUrl"])
            self.call("Emulation.setDeviceMetricsOverride", width=VIEWPORT[0], height=VIEWPORT[1],
                      deviceScaleFactor=1, mobile=False)
            self.call("Runtime.enable")
        except BaseException:
            self.close()
            raise

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        assert self.ws is not None
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("method") == "Runtime.exceptionThrown":
                d = msg["params"]["exceptionDetails"]
                self.errors.append(f"{d.get('url', '')}:{d.get('lineNumber')}: "
                                   f"{d.get('exception', {}).get('description') or d.get('text')}")
            elif msg.get("method") == "Runtime.consoleAPICalled" and msg["params"]["type"] == "error":
                self.errors.append(" ".join(str(a.get("value", a.get("description", "")))
                                            for a in msg["params"]["args"]))
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return dict(msg["result"])

    def eval(self, expression: str) -> Any:
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression[:80]!r} raised in the page: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait(self, expression: str, timeout: float, what: str) -> Any:
        try:
            return wait_for(lambda: self.eval(expression), timeout, what, interval=0.1)
        except AssertionError as e:
            raise AssertionError(f"{e}; errors in the page: {self.errors}; the page's text:\n"
                                 f"{self.eval('document.body.innerText')}") from None

    def navigate(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        # chromium's helpers (zygote, renderer, GPU and network services) share its process group
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(5)
        self.log.close()


@contextlib.contextmanager
def chromium(workdir: Path) -> Iterator[Browser]:
    """A headless chromium; it fails the test (it does not skip) when chromium is not installed."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: the dashboard test needs Debian's chromium. Run `make install` "
                    "(it installs chromium), or `apt-get install chromium` as root.")
    b = Browser(workdir)
    try:
        yield b
    finally:
        b.close()
    with pytest.raises(ProcessLookupError):
        os.killpg(b.proc.pid, 0)  # nothing of chromium is left


# What the page shows, read from its DOM (the ids and data attributes the dashboard gives for tests).
SNAPSHOT = """(() => {
  const q = (s) => document.querySelector(s);
  const all = (s) => [...document.querySelectorAll(s)];
  const shown = (s) => { const e = q(s); return !!e && e.offsetParent !== null; };
  return {
    polls: Number(q('#refresh-status').dataset.polls),
    refresh: q('#refresh-status').dataset.state,
    taskmanagers: q('#overview-taskmanagers').textContent,
    slotsTotal: q('#overview-slots-total').textContent,
    slotsFree: q('#overview-slots-free').textContent,
    jobsByState: Object.fromEntries(all('#overview-jobs [data-state]').map((e) => [e.dataset.state,
                                                                                   Number(e.dataset.count)])),
    jobRows: all('#job-list tbody tr[data-job-id]').map((r) => ({
      id: r.dataset.jobId, state: r.dataset.state, text: r.innerText, selected: r.classList.contains('selected')})),
    detailId: q('#job-detail-id') && q('#job-detail-id').textContent,
    detailState: q('#job-detail-state [data-state]') && q('#job-detail-state [data-state]').dataset.state,
    nodes: all('svg#job-graph g.vertex').map((g) => ({
      id: g.dataset.vertexId, parallelism: Number(g.dataset.parallelism), text: g.textContent,
      recordsIn: Number(g.dataset.recordsIn), recordsOut: Number(g.dataset.recordsOut),
      rateIn: g.dataset.rateIn, rateOut: g.dataset.rateOut, backpressure: g.dataset.backpressure})),
    edges: all('svg#job-graph path.edge').map((e) => [e.dataset.source, e.dataset.target]),
    vertexRows: all('#vertex-table tbody tr').map((r) => ({
      id: r.dataset.vertexId,
      parallelism: r.querySelector('[data-field=parallelism]').textContent,
      recordsIn: Number(r.querySelector('[data-field=records-in]').textContent.replace(/,/g, '')),
      recordsOut: Number(r.querySelector('[data-field=records-out]').textContent.replace(/,/g, '')),
      rateOut: r.querySelector('[data-field=rate-out]').textContent})),
    checkpoints: all('#checkpoint-history tbody tr').map((r) => Number(r.dataset.checkpointId)),
    exceptions: q('#exceptions').innerText,
    tmRows: all('#taskmanagers tbody tr').map((r) => r.dataset.tmId),
    savepointButton: shown('#action-savepoint'),
    cancelButton: shown('#action-cancel'),
    locked: shown('#actions-locked'),
    banner: shown('#banner'),
  };
})()"""


# ---- tests ----
def test_the_dashboard_files_are_served_with_their_types(dash_cluster: LocalCluster) -> None:
    c = dash_cluster
    status, ctype, body, headers = get(c, "/")
    assert status == 200 and ctype == "text/html; charset=utf-8", (status, ctype)
    assert b'id="job-list"' in body and b'src="static/app.js"' in body
    assert headers["x-content-type-options"] == "nosniff" and "default-src 'self'" in headers["content-security-policy"]
    for name, expected in (("app.js", "text/javascript; charset=utf-8"), ("style.css", "text/css; charset=utf-8"),
                           ("index.html", "text/html; charset=utf-8")):
        status, ctype, body, _ = get(c, f"/static/{name}")
        assert (status, ctype) == (200, expected), name
        assert body == (Path(__file__).parents[2] / "jobmanager" / "rest" / "static" / name).read_bytes()
    # nothing outside the static directory, nothing unknown; JSON errors as for every route
    for path in ("/static/..%2Fapi.py", "/static/..%2F..%2Fserver.py", "/static/.hidden.js", "/static/nope.js",
                 "/static/api.py", "/static/", "/static/%2Fetc%2Fpasswd"):
        status, ctype, body, _ = get(c, path)
        assert status == 404 and ctype.startswith("application/json") and json.loads(body)["errors"], path
    # no external resources: the browser may have no internet
    for name in ("index.html", "app.js", "style.css"):
        text = get(c, f"/static/{name}")[2].decode()
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "") and "https://" not in text, name


def test_the_dashboard_in_chromium(running_job: tuple[LocalCluster, JobClient], tmp_path: Path) -> None:
    with chromium(tmp_path) as browser:
        check_dashboard(running_job, browser, tmp_path)


def check_dashboard(running_job: tuple[LocalCluster, JobClient], browser: Browser, tmp_path: Path) -> None:
    c, client = running_job
    job_id = client.get_job_id()
    job = get_json(c, f"/jobs/{job_id}")
    vertices = job["vertices"]
    assert len(vertices) == 2, vertices  # source -> map | keyed reduce -> sink

    browser.navigate(f"http://{c.rest_address}/#/jobs/{job_id}")
    # rates need two polls of the job; a checkpoint is taken every 500 ms
    browser.wait("""(() => { const g = [...document.querySelectorAll('svg#job-graph g.vertex')];
        return g.length > 0 && g.every((n) => n.dataset.rateOut !== '')
          && document.querySelectorAll('#checkpoint-history tbody tr').length > 0; })()""",
                 15, "the dashboard showing the job's graph with rates and its checkpoints")
    snap = browser.eval(SNAPSHOT)
    (tmp_path / "dashboard.html").write_text(browser.eval("document.documentElement.outerHTML"))

    assert not browser.errors, browser.errors
    assert snap["refresh"] == "ok" and snap["polls"] >= 2 and not snap["banner"], snap
    # cluster overview
    assert (snap["taskmanagers"], snap["slotsTotal"], snap["slotsFree"]) == ("1", "4", "2"), snap
    assert snap["jobsByState"]["RUNNING"] == 1 and set(snap["jobsByState"]) >= {"RUNNING", "FINISHED", "CANCELED"}
    # the job list: the job's row with its id and state, selected
    [row] = [r for r in snap["jobRows"] if r["id"] == job_id]
    assert row["state"] == "RUNNING" and "RUNNING" in row["text"] and job_id in row["text"], row
    assert "dashboard job" in row["text"] and row["selected"]
    assert (snap["detailId"], snap["detailState"]) == (job_id, "RUNNING")
    # the job graph: one node per vertex with its parallelism and non-zero records, edges between them
    assert [n["id"] for n in snap["nodes"]] == [v["id"] for v in vertices]
    for node, v in zip(snap["nodes"], vertices, strict=True):
        assert node["parallelism"] == v["parallelism"] == 2
        assert "parallelism 2" in node["text"] and v["name"].split(" -> ")[0] in node["text"], node
        assert node["recordsIn"] > 0 and node["recordsOut"] > 0, node
        assert float(node["rateOut"]) >= 0 and node["backpressure"] in ("none", "unknown", "ok", "low", "high")
    # measured by the TaskManagers and served by /jobs/{id}: a level for every vertex, not an estimate
    assert all(n["backpressure"] in ("ok", "low", "high") for n in snap["nodes"]), snap["nodes"]
    assert float(snap["nodes"][0]["rateOut"]) > 0, snap["nodes"]  # an endless source keeps producing
    assert snap["edges"] == [[vertices[0]["id"], vertices[1]["id"]]]
    assert [r["id"] for r in snap["vertexRows"]] == [v["id"] for v in vertices]
    assert all(r["parallelism"] == "2" and r["recordsIn"] > 0 and r["recordsOut"] > 0 for r in snap["vertexRows"])
    # checkpoints (newest first), exceptions, TaskManagers
    cps = snap["checkpoints"]
    assert cps and cps == sorted(cps, reverse=True), cps
    assert "No failures" in snap["exceptions"]
    [tm] = get_json(c, "/taskmanagers")["taskmanagers"]
    assert snap["tmRows"] == [tm["id"]]
    # the write actions are hidden without the token
    assert not snap["savepointButton"] and not snap["cancelButton"] and snap["locked"], snap

    shot = tmp_path / "dashboard.png"
    browser.screenshot(shot)
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000, len(png)
    assert struct.unpack(">II", png[16:24]) == VIEWPORT

    # a wrong token: the buttons show, the JobManager refuses it, the dashboard forgets it
    set_token = """((t) => { document.getElementById('token-input').value = t;
        document.getElementById('token-save').click(); return sessionStorage.getItem('weir.rest-token'); })"""
    assert browser.eval(f"{set_token}('wrong-token')") == "wrong-token"
    browser.wait("document.getElementById('action-savepoint').offsetParent !== null", 5, "the savepoint button")
    browser.eval("document.getElementById('action-savepoint').click()")
    browser.wait("document.getElementById('action-result').dataset.status === 'error'", 10, "the refused savepoint")
    assert "token" in browser.eval("document.getElementById('action-result').textContent")
    assert browser.eval("sessionStorage.getItem('weir.rest-token')") is None
    assert browser.eval("document.getElementById('action-savepoint').offsetParent") is None

    # the right token: a savepoint where asked, then cancel (two clicks)
    assert browser.eval(f"{set_token}({json.dumps(TOKEN)})") == TOKEN
    target = f"file://{tmp_path}/savepoint"
    browser.wait("document.getElementById('action-savepoint').offsetParent !== null", 5, "the savepoint button")
    browser.eval(f"document.getElementById('savepoint-target').value = {json.dumps(target)};"
                 "document.getElementById('action-savepoint').click()")
    browser.wait("document.getElementById('action-result').dataset.status === 'ok'", 20, "the savepoint")
    assert target in browser.eval("document.getElementById('action-result').textContent")
    assert (tmp_path / "savepoint" / "_metadata").is_file()

    browser.eval("document.getElementById('action-cancel').click()")
    assert browser.eval("document.getElementById('action-cancel').dataset.armed") == "yes"
    assert get_json(c, f"/jobs/{job_id}")["state"] == "RUNNING"  # one click only arms the button
    browser.eval("document.getElementById('action-cancel').click()")
    browser.wait(f"""(() => {{ const r = document.querySelector('#job-list tr[data-job-id="{job_id}"]');
        return r && r.dataset.state === 'CANCELED'; }})()""", 20, "the job shown CANCELED")
    assert get_json(c, f"/jobs/{job_id}")["state"] == "CANCELED"
    assert browser.eval("document.getElementById('action-cancel').offsetParent") is None
    assert not browser.errors, browser.errors
