"""Sinks: a Sink's writer gets whole buffers; a SinkFunction (add_sink) gets one call per record."""

from __future__ import annotations

import pickle
from collections.abc import Awaitable, Callable
from typing import Any

from taskmanager.operators.base import Operator, _discard
from weir.datastream.connectors.sink import Sink, SinkWriter
from weir.datastream.functions import RuntimeContext, SinkFunction


class SinkOperator(Operator):
    name = "sink"

    def __init__(self, fn: Any) -> None:
        super().__init__(_discard)
        self.fn = fn
        self.writer: SinkWriter | None = None
        self.records = 0

    def open(self, ctx: RuntimeContext) -> None:
        if isinstance(self.fn, Sink):
            self.writer = self.fn.create_writer(ctx)
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

    def end_input(self) -> None:
        if self.writer is not None:
            self.writer.finish()

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
