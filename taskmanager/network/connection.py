"""Connections between slot workers and the channels multiplexed over them.

Each worker runs one data-plane server. A worker that sends to another opens one TCP connection to it and
multiplexes every channel it sends on over that connection (one connection per ordered pair of workers: the
sender owns it, and the receiver's credits come back on it). A channel is announced with an OPEN frame
naming its ChannelKey; the receiver binds it to the consumer task's input gate -- waiting, if that task is not
deployed yet -- and then grants the initial credit. Channels between subtasks in the same worker skip the
socket and the pickling, but keep the credits, so backpressure works the same way.

A buffer of columns (between columnar operators, see ``RecordWriter.add_columns``) is a data buffer like any other:
one credit, in channel order with records, events and the end of partition. A remote channel sends it as a COLUMNS
frame (Arrow IPC); a local one hands over the ``Columns`` object itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import pickle
import socket
import ssl
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from taskmanager.network import frame
from taskmanager.network.credit import ChannelClosedError, ReceiverCredit, SenderCredit
from weir.rpc.tls import TlsConfig

log = logging.getLogger(__name__)

# mailbox item kinds
M_DATA = 0  # payload: bytes (pickled buffer, remote) -> unpickled by the task
M_LOCAL = 1  # payload: (values, timestamps) handed over in-process
M_END = 2  # end of partition on a channel
M_FAIL = 3  # payload: reason (the channel's producer or connection is gone)
M_EVENT = 4  # payload: an in-band event (name, value), e.g. ("wm", 1000)
M_COLUMNS = 5  # payload: bytes (a COLUMNS frame's Arrow IPC, remote) -> decoded by the task
M_LOCAL_COLUMNS = 6  # payload: (Columns, RecordShape, timestamps) handed over in-process

HELLO_TIMEOUT = 10.0  # seconds a new data connection has to finish its TLS handshake and send its hello


class HelloRefused(Exception):
    """A data connection's first frame is not a hello of this cluster; the connection is closed."""


@dataclass(frozen=True)
class ChannelKey:
    """Identifies a channel: one producer subtask to one consumer subtask on one edge of one execution."""

    execution_id: str
    edge: int
    producer: int
    consumer: int


class InputChannel:
    """Receiver side of one channel, owned by the consumer task's InputGate."""

    __slots__ = ("index", "credit", "return_credit", "ended", "key")

    def __init__(self, index: int, key: ChannelKey, initial_credit: int) -> None:
        self.index = index
        self.key = key
        self.credit = ReceiverCredit(initial_credit)
        self.return_credit: Any = None  # callable(n): grants credit back to the sender
        self.ended = False


class InputGate:
    """All input channels of one task and its mailbox (the only queue the task reads)."""

    def __init__(self, mailbox: asyncio.Queue[Any]) -> None:
        self.mailbox = mailbox
        self.channels: list[InputChannel] = []
        self.by_key: dict[ChannelKey, InputChannel] = {}
        self.edge_of: list[int] = []

    def add_channel(self, key: ChannelKey, initial_credit: int) -> InputChannel:
        ch = InputChannel(len(self.channels), key, initial_credit)
        self.channels.append(ch)
        self.by_key[key] = ch
        self.edge_of.append(key.edge)
        return ch

    def consumed(self, index: int) -> None:
        ch = self.channels[index]
        n = ch.credit.on_buffer_consumed()
        if n and ch.return_credit is not None:
            ch.return_credit(n)

    @property
    def all_ended(self) -> bool:
        return all(c.ended for c in self.channels)


class LocalOutputChannel:
    """A channel to a consumer in this same worker: records are handed over without pickling."""

    def __init__(self, manager: ConnectionManager, key: ChannelKey) -> None:
        self.key = key
        self.credit = SenderCredit()
        self.target: InputChannel | None = None
        self.gate: InputGate | None = None
        manager._bind_local(self)

    async def send(self, values: list[Any], timestamps: list[int] | None) -> None:
        await self.credit.spend()
        assert self.gate is not None and self.target is not None
        self.target.credit.on_buffer_received()
        self.gate.mailbox.put_nowait((M_LOCAL, self.target.index, (values, timestamps)))

    async def send_columns(self, cols: Any, shape: Any, timestamps: list[int] | None) -> None:
        """A buffer of columns (``weir.common.columnar.Columns``): the object itself, no serialization."""
        await self.credit.spend()
        assert self.gate is not None and self.target is not None
        self.target.credit.on_buffer_received()
        self.gate.mailbox.put_nowait((M_LOCAL_COLUMNS, self.target.index, (cols, shape, timestamps)))

    async def event(self, ev: tuple[str, Any]) -> None:
        await self.credit.wait_bound()
        assert self.gate is not None and self.target is not None
        self.gate.mailbox.put_nowait((M_EVENT, self.target.index, ev))

    async def end(self) -> None:
        await self.credit.wait_bound()
        assert self.gate is not None and self.target is not None
        self.gate.mailbox.put_nowait((M_END, self.target.index, None))


class RemoteOutputChannel:
    """A channel to a consumer in another worker, over the shared connection to that worker."""

    def __init__(self, conn: OutboundConnection, channel_id: int, key: ChannelKey) -> None:
        self.conn = conn
        self.id = channel_id
        self.key = key
        self.credit = SenderCredit()
        self.bytes_out = 0

    async def send(self, values: list[Any], timestamps: list[int] | None) -> None:
        await self.credit.spend()
        payload = pickle.dumps((values, timestamps), protocol=5)
        self.bytes_out += len(payload)
        await self.conn.write(frame.encode(frame.DATA, self.id, payload))

    async def send_columns(self, cols: Any, shape: Any, timestamps: list[int] | None) -> None:
        """A buffer of columns as one COLUMNS frame (Arrow IPC)."""
        from weir.common.columnar import encode_ipc  # pyarrow: only for jobs that send columns

        await self.credit.spend()
        payload = encode_ipc(cols, shape, timestamps)
        self.bytes_out += len(payload)
        await self.conn.write(frame.encode(frame.COLUMNS, self.id, payload))

    async def event(self, ev: tuple[str, Any]) -> None:
        await self.credit.wait_bound()
        await self.conn.write(frame.encode_obj(frame.EVENT, self.id, ev))

    async def end(self) -> None:
        await self.credit.wait_bound()
        await self.conn.write(frame.encode(frame.END, self.id))


class OutboundConnection:
    """This worker's connection to one peer worker; carries every channel this worker sends to it."""

    HIGH_WATER = 1 << 20

    def __init__(self, address: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.address = address
        self.reader = reader
        self.writer = writer
        self.channels: dict[int, RemoteOutputChannel] = {}
        self._next_id = 0
        self.error: BaseException | None = None
        self._reader_task = asyncio.get_running_loop().create_task(self._read_credits())

    def open_channel(self, key: ChannelKey) -> RemoteOutputChannel:
        cid = self._next_id
        self._next_id += 1
        ch = RemoteOutputChannel(self, cid, key)
        self.channels[cid] = ch
        if self.error is not None:
            ch.credit.fail(self.error)
        self.writer.write(frame.encode_obj(frame.OPEN, cid, key))
        return ch

    async def write(self, data: bytes) -> None:
        if self.error is not None:
            raise self.error
        self.writer.write(data)
        if self.writer.transport.get_write_buffer_size() > self.HIGH_WATER:
            await self.writer.drain()

    async def _read_credits(self) -> None:
        try:
            while True:
                kind, cid, payload = await frame.read_frame(self.reader)
                ch = self.channels.get(cid)
                if ch is None:
                    continue
                if kind == frame.CREDIT:
                    ch.credit.grant(frame.decode_credit(payload))
                elif kind == frame.FAIL:
                    ch.credit.fail(ChannelClosedError(pickle.loads(payload)))
        except (asyncio.IncompleteReadError, ConnectionError, OSError, frame.FrameError) as e:
            self._broken(ChannelClosedError(f"lost the data connection to worker {self.address}: {e!r}"))
        except asyncio.CancelledError:
            self._broken(ChannelClosedError(f"data connection to worker {self.address} closed"))
            raise

    def _broken(self, error: BaseException) -> None:
        self.error = error
        for ch in self.channels.values():
            ch.credit.fail(error)

    def close_channels(self, execution_id: str) -> None:
        for cid in [c for c, ch in self.channels.items() if ch.key.execution_id == execution_id]:
            del self.channels[cid]

    def close(self) -> None:
        self._reader_task.cancel()
        self.writer.close()


class _InboundConnection:
    """A peer's connection to this worker: binds its channels to local input gates, returns credits."""

    def __init__(self, manager: ConnectionManager, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.manager = manager
        self.reader = reader
        self.writer = writer
        self.bound: dict[int, tuple[InputGate, InputChannel]] = {}
        self.peer = "?"

    async def serve(self) -> None:
        mgr = self.manager
        try:
            # the first frame must be the peer's hello, with the cluster token when there is one: nothing a peer
            # sends is unpickled before that (records and events are pickles, i.e. code)
            kind, _, payload = await asyncio.wait_for(frame.read_frame(self.reader), HELLO_TIMEOUT)
            if kind != frame.HELLO:
                raise frame.FrameError(f"expected a hello frame first, got kind {kind}")
            self.peer = mgr.check_hello(payload)
            while True:
                kind, cid, payload = await frame.read_frame(self.reader)
                if kind == frame.DATA or kind == frame.COLUMNS:
                    b = self.bound.get(cid)
                    if b is not None:
                        gate, ch = b
                        ch.credit.on_buffer_received()
                        gate.mailbox.put_nowait((M_DATA if kind == frame.DATA else M_COLUMNS, ch.index, payload))
                elif kind == frame.EVENT:
                    b = self.bound.get(cid)
                    if b is not None:
                        b[0].mailbox.put_nowait((M_EVENT, b[1].index, pickle.loads(payload)))
                elif kind == frame.END:
                    b = self.bound.pop(cid, None)
                    if b is not None:
                        b[0].mailbox.put_nowait((M_END, b[1].index, None))
                elif kind == frame.OPEN:
                    mgr._open_inbound(self, cid, pickle.loads(payload))
                else:
                    raise frame.FrameError(f"unexpected frame kind {kind} from {self.peer}")
        except HelloRefused as e:
            log.warning("refused a data connection from %s: %s", self.writer.get_extra_info("peername"), e)
        except (asyncio.IncompleteReadError, ConnectionError, OSError, frame.FrameError, TimeoutError) as e:
            reason = f"lost the data connection from upstream worker {self.peer}: {e!r}"
            for gate, ch in self.bound.values():
                gate.mailbox.put_nowait((M_FAIL, ch.index, reason))
            self.bound.clear()
        finally:
            mgr._inbound.discard(self)
            with contextlib.suppress(Exception):
                self.writer.close()

    def bind(self, cid: int, gate: InputGate, ch: InputChannel) -> None:
        self.bound[cid] = (gate, ch)
        writer = self.writer

        def give(n: int) -> None:
            if not writer.is_closing():
                writer.write(frame.encode_credit(cid, n))

        ch.return_credit = give
        give(ch.credit.initial)


class ConnectionManager:
    """Owns a worker's data-plane server, its outbound connections and the registry of input gates."""

    def __init__(self, worker_name: str, initial_credit: int = 4, *, token: str | None = None,
                 tls: TlsConfig | None = None) -> None:
        """Args:
            worker_name: this worker's name, sent in its hellos.
            initial_credit: buffers each input channel grants its sender up front.
            token: the cluster token; peers must send it in their hello (and this worker sends it).
            tls: TLS for the data server and the outbound connections (mutual when it has a CA).
        """
        self.worker_name = worker_name
        self.initial_credit = initial_credit
        self._token = token.encode() if token else b""
        self._server_ssl = tls.server_context() if tls is not None else None
        self._client_ssl = tls.client_context() if tls is not None else None
        self._tls = tls
        self.address = ""
        self._server: asyncio.Server | None = None
        self._outbound: dict[str, OutboundConnection] = {}
        self._connecting: dict[str, asyncio.Future[OutboundConnection]] = {}
        self._inbound: set[_InboundConnection] = set()
        self._gates: dict[tuple[str, int, int], InputGate] = {}
        self._pending: dict[tuple[str, int, int], list[Any]] = defaultdict(list)

    async def start(self, host: str = "127.0.0.1", advertised_host: str | None = None) -> str:
        self._server = await asyncio.start_server(self._accept, host, 0, ssl=self._server_ssl,
                                                  ssl_handshake_timeout=HELLO_TIMEOUT if self._server_ssl else None)
        port = self._server.sockets[0].getsockname()[1]
        self.address = f"{advertised_host or host}:{port}"
        return self.address

    def hello(self) -> bytes:
        """This worker's hello: ``name@address``, NUL, the cluster token (empty without one)."""
        return f"{self.worker_name}@{self.address}".encode() + b"\0" + self._token

    def check_hello(self, payload: bytes) -> str:
        """The peer's name from its hello.

        Raises:
            HelloRefused: the hello is malformed or does not carry this cluster's token.
        """
        name, sep, token = payload.partition(b"\0")
        if not sep:
            raise HelloRefused("malformed hello (not a weir worker of this version?)")
        if not hmac.compare_digest(token, self._token):
            raise HelloRefused("missing or wrong cluster token: the peer is not of this cluster")
        return name.decode(errors="replace")

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = _InboundConnection(self, reader, writer)
        self._inbound.add(conn)
        await conn.serve()

    # ---- consumer side ----
    def register_gate(self, execution_id: str, edge: int, consumer: int, gate: InputGate) -> None:
        """Make ``gate`` receive the channels of (execution, edge, consumer subtask); binds waiting opens."""
        k = (execution_id, edge, consumer)
        self._gates[k] = gate
        for item in self._pending.pop(k, []):
            self._bind(gate, *item)

    def _bind(self, gate: InputGate, target: Any, cid: int | None, key: ChannelKey) -> None:
        ch = gate.by_key.get(key)
        if ch is None:
            log.warning("no input channel for %s: dropped", key)
            return
        if isinstance(target, LocalOutputChannel):
            target.target, target.gate = ch, gate
            ch.return_credit = target.credit.grant
            target.credit.grant(ch.credit.initial)
        else:
            assert cid is not None
            target.bind(cid, gate, ch)

    def _open_inbound(self, conn: _InboundConnection, cid: int, key: ChannelKey) -> None:
        k = (key.execution_id, key.edge, key.consumer)
        gate = self._gates.get(k)
        if gate is None:
            self._pending[k].append((conn, cid, key))
        else:
            self._bind(gate, conn, cid, key)

    def _bind_local(self, ch: LocalOutputChannel) -> None:
        key = ch.key
        k = (key.execution_id, key.edge, key.consumer)
        gate = self._gates.get(k)
        if gate is None:
            self._pending[k].append((ch, None, key))
        else:
            self._bind(gate, ch, None, key)

    def unregister_execution(self, execution_id: str) -> None:
        for k in [k for k in self._gates if k[0] == execution_id]:
            del self._gates[k]
        for k in [k for k in self._pending if k[0] == execution_id]:
            del self._pending[k]
        for conn in self._outbound.values():
            conn.close_channels(execution_id)
        for ib in list(self._inbound):
            for cid in [c for c, (_, ch) in ib.bound.items() if ch.key.execution_id == execution_id]:
                del ib.bound[cid]

    # ---- producer side ----
    async def open_channel(self, address: str, key: ChannelKey) -> LocalOutputChannel | RemoteOutputChannel:
        if address == self.address:
            return LocalOutputChannel(self, key)
        conn = await self._connection(address)
        return conn.open_channel(key)

    async def _connection(self, address: str) -> OutboundConnection:
        conn = self._outbound.get(address)
        if conn is not None and conn.error is None:
            return conn
        fut = self._connecting.get(address)
        if fut is not None:
            return await fut
        fut = asyncio.get_running_loop().create_future()
        self._connecting[address] = fut
        try:
            host, port = address.rsplit(":", 1)
            try:
                if self._client_ssl is not None and self._tls is not None:
                    opened = asyncio.open_connection(host, int(port), ssl=self._client_ssl,
                                                     server_hostname=self._tls.server_hostname(host))
                else:
                    opened = asyncio.open_connection(host, int(port))
                reader, writer = await asyncio.wait_for(opened, 10)
            except ssl.SSLError as e:
                raise ChannelClosedError(
                    f"TLS handshake with worker data port {address} failed ({e.reason or e}): every TaskManager "
                    "needs a certificate the cluster's CA (security.ssl.internal.ca) signed, naming its "
                    "address") from e
            except (TimeoutError, OSError) as e:
                raise ChannelClosedError(f"cannot connect to worker data port {address}: {e!r}") from e
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            writer.write(frame.encode(frame.HELLO, 0, self.hello()))
            conn = OutboundConnection(address, reader, writer)
            self._outbound[address] = conn
            fut.set_result(conn)
            return conn
        except BaseException as e:
            fut.set_exception(e)
            fut.exception()  # mark retrieved
            raise
        finally:
            del self._connecting[address]

    async def close(self) -> None:
        for conn in self._outbound.values():
            conn.close()
        if self._server is not None:
            self._server.close()
        for ib in list(self._inbound):
            ib.writer.close()
