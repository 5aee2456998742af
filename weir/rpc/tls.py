"""TLS for a weir cluster: the RPC channels, the data plane between workers and the REST API.

With ``security.ssl.internal.enabled`` every gRPC server (JobManager, TaskManagers) serves only TLS, every channel
(clients, the JobManager's calls to TaskManagers, workers' calls to the JobManager) speaks it, and workers' data
connections are TLS streams. Setting ``security.ssl.internal.ca`` makes it mutual: each side verifies the other
against that CA alone, so only holders of a certificate the cluster's CA signed can submit, register or send
records. Without a CA, clients verify servers against the system's trust store and present no certificate.

Certificates name the address a peer dials (a DNS or IP subject alternative name), or all carry one name set as
``security.ssl.internal.server-name``, which is then checked instead (containers, where addresses change).

Files are read when a server or channel is made, so a renewed certificate takes effect on the next connection.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

import grpc

from weir import config as wconfig

_INTERNAL = "security.ssl.internal."
_REST = "security.ssl.rest."


class TlsConfigError(ValueError):
    """TLS is enabled but a file it needs is missing or unreadable; the message names the key to set."""


@dataclass(frozen=True)
class TlsConfig:
    """Files of one TLS endpoint (paths to PEM files). ``ca_file`` set: mutual TLS.

    ``cert_file`` and ``key_file`` may be ``None`` only for a client of a server that does not ask for a
    certificate (no CA configured there).
    """

    cert_file: str | None
    key_file: str | None
    ca_file: str | None = None
    server_name: str | None = None
    keys: str = _INTERNAL  # the configuration keys these came from, for error messages

    @property
    def mutual(self) -> bool:
        return self.ca_file is not None

    def _read(self, path: str | None, what: str) -> bytes | None:
        if path is None:
            return None
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as e:
            raise TlsConfigError(f"cannot read the TLS {what} {path} ({self.keys}{what}): "
                                 f"{e.strerror or e}") from None

    def _require_identity(self) -> tuple[bytes, bytes]:
        if self.cert_file is None or self.key_file is None:
            missing = "cert" if self.cert_file is None else "key"
            raise TlsConfigError(f"TLS is enabled but {self.keys}{missing} is not set: a server needs its "
                                 f"certificate and private key (PEM files)")
        cert, key = self._read(self.cert_file, "cert"), self._read(self.key_file, "key")
        assert cert is not None and key is not None
        return cert, key

    # ---- gRPC ----
    def server_credentials(self) -> grpc.ServerCredentials:
        """Credentials of a gRPC server; with a CA, clients without a certificate it signed are refused."""
        cert, key = self._require_identity()
        return grpc.ssl_server_credentials([(key, cert)], root_certificates=self._read(self.ca_file, "ca"),
                                           require_client_auth=self.mutual)

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """Credentials of a gRPC channel: trust the CA (else the system's roots), present our certificate."""
        have_identity = self.cert_file is not None and self.key_file is not None
        return grpc.ssl_channel_credentials(
            root_certificates=self._read(self.ca_file, "ca"),
            private_key=self._read(self.key_file, "key") if have_identity else None,
            certificate_chain=self._read(self.cert_file, "cert") if have_identity else None,
        )

    def channel_options(self) -> list[tuple[str, Any]]:
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []

    # ---- plain TLS streams (data plane, REST) ----
    def server_context(self) -> ssl.SSLContext:
        """Context of a TLS server socket; with a CA, a client certificate it signed is required."""
        self._require_identity()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        assert self.cert_file is not None
        ctx.load_cert_chain(self.cert_file, self.key_file)
        if self.ca_file is not None:
            ctx.load_verify_locations(cafile=self.ca_file)
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """Context of a TLS client socket: verifies the server (and its name), presents our certificate."""
        ctx = ssl.create_default_context(cafile=self.ca_file)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.cert_file is not None and self.key_file is not None:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx

    def server_hostname(self, host: str) -> str:
        """The name to verify when dialling ``host``."""
        return self.server_name or host


def internal(cfg: wconfig.Config | None = None) -> TlsConfig | None:
    """The RPC and data-plane TLS settings of this process (``None``: plaintext)."""
    cfg = cfg or wconfig.current()
    if not cfg.get(_INTERNAL + "enabled"):
        return None
    return TlsConfig(cfg.get_str(_INTERNAL + "cert"), cfg.get_str(_INTERNAL + "key"), cfg.get_str(_INTERNAL + "ca"),
                     cfg.get_str(_INTERNAL + "server-name"), _INTERNAL)


def rest(cfg: wconfig.Config | None = None) -> TlsConfig | None:
    """The REST API's HTTPS settings (``None``: plain HTTP); certificate and key default to the internal ones."""
    cfg = cfg or wconfig.current()
    if not cfg.get(_REST + "enabled"):
        return None
    cert, key = cfg.get_str(_REST + "cert"), cfg.get_str(_REST + "key")
    if cert is None and key is None:
        cert, key = cfg.get_str(_INTERNAL + "cert"), cfg.get_str(_INTERNAL + "key")
    return TlsConfig(cert, key, cfg.get_str(_REST + "ca"), None, _REST)


def check_daemon(cfg: wconfig.Config) -> list[str]:
    """What keeps a daemon from serving with ``cfg``'s TLS settings (one line per problem; empty: none)."""
    problems = []
    for name, tls in (("security.ssl.internal", internal(cfg)), ("security.ssl.rest", rest(cfg))):
        if tls is None:
            continue
        try:
            tls.server_context()
        except TlsConfigError as e:
            problems.append(str(e))
        except ssl.SSLError as e:
            problems.append(f"{name}: the certificate {tls.cert_file} and key {tls.key_file} cannot be used "
                            f"together ({e.reason or e}): give a PEM certificate and its own private key")
        except OSError as e:
            problems.append(f"{name}: cannot load {tls.cert_file} / {tls.key_file} / {tls.ca_file}: {e}")
    return problems


def describe_failure(details: str, address: str, client: TlsConfig | None) -> str | None:
    """Advice for a failed connection to ``address`` when TLS may be the cause (else ``None``).

    Args:
        details: the gRPC status details.
        client: this side's TLS settings (``None``: plaintext).
    """
    d = details.lower()
    if "certificate_verify_failed" in d or "certificate verify failed" in d:
        return (f"the TLS certificate of {address} is not trusted: set security.ssl.internal.ca to the cluster's "
                "CA certificate, and check that the certificate names the address you dial (or set "
                "security.ssl.internal.server-name)")
    if "handshake" in d or "ssl_error" in d or "wrong_version_number" in d:
        return f"the TLS handshake with {address} failed ({details.strip()})"
    if "socket closed" in d or "connection reset" in d:
        # the server hung up during the handshake: what it wanted depends on what we sent
        if client is None:
            return (f"{address} closed the connection: if the cluster uses TLS, set security.ssl.internal.enabled "
                    "to true and security.ssl.internal.ca to the cluster's CA certificate")
        if client.cert_file is None or client.key_file is None:
            return (f"{address} closed the TLS handshake: it requires a client certificate: set "
                    "security.ssl.internal.cert and security.ssl.internal.key to a certificate the cluster's CA "
                    "signed")
        return (f"{address} closed the TLS handshake: it refused this client's certificate ({client.cert_file}); "
                "use one the cluster's CA signed (or the cluster does not use TLS: set "
                "security.ssl.internal.enabled to false)")
    return None
