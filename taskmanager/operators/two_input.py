"""Two-input operators over ``DataStream.connect``: CoMap, CoFlatMap, CoProcess and KeyedCoProcess."""

from __future__ import annotations

from typing import Any

from taskmanager.operators.base import Emit, Operator
from taskmanager.operators.emitter import Collector
from taskmanager.operators.keyed import _KeyedTimerService
from taskmanager.operators.keyed_state import KeyedStateMixin
from taskmanager.operators.stateless import _results
from taskmanager.timers import InternalTimerService
from weir.datastream.functions import (
    CoFlatMapFunction,
    CoMapFunction,
    CoProcessFunction,
    KeyedCoProcessFunction,
    KeySelector,
    RuntimeContext,
    TimeDomain,
    TimerService,
    callable_of,
)


class CoMapOperator(Operator):
    name = "co_map"

    def __init__(self, out: Emit, fn: CoMapFunction) -> None:
        super().__init__(out)
        self.fn = fn

    def process_batch(self, values: list[Any], timestamps: list[int] | None) -> None:
        f = self.fn.map1
        self.out([f(v) for v in values], timestamps)

    def process_batch2(self, values: list[Any], timestamps: list[int] | None) -> None:
        f = self.fn.map2
        self.out([f(v) for v in values], timestamps)


class CoFlatMapOperator(Operator):
    name = "co_flat_map"

    def __init__(self, out: Emit, fn: CoFlatMapFunction) -> None:
        super().__init__(out)
        self.fn = fn

    def _run(self, f: Any, values: list[Any], timestamps: list[int] | None) -> None:
        out: list[Any] = []
        ts: list[int] | None = None if timestamps is None else []
        for i, v in enumerate(values):
            n = len(out)
            out.extend(_results(f(v), "flat_map"))
            if ts is not None and timestamps is not None:
                ts.extend([timestamps[i]] * (len(out) - n))
        if out:
            self.out(out, ts)

    def process_batch(self, values: list[Any], timestamps: list[int] | None) -> None:
        self._run(self.fn.flat_map1, values, timestamps)

    def process_batch2(self, values: list[Any], timestamps: list[int] | None) -> None:
        self._run(self.fn.flat_map2, values, timestamps)


class _CoContext(KeyedCoProcessFunction.OnTimerContext, CoProcessFunction.Context):
    __slots__ = ("ts", "backend", "service", "collector", "domain")

    def __init__(self, backend: Any, service: TimerService | None, collector: Collector) -> None:
        self.ts: int | None = None
        self.backend = backend
        self.service = service
        self.collector = collector
        self.domain = TimeDomain.EVENT_TIME

    def timestamp(self) -> int | None:
        return self.ts

    def get_current_key(self) -> Any:
        if self.backend is None:
            raise RuntimeError("get_current_key() needs connected streams keyed with key_by(...)")
        return self.backend.current_key

    def timer_service(self) -> TimerService:
        if self.service is None:
            raise RuntimeError("timers need connected streams keyed with key_by(...)")
        return self.service

    def time_domain(self) -> int:
        return self.domain

    def output(self, output_tag: Any, value: Any) -> None:
        self.collector.side(output_tag, value, self.ts)


class CoProcessOperator(KeyedStateMixin):
    """CoProcessFunction, or KeyedCoProcessFunction when both inputs are keyed (state and timers per key)."""

    name = "co_process"

    def __init__(self, out: Emit, fn: Any, key_selectors: tuple[Any, Any] | None) -> None:
        super().__init__(out)
        self.fn = fn
        self.keys = (
            None if key_selectors is None
            else tuple(callable_of(k, KeySelector, "get_key") for k in key_selectors)
        )

    def open(self, ctx: RuntimeContext) -> None:
        self.collector = Collector(self.runtime)
        self.backend = None
        self.timers = None
        service = None
        if self.keys is not None:
            self.backend = self.open_backend()
            pts = self.runtime.processing_time
            self.timers = InternalTimerService(pts, self._on_event_timer, self._on_processing_timer)
            self.restore_timers()
            service = _KeyedTimerService(self.timers, self.backend, pts)
            ctx._keyed_state_store = self.backend
        self.ctx = _CoContext(self.backend, service, self.collector)
        super().open(ctx)

    def _run(self, f: Any, key: Any, values: list[Any], timestamps: list[int] | None) -> None:
        ctx, collect, backend = self.ctx, self.collector.collect, self.backend
        ctx.domain = TimeDomain.EVENT_TIME
        for i, v in enumerate(values):
            if key is not None:
                backend.current_key = key(v)  # type: ignore[union-attr]
            ctx.ts = None if timestamps is None else timestamps[i]
            collect(f(v, ctx), ctx.ts, "process_element")
        self._emit()

    def process_batch(self, values: list[Any], timestamps: list[int] | None) -> None:
        self._run(self.fn.process_element1, self.keys[0] if self.keys else None, values, timestamps)

    def process_batch2(self, values: list[Any], timestamps: list[int] | None) -> None:
        self._run(self.fn.process_element2, self.keys[1] if self.keys else None, values, timestamps)

    def _emit(self) -> None:
        out, ts = self.collector.take()
        if out:
            self.out(out, ts)

    def _on_timer(self, key: Any, ts: int, domain: int) -> None:
        assert self.backend is not None
        self.backend.current_key = key
        self.ctx.ts = ts
        self.ctx.domain = domain
        on_timer = getattr(self.fn, "on_timer", None)
        if on_timer is not None:
            self.collector.collect(on_timer(ts, self.ctx), ts if domain == TimeDomain.EVENT_TIME else None,
                                   "on_timer")

    def _on_event_timer(self, key: Any, ns: Any, ts: int) -> None:
        self._on_timer(key, ts, TimeDomain.EVENT_TIME)

    def _on_processing_timer(self, key: Any, ns: Any, ts: int) -> None:
        self._on_timer(key, ts, TimeDomain.PROCESSING_TIME)
        self._emit()

    def snapshot_state(self, checkpoint_id: int, canonical: bool) -> tuple[Any, bytes | None]:
        if self.keys is None:
            return None, None
        return super().snapshot_state(checkpoint_id, canonical)

    def process_watermark(self, watermark: int) -> None:
        if self.timers is not None:
            self.timers.advance_watermark(watermark)
            self._emit()
        super().process_watermark(watermark)
