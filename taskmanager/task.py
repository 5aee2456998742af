"""StreamTask: one subtask, run as a single-threaded mailbox loop.

Everything a subtask does -- processing an input buffer, advancing the watermark and firing the timers it makes
due, running processing-time callbacks, flushing outputs on the buffer timeout, reacting to end of input --
happens in one coroutine, one mailbox item at a time, so records, timers and (later) checkpoint actions never
run concurrently. The slot worker's event loop interleaves several subtasks between mailbox items; no subtask
ever sees another's state.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import pickle
import shutil
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from taskmanager.network.connection import (
    M_DATA,
    M_END,
    M_EVENT,
    M_FAIL,
    M_LOCAL,
    ChannelKey,
    ConnectionManager,
    InputGate,
)
from taskmanager.network.partitioner import RecordWriter
from taskmanager.operators.base import Emit, Operator, OperatorRuntime
from taskmanager.operators.chain import build_chain
from taskmanager.operators.sink import CollectOperator, SinkOperator
from taskmanager.timers import MAX_TIME, MIN_TIME, ProcessingTimeService
from weir.datastream.connectors.source import Source
from weir.datastream.functions import RuntimeContext
from weir.graph.deployment import TaskDeployment, input_channel_counts, producer_channels
from weir.graph.jobgraph import JobGraph

log = logging.getLogger(__name__)

DEFAULT_BUFFER_RECORDS = 1024


class UpstreamFailure(Exception):
    """An input channel broke: its producer's worker went away."""


@dataclass
class TaskCounters:
    records_in: int = 0
    records_out: int = 0


class StreamTask:
    """Runs one subtask of one vertex. ``report(state, cause)`` tells the TaskManager how it went.

    Args:
        local_dir: this task's directory on the slot's local disk (RocksDB state lives there); removed at the end.
        state_backend: the TaskManager's default backend ("hashmap" or "rocksdb"); the job's choice
            (``state.backend.type`` in its config, set by ``env.set_state_backend``) wins.
    """

    def __init__(
        self,
        deployment: TaskDeployment,
        graph: JobGraph,
        connections: ConnectionManager,
        report: Callable[[str, str], None],
        push_results: Callable[[bytes, bool], Awaitable[None]] | None = None,
        buffer_records: int = DEFAULT_BUFFER_RECORDS,
        local_dir: str | None = None,
        state_backend: str = "hashmap",
    ) -> None:
        self.d = deployment
        self.graph = graph
        self.vertex = graph.vertex(deployment.vertex_id)
        self.connections = connections
        self.report = report
        self.push_results = push_results
        self.buffer_records = buffer_records
        self.local_dir = local_dir
        self.state_backend = graph.config.get("state.backend.type", state_backend)
        self.counters = TaskCounters()
        self.mailbox: asyncio.Queue[Any] = asyncio.Queue()
        self.gate = InputGate(self.mailbox)
        self.writers: list[RecordWriter] = []
        self.main_writers: list[RecordWriter] = []
        self.side_writers: dict[tuple[int, str], list[RecordWriter]] = {}
        self.operators: list[Operator] = []
        self.backends: list[Any] = []
        self.processing_time = ProcessingTimeService()
        self.name = f"{self.vertex.name} ({deployment.subtask + 1}/{self.vertex.parallelism})"
        # watermarks: per input channel, and what this task last forwarded
        self.channel_wm: list[int] = []
        self.channel_idle: list[bool] = []
        self.input_wm = MIN_TIME
        self.idle_out = False
        self._pending_wm: int | None = None
        self._pending_status: bool | None = None
        self.channel_input: list[int] = []  # logical input (0/1) of each channel

    # ---- set-up ----
    def _register_inputs(self) -> None:
        d = self.d
        for edge, n in input_channel_counts(self.graph, d.vertex_id):
            producers = [d.subtask] if n == 1 and self.graph.edges[edge].partitioner.kind == "forward" else range(n)
            for p in producers:
                self.gate.add_channel(ChannelKey(d.execution_id, edge, p, d.subtask), self.connections.initial_credit)
                self.channel_input.append(self.graph.edges[edge].target_input)
            self.connections.register_gate(d.execution_id, edge, d.subtask, self.gate)
        self.channel_wm = [MIN_TIME] * len(self.gate.channels)
        self.channel_idle = [False] * len(self.gate.channels)

    async def _open_outputs(self) -> None:
        d = self.d
        for ei in self.vertex.outputs:
            edge = self.graph.edges[ei]
            addrs = d.output_addresses[ei]
            channels = []
            for consumer in producer_channels(self.graph, ei, d.subtask):
                key = ChannelKey(d.execution_id, ei, d.subtask, consumer)
                channels.append(await self.connections.open_channel(addrs[consumer], key))
            # keys are routed by the key groups of the consumer, whose keyed state they address
            w = RecordWriter(edge.partitioner, channels, self.graph.vertex(edge.target).max_parallelism,
                             self.buffer_records)
            self.writers.append(w)
            if edge.side_output is None:
                self.main_writers.append(w)
            else:
                self.side_writers.setdefault((edge.source_operator, edge.side_output), []).append(w)

    def _tail_out(self) -> Emit:
        writers = self.main_writers
        counters = self.counters

        # counted once per record emitted, as Flink's numRecordsOut, whatever the fan-out
        def fan_out(values: list[Any], timestamps: list[int] | None) -> None:
            counters.records_out += len(values)
            for w in writers:
                w.add(values, timestamps)

        if len(writers) == 1:
            add = writers[0].add

            def out(values: list[Any], timestamps: list[int] | None) -> None:
                counters.records_out += len(values)
                add(values, timestamps)

            return out
        return fan_out

    def _side_outputs(self, transformation_id: int) -> dict[str, Emit]:
        out: dict[str, Emit] = {}
        for (tid, tag), writers in self.side_writers.items():
            if tid != transformation_id:
                continue

            def emit(values: list[Any], timestamps: list[int] | None, ws: list[RecordWriter] = writers) -> None:
                for w in ws:
                    w.add(values, timestamps)

            out[tag] = emit
        return out

    def _create_backend(self, name: str) -> Any:
        kind = self.state_backend
        if kind == "rocksdb":
            from state.rocksdb import RocksDBKeyedStateBackend

            if self.local_dir is None:
                raise RuntimeError("the RocksDB state backend needs a local directory on the TaskManager")
            # readable and unique: names differing only in punctuation must not share a database
            safe = "".join(c if c.isalnum() else "_" for c in name)[:40]
            path = os.path.join(self.local_dir, f"{safe}-{hashlib.sha1(name.encode()).hexdigest()[:10]}")
            shutil.rmtree(path, ignore_errors=True)  # state comes from checkpoints, never from a previous run
            backend: Any = RocksDBKeyedStateBackend(path, max_parallelism=self.vertex.max_parallelism)
        elif kind == "hashmap":
            from state.memory import HashMapKeyedStateBackend

            backend = HashMapKeyedStateBackend(max_parallelism=self.vertex.max_parallelism)
        else:
            raise ValueError(f"unknown state backend {kind!r}: use 'hashmap' or 'rocksdb'")
        self.backends.append(backend)
        return backend

    def _on_output_watermark(self, wm: int) -> None:
        self._pending_wm = wm

    def _on_output_status(self, idle: bool) -> None:
        if idle != self.idle_out:
            self.idle_out = idle
            self._pending_status = idle

    def _build(self) -> None:
        def runtime_for(transformation_id: int) -> OperatorRuntime:
            return OperatorRuntime(
                processing_time=self.processing_time,
                create_keyed_backend=self._create_backend,
                emit_status=self._on_output_status,
                side_outputs=self._side_outputs(transformation_id),
                config=self.graph.config,
            )

        self.operators = build_chain(
            self.vertex.operators, self._tail_out(), self._on_output_watermark, runtime_for,
            self.push_results, self.buffer_records,
        )

    # ---- run ----
    async def run(self) -> None:
        opened: list[Operator] = []
        try:
            self._register_inputs()
            await self._open_outputs()
            self._build()
            rc = RuntimeContext(
                self.vertex.name,
                self.d.subtask,
                self.vertex.parallelism,
                self.vertex.max_parallelism,
                self.d.attempt,
                self.graph.config,
            )
            for op in self.operators:
                op.open(rc)
                opened.append(op)
            self.report("RUNNING", "")
            if self.vertex.is_source:
                await self._run_source()
            else:
                await self._run_mailbox()
            await self._end_input()
            for op in opened:
                op.close()
            opened = []
            self._dispose()
            self.report("FINISHED", "")
        except asyncio.CancelledError:
            self._close_quietly(opened)
            self.report("CANCELED", "")
            raise
        except Exception:
            cause = traceback.format_exc()
            self._close_quietly(opened)
            log.info("task %s failed:\n%s", self.name, cause)
            self.report("FAILED", f"{self.name} failed:\n{cause}")

    def _close_quietly(self, ops: list[Operator]) -> None:
        for op in ops:
            try:
                op.close()
            except Exception:  # noqa: BLE001 - a failing close must not hide the original failure
                log.warning("close() of %s raised", op.name, exc_info=True)
        self._dispose()

    def _dispose(self) -> None:
        for b in self.backends:
            try:
                b.close()
                if hasattr(b, "dispose"):
                    b.dispose()
            except Exception:  # noqa: BLE001
                log.warning("disposing a state backend of %s failed", self.name, exc_info=True)
        self.backends = []
        if self.local_dir and os.path.isdir(self.local_dir):
            shutil.rmtree(self.local_dir, ignore_errors=True)

    def _head_inputs(self) -> list[Emit]:
        if not self.operators:
            return [self._tail_out()]
        head = self.operators[0]
        return [head.process_batch, head.process_batch2]

    def _pending_out(self) -> bool:
        return any(w.pending for w in self.writers)

    async def _after_batch(self, force: bool) -> None:
        if self._pending_wm is not None or self._pending_status is not None:
            wm, self._pending_wm = self._pending_wm, None
            status, self._pending_status = self._pending_status, None
            for w in self.writers:
                if status is False:
                    await w.broadcast_event(("idle", False))
                if wm is not None:
                    await w.broadcast_event(("wm", wm))
                if status is True:
                    await w.broadcast_event(("idle", True))
        for w in self.writers:
            if force or w.has_full():
                await w.flush(force)
        for op in self.operators:
            if isinstance(op, CollectOperator):
                await op.flush(force)

    def _advance_input_watermark(self) -> None:
        active = [wm for wm, idle in zip(self.channel_wm, self.channel_idle, strict=True) if not idle]
        if not active:
            self._on_output_status(True)  # every input is idle: so is this task's output
            return
        self._on_output_status(False)
        new = min(active)
        if new > self.input_wm:
            self.input_wm = new
            if self.operators:
                self.operators[0].process_watermark(new)
            else:
                self._on_output_watermark(new)

    def _on_event(self, idx: int, ev: tuple[str, Any]) -> None:
        name, value = ev
        if name == "wm":
            if value > self.channel_wm[idx]:
                self.channel_wm[idx] = value
            self._advance_input_watermark()
        elif name == "idle":
            self.channel_idle[idx] = bool(value)
            self._advance_input_watermark()

    def _next_wakeup(self, timeout: float, last_flush: float) -> float | None:
        """Seconds until the next flush or processing-time callback is due (None: nothing pending)."""
        waits = []
        if timeout > 0 and self._pending_out():
            waits.append(last_flush + timeout - time.monotonic())
        deadline = self.processing_time.next_deadline()
        if deadline is not None:
            waits.append((deadline - self.processing_time.get_current_processing_time()) / 1000.0)
        return min(waits) if waits else None

    async def _run_source(self) -> None:
        source: Source = self.vertex.operators[0].fn
        reader = source.create_reader(self.d.subtask, self.vertex.parallelism)
        head = self._head_inputs()[0]
        counters = self.counters
        pts = self.processing_time
        timeout = self.graph.buffer_timeout_ms / 1000.0
        last_flush = time.monotonic()
        try:
            while True:
                batch = reader.poll(self.buffer_records)
                if batch is None:
                    break
                if batch:
                    counters.records_in += len(batch)
                    head(batch, None)
                if pts._heap:
                    pts.run_due()
                now = time.monotonic()
                force = timeout == 0 or (timeout > 0 and now - last_flush >= timeout)
                await self._after_batch(force)
                if force:
                    last_flush = now
                await asyncio.sleep(0 if batch else 0.001)
        finally:
            reader.close()

    async def _run_mailbox(self) -> None:
        gate, mailbox, counters = self.gate, self.mailbox, self.counters
        inputs = self._head_inputs()
        channel_input = self.channel_input
        pts = self.processing_time
        timeout = self.graph.buffer_timeout_ms / 1000.0
        loads = pickle.loads
        data_kinds = (M_DATA, M_LOCAL)
        last_flush = time.monotonic()
        ended = 0
        total = len(gate.channels)
        while ended < total:
            if mailbox.empty():
                wait = self._next_wakeup(timeout, last_flush)
                if wait is not None:
                    if wait > 0:
                        try:
                            item = await asyncio.wait_for(mailbox.get(), wait)
                        except TimeoutError:
                            item = None
                    else:
                        item = None
                    if item is None:
                        pts.run_due()
                        flush = timeout > 0 and time.monotonic() - last_flush >= timeout
                        await self._after_batch(flush)
                        if flush:
                            last_flush = time.monotonic()
                        continue
                else:
                    item = await mailbox.get()
            else:
                item = mailbox.get_nowait()
            kind, idx, payload = item
            if kind in data_kinds:
                values, timestamps = loads(payload) if kind == M_DATA else payload
                counters.records_in += len(values)
                inputs[channel_input[idx]](values, timestamps)
                gate.consumed(idx)
            elif kind == M_EVENT:
                self._on_event(idx, payload)
            elif kind == M_END:
                gate.channels[idx].ended = True
                ended += 1
            elif kind == M_FAIL:
                raise UpstreamFailure(str(payload))
            if pts._heap:
                pts.run_due()
            force = timeout == 0
            await self._after_batch(force)
            if force:
                last_flush = time.monotonic()

    async def _end_input(self) -> None:
        # bounded input: the final watermark fires every pending event-time window and timer
        if self.input_wm < MAX_TIME:
            self.input_wm = MAX_TIME
            if self.operators:
                self.operators[0].process_watermark(MAX_TIME)
            else:
                self._on_output_watermark(MAX_TIME)
        for op in self.operators:
            op.end_input()
        await self._after_batch(True)
        for w in self.writers:
            await w.end()
        for op in self.operators:
            if isinstance(op, CollectOperator):
                await op.finish()

    def records_out(self) -> int:
        """Records emitted downstream, or written by this task's sink."""
        return self.counters.records_out + sum(
            op.records for op in self.operators if isinstance(op, SinkOperator | CollectOperator)
        )
