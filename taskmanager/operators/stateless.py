"""map, flat_map, filter and process: stateless, one list comprehension per buffer."""

from __future__ import annotations

from types import GeneratorType
from typing import Any

from taskmanager.operators.base import Emit, Operator
from taskmanager.operators.emitter import Collector
from weir.datastream.functions import (
    FilterFunction,
    FlatMapFunction,
    MapFunction,
    ProcessFunction,
    RuntimeContext,
    callable_of,
)


class MapOperator(Operator):
    name = "map"

    def __init__(self, out: Emit, fn: Any) -> None:
        super().__init__(out)
        self.fn = fn
        self.f = callable_of(fn, MapFunction, "map")

    def process_batch(self, values: list[Any], timestamps: list[int] | None) -> None:
        f = self.f
        self.out([f(v) for v in values], timestamps)


class FilterOperator(Operator):
    name = "filter"

    def __init__(self, out: Emit, fn: Any) -> None:
        super().__init__(out)
        self.fn = fn
        self.f = callable_of(fn, FilterFunction, "filter")

    def process_batch(self, values: list[Any], timestamps: list[int] | None) -> None:
        f = self.f
        if timestamps is None:
            out = [v for v in values if f(v)]
            if out:
                self.out(out, None)
            return
        keep = [(v, t) for v, t in zip(values, timestamps, strict=True) if f(v)]
        if keep:
            self.out([v for v, _ in keep], [t for _, t in keep])




def _results(r: Any, what: str) -> Any:
    if r is None:
        return ()
    if isinstance(r, str | bytes) or not hasattr(r, "__iter__"):
        raise TypeError(f"{what} must yield or return an iterable of records, got {type(r).__name__}: {r!r:.60}")
    return r


class FlatMapOperator(Operator):
    name = "flat_map"

    def __init__(self, out: Emit, fn: Any) -> None:
        super().__init__(out)
        self.fn = fn
        self.f = callable_of(fn, FlatMapFunction, "flat_map")

    def process_batch(self, values: list[Any], timestamps: list[int] | None) -> None:
        f = self.f
        out: list[Any] = []
        ext = out.extend
        if timestamps is None:
            for v in values:
                r = f(v)
                tr = type(r)
                ext(r if tr is list or tr is tuple or tr is GeneratorType else _results(r, "flat_map"))
            if out:
                self.out(out, None)
            return
        ts: list[int] = []
        for v, t in zip(values, timestamps, strict=True):
            n = len(out)
            ext(_results(f(v), "flat_map"))
            ts.extend([t] * (len(out) - n))
        if out:
            self.out(out, ts)


class _ProcessContext(ProcessFunction.Context):
    __slots__ = ("ts", "collector", "pts")

    def __init__(self, collector: Collector, pts: Any) -> None:
        self.ts: int | None = None
        self.collector = collector
        self.pts = pts

    def timestamp(self) -> int | None:
        return self.ts

    def output(self, output_tag: Any, value: Any) -> None:
        self.collector.side(output_tag, value, self.ts)

    def timer_service(self) -> Any:
        raise RuntimeError("timers are only available on a keyed stream: use key_by(...).process(...)")


class ProcessOperator(Operator):
    name = "process"

    def __init__(self, out: Emit, fn: ProcessFunction) -> None:
        super().__init__(out)
        self.fn = fn
        self.f = fn.process_element

    def open(self, ctx: RuntimeContext) -> None:
        self.collector = Collector(self.runtime)
        self.ctx = _ProcessContext(self.collector, self.runtime.processing_time)
        super().open(ctx)

    def process_batch(self, values: list[Any], timestamps: list[int] | None) -> None:
        f, ctx, collect = self.f, self.ctx, self.collector.collect
        for i, v in enumerate(values):
            ctx.ts = None if timestamps is None else timestamps[i]
            collect(f(v, ctx), ctx.ts, "process_element")
        out, ts = self.collector.take()
        if out:
            self.out(out, ts)
