"""Security settings: the boolean and file keys, TLS file checks, failure advice and the data-plane hello."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskmanager.network.connection import ConnectionManager, HelloRefused
from tests.integration.certs import Identity, make_ca
from weir import config as wconfig
from weir.rpc import tls


def load(**env: str) -> wconfig.Config:
    return wconfig.load(environ={f"WEIR_{k}": v for k, v in env.items()})


@pytest.mark.parametrize(("raw", "value"), [("true", True), ("Yes", True), ("on", True), ("1", True),
                                            ("false", False), ("no", False), ("OFF", False), ("0", False)])
def test_boolean_keys(raw: str, value: bool) -> None:
    assert load(SECURITY_SSL_INTERNAL_ENABLED=raw).get("security.ssl.internal.enabled") is value


def test_a_bad_boolean_or_a_missing_file_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(wconfig.ConfigError) as e:
        load(SECURITY_SSL_INTERNAL_ENABLED="maybe", SECURITY_SSL_INTERNAL_CA=str(tmp_path / "ca.pem"))
    text = str(e.value)
    assert "security.ssl.internal.enabled: 'maybe'" in text and "true or false" in text
    assert "security.ssl.internal.ca" in text and "names no file" in text


def test_yaml_booleans_and_file_paths(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    f = tmp_path / "config.yaml"
    f.write_text(f"security:\n  ssl:\n    internal:\n      enabled: yes\n      ca: {ca}\n")
    cfg = wconfig.load(str(f), environ={})
    assert cfg.get("security.ssl.internal.enabled") is True and cfg.get_str("security.ssl.internal.ca") == str(ca)
    assert cfg.raw("security.ssl.internal.enabled") == "true"  # read back the same by an environment override


def test_the_token_is_a_secret_from_its_environment_variable() -> None:
    cfg = load(AUTH_TOKEN="s3cret")
    assert cfg.get_str("weir.auth.token") == "s3cret"
    assert "s3cret" not in cfg.format_table() and "s3cret" not in str(cfg.to_json())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Identity]:
    d = tmp_path_factory.mktemp("pki")
    ca = make_ca(d / "ca")
    other = make_ca(d / "other", "other")
    return {"ca": Identity(ca.cert, ca.key), "a": ca.issue(d, "a"), "b": other.issue(d, "b")}


def test_daemon_checks(pki: dict[str, Identity]) -> None:
    ca = str(pki["ca"].cert)
    ok = load(SECURITY_SSL_INTERNAL_ENABLED="true", SECURITY_SSL_INTERNAL_CERT=str(pki["a"].cert),
              SECURITY_SSL_INTERNAL_KEY=str(pki["a"].key), SECURITY_SSL_INTERNAL_CA=ca)
    assert tls.check_daemon(ok) == []
    t = tls.internal(ok)
    assert t is not None and t.mutual
    no_key = load(SECURITY_SSL_INTERNAL_ENABLED="true", SECURITY_SSL_INTERNAL_CERT=str(pki["a"].cert))
    assert any("security.ssl.internal.key is not set" in p for p in tls.check_daemon(no_key))
    mixed = load(SECURITY_SSL_INTERNAL_ENABLED="true", SECURITY_SSL_INTERNAL_CERT=str(pki["a"].cert),
                 SECURITY_SSL_INTERNAL_KEY=str(pki["b"].key))
    assert any("cannot be used together" in p for p in tls.check_daemon(mixed))
    # HTTPS falls back to the internal certificate
    rest = load(SECURITY_SSL_REST_ENABLED="true", SECURITY_SSL_INTERNAL_CERT=str(pki["a"].cert),
                SECURITY_SSL_INTERNAL_KEY=str(pki["a"].key))
    r = tls.rest(rest)
    assert r is not None and r.cert_file == str(pki["a"].cert) and not r.mutual
    assert tls.internal(rest) is None
    assert tls.check_daemon(load(SECURITY_SSL_REST_ENABLED="true"))  # nothing to serve HTTPS with


def test_failure_advice() -> None:
    client = tls.TlsConfig("c.pem", "k.pem", "ca.pem")
    assert "security.ssl.internal.ca" in (tls.describe_failure(
        "Tls handshake failed: CERTIFICATE_VERIFY_FAILED: unable to get local issuer", "h:1", client) or "")
    assert "security.ssl.internal.enabled" in (tls.describe_failure("ipv4:h:1: Socket closed", "h:1", None) or "")
    assert "requires a client certificate" in (tls.describe_failure(
        "Socket closed", "h:1", tls.TlsConfig(None, None, "ca.pem")) or "")
    assert "refused this client's certificate" in (tls.describe_failure("Socket closed", "h:1", client) or "")
    assert tls.describe_failure("Connection refused", "h:1", client) is None


def test_data_plane_hello_carries_the_token() -> None:
    a = ConnectionManager("a", token="t0k")
    b = ConnectionManager("b", token="t0k")
    assert b.check_hello(a.hello()).startswith("a@")
    with pytest.raises(HelloRefused, match="token"):
        b.check_hello(ConnectionManager("rogue").hello())
    with pytest.raises(HelloRefused, match="malformed"):
        b.check_hello(b"\x80\x05garbage")
    open_ = ConnectionManager("c")
    assert open_.check_hello(ConnectionManager("d").hello()).startswith("d@")
