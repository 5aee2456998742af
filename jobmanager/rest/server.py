"""A small HTTP/1.1 server on asyncio streams, for the JobManager's REST API (no web framework needed).

What it does: GET and POST, routes with ``{name}`` path parameters, JSON bodies and responses, keep-alive (HTTP/1.1
by default, HTTP/1.0 with ``Connection: keep-alive``), pipelined requests answered in order. What it refuses, always
with a JSON error body ``{"errors": ["..."]}`` (Flink's REST error shape) and without disturbing other connections:
a malformed request (400), a head over ``max_head_bytes`` or with too many headers (431), a body over
``max_body_bytes`` (413), a chunked body (501: clients send Content-Length), an HTTP version other than 1.0/1.1
(505), an unknown path (404), a known path with another method (405, with ``Allow``), a request whose head or body
does not arrive within ``read_timeout`` (408; a head that does not is closed without an answer, as is a
keep-alive connection idle for ``idle_timeout``), more than ``max_connections`` open connections (503). A handler
that raises answers 500 and is logged; the server keeps serving.

Handlers run in the server's event loop, one request at a time per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from ssl import SSLContext
from typing import Any
from urllib.parse import parse_qs, unquote

log = logging.getLogger("weir.jobmanager.rest")

MAX_HEAD_BYTES = 16 * 1024
MAX_HEADERS = 100
MAX_BODY_BYTES = 1024 * 1024
READ_TIMEOUT = 10.0
IDLE_TIMEOUT = 60.0
MAX_CONNECTIONS = 256
MAX_REQUESTS_PER_CONNECTION = 10_000

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 token, used with fullmatch
JSON_TYPE = "application/json; charset=utf-8"


class HTTPError(Exception):
    """Raised by a handler (or the server) to answer ``status`` with ``{"errors": [message]}``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes
    version: str
    params: dict[str, str] = field(default_factory=dict)  # the route's {name} parts, percent-decoded

    def json(self) -> Any:
        """The body as JSON (None when empty); 400 when it is not JSON."""
        if not self.body.strip():
            return None
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as e:
            raise HTTPError(400, f"the request body is not valid JSON: {e}") from None


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = JSON_TYPE
    headers: dict[str, str] = field(default_factory=dict)


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(obj, ensure_ascii=False, allow_nan=False).encode()
    return Response(status, body, JSON_TYPE, dict(headers or {}))


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return json_response({"errors": [message]}, status, headers)


Handler = Callable[[Request], Awaitable[Response]]


class Router:
    """Routes ``(method, "/jobs/{id}/cancel")`` to handlers. Path segments are matched after percent-decoding."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, list[str], Handler]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        if not pattern.startswith("/"):
            raise ValueError(f"a route pattern starts with '/': {pattern!r}")
        self._routes.append((method.upper(), pattern.strip("/").split("/"), handler))

    def get(self, pattern: str) -> Callable[[Handler], Handler]:
        def deco(h: Handler) -> Handler:
            self.add("GET", pattern, h)
            return h

        return deco

    def post(self, pattern: str) -> Callable[[Handler], Handler]:
        def deco(h: Handler) -> Handler:
            self.add("POST", pattern, h)
            return h

        return deco

    @property
    def routes(self) -> list[tuple[str, str]]:
        """(method, pattern) of every route, in the order they were added."""
        return [(m, "/" + "/".join(p)) for m, p, _ in self._routes]

    @staticmethod
    def _match(pattern: list[str], segments: list[str]) -> dict[str, str] | None:
        if len(pattern) != len(segments):
            return None
        params: dict[str, str] = {}
        for p, s in zip(pattern, segments, strict=True):
            if p.startswith("{") and p.endswith("}"):
                if not s:
                    return None
                params[p[1:-1]] = s
            elif p != s:
                return None
        return params

    def resolve(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        """The handler and path parameters for a request; HTTPError 404 or 405 when there is none."""
        try:
            segments = [unquote(s, errors="strict") for s in path.strip("/").split("/")]
        except UnicodeDecodeError:
            raise HTTPError(400, f"the path {path!r} is not valid percent-encoded UTF-8") from None
        allowed: list[str] = []
        for m, pattern, handler in self._routes:
            params = self._match(pattern, segments)
            if params is None:
                continue
            if m == method:
                return handler, params
            allowed.append(m)
        if allowed:
            allow = ", ".join(sorted(set(allowed)))
            raise HTTPError(405, f"{method} is not allowed on {path}: use {allow}", {"Allow": allow})
        raise HTTPError(404, f"no such resource: {path}")


class _CloseAfter(Exception):
    """Answer this error, then close the connection (the request stream can no longer be trusted)."""

    def __init__(self, error: HTTPError) -> None:
        super().__init__(error.message)
        self.error = error


class RestServer:
    """Serves a Router on ``host:port`` (port 0: any free port; ``port`` holds the bound one after ``start``)."""

    def __init__(
        self,
        router: Router,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        server_name: str = "weir",
        max_head_bytes: int = MAX_HEAD_BYTES,
        max_headers: int = MAX_HEADERS,
        max_body_bytes: int = MAX_BODY_BYTES,
        read_timeout: float = READ_TIMEOUT,
        idle_timeout: float = IDLE_TIMEOUT,
        max_connections: int = MAX_CONNECTIONS,
        ssl: SSLContext | None = None,
    ) -> None:
        self.router = router
        self.host = host
        self.port = port
        self.server_name = server_name
        self.max_head_bytes = max_head_bytes
        self.max_headers = max_headers
        self.max_body_bytes = max_body_bytes
        self.read_timeout = read_timeout
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.ssl = ssl  # HTTPS when set (mutual when the context requires client certificates)
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._closing = False

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    async def start(self) -> None:
        try:
            self._server = await asyncio.start_server(self._accept, self.host, self.port,
                                                      limit=self.max_head_bytes, ssl=self.ssl,
                                                      ssl_handshake_timeout=self.read_timeout if self.ssl else None)
        except OSError as e:
            why = "the address is in use" if e.errno == errno.EADDRINUSE else str(e)
            raise OSError(f"cannot bind the JobManager's REST port {self.host}:{self.port} ({why}): is another "
                          "JobManager running? Pick another with --rest-port.") from e
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop accepting, end open connections (in-flight handlers are cancelled) and wait for them."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        tasks = list(self._connections)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    # ---- connections ----
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if len(self._connections) >= self.max_connections:
            with contextlib.suppress(ConnectionError):
                await self._send(writer, error_response(503, "too many open connections; try again later"), False)
            await self._close_writer(writer)
            return
        self._connections.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away
        except asyncio.CancelledError:
            if not self._closing:
                raise
            # cancelled by close(): end normally (Python 3.11's stream callback would log a cancelled task)
        finally:
            self._connections.discard(task)
            await self._close_writer(writer)

    @staticmethod
    async def _close_writer(writer: asyncio.StreamWriter) -> None:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for n in range(MAX_REQUESTS_PER_CONNECTION):
            try:
                head = await self._read_head(reader, self.idle_timeout if n else self.read_timeout)
                if head is None:
                    return  # closed, or idle too long, between requests
                request = await self._parse(head, reader)
            except _CloseAfter as e:
                await self._send(writer, error_response(e.error.status, e.error.message, e.error.headers), False)
                await self._linger(reader, writer)
                return
            keep_alive = self._keep_alive(request) and n + 1 < MAX_REQUESTS_PER_CONNECTION
            response = await self._dispatch(request)
            await self._send(writer, response, keep_alive)
            if not keep_alive:
                return

    @staticmethod
    async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, seconds: float = 1.0) -> None:
        """Before closing on a request we did not read whole: half-close and drop what the client still sends for
        a moment. Closing with unread input makes the kernel reset the connection, and the client could lose
        the error answer."""
        with contextlib.suppress(Exception):
            if writer.can_write_eof():
                writer.write_eof()
            async with asyncio.timeout(seconds):
                while await reader.read(65536):
                    pass

    async def _read_head(self, reader: asyncio.StreamReader, timeout: float) -> bytes | None:
        """The next request's head, or None when the client closed or sent no complete head within ``timeout``
        (an idle keep-alive connection, or one trickling bytes: closed without an answer, as servers do)."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    head = (await reader.readuntil(b"\r\n\r\n")).lstrip(b"\r\n")  # empty lines may precede
                    if head:
                        return head
        except TimeoutError:
            return None
        except asyncio.IncompleteReadError as e:
            if e.partial.strip():
                raise _CloseAfter(HTTPError(400, "the connection closed in the middle of a request head")) from None
            return None
        except asyncio.LimitOverrunError:
            raise _CloseAfter(HTTPError(431, f"the request head is larger than {self.max_head_bytes} bytes")) from None

    async def _parse(self, head: bytes, reader: asyncio.StreamReader) -> Request:
        lines = head.decode("latin-1")[:-4].split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not parts[1]:
            raise _CloseAfter(HTTPError(400, f"malformed request line: {lines[0][:200]!r}"))
        method, target, version = parts
        if not re.fullmatch(r"HTTP/\d\.\d", version):
            raise _CloseAfter(HTTPError(400, f"malformed request line: {lines[0][:200]!r}"))
        if version not in ("HTTP/1.0", "HTTP/1.1"):
            raise _CloseAfter(HTTPError(505, f"{version} is not supported: use HTTP/1.1"))
        if len(lines) - 1 > self.max_headers:
            raise _CloseAfter(HTTPError(431, f"more than {self.max_headers} request headers"))
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not _TOKEN.fullmatch(name):
                raise _CloseAfter(HTTPError(400, f"malformed header line: {line[:200]!r}"))
            key, value = name.lower(), value.strip(" \t")
            if key == "content-length" and key in headers and headers[key] != value:
                raise _CloseAfter(HTTPError(400, "conflicting Content-Length headers"))
            headers[key] = f"{headers[key]}, {value}" if key in headers and key != "content-length" else value
        if "transfer-encoding" in headers:
            raise _CloseAfter(HTTPError(501, "Transfer-Encoding is not supported: send a Content-Length"))
        if not target.startswith("/"):
            raise _CloseAfter(HTTPError(400, f"the request target must be a path: {target[:200]!r}"))
        raw_length = headers.get("content-length", "0")
        if not raw_length.isdigit():
            raise _CloseAfter(HTTPError(400, f"bad Content-Length: {raw_length[:50]!r}"))
        length = int(raw_length)
        if length > self.max_body_bytes:
            raise _CloseAfter(HTTPError(413, f"the request body ({length} bytes) is larger than the limit of "
                                             f"{self.max_body_bytes} bytes"))
        body = b""
        if length:
            try:
                async with asyncio.timeout(self.read_timeout):
                    body = await reader.readexactly(length)
            except TimeoutError:
                raise _CloseAfter(HTTPError(408, f"the request body did not arrive within {self.read_timeout:g} s")
                                  ) from None
        path, _, query = target.partition("?")
        return Request(method, path, parse_qs(query, keep_blank_values=True), headers, body, version)

    @staticmethod
    def _keep_alive(request: Request) -> bool:
        tokens = {t.strip().lower() for t in request.headers.get("connection", "").split(",")}
        if request.version == "HTTP/1.0":
            return "keep-alive" in tokens
        return "close" not in tokens

    async def _dispatch(self, request: Request) -> Response:
        try:
            handler, request.params = self.router.resolve(request.method, request.path)
            return await handler(request)
        except HTTPError as e:
            return error_response(e.status, e.message, e.headers)
        except Exception:  # noqa: BLE001 - a broken handler must not take the server down
            log.exception("REST %s %s failed", request.method, request.path)
            return error_response(500, f"internal error while serving {request.method} {request.path}: see the "
                                       "JobManager's log")

    async def _send(self, writer: asyncio.StreamWriter, response: Response, keep_alive: bool) -> None:
        try:
            reason = HTTPStatus(response.status).phrase
        except ValueError:
            reason = "Unknown"
        head = [
            f"HTTP/1.1 {response.status} {reason}",
            f"Server: {self.server_name}",
            f"Content-Type: {response.content_type}",
            f"Content-Length: {len(response.body)}",
            "Cache-Control: no-store",
            f"Connection: {'keep-alive' if keep_alive else 'close'}",
            *(f"{k}: {v}" for k, v in response.headers.items()),
        ]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + response.body)
        await writer.drain()
