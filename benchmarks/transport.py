"""Data-plane transport between two worker processes: the measurement behind weir's choice of asyncio streams.

What is measured is a two-process shuffle of one channel. A *sender* process builds buffers of 1,024 small
records (``(i, i % 10000, "abc")``), pickles each buffer with protocol 5 -- as ``(values, None)``, the payload
of weir's DATA frame, ``(values, timestamps)`` -- and sends it to a *receiver* process, which unpickles every
buffer and counts its records. The clock runs in the sender, from just before the first buffer is built until
the receiver's acknowledgement that it has unpickled the last one arrives, so the figure is end to end:
record building, pickling, transport, unpickling. Connection set-up is outside the clock (each variant does a
READY handshake first). Records/s is the headline; buffers (messages)/s and payload MB/s (pickled bytes,
1 MB = 10**6 bytes, framing excluded) are derived from the same run.

Variants, all carrying the same data in the same run, one after the other (sender and receiver are fresh
``spawn`` processes for every measurement, on 127.0.0.1):

``asyncio-credit``
    weir's real data plane (``taskmanager/network/connection.py``, ``credit.py``): asyncio streams, the
    9-byte frame header of ``taskmanager/network/frame.py`` (payload length u32, kind u8, channel id u32,
    big-endian), TCP_NODELAY, and receiver-granted credits -- 4 initially, one CREDIT frame back per
    consumed buffer; the sender waits when it has no credit, and drains its writer above 1 MiB buffered.
    (Simplification: the receiver unpickles inline, where weir hands the payload to the task's mailbox.)
``asyncio``
    the same without credits: the throughput ceiling of asyncio streams.
``socket``
    plain blocking sockets (``sendall`` / ``recv_into`` into a reused buffer), the same framing, no credits.
``grpc``
    gRPC bidirectional streaming (``grpc.aio``), one pickled buffer per ``bytes`` message, no generated
    code: a generic handler with identity (de)serializers, unlimited message sizes; HTTP/2 flow control is
    its only backpressure.

Output: one ``BENCH name=transport-<variant> records=N seconds=S rps=R msgs_per_s=M mb_per_s=B`` line per
measurement, then a summary of each variant's records/s relative to the ``grpc`` variant (median over
``--repeat`` runs). Nothing here asserts on timing; a failed measurement prints a ``BENCH ... error=`` line
and the exit status is 1.

Usage: ``python -m benchmarks.transport [--quick] [--records N] [--repeat K] [--only asyncio-credit,grpc]``
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import pickle
import platform
import socket
import statistics
import struct
import sys
import time
import traceback
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

import grpc

DEFAULT_RECORDS = 3_000_000
QUICK_RECORDS = 50_000
BATCH = 1024  # records per buffer
HOST = "127.0.0.1"
STARTUP_TIMEOUT = 60.0  # seconds for a child to come up (spawn + imports)

# the frame format of taskmanager/network/frame.py, mirrored (not imported: this benchmark stands alone)
HEADER = struct.Struct("!IBI")  # payload length, kind, channel id
HEADER_SIZE = HEADER.size  # 9
DATA = 2
END = 3
CREDIT = 4
CONTROL = 5
_CREDIT = struct.Struct("!I")
INITIAL_CREDIT = 4  # ConnectionManager's default initial credit
HIGH_WATER = 1 << 20  # OutboundConnection.HIGH_WATER: drain the writer above this many buffered bytes
CHANNEL = 0

GRPC_SERVICE = "bench.Transport"
GRPC_METHOD = f"/{GRPC_SERVICE}/Stream"
GRPC_OPTIONS = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
READY = b"R"
DONE = b"D"

Stats = dict[str, float]


def encode(kind: int, channel: int, payload: bytes = b"") -> bytes:
    """One frame: header + payload (as ``frame.encode``)."""
    return HEADER.pack(len(payload), kind, channel) + payload


def make_payload(start: int, stop: int) -> bytes:
    """The pickled buffer of records ``start`` .. ``stop - 1``."""
    values = [(i, i % 10000, "abc") for i in range(start, stop)]
    return pickle.dumps((values, None), protocol=5)


def consume(payload: bytes | bytearray | memoryview) -> int:
    """Unpickle one buffer; the number of records in it."""
    values, _ = pickle.loads(payload)
    return len(values)


def _nodelay(sock: socket.socket | None) -> None:
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


# ---------------------------------------------------------------- asyncio streams (weir's data plane)


async def _read_frame(reader: asyncio.StreamReader) -> tuple[int, int, bytes]:
    length, kind, channel = HEADER.unpack(await reader.readexactly(HEADER_SIZE))
    payload = await reader.readexactly(length) if length else b""
    return kind, channel, payload


class _SenderCredit:
    """Credits the sender holds (a trimmed ``credit.SenderCredit``)."""

    def __init__(self) -> None:
        self.available = 0
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None

    def grant(self, n: int) -> None:
        self.available += n
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def fail(self, error: BaseException) -> None:
        self._error = error
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(error)

    async def spend(self) -> None:
        while True:
            if self._error is not None:
                raise self._error
            if self.available > 0:
                self.available -= 1
                return
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None


async def _asyncio_receiver(conn: Connection, credits: bool) -> Stats:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Stats] = loop.create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _nodelay(writer.get_extra_info("socket"))
        records = buffers = nbytes = 0
        try:
            # the initial grant doubles as the READY handshake; without credits, a CONTROL frame is the signal
            if credits:
                writer.write(encode(CREDIT, CHANNEL, _CREDIT.pack(INITIAL_CREDIT)))
            else:
                writer.write(encode(CONTROL, CHANNEL, READY))
            while True:
                kind, channel, payload = await _read_frame(reader)
                if kind == DATA:
                    records += consume(payload)
                    buffers += 1
                    nbytes += len(payload)
                    if credits:  # the buffer is consumed: grant its credit back
                        writer.write(encode(CREDIT, channel, _CREDIT.pack(1)))
                elif kind == END:
                    writer.write(encode(END, channel, DONE))
                    await writer.drain()
                    break
                else:
                    raise RuntimeError(f"unexpected frame kind {kind}")
            if not done.done():
                done.set_result({"records": records, "buffers": buffers, "bytes": nbytes})
        except BaseException as e:
            if not done.done():
                done.set_exception(e)
            raise
        finally:
            writer.close()

    server = await asyncio.start_server(handle, HOST, 0)
    try:
        conn.send(("port", server.sockets[0].getsockname()[1]))
        return await done
    finally:
        server.close()


async def _read_credits(reader: asyncio.StreamReader, credit: _SenderCredit, finished: asyncio.Future[None]) -> None:
    try:
        while True:
            kind, _, payload = await _read_frame(reader)
            if kind == CREDIT:
                credit.grant(_CREDIT.unpack(payload)[0])
            elif kind == END:
                finished.set_result(None)
                return
    except BaseException as e:
        credit.fail(e)
        if not finished.done():
            finished.set_exception(e)
        if not isinstance(e, Exception):
            raise


async def _asyncio_sender(port: int, records: int, batch: int, credits: bool) -> Stats:
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection(HOST, port)
    _nodelay(writer.get_extra_info("socket"))
    reader_task: asyncio.Task[None] | None = None
    try:
        kind, _, payload = await _read_frame(reader)  # READY (or the initial credit)
        credit = _SenderCredit()
        finished: asyncio.Future[None] = loop.create_future()
        if credits:
            if kind != CREDIT:
                raise RuntimeError(f"expected the initial credit, got frame kind {kind}")
            credit.grant(_CREDIT.unpack(payload)[0])
            reader_task = loop.create_task(_read_credits(reader, credit, finished))
        buffers = nbytes = 0
        start = time.perf_counter()
        for first in range(0, records, batch):
            if credits:
                await credit.spend()  # as RemoteOutputChannel.send: spend, then pickle and write
            payload = make_payload(first, min(first + batch, records))
            buffers += 1
            nbytes += len(payload)
            writer.write(encode(DATA, CHANNEL, payload))
            if writer.transport.get_write_buffer_size() > HIGH_WATER:
                await writer.drain()
        writer.write(encode(END, CHANNEL))
        if credits:
            await finished
        else:
            kind, _, _ = await _read_frame(reader)
            if kind != END:
                raise RuntimeError(f"expected the receiver's END, got frame kind {kind}")
        seconds = time.perf_counter() - start
        return {"seconds": seconds, "buffers": buffers, "bytes": nbytes}
    finally:
        if reader_task is not None:
            reader_task.cancel()
        writer.close()


# ---------------------------------------------------------------- plain blocking sockets


def _recv_exactly(sock: socket.socket, view: memoryview) -> None:
    got, size = 0, len(view)
    while got < size:
        n = sock.recv_into(view[got:], size - got)
        if n == 0:
            raise ConnectionError("peer closed the connection mid-frame")
        got += n


def _recv_frame(sock: socket.socket, header: bytearray, buf: bytearray) -> tuple[int, memoryview, bytearray]:
    """Read one frame into ``buf`` (grown if needed): (kind, payload view, the buffer now in use)."""
    _recv_exactly(sock, memoryview(header))
    length, kind, _ = HEADER.unpack(header)
    if length > len(buf):
        buf = bytearray(length)
    view = memoryview(buf)[:length]
    _recv_exactly(sock, view)
    return kind, view, buf


def _socket_receiver(conn: Connection) -> Stats:
    with socket.create_server((HOST, 0)) as server:
        conn.send(("port", server.getsockname()[1]))
        sock, _ = server.accept()
    with sock:
        _nodelay(sock)
        sock.sendall(encode(CONTROL, CHANNEL, READY))
        header, buf = bytearray(HEADER_SIZE), bytearray(1 << 16)
        records = buffers = nbytes = 0
        while True:
            kind, view, buf = _recv_frame(sock, header, buf)
            if kind == DATA:
                records += consume(view)
                buffers += 1
                nbytes += len(view)
            elif kind == END:
                sock.sendall(encode(END, CHANNEL, DONE))
                break
            else:
                raise RuntimeError(f"unexpected frame kind {kind}")
        return {"records": records, "buffers": buffers, "bytes": nbytes}


def _socket_sender(port: int, records: int, batch: int) -> Stats:
    with socket.create_connection((HOST, port)) as sock:
        _nodelay(sock)
        header, buf = bytearray(HEADER_SIZE), bytearray(64)
        kind, _, buf = _recv_frame(sock, header, buf)  # READY
        if kind != CONTROL:
            raise RuntimeError(f"expected READY, got frame kind {kind}")
        buffers = nbytes = 0
        start = time.perf_counter()
        for first in range(0, records, batch):
            payload = make_payload(first, min(first + batch, records))
            buffers += 1
            nbytes += len(payload)
            sock.sendall(encode(DATA, CHANNEL, payload))
        sock.sendall(encode(END, CHANNEL))
        kind, _, buf = _recv_frame(sock, header, buf)
        seconds = time.perf_counter() - start
        if kind != END:
            raise RuntimeError(f"expected the receiver's END, got frame kind {kind}")
        return {"seconds": seconds, "buffers": buffers, "bytes": nbytes}


# ---------------------------------------------------------------- gRPC bidirectional streaming


async def _grpc_receiver(conn: Connection) -> Stats:
    done: asyncio.Future[Stats] = asyncio.get_running_loop().create_future()

    async def stream(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        yield READY
        records = buffers = nbytes = 0
        async for payload in requests:
            records += consume(payload)
            buffers += 1
            nbytes += len(payload)
        yield DONE
        if not done.done():
            done.set_result({"records": records, "buffers": buffers, "bytes": nbytes})

    server = grpc.aio.server(options=GRPC_OPTIONS)
    handler = grpc.stream_stream_rpc_method_handler(stream, request_deserializer=None, response_serializer=None)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(GRPC_SERVICE, {"Stream": handler}),))
    port = server.add_insecure_port(f"{HOST}:0")
    await server.start()
    try:
        conn.send(("port", port))
        return await done
    finally:
        await server.stop(grace=1.0)


async def _grpc_sender(port: int, records: int, batch: int) -> Stats:
    async with grpc.aio.insecure_channel(f"{HOST}:{port}", options=GRPC_OPTIONS) as channel:
        await asyncio.wait_for(channel.channel_ready(), STARTUP_TIMEOUT)
        method = channel.stream_stream(GRPC_METHOD, request_serializer=None, response_deserializer=None)
        call = method()
        if await call.read() != READY:
            raise RuntimeError("expected READY from the gRPC receiver")
        buffers = nbytes = 0
        start = time.perf_counter()
        for first in range(0, records, batch):
            payload = make_payload(first, min(first + batch, records))
            buffers += 1
            nbytes += len(payload)
            await call.write(payload)
        await call.done_writing()
        reply = await call.read()
        seconds = time.perf_counter() - start
        if reply != DONE:
            raise RuntimeError(f"expected DONE from the gRPC receiver, got {reply!r}")
        code = await call.code()  # the final status
        if code != grpc.StatusCode.OK:
            raise RuntimeError(f"gRPC stream ended with {code}: {await call.details()}")
        return {"seconds": seconds, "buffers": buffers, "bytes": nbytes}


# ---------------------------------------------------------------- variants, child processes, measurement


@dataclass(frozen=True)
class Variant:
    """One transport: how its receiver serves (reporting its port on ``conn``) and how its sender sends."""

    name: str
    receiver: Callable[[Connection], Stats]
    sender: Callable[[int, int, int], Stats]


VARIANTS: tuple[Variant, ...] = (
    Variant(
        "asyncio-credit",
        lambda conn: asyncio.run(_asyncio_receiver(conn, credits=True)),
        lambda port, n, batch: asyncio.run(_asyncio_sender(port, n, batch, credits=True)),
    ),
    Variant(
        "asyncio",
        lambda conn: asyncio.run(_asyncio_receiver(conn, credits=False)),
        lambda port, n, batch: asyncio.run(_asyncio_sender(port, n, batch, credits=False)),
    ),
    Variant("socket", _socket_receiver, _socket_sender),
    Variant(
        "grpc",
        lambda conn: asyncio.run(_grpc_receiver(conn)),
        lambda port, n, batch: asyncio.run(_grpc_sender(port, n, batch)),
    ),
)
BY_NAME = {v.name: v for v in VARIANTS}
REFERENCE = "grpc"


def _receiver_main(variant: str, conn: Connection) -> None:
    """Child process: serve one shuffle, send ("result", stats) or ("error", traceback) on ``conn``."""
    try:
        conn.send(("result", BY_NAME[variant].receiver(conn)))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def _sender_main(variant: str, port: int, records: int, batch: int, conn: Connection) -> None:
    """Child process: send one shuffle, send ("result", stats) or ("error", traceback) on ``conn``."""
    try:
        conn.send(("result", BY_NAME[variant].sender(port, records, batch)))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def _expect(conn: Connection, proc: BaseProcess, what: str, timeout: float) -> Any:
    """The next message ``(what, value)`` from ``proc``; raises if it failed, died or timed out."""
    ready = wait([conn, proc.sentinel], timeout)
    if not ready:
        raise TimeoutError(f"{proc.name}: no {what} within {timeout:.0f} s")
    if conn not in ready and not conn.poll(0):
        raise RuntimeError(f"{proc.name} exited with code {proc.exitcode} before sending its {what}")
    try:
        kind, value = conn.recv()
    except EOFError:
        raise RuntimeError(f"{proc.name} exited with code {proc.exitcode} before sending its {what}") from None
    if kind == "error":
        raise RuntimeError(f"{proc.name} failed:\n{value}")
    if kind != what:
        raise RuntimeError(f"{proc.name}: expected {what}, got {kind}")
    return value


def _stop(proc: BaseProcess) -> None:
    """Make sure ``proc`` is gone: wait briefly, then terminate, then kill."""
    if proc.pid is None:
        return
    proc.join(5)
    if proc.is_alive():
        proc.terminate()
        proc.join(5)
    if proc.is_alive():
        proc.kill()
        proc.join(5)


@dataclass(frozen=True)
class Measurement:
    """One shuffle of ``records`` records over one transport."""

    variant: str
    records: int
    seconds: float
    buffers: int
    nbytes: int

    @property
    def rps(self) -> float:
        return self.records / self.seconds

    @property
    def msgs_per_s(self) -> float:
        return self.buffers / self.seconds

    @property
    def mb_per_s(self) -> float:
        return self.nbytes / self.seconds / 1e6

    def line(self) -> str:
        return (
            f"BENCH name=transport-{self.variant} records={self.records} seconds={self.seconds:.3f} "
            f"rps={self.rps:.0f} msgs_per_s={self.msgs_per_s:.0f} mb_per_s={self.mb_per_s:.1f}"
        )


def measure(variant: Variant, records: int, batch: int, timeout: float) -> Measurement:
    """Run one shuffle in two fresh processes; both are stopped before this returns, also on error."""
    ctx = multiprocessing.get_context("spawn")
    r_parent, r_child = ctx.Pipe()
    s_parent, s_child = ctx.Pipe()
    procs: list[BaseProcess] = []
    try:
        receiver = ctx.Process(target=_receiver_main, args=(variant.name, r_child),
                               name=f"transport-{variant.name}-receiver", daemon=True)
        procs.append(receiver)
        receiver.start()
        r_child.close()
        port = _expect(r_parent, receiver, "port", STARTUP_TIMEOUT)
        sender = ctx.Process(target=_sender_main, args=(variant.name, port, records, batch, s_child),
                             name=f"transport-{variant.name}-sender", daemon=True)
        procs.append(sender)
        sender.start()
        s_child.close()
        sent = _expect(s_parent, sender, "result", timeout)
        received = _expect(r_parent, receiver, "result", STARTUP_TIMEOUT)
    finally:
        for p in reversed(procs):
            _stop(p)
        for c in (r_parent, r_child, s_parent, s_child):
            c.close()
    if received["records"] != records or received["buffers"] != sent["buffers"]:
        raise RuntimeError(f"receiver got {received['records']} records in {received['buffers']} buffers, "
                           f"expected {records} in {sent['buffers']}")
    return Measurement(variant.name, records, sent["seconds"], int(sent["buffers"]), int(sent["bytes"]))


def summary(results: dict[str, list[Measurement]], records: int, batch: int, repeat: int) -> list[str]:
    """Summary lines: median records/s of each variant and its ratio to the reference (gRPC) variant."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    lines = [
        f"transport summary: records={records} buffer={batch} records, median of {repeat} run(s); "
        f"cores={os.cpu_count()} (usable {usable}), {platform.python_implementation()} "
        f"{platform.python_version()}, grpcio {grpc.__version__}"
    ]
    medians = {name: statistics.median(m.rps for m in ms) for name, ms in results.items() if ms}
    for name, rps in medians.items():
        payload = statistics.median(m.nbytes / m.buffers for m in results[name])
        lines.append(f"  {name:<15} {rps:>12,.0f} records/s  ({payload:,.0f} payload bytes per buffer)")
    ref = medians.get(REFERENCE)
    if ref:
        for name, rps in medians.items():
            if name != REFERENCE:
                lines.append(f"  {name}/{REFERENCE} = {rps / ref:.2f}x")
    else:
        lines.append(f"  (no {REFERENCE} figure: no ratios)")
    return lines


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.transport",
                                description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--records", type=int, default=None, help=f"records per shuffle (default {DEFAULT_RECORDS:,})")
    p.add_argument("--quick", action="store_true", help=f"a tiny smoke run ({QUICK_RECORDS:,} records)")
    p.add_argument("--batch", type=int, default=BATCH, help=f"records per buffer (default {BATCH})")
    p.add_argument("--repeat", type=int, default=1, help="runs per variant, interleaved; the summary takes medians")
    p.add_argument("--only", default="", help=f"comma-separated variants among {', '.join(BY_NAME)}")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds allowed for one shuffle")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Measure every selected variant; 1 when a measurement failed, else 0."""
    args = parse_args(argv)
    records = args.records or (QUICK_RECORDS if args.quick else DEFAULT_RECORDS)
    wanted = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in BY_NAME]
    if unknown or records < 1 or args.batch < 1 or args.repeat < 1:
        print(f"bad arguments (variants: {', '.join(BY_NAME)}; records, batch, repeat >= 1)", file=sys.stderr)
        return 2
    selected = [v for v in VARIANTS if not wanted or v.name in wanted]

    results: dict[str, list[Measurement]] = {v.name: [] for v in selected}
    failed = False
    for _ in range(args.repeat):
        for v in selected:
            try:
                m = measure(v, records, args.batch, args.timeout)
            except Exception as e:  # report it and go on with the other variants
                print(f"BENCH name=transport-{v.name} records={records} error={type(e).__name__}: {e}", flush=True)
                failed = True
                continue
            results[v.name].append(m)
            print(m.line(), flush=True)
    for line in summary(results, records, args.batch, args.repeat):
        print(line, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
