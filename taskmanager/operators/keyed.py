"""Keyed operators: the rolling reduce (reduce/sum/min/max) and KeyedProcessFunction."""

from __future__ import annotations

from typing import Any

from state.memory import HashMapKeyedStateBackend
from taskmanager.operators.base import Emit, Operator
from taskmanager.operators.stateless import _results
from weir.datastream.functions import (
    KeyedProcessFunction,
    KeySelector,
    ReduceFunction,
    RuntimeContext,
    callable_of,
)

_MISSING = object()


class KeyedReduceOperator(Operator):
    """Rolling reduce: one output per input, the reduction so far of that record's key."""

    name = "reduce"

    def __init__(self, out: Emit, fn: Any, key_selector: Any) -> None:
        super().__init__(out)
        self.fn = fn
        self.f = callable_of(fn, ReduceFunction, "reduce")
        self.key = callable_of(key_selector, KeySelector, "get_key")
        self.state: dict[Any, Any] = {}

    def process_batch(self, values: list[Any], timestamps: list[int] | None) -> None:
        f, key, state = self.f, self.key, self.state
        get = state.get
        out: list[Any] = []
        append = out.append
        for v in values:
            k = key(v)
            acc = get(k, _MISSING)
            if acc is not _MISSING:
                v = f(acc, v)
            state[k] = v
            append(v)
        self.out(out, timestamps)


class _KeyedContext(KeyedProcessFunction.Context):
    __slots__ = ("ts", "backend")

    def __init__(self, backend: HashMapKeyedStateBackend) -> None:
        self.ts: int | None = None
        self.backend = backend

    def timestamp(self) -> int | None:
        return self.ts

    def get_current_key(self) -> Any:
        return self.backend.current_key

    def timer_service(self) -> Any:
        raise NotImplementedError("timers are not available yet in this version of weir")


class KeyedProcessOperator(Operator):
    name = "keyed_process"

    def __init__(self, out: Emit, fn: KeyedProcessFunction, key_selector: Any) -> None:
        super().__init__(out)
        self.fn = fn
        self.f = fn.process_element
        self.key = callable_of(key_selector, KeySelector, "get_key")
        self.backend = HashMapKeyedStateBackend()
        self.ctx = _KeyedContext(self.backend)

    def open(self, ctx: RuntimeContext) -> None:
        ctx._keyed_state_store = self.backend
        super().open(ctx)

    def process_batch(self, values: list[Any], timestamps: list[int] | None) -> None:
        f, ctx, key, backend = self.f, self.ctx, self.key, self.backend
        out: list[Any] = []
        ts_out: list[int] | None = None if timestamps is None else []
        for i, v in enumerate(values):
            backend.current_key = key(v)
            ctx.ts = None if timestamps is None else timestamps[i]
            n = len(out)
            out.extend(_results(f(v, ctx), "process_element"))
            if ts_out is not None:
                ts_out.extend([ctx.ts] * (len(out) - n))  # type: ignore[list-item]
        if out:
            self.out(out, ts_out)
