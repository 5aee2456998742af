"""StreamTask: one subtask, run as a single-threaded mailbox loop.

Everything a subtask does -- processing an input buffer, flushing outputs on the buffer timeout, reacting to
end of input -- happens in one coroutine, one mailbox item at a time, so records, timers and (later) checkpoint
actions never run concurrently. The slot worker's event loop interleaves several subtasks between mailbox
items; no subtask ever sees another's state.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from taskmanager.network.connection import (
    M_DATA,
    M_END,
    M_FAIL,
    M_LOCAL,
    ChannelKey,
    ConnectionManager,
    InputGate,
)
from taskmanager.network.partitioner import RecordWriter
from taskmanager.operators.base import Operator
from taskmanager.operators.chain import build_chain
from taskmanager.operators.sink import CollectOperator, SinkOperator
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
    """Runs one subtask of one vertex. ``report(state, cause)`` tells the TaskManager how it went."""

    def __init__(
        self,
        deployment: TaskDeployment,
        graph: JobGraph,
        connections: ConnectionManager,
        report: Callable[[str, str], None],
        push_results: Callable[[bytes, bool], Awaitable[None]] | None = None,
        buffer_records: int = DEFAULT_BUFFER_RECORDS,
    ) -> None:
        self.d = deployment
        self.graph = graph
        self.vertex = graph.vertex(deployment.vertex_id)
        self.connections = connections
        self.report = report
        self.push_results = push_results
        self.buffer_records = buffer_records
        self.counters = TaskCounters()
        self.mailbox: asyncio.Queue[Any] = asyncio.Queue()
        self.gate = InputGate(self.mailbox)
        self.writers: list[RecordWriter] = []
        self.operators: list[Operator] = []
        self.name = f"{self.vertex.name} ({deployment.subtask + 1}/{self.vertex.parallelism})"

    # ---- set-up ----
    def _register_inputs(self) -> None:
        d = self.d
        for edge, n in input_channel_counts(self.graph, d.vertex_id):
            producers = [d.subtask] if n == 1 and self.graph.edges[edge].partitioner.kind == "forward" else range(n)
            for p in producers:
                self.gate.add_channel(ChannelKey(d.execution_id, edge, p, d.subtask), self.connections.initial_credit)
            self.connections.register_gate(d.execution_id, edge, d.subtask, self.gate)

    async def _open_outputs(self) -> None:
        d = self.d
        for ei in self.vertex.outputs:
            edge = self.graph.edges[ei]
            addrs = d.output_addresses[ei]
            channels = []
            for consumer in producer_channels(self.graph, ei, d.subtask):
                key = ChannelKey(d.execution_id, ei, d.subtask, consumer)
                channels.append(await self.connections.open_channel(addrs[consumer], key))
            self.writers.append(
                # keys are routed by the key groups of the consumer, whose keyed state they address
                RecordWriter(edge.partitioner, channels, self.graph.vertex(edge.target).max_parallelism,
                             self.buffer_records)
            )

    def _tail_out(self) -> Callable[[list[Any], list[int] | None], None]:
        writers = self.writers
        counters = self.counters

        # counted once per record emitted, as Flink's numRecordsOut, whatever the fan-out
        if len(writers) == 1:
            add = writers[0].add

            def out(values: list[Any], timestamps: list[int] | None) -> None:
                counters.records_out += len(values)
                add(values, timestamps)

            return out

        def fan_out(values: list[Any], timestamps: list[int] | None) -> None:
            counters.records_out += len(values)
            for w in writers:
                w.add(values, timestamps)

        return fan_out

    # ---- run ----
    async def run(self) -> None:
        ctx_ops: list[Operator] = []
        try:
            self._register_inputs()
            await self._open_outputs()
            self.operators = build_chain(
                self.vertex.operators, self._tail_out(), self.push_results, self.buffer_records
            )
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
                ctx_ops.append(op)
            self.report("RUNNING", "")
            if self.vertex.is_source:
                await self._run_source()
            else:
                await self._run_mailbox()
            await self._end_input()
            for op in ctx_ops:
                op.close()
            ctx_ops = []
            self.report("FINISHED", "")
        except asyncio.CancelledError:
            self._close_quietly(ctx_ops)
            self.report("CANCELED", "")
            raise
        except Exception:
            cause = traceback.format_exc()
            self._close_quietly(ctx_ops)
            log.info("task %s failed:\n%s", self.name, cause)
            self.report("FAILED", f"{self.name} failed:\n{cause}")

    def _close_quietly(self, ops: list[Operator]) -> None:
        for op in ops:
            try:
                op.close()
            except Exception:  # noqa: BLE001 - a failing close must not hide the original failure
                log.warning("close() of %s raised", op.name, exc_info=True)

    @property
    def _head(self) -> Callable[[list[Any], list[int] | None], None]:
        return self.operators[0].process_batch if self.operators else self._tail_out()

    def _pending_out(self) -> bool:
        return any(w.pending for w in self.writers)

    async def _after_batch(self, force: bool) -> None:
        for w in self.writers:
            if force or w.has_full():
                await w.flush(force)
        for op in self.operators:
            if isinstance(op, CollectOperator):
                await op.flush(force)

    async def _run_source(self) -> None:
        source: Source = self.vertex.operators[0].fn
        reader = source.create_reader(self.d.subtask, self.vertex.parallelism)
        head = self._head
        counters = self.counters
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
        head = self._head
        timeout = self.graph.buffer_timeout_ms / 1000.0
        loads = pickle.loads
        last_flush = time.monotonic()
        ended = 0
        total = len(gate.channels)
        while ended < total:
            if mailbox.empty() and timeout > 0 and self._pending_out():
                remaining = last_flush + timeout - time.monotonic()
                if remaining <= 0:
                    await self._after_batch(True)
                    last_flush = time.monotonic()
                    continue
                try:
                    item = await asyncio.wait_for(mailbox.get(), remaining)
                except TimeoutError:
                    await self._after_batch(True)
                    last_flush = time.monotonic()
                    continue
            else:
                item = await mailbox.get()
            kind, idx, payload = item
            if kind in (M_DATA, M_LOCAL):
                values, timestamps = loads(payload) if kind == M_DATA else payload
                counters.records_in += len(values)
                head(values, timestamps)
                gate.consumed(idx)
                force = timeout == 0
                await self._after_batch(force)
                if force:
                    last_flush = time.monotonic()
            elif kind == M_END:
                gate.channels[idx].ended = True
                ended += 1
            elif kind == M_FAIL:
                raise UpstreamFailure(str(payload))

    async def _end_input(self) -> None:
        for op in self.operators:
            op.end_input()
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
