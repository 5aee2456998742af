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
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from state.keygroups import key_group_range
from state.storage import checkpoint_storage_for
from taskmanager.network.barrier import BarrierAligner, Decision
from taskmanager.network.connection import (
    M_COLUMNS,
    M_DATA,
    M_END,
    M_EVENT,
    M_FAIL,
    M_LOCAL,
    M_LOCAL_COLUMNS,
    ChannelKey,
    ConnectionManager,
    InputGate,
)
from taskmanager.network.partitioner import COLUMNAR_PARTITIONERS, RecordWriter
from taskmanager.operators.base import Emit, Operator, OperatorRuntime
from taskmanager.operators.chain import build_chain
from taskmanager.operators.sink import CollectOperator, SinkOperator
from taskmanager.timers import MAX_TIME, MIN_TIME, ProcessingTimeService
from weir.datastream.connectors.source import Source
from weir.datastream.functions import RuntimeContext
from weir.graph.deployment import (
    OperatorSubtaskState,
    TaskDeployment,
    TaskStateSnapshot,
    input_channel_counts,
    producer_channels,
)
from weir.graph.jobgraph import JobGraph

YIELD_INTERVAL = 0.02  # seconds a subtask may keep its worker's event loop while its mailbox stays full

log = logging.getLogger(__name__)

DEFAULT_BUFFER_RECORDS = 1024
# from the worker: ("trigger", id, savepoint target) | ("complete", id) | ("abort", id) | ("commit-final",)
M_CONTROL = 9
_DATA_KINDS = (M_DATA, M_LOCAL)
_COLUMN_KINDS = (M_COLUMNS, M_LOCAL_COLUMNS)

COLUMNAR_KINDS = frozenset({"map_batches", "filter_batches"})
"""Operators that take and emit buffers as columns (``taskmanager.operators.vectorized.ColumnarOperator``)."""
COLUMNAR_EXCHANGE_KEY = "pipeline.columnar-exchange"
"""Job configuration: "false" sends columnar operators' output between tasks as records (the path before columns
crossed task boundaries; kept for comparison and as an escape hatch)."""


class MalformedBufferError(Exception):
    """An input buffer from another worker cannot be decoded; the task fails with this, naming the channel."""


class UpstreamFailure(Exception):
    """An input channel broke: its producer's worker went away."""


@dataclass
class TaskCounters:
    records_in: int = 0
    records_out: int = 0
    bytes_in: int = 0
    busy_seconds: float = 0.0
    columnar_buffers_in: int = 0


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
        report_checkpoint: Callable[[int, bool, bytes, str], None] | None = None,
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
        self.output_wm = MIN_TIME
        self.idle_out = False
        self._pending_wm: int | None = None
        self._pending_status: bool | None = None
        self.channel_input: list[int] = []  # logical input (0/1) of each channel
        # checkpoints
        self.report_checkpoint = report_checkpoint or (lambda cid, ok, state, reason: None)
        self.checkpointing = deployment.checkpointing
        self.restore = deployment.restore
        self.key_groups = key_group_range(self.vertex.max_parallelism, self.vertex.parallelism, deployment.subtask)
        self.aligner = BarrierAligner(0)
        self._align_started: dict[int, float] = {}  # checkpoint id -> monotonic time of its first barrier
        self._alignment: dict[int, float] = {}  # checkpoint id -> seconds its alignment took (until reported)
        self.backlog: deque[Any] = deque()
        # input set aside during an alignment that completed: handled before the mailbox, but only once the
        # checkpoint's barrier has gone out (their records are after the barrier, downstream must see them so)
        self.replay: deque[Any] = deque()
        self._write_out_steps: list[Callable[[], None]] = []
        self._barrier_targets: dict[int, str | None] = {}
        self._pending_barriers: list[tuple[int, str | None]] = []
        self._uploads: set[asyncio.Task[None]] = set()
        self._storages: dict[str, Any] = {}
        self.reader: Any = None
        self.ended = 0
        self.final_commit = asyncio.Event()

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
        self.aligner = BarrierAligner(len(self.gate.channels),
                                      self.checkpointing is None or self.checkpointing.exactly_once)

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
                             self.buffer_records, columnar=self._columnar_edge(ei))
            self.writers.append(w)
            if edge.side_output is None:
                self.main_writers.append(w)
            else:
                self.side_writers.setdefault((edge.source_operator, edge.side_output), []).append(w)

    def _columnar_edge(self, edge_index: int) -> bool:
        """Whether buffers cross edge ``edge_index`` as columns: this chain ends with a columnar operator, the
        consumer's chain starts with one (on its first input), and the partitioner needs no record's key. Decided
        once, at deployment, from the graph alone, so producer and consumer agree without a handshake."""
        edge = self.graph.edges[edge_index]
        if (edge.side_output is not None or edge.target_input != 0
                or edge.partitioner.kind not in COLUMNAR_PARTITIONERS
                or self.graph.config.get(COLUMNAR_EXCHANGE_KEY, "true").strip().lower() == "false"):
            return False
        return self.vertex.operators[-1].kind in COLUMNAR_KINDS \
            and self.graph.vertex(edge.target).operators[0].kind in COLUMNAR_KINDS

    def _tail_columns_out(self) -> Any:
        """What the chain's columnar tail operator emits into when some output edge takes columns: those edges get
        the buffer as columns; any other (a keyed edge, a record consumer) gets it as records, converted once."""
        counters = self.counters
        col_writers = [w for w in self.main_writers if w.columnar]
        rec_writers = [w for w in self.main_writers if not w.columnar]
        if len(col_writers) == 1 and not rec_writers:
            add = col_writers[0].add_columns

            def out(cols: Any, shape: Any, timestamps: list[int] | None) -> None:
                counters.records_out += cols.num_rows
                add(cols, shape, timestamps)

            return out
        from weir.common.columnar import share

        def fan_out(cols: Any, shape: Any, timestamps: list[int] | None) -> None:
            counters.records_out += cols.num_rows
            for i, w in enumerate(col_writers):
                # consumers in this process get the object itself: one handle each
                w.add_columns(cols if i == 0 else share(cols), shape, timestamps)
            if rec_writers:
                values = cols.to_records(shape)
                for w in rec_writers:
                    w.add(values, timestamps)

        return fan_out

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
        restore_storage = None
        if self.restore is not None:
            restore_storage = checkpoint_storage_for(self.restore.storage_uri, self.restore.storage_options)
        for op in self.operators:
            op.key_groups = self.key_groups
            op.local_dir = self.local_dir or ""
            if self.restore is not None:
                op.restore_states = self.restore.operators.get(op.uid, [])
                op.restore_storage = restore_storage

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
            if any(w.columnar for w in self.main_writers):
                self.operators[-1].columns_out = self._tail_columns_out()  # type: ignore[attr-defined]
            self._inputs = self._head_inputs()
            # RocksDB: a checkpoint's write-out is applied in slices between mailbox items by this (the mailbox)
            # thread, which holds the GIL most of the time, rather than by the upload thread, which seldom gets it
            self._write_out_steps = [step for op in self.operators
                                     if (step := getattr(getattr(op, "backend", None), "advance_write_out", None))]
            self._column_inputs = self._head_column_inputs()
            self.report("RUNNING", "")
            if self.vertex.is_source:
                await self._run_source()
            else:
                await self._run_mailbox()
            await self._end_input()
            await self._await_final_commit()
            for op in opened:
                op.close()
            opened = []
            self._dispose()
            self.report("FINISHED", "")
        except asyncio.CancelledError:
            for t in list(self._uploads):
                t.cancel()
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

    def _head_column_inputs(self) -> list[Callable[[Any, Any, list[int] | None], None]]:
        """Where buffers of columns go: the columnar head's ``process_columns``; records, made once, for any other
        head (a producer sends columns only to a columnar head, so that is a fallback, not a path)."""
        head: Any = self.operators[0] if self.operators else None
        if head is not None and self.vertex.operators[0].kind in COLUMNAR_KINDS:
            return [head.process_columns, head.process_columns]
        inputs = self._inputs

        def as_records(i: int) -> Callable[[Any, Any, list[int] | None], None]:
            def feed(cols: Any, shape: Any, timestamps: list[int] | None) -> None:
                inputs[i](cols.to_records(shape), timestamps)

            return feed

        return [as_records(0), as_records(1)]

    def _on_columns(self, kind: int, idx: int, payload: Any) -> None:
        """A buffer of columns from input channel ``idx``: decoded (remote) or as handed over (local), then given to
        the head operator whole."""
        if kind == M_COLUMNS:
            from weir.common.columnar import ColumnarFrameError, decode_ipc  # only jobs that receive columns

            self.counters.bytes_in += len(payload)
            try:
                cols, shape, timestamps = decode_ipc(payload)
            except ColumnarFrameError as e:
                key = self.gate.channels[idx].key
                raise MalformedBufferError(
                    f"malformed columnar buffer (Arrow IPC, {len(payload)} bytes) from subtask {key.producer} on "
                    f"edge {key.edge}: {e}") from None
        else:
            cols, shape, timestamps = payload
        self.counters.records_in += cols.num_rows
        self.counters.columnar_buffers_in += 1
        self._column_inputs[self.channel_input[idx]](cols, shape, timestamps)

    def _pending_out(self) -> bool:
        return any(w.pending for w in self.writers)

    async def _after_batch(self, force: bool) -> None:
        if self._pending_barriers:
            await self._send_barriers()
        if self._pending_wm is not None or self._pending_status is not None:
            wm, self._pending_wm = self._pending_wm, None
            status, self._pending_status = self._pending_status, None
            if wm is not None:
                self.output_wm = wm
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

    async def _send_barriers(self) -> None:
        barriers, self._pending_barriers = self._pending_barriers, []
        for w in self.writers:
            for cid, target in barriers:
                await w.broadcast_event(("barrier", (cid, target)))

    async def _await_final_commit(self) -> None:
        """A transactional sink's last data becomes visible only once every task of the job has finished its
        input (the JobManager's ``commit-final``); meanwhile checkpoint notifications are still handled."""
        waiting = [op for op in self.operators if getattr(op, "awaiting_final_commit", False)]
        if not waiting:
            return
        self.report("FINISHING", "")
        while not self.final_commit.is_set():
            self._handle(await self.mailbox.get())
        for op in waiting:
            op.commit_final()  # type: ignore[attr-defined]

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
        spec = self.vertex.operators[0]
        source: Source = spec.fn
        states = self.restore.operators.get(self._source_uid) if self.restore is not None else None
        if states:
            splits: list[Any] = []
            for st in states:
                if st.operator:
                    splits.extend(pickle.loads(st.operator))
            # splits are redistributed round robin, so a different parallelism reads each exactly once
            reader = source.restore_reader(self.d.subtask, self.vertex.parallelism,
                                           splits[self.d.subtask::self.vertex.parallelism])
        else:
            reader = source.create_reader(self.d.subtask, self.vertex.parallelism)
        self.reader = reader
        head = self._head_inputs()[0]
        counters = self.counters
        pts = self.processing_time
        timeout = self.graph.buffer_timeout_ms / 1000.0
        last_flush = time.monotonic()
        try:
            while True:
                t0 = time.perf_counter()
                batch = reader.poll(self.buffer_records)
                if batch is None:
                    break
                if batch:
                    counters.records_in += len(batch)
                    head(batch, None)
                counters.busy_seconds += time.perf_counter() - t0
                if pts._heap:
                    pts.run_due()
                while not self.mailbox.empty():  # checkpoint triggers and notifications
                    self._handle(self.mailbox.get_nowait())
                now = time.monotonic()
                force = timeout == 0 or (timeout > 0 and now - last_flush >= timeout)
                await self._after_batch(force)
                if force:
                    last_flush = now
                await asyncio.sleep(0 if batch else 0.001)
        finally:
            reader.close()

    async def _run_mailbox(self) -> None:
        gate, mailbox = self.gate, self.mailbox
        pts = self.processing_time
        timeout = self.graph.buffer_timeout_ms / 1000.0
        last_flush = time.monotonic()
        last_yield = time.perf_counter()
        total = len(gate.channels)
        while self.ended < total:
            if self.replay:
                item = self.replay.popleft()
            elif mailbox.empty():
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
            t0 = time.perf_counter()
            self._handle(item)
            if self._pending_barriers:
                # a checkpoint was taken: its barrier goes out before anything processed after the snapshot
                # (timers due now, input set aside during the alignment) emits a record
                await self._send_barriers()
            if pts._heap:
                pts.run_due()
            for step in self._write_out_steps:
                step()
            t1 = time.perf_counter()
            self.counters.busy_seconds += t1 - t0
            force = timeout == 0
            await self._after_batch(force)
            if force:
                last_flush = time.monotonic()
            if t1 - last_yield >= YIELD_INTERVAL:
                # a full mailbox would otherwise hold the worker's event loop: the other subtasks of the slot, its
                # metrics and its control connection get a turn at least this often
                await asyncio.sleep(0)
                last_yield = time.perf_counter()

    def _handle(self, item: tuple[int, int, Any]) -> None:
        """One mailbox item. Input of a channel blocked by barrier alignment is set aside until it unblocks."""
        kind, idx, payload = item
        if idx >= 0 and kind != M_FAIL and self.aligner.is_blocked(idx):
            self.backlog.append(item)
            return
        if kind in _DATA_KINDS:
            if kind == M_DATA:
                self.counters.bytes_in += len(payload)
            values, timestamps = pickle.loads(payload) if kind == M_DATA else payload
            self.counters.records_in += len(values)
            self._inputs[self.channel_input[idx]](values, timestamps)
            self.gate.consumed(idx)
        elif kind in _COLUMN_KINDS:
            self._on_columns(kind, idx, payload)
            self.gate.consumed(idx)
        elif kind == M_EVENT:
            if payload[0] == "barrier":
                cid, target = payload[1]
                self._barrier_targets.setdefault(cid, target)
                self._align_started.setdefault(cid, time.monotonic())  # the first barrier starts the alignment
                self._apply(self.aligner.on_barrier(idx, cid))
            else:
                self._on_event(idx, payload)
        elif kind == M_END:
            self.gate.channels[idx].ended = True
            self.ended += 1
            self._apply(self.aligner.on_end_of_partition(idx))
        elif kind == M_FAIL:
            raise UpstreamFailure(str(payload))
        elif kind == M_CONTROL:
            self._on_control(payload)

    def _apply(self, d: Decision) -> None:
        if d.trigger is not None:
            started = self._align_started.pop(d.trigger, None)
            self._alignment[d.trigger] = time.monotonic() - started if started is not None else 0.0
            self._checkpoint(d.trigger, self._barrier_targets.pop(d.trigger, None))
            # in arrival order, ahead of anything still in the mailbox; a later barrier in there may block
            # channels again. Not handled here: what they emit must follow the barrier queued just now
            self.backlog.extend(self.replay)
            self.replay, self.backlog = self.backlog, deque()
        if d.abort is not None:
            self._barrier_targets.pop(d.abort, None)
            self._align_started.pop(d.abort, None)

    def _on_control(self, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == "trigger":
            self._checkpoint(msg[1], msg[2] or None)
        elif kind == "complete":
            for op in self.operators:
                op.notify_checkpoint_complete(msg[1])
        elif kind == "abort":
            for op in self.operators:
                op.notify_checkpoint_aborted(msg[1])
        elif kind == "commit-final":
            self.final_commit.set()

    # ---- checkpoints ----
    @property
    def _source_uid(self) -> str:
        spec = self.vertex.operators[0]
        return spec.uid or f"op{spec.transformation_id}"

    def _checkpoint(self, checkpoint_id: int, target: str | None) -> None:
        """The synchronous part of checkpoint ``checkpoint_id``: capture every operator's state, queue the barrier
        (sent after everything emitted before it), and start the upload, which runs while records flow on."""
        states: dict[str, OperatorSubtaskState] = {}
        pendings: list[tuple[str, Any]] = []
        try:
            if self.reader is not None:
                states[self._source_uid] = OperatorSubtaskState(
                    operator=pickle.dumps(self.reader.snapshot_state(), protocol=5))
            for op in self.operators:
                pending, op_state = op.snapshot_state(checkpoint_id, target is not None)
                states[op.uid] = OperatorSubtaskState([], op_state)
                if pending is not None:
                    pendings.append((op.uid, pending))
        except Exception as e:  # noqa: BLE001 - a failed snapshot declines the checkpoint, the job goes on
            for _, p in pendings:
                p.discard()
            log.warning("%s: checkpoint %d failed: %s", self.name, checkpoint_id, e)
            self._alignment.pop(checkpoint_id, None)
            self.report_checkpoint(checkpoint_id, False, b"", f"{self.name}: {type(e).__name__}: {e}")
            self._pending_barriers.append((checkpoint_id, target))
            return
        self._pending_barriers.append((checkpoint_id, target))
        task = asyncio.get_running_loop().create_task(self._upload(checkpoint_id, target, states, pendings))
        self._uploads.add(task)
        task.add_done_callback(self._uploads.discard)

    def _storage(self, uri: str) -> Any:
        st = self._storages.get(uri)
        if st is None:
            opts = self.checkpointing.storage_options if self.checkpointing else {}
            st = self._storages[uri] = checkpoint_storage_for(uri, opts)
        return st

    async def _upload(self, checkpoint_id: int, target: str | None, states: dict[str, OperatorSubtaskState],
                      pendings: list[tuple[str, Any]]) -> None:
        d = self.d
        try:
            if target is not None:
                storage = self._storage(target)
                private = shared = f"{d.vertex_id}-{d.subtask}"
            else:
                assert self.checkpointing is not None
                storage = self._storage(self.checkpointing.storage_uri)
                private = f"{d.job_id}/chk-{checkpoint_id}/{d.vertex_id}-{d.subtask}"
                shared = f"{d.job_id}/shared"
            for uid, pending in pendings:
                handle = await asyncio.to_thread(pending.upload, storage, f"{private}/{uid}", f"{shared}/{uid}")
                states[uid].keyed.append(handle)
            snapshot = TaskStateSnapshot(states, self._alignment.pop(checkpoint_id, 0.0))
            self.report_checkpoint(checkpoint_id, True, pickle.dumps(snapshot, protocol=5), "")
        except asyncio.CancelledError:
            for _, p in pendings:
                p.discard()
            raise
        except Exception as e:  # noqa: BLE001
            for _, p in pendings:
                p.discard()
            log.warning("%s: uploading checkpoint %d failed: %s", self.name, checkpoint_id, e)
            self._alignment.pop(checkpoint_id, None)
            self.report_checkpoint(checkpoint_id, False, b"", f"{self.name}: upload failed: {type(e).__name__}: {e}")

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

    def metric_snapshot(self) -> dict[str, Any]:
        """What the TaskManager's /metrics shows of this subtask (cheap: read once per scrape interval)."""
        channels = [ch for w in self.writers for ch in w.channels]
        pending = sum(w.pending for w in self.writers)
        capacity = max(1, self.buffer_records * len(channels))
        timers = late = entries = 0
        for op in self.operators:
            t = getattr(op, "timers", None)
            if t is not None:
                timers += t.pending
            late += getattr(op, "late_dropped", 0)
        for b in self.backends:
            tables = getattr(b, "tables", None)
            if isinstance(tables, dict):
                entries += sum(len(t) for t in tables.values() if isinstance(t, dict))
        return {
            "job": self.d.job_id,
            "task": self.vertex.name,
            "subtask": self.d.subtask,
            "records_in": self.counters.records_in,
            "records_out": self.records_out(),
            "bytes_in": self.counters.bytes_in,
            "bytes_out": sum(getattr(ch, "bytes_out", 0) for ch in channels),
            "columnar_buffers_in": self.counters.columnar_buffers_in,
            "columnar_buffers_out": sum(w.columnar_buffers_out for w in self.writers),
            "busy_seconds": self.counters.busy_seconds,
            "backpressured_seconds": sum(ch.credit.waited for ch in channels if hasattr(ch, "credit")),
            "output_buffer_usage": min(1.0, pending / capacity),
            "input_watermark": self.input_wm,
            "output_watermark": self.output_wm,
            "timers_pending": timers,
            "late_records_dropped": late,
            "state_entries": entries,
        }

    def records_out(self) -> int:
        """Records emitted downstream, or written by this task's sink."""
        return self.counters.records_out + sum(
            op.records for op in self.operators if isinstance(op, SinkOperator | CollectOperator)
        )
