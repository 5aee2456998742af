"""Sinks: a Sink's writer gets whole buffers; a SinkFunction (add_sink) gets one call per record."""

from __future__ import annotations

import pickle
from collections.abc import Awaitable, Callable
from typing import Any

from taskmanager.operators.base import Operator, _discard
from weir.datastream.connectors.sink import Sink, SinkWriter, TwoPhaseCommittingSinkWriter
from weir.datastream.functions import RuntimeContext, SinkFunction


class SinkOperator(Operator):
    """Runs a Sink's writer (whole buffers) or a SinkFunction / callable (per record).

    With a TwoPhaseCommittingSinkWriter and checkpointing on, output becomes visible exactly once: pre-committed
    on each checkpoint barrier, committed when that checkpoint completes, the last part at the end of input only
    when the JobManager says every task of the job has finished its input (``commit_final``), so that a failure
    in another task can never replay data a finished sink already made visible.
    """

    name = "sink"

    def __init__(self, fn: Any) -> None:
        super().__init__(_discard)
        self.fn = fn
        self.writer: SinkWriter | None = None
        self.records = 0
        self.pending: dict[int, list[Any]] = {}  # checkpoint id -> committables pre-committed at its barrier
        self.final: list[Any] | None = None
        self.awaiting_final_commit = False

    @property
    def transactional(self) -> bool:
        return isinstance(self.writer, TwoPhaseCommittingSinkWriter)

    def _checkpointing(self) -> bool:
        runtime = getattr(self, "runtime", None)
        return runtime is not None and int(runtime.config.get("execution.checkpointing.interval", "0") or 0) > 0

    def open(self, ctx: RuntimeContext) -> None:
        if isinstance(self.fn, Sink):
            self.writer = self.fn.create_writer(ctx)
            if isinstance(self.writer, TwoPhaseCommittingSinkWriter) and self.restore_states is not None:
                # the restored checkpoint completed: commit what it pre-committed (this subtask's share of the
                # old subtasks' states, round robin when the parallelism changed), discard everything else
                i, n = ctx.get_index_of_this_subtask(), ctx.get_number_of_parallel_subtasks()
                known: list[Any] = []
                for st in self.restore_states[i::n]:
                    if st.operator:
                        for committables in pickle.loads(st.operator).values():
                            known.extend(committables)
                self.writer.commit(known)
                self.writer.abort_others(known, i, n)
        else:
            super().open(ctx)

    def process_batch(self, values: list[Any], timestamps: list[int] | None) -> None:
        self.records += len(values)
        if self.writer is not None:
            self.writer.write_batch(values)
            return
        fn = self.fn
        if isinstance(fn, SinkFunction):
            invoke = fn.invoke
            if timestamps is None:
                c = SinkFunction.Context(None)
                for v in values:
                    invoke(v, c)
            else:
                for v, t in zip(values, timestamps, strict=True):
                    invoke(v, SinkFunction.Context(t))
        else:
            for v in values:
                fn(v)

    def snapshot_state(self, checkpoint_id: int, canonical: bool) -> tuple[Any, bytes | None]:
        if not isinstance(self.writer, TwoPhaseCommittingSinkWriter):
            return None, None
        self.pending[checkpoint_id] = self.writer.pre_commit()
        return None, pickle.dumps(dict(self.pending), protocol=5)

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        if isinstance(self.writer, TwoPhaseCommittingSinkWriter):
            for cid in sorted(c for c in self.pending if c <= checkpoint_id):
                self.writer.commit(self.pending.pop(cid))

    def end_input(self) -> None:
        if self.writer is None:
            return
        if isinstance(self.writer, TwoPhaseCommittingSinkWriter) and self._checkpointing():
            self.final = self.writer.pre_commit()
            self.awaiting_final_commit = True
        else:
            self.writer.finish()

    def commit_final(self) -> None:
        """Every task of the job has finished its input: make the rest visible."""
        assert isinstance(self.writer, TwoPhaseCommittingSinkWriter)
        for cid in sorted(self.pending):
            self.writer.commit(self.pending.pop(cid))
        self.writer.commit(self.final or [])
        self.final = None
        self.awaiting_final_commit = False

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        else:
            super().close()


class CollectOperator(Operator):
    """Streams results back to the client through the JobManager, one pickled buffer per push.

    ``push`` returns only when the JobManager has room, so a client that reads slowly backpressures the job.
    """

    name = "collect"

    def __init__(self, push: Callable[[bytes, bool], Awaitable[None]], buffer_records: int) -> None:
        super().__init__(_discard)
        self.push = push
        self.buffer: list[Any] = []
        self.buffer_records = buffer_records
        self.ended = False
        self.records = 0

    def process_batch(self, values: list[Any], timestamps: list[int] | None) -> None:
        self.records += len(values)
        self.buffer.extend(values)

    def end_input(self) -> None:
        self.ended = True

    async def drain(self) -> None:
        await self.flush(force=False)

    async def flush(self, force: bool) -> None:
        if self.buffer and (force or len(self.buffer) >= self.buffer_records):
            data, self.buffer = self.buffer, []
            await self.push(pickle.dumps(data, protocol=5), False)

    async def finish(self) -> None:
        await self.flush(force=True)
        await self.push(b"", True)
