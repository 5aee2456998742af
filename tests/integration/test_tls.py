"""TLS and mutual TLS across a real cluster, with certificates generated here.

A cluster (1 JobManager + 2 TaskManagers) with ``security.ssl.internal.*`` set and a CA, so every RPC channel and
every data connection between workers is mutual TLS, runs a parallelism-2 job with a shuffle and gives the
reference result. Clients without TLS, without the CA, or without a certificate are refused with an error that
says what to set; a TaskManager whose certificate another CA signed cannot register; a plaintext peer and a peer
without a certificate get nothing from a worker's data port; the REST API speaks HTTPS; the cluster token
appears in no log.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from client.gateway import JobManagerClient
from client.local_cluster import LocalCluster
from tests.integration.certs import CA, Identity, make_ca
from tests.integration.procs import wait_for
from weir import config as wconfig
from weir.datastream import StreamExecutionEnvironment
from weir.datastream.execution import ExecutionContext, set_context

pytestmark = pytest.mark.integration

TOKEN = "tls-test-cluster-token-7f3a"
SSL = "WEIR_SECURITY_SSL_INTERNAL_"


def tls_env(ca: CA | None, ident: Identity | None, *, enabled: bool = True) -> dict[str, str]:
    env = {SSL + "ENABLED": "true" if enabled else "false"}
    if ca is not None:
        env[SSL + "CA"] = str(ca.cert)
    if ident is not None:
        env[SSL + "CERT"], env[SSL + "KEY"] = str(ident.cert), str(ident.key)
    return env


def without_tls(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if not k.startswith("WEIR_SECURITY_SSL_")}


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "client", *args], capture_output=True, text=True, timeout=90,
                          env=env)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("pki")
    ca = make_ca(d / "ca")
    other = make_ca(d / "other-ca", "another-ca")
    return {
        "ca": ca,
        "daemon": ca.issue(d, "daemon"),
        "client": ca.issue(d, "client"),
        "rogue": other.issue(d, "rogue"),
        "other_ca": other,
    }


@pytest.fixture(scope="module")
def tls_cluster(pki: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    home = tmp_path_factory.mktemp("tls-home")
    c = LocalCluster(taskmanagers=2, slots=1, heartbeat_timeout=5, heartbeat_interval=0.5, slot_request_timeout=20,
                     log_dir=str(home / "logs"))
    with pytest.MonkeyPatch.context() as mp:
        for k, v in tls_env(pki["ca"], pki["daemon"]).items():
            mp.setenv(k, v)
        mp.setenv("WEIR_SECURITY_SSL_REST_ENABLED", "true")
        mp.setenv("WEIR_AUTH_TOKEN", TOKEN)
        mp.setenv("WEIR_HOME", str(home))
        wconfig.reset()
        c.start()
        try:
            yield c
        finally:
            c.stop()
            wconfig.reset()


def _word_count_job(address: str) -> list[Any]:
    set_context(ExecutionContext(jobmanager_address=address))
    try:
        env = StreamExecutionEnvironment.get_execution_environment()
        env.set_parallelism(2)
        words = [f"w{i % 37}" for i in range(5_000)]
        out = (env.from_collection(words).map(lambda w: (w, 1)).key_by(lambda t: t[0])
               .reduce(lambda a, b: (a[0], a[1] + b[1])).execute_and_collect())
        return list(out)
    finally:
        set_context(None)


def test_a_job_runs_over_mutual_tls(tls_cluster: LocalCluster) -> None:
    out = _word_count_job(tls_cluster.address)
    final: dict[str, int] = {}
    for w, n in out:
        final[w] = max(final.get(w, 0), n)
    assert final == dict(Counter(f"w{i % 37}" for i in range(5_000)))
    assert len(out) == 5_000  # a running reduce emits once per record
    info = JobManagerClient(tls_cluster.address).overview()
    assert len(info.taskmanagers) == 2


def test_clients_without_tls_the_ca_or_a_certificate_are_refused(tls_cluster: LocalCluster,
                                                                  pki: dict[str, Any]) -> None:
    base = {**os.environ, "WEIR_AUTH_TOKEN": TOKEN}
    good = cli("list", "-m", tls_cluster.address, env=base)
    assert good.returncode == 0, good.stderr

    plain = cli("list", "-m", tls_cluster.address, env=without_tls(base))
    assert plain.returncode == 1
    assert "security.ssl.internal.enabled" in plain.stderr

    no_ca = cli("list", "-m", tls_cluster.address, env={**without_tls(base), **tls_env(None, pki["client"])})
    assert no_ca.returncode == 1
    assert "not trusted" in no_ca.stderr and "security.ssl.internal.ca" in no_ca.stderr

    no_cert = cli("list", "-m", tls_cluster.address, env={**without_tls(base), **tls_env(pki["ca"], None)})
    assert no_cert.returncode == 1
    assert "requires a client certificate" in no_cert.stderr and "security.ssl.internal.cert" in no_cert.stderr

    rogue = cli("list", "-m", tls_cluster.address, env={**without_tls(base), **tls_env(pki["ca"], pki["rogue"])})
    assert rogue.returncode == 1 and "refused this client's certificate" in rogue.stderr

    # the certificate is right but the token is missing: TLS does not replace the token
    no_token = cli("list", "-m", tls_cluster.address, env={**base, "WEIR_AUTH_TOKEN": ""})
    assert no_token.returncode == 1 and "cluster token" in no_token.stderr


def test_a_taskmanager_without_a_valid_certificate_cannot_register(tls_cluster: LocalCluster, pki: dict[str, Any],
                                                                   tmp_path: Path) -> None:
    log = tmp_path / "rogue-tm.log"
    env = {**without_tls(dict(os.environ)), **tls_env(pki["ca"], pki["rogue"]), "WEIR_AUTH_TOKEN": TOKEN}
    with open(log, "wb") as out:
        rogue = subprocess.Popen([sys.executable, "-m", "client", "taskmanager", "--jobmanager", tls_cluster.address,
                                  "--slots", "1", "--metrics-port", "-1"], stdout=out, stderr=out, env=env)
    try:
        wait_for(lambda: "cannot register" in log.read_text(), 60, "the rogue TaskManager's refusal")
        assert "refused this client's certificate" in log.read_text()
        assert len(JobManagerClient(tls_cluster.address).overview().taskmanagers) == 2
    finally:
        rogue.kill()
        rogue.wait()
    assert TOKEN not in log.read_text()


def https_get(host: str, port: int, path: str, ctx: ssl.SSLContext) -> bytes:
    """The body of a 200 answer to GET ``path`` over HTTPS, with the cluster token."""
    conn = http.client.HTTPSConnection(host, port, timeout=30, context=ctx)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {TOKEN}"})
        resp = conn.getresponse()
        assert resp.status == 200, (path, resp.status)
        return resp.read()
    finally:
        conn.close()


def _data_addresses(c: LocalCluster, ctx: ssl.SSLContext) -> list[str]:
    tms = json.loads(https_get(c.host, c.rest_port, "/taskmanagers", ctx))["taskmanagers"]
    return [a for tm in tms for a in tm["dataAddresses"]]


def _client_ctx(pki: dict[str, Any], ident: Identity | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki["ca"].cert))
    if ident is not None:
        ctx.load_cert_chain(str(ident.cert), str(ident.key))
    return ctx


def _closed_without_answer(sock: socket.socket) -> bool:
    sock.settimeout(15)
    try:
        return sock.recv(1) == b""
    except (ssl.SSLError, ConnectionError):
        return True


def test_worker_data_ports_speak_mutual_tls_only(tls_cluster: LocalCluster, pki: dict[str, Any]) -> None:
    addresses = _data_addresses(tls_cluster, _client_ctx(pki, None))
    assert len(addresses) == 2
    host, port = addresses[0].rsplit(":", 1)
    # plaintext: the worker waits for a TLS hello and closes the connection
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"\x00\x00\x00\x05\x00\x00\x00\x00\x00hello")
        assert _closed_without_answer(s)
    # TLS without a client certificate: the handshake is refused
    ctx = _client_ctx(pki, None)
    with socket.create_connection((host, int(port)), timeout=10) as raw, \
            pytest.raises((ssl.SSLError, ConnectionError)), \
            ctx.wrap_socket(raw, server_hostname=host) as s:  # TLS 1.3 reports the refusal on the first read
        s.sendall(b"\x00" * 9)
        if not _closed_without_answer(s):
            raise AssertionError("the worker answered a client without a certificate")
        raise ConnectionError("closed")
    # a client certificate from the cluster's CA gets through TLS, but a hello without the token is refused
    with socket.create_connection((host, int(port)), timeout=10) as raw, \
            _client_ctx(pki, pki["client"]).wrap_socket(raw, server_hostname=host) as s:
        s.sendall(b"\x00\x00\x00\x05\x00\x00\x00\x00\x00rogue")
        assert _closed_without_answer(s)
    # the cluster still runs jobs
    assert len(_word_count_job(tls_cluster.address)) == 5_000


def test_rest_is_https(tls_cluster: LocalCluster, pki: dict[str, Any]) -> None:
    ctx = _client_ctx(pki, None)
    c = tls_cluster
    settings = json.loads(https_get(c.host, c.rest_port, "/config", ctx))["settings"]
    assert settings["security.ssl.rest.enabled"] is True and settings["rest.token-required"] is True
    assert b"weir_jobmanager" in https_get(c.host, c.rest_port, "/metrics", ctx)
    # the TaskManagers' /metrics too
    for port in c.metrics_ports:
        assert b"weir_taskmanager_slots" in https_get(c.host, port, "/metrics", ctx)
    # plain HTTP on the HTTPS port gets no HTTP answer
    with socket.create_connection((tls_cluster.host, tls_cluster.rest_port), timeout=10) as s:
        s.sendall(b"GET /overview HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(15)
        data = b""
        try:
            while chunk := s.recv(4096):
                data += chunk
        except ConnectionError:
            pass
    assert not data.startswith(b"HTTP/")
    # a client that does not trust the CA refuses the server
    with pytest.raises(ssl.SSLCertVerificationError):
        bad = http.client.HTTPSConnection(tls_cluster.host, tls_cluster.rest_port, timeout=10,
                                          context=ssl.create_default_context(cafile=str(pki["other_ca"].cert)))
        try:
            bad.request("GET", "/overview")
        finally:
            bad.close()


def test_the_token_appears_in_no_log(tls_cluster: LocalCluster) -> None:
    logs = list(Path(tls_cluster.log_dir or "").glob("*.log"))
    assert logs, "the cluster wrote no logs"
    for p in logs:
        text = p.read_text(errors="replace")
        assert TOKEN not in text, p
    shown = cli("config", "show", env={**os.environ, "WEIR_AUTH_TOKEN": TOKEN})
    assert shown.returncode == 0 and "weir.auth.token" in shown.stdout and TOKEN not in shown.stdout


def test_a_daemon_with_a_missing_or_mismatched_certificate_does_not_start(pki: dict[str, Any],
                                                                         tmp_path: Path) -> None:
    base = without_tls(dict(os.environ))
    missing = cli("jobmanager", "--port", "0", "--rest-port", "0",
                  env={**base, **tls_env(pki["ca"], None)})
    assert missing.returncode == 1
    assert "nothing started" in missing.stderr and "security.ssl.internal.cert is not set" in missing.stderr
    mixed = Identity(pki["daemon"].cert, pki["rogue"].key)  # a certificate with another's key
    bad = cli("jobmanager", "--port", "0", "--rest-port", "0", env={**base, **tls_env(pki["ca"], mixed)})
    assert bad.returncode == 1 and "cannot be used together" in bad.stderr
    nofile = cli("jobmanager", "--port", "0", "--rest-port", "0",
                 env={**base, SSL + "ENABLED": "true", SSL + "CERT": str(tmp_path / "nope.crt")})
    assert nofile.returncode == 1 and "security.ssl.internal.cert" in nofile.stderr and "names no file" in nofile.stderr
