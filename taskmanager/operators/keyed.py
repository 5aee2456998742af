"""Keyed operators: the rolling reduce (reduce/sum/min/max) and KeyedProcessFunction with state and timers."""

from __future__ import annotations

from typing import Any

from taskmanager.operators.base import Emit
from taskmanager.operators.emitter import Collector
from taskmanager.operators.keyed_state import KeyedStateMixin
from taskmanager.timers import InternalTimerService, ProcessingTimeService
from weir.datastream.functions import (
    KeyedProcessFunction,
    KeySelector,
    ReduceFunction,
    RuntimeContext,
    TimeDomain,
    TimerService,
    callable_of,
)

_MISSING = object()


class KeyedReduceOperator(KeyedStateMixin):
    """Rolling reduce: one output per input, the reduction so far of that record's key (kept in keyed state)."""

    name = "reduce"

    def __init__(self, out: Emit, fn: Any, key_selector: Any) -> None:
        super().__init__(out)
        self.fn = fn
        self.f = callable_of(fn, ReduceFunction, "reduce")
        self.key = callable_of(key_selector, KeySelector, "get_key")

    def open(self, ctx: RuntimeContext) -> None:
        self.backend = self.open_backend()
        self.state = self.backend.table("reduce")
        super().open(ctx)

    def process_batch(self, values: list[Any], timestamps: list[int] | None) -> None:
        f, key, state = self.f, self.key, self.state
        get = state.get
        out: list[Any] = []
        append = out.append
        for v in values:
            k = (key(v), None)
            acc = get(k, _MISSING)
            if acc is not _MISSING:
                v = f(acc, v)
            state[k] = v
            append(v)
        self.out(out, timestamps)


class _KeyedTimerService(TimerService):
    __slots__ = ("timers", "backend", "pts")

    def __init__(self, timers: InternalTimerService, backend: Any, pts: ProcessingTimeService) -> None:
        self.timers = timers
        self.backend = backend
        self.pts = pts

    def current_processing_time(self) -> int:
        return self.pts.get_current_processing_time()

    def current_watermark(self) -> int:
        return self.timers.current_watermark

    def register_event_time_timer(self, timestamp: int) -> None:
        self.timers.register_event_time_timer(self.backend.current_key, None, int(timestamp))

    def delete_event_time_timer(self, timestamp: int) -> None:
        self.timers.delete_event_time_timer(self.backend.current_key, None, int(timestamp))

    def register_processing_time_timer(self, timestamp: int) -> None:
        self.timers.register_processing_time_timer(self.backend.current_key, None, int(timestamp))

    def delete_processing_time_timer(self, timestamp: int) -> None:
        self.timers.delete_processing_time_timer(self.backend.current_key, None, int(timestamp))


class _KeyedContext(KeyedProcessFunction.OnTimerContext):
    __slots__ = ("ts", "backend", "service", "collector", "domain")

    def __init__(self, backend: Any, service: _KeyedTimerService, collector: Collector) -> None:
        self.ts: int | None = None
        self.backend = backend
        self.service = service
        self.collector = collector
        self.domain = TimeDomain.EVENT_TIME

    def timestamp(self) -> int | None:
        return self.ts

    def get_current_key(self) -> Any:
        return self.backend.current_key

    def timer_service(self) -> TimerService:
        return self.service

    def time_domain(self) -> int:
        return self.domain

    def output(self, output_tag: Any, value: Any) -> None:
        self.collector.side(output_tag, value, self.ts)


class KeyedProcessOperator(KeyedStateMixin):
    """Runs a KeyedProcessFunction: per-key state, timers that fire once per (key, timestamp) in order."""

    name = "keyed_process"

    def __init__(self, out: Emit, fn: KeyedProcessFunction, key_selector: Any) -> None:
        super().__init__(out)
        self.fn = fn
        self.f = fn.process_element
        self.on_timer = fn.on_timer
        self.key = callable_of(key_selector, KeySelector, "get_key")

    def open(self, ctx: RuntimeContext) -> None:
        self.backend = self.open_backend()
        pts = self.runtime.processing_time
        self.timers = InternalTimerService(pts, self._on_event_timer, self._on_processing_timer)
        self.restore_timers()
        self.collector = Collector(self.runtime)
        self.ctx = _KeyedContext(self.backend, _KeyedTimerService(self.timers, self.backend, pts), self.collector)
        ctx._keyed_state_store = self.backend
        super().open(ctx)

    def process_batch(self, values: list[Any], timestamps: list[int] | None) -> None:
        f, ctx, key, backend, collect = self.f, self.ctx, self.key, self.backend, self.collector.collect
        ctx.domain = TimeDomain.EVENT_TIME
        for i, v in enumerate(values):
            backend.current_key = key(v)
            ctx.ts = None if timestamps is None else timestamps[i]
            collect(f(v, ctx), ctx.ts, "process_element")
        self._emit()

    def _emit(self) -> None:
        out, ts = self.collector.take()
        if out:
            self.out(out, ts)

    def _on_timer(self, key: Any, ts: int, domain: int) -> None:
        self.backend.current_key = key
        ctx = self.ctx
        ctx.ts = ts
        ctx.domain = domain
        # event-time timer output carries the timer's timestamp; processing-time output carries none (Flink)
        out_ts = ts if domain == TimeDomain.EVENT_TIME else None
        self.collector.collect(self.fn.on_timer(ts, ctx), out_ts, "on_timer")

    def _on_event_timer(self, key: Any, ns: Any, ts: int) -> None:
        # ``_on_timer`` for event time, inlined: W4-like jobs fire a timer per record
        self.backend.current_key = key
        ctx = self.ctx
        ctx.ts = ts
        ctx.domain = TimeDomain.EVENT_TIME
        self.collector.collect(self.on_timer(ts, ctx), ts, "on_timer")

    def _on_processing_timer(self, key: Any, ns: Any, ts: int) -> None:
        self._on_timer(key, ts, TimeDomain.PROCESSING_TIME)
        self._emit()

    def process_watermark(self, watermark: int) -> None:
        self.timers.advance_watermark(watermark)
        self._emit()
        super().process_watermark(watermark)
