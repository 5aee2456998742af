"""Instantiate a vertex's operator chain: operators linked tail-first so each emits into the next."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from taskmanager.operators.base import Emit, Operator
from taskmanager.operators.keyed import KeyedProcessOperator, KeyedReduceOperator
from taskmanager.operators.sink import CollectOperator, SinkOperator
from taskmanager.operators.stateless import FilterOperator, FlatMapOperator, MapOperator, ProcessOperator
from weir.graph.jobgraph import OperatorSpec


def build_chain(
    specs: list[OperatorSpec],
    tail_out: Emit,
    push_results: Callable[[bytes, bool], Awaitable[None]] | None,
    buffer_records: int,
) -> list[Operator]:
    """Operators for ``specs`` minus a leading source (the task drives sources itself), head first."""
    ops: list[Operator] = []
    out: Emit = tail_out
    for spec in reversed(specs):
        if spec.kind == "source":
            continue
        op = _make(spec, out, push_results, buffer_records)
        ops.append(op)
        out = op.process_batch
    ops.reverse()
    return ops


def _make(
    spec: OperatorSpec,
    out: Emit,
    push_results: Callable[[bytes, bool], Awaitable[None]] | None,
    buffer_records: int,
) -> Operator:
    k = spec.kind
    op: Any
    if k == "map":
        op = MapOperator(out, spec.fn)
    elif k == "filter":
        op = FilterOperator(out, spec.fn)
    elif k == "flat_map":
        op = FlatMapOperator(out, spec.fn)
    elif k == "process":
        op = ProcessOperator(out, spec.fn)
    elif k == "reduce":
        op = KeyedReduceOperator(out, spec.fn, spec.key_selector)
    elif k == "keyed_process":
        op = KeyedProcessOperator(out, spec.fn, spec.key_selector)
    elif k == "sink":
        op = SinkOperator(spec.fn)
    elif k == "collect":
        if push_results is None:
            raise RuntimeError("a collect sink needs a JobManager to push results to")
        op = CollectOperator(push_results, buffer_records)
    else:
        raise ValueError(f"unknown operator kind {k!r}")
    op.name = spec.name
    return op  # type: ignore[no-any-return]
