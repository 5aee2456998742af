"""A shared cluster secret on every control-plane call (``weir.auth.token``, ``$WEIR_AUTH_TOKEN``), and the
channels and servers that carry it (over TLS when ``security.ssl.internal.enabled``, see :mod:`weir.rpc.tls`).

A job is pickled code: whoever can submit one, or deploy tasks to a TaskManager, runs code there. With a token set
(the same for every daemon and client of the cluster), the JobManager and the TaskManagers refuse every gRPC call
that does not carry ``authorization: Bearer <token>`` with UNAUTHENTICATED, before any handler (and so before any
unpickling) runs, and every weir client and daemon sends it. Without a token the cluster is open (loopback
development). The token travels in clear unless TLS is on.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from weir import config as wconfig
from weir.rpc import tls

TOKEN_ENV = "WEIR_AUTH_TOKEN"
TOKEN_KEY = "weir.auth.token"
_HEADER = "authorization"


def cluster_token() -> str | None:
    """This process's cluster token (``weir.auth.token``: configuration file, ``$WEIR_AUTH_TOKEN`` or install)."""
    return wconfig.current().get_str(TOKEN_KEY) or None


def metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    return ((_HEADER, f"Bearer {token}"),) if token else ()


class TokenServerInterceptor(grpc.aio.ServerInterceptor):
    """Refuses calls without the cluster token (compared in constant time)."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

        async def deny(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                f"missing or wrong cluster token: set {TOKEN_KEY} (or ${TOKEN_ENV}) to the "
                                "cluster's token")

        self._deny = grpc.unary_unary_rpc_method_handler(deny)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        for key, value in handler_call_details.invocation_metadata or ():
            if key == _HEADER:
                got = value.encode() if isinstance(value, str) else value
                if hmac.compare_digest(got, self._expected):
                    return await continuation(handler_call_details)
        return self._deny


def server_interceptors() -> list[grpc.aio.ServerInterceptor]:
    token = cluster_token()
    return [TokenServerInterceptor(token)] if token else []


class _AioClientInterceptor(grpc.aio.UnaryUnaryClientInterceptor, grpc.aio.UnaryStreamClientInterceptor):
    def __init__(self, token: str) -> None:
        self._md = metadata(token)

    def _details(self, d: Any) -> Any:
        md = tuple(d.metadata or ()) + self._md
        return grpc.aio.ClientCallDetails(d.method, d.timeout, md, d.credentials, d.wait_for_ready)

    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await continuation(self._details(client_call_details), request)

    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await continuation(self._details(client_call_details), request)


def aio_channel(address: str, options: list[tuple[str, Any]]) -> grpc.aio.Channel:
    """An asyncio channel that sends the cluster token (when there is one) on every call; TLS when configured."""
    token = cluster_token()
    interceptors = [_AioClientInterceptor(token)] if token else None
    t = tls.internal()
    if t is None:
        return grpc.aio.insecure_channel(address, options=options, interceptors=interceptors)
    return grpc.aio.secure_channel(address, t.channel_credentials(), options=options + t.channel_options(),
                                   interceptors=interceptors)


def bind(server: grpc.aio.Server, address: str) -> int:
    """Open ``address`` on ``server``: TLS when configured (mutual with a CA). Returns the port, 0 if it failed."""
    t = tls.internal()
    if t is None:
        return server.add_insecure_port(address)
    return server.add_secure_port(address, t.server_credentials())


class _SyncClientInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    def __init__(self, token: str) -> None:
        self._md = metadata(token)

    def _details(self, d: Any) -> Any:
        return _CallDetails(d.method, d.timeout, tuple(d.metadata or ()) + self._md, d.credentials,
                            getattr(d, "wait_for_ready", None), getattr(d, "compression", None))

    def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return continuation(self._details(client_call_details), request)

    def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return continuation(self._details(client_call_details), request)


class _CallDetails(grpc.ClientCallDetails):
    def __init__(self, method: str, timeout: Any, metadata: Any, credentials: Any, wait_for_ready: Any,
                 compression: Any) -> None:
        self.method = method
        self.timeout = timeout
        self.metadata = metadata
        self.credentials = credentials
        self.wait_for_ready = wait_for_ready
        self.compression = compression


def sync_channel(address: str, options: list[tuple[str, Any]]) -> grpc.Channel:
    """A blocking channel that sends the cluster token (when there is one) on every call; TLS when configured."""
    t = tls.internal()
    if t is None:
        channel = grpc.insecure_channel(address, options=options)
    else:
        channel = grpc.secure_channel(address, t.channel_credentials(), options=options + t.channel_options())
    token = cluster_token()
    return grpc.intercept_channel(channel, _SyncClientInterceptor(token)) if token else channel
