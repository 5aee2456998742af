"""Instantiate a vertex's operator chain: operators linked tail-first so each emits into the next."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from taskmanager.operators.base import Emit, Operator, OperatorRuntime
from taskmanager.operators.keyed import KeyedProcessOperator, KeyedReduceOperator
from taskmanager.operators.sink import CollectOperator, SinkOperator
from taskmanager.operators.stateless import FilterOperator, FlatMapOperator, MapOperator, ProcessOperator
from taskmanager.operators.timestamps import TimestampsAndWatermarksOperator
from taskmanager.operators.two_input import CoFlatMapOperator, CoMapOperator, CoProcessOperator
from taskmanager.operators.window import WindowOperator
from weir.graph.jobgraph import OperatorSpec


def build_chain(
    specs: list[OperatorSpec],
    tail_out: Emit,
    tail_watermark: Callable[[int], None],
    runtime_for: Callable[[int], OperatorRuntime],
    push_results: Callable[[bytes, bool], Awaitable[None]] | None,
    buffer_records: int,
) -> list[Operator]:
    """Operators for ``specs`` (a leading source is driven by the task itself), head first.

    A source with a watermark strategy gets a TimestampsAndWatermarksOperator right after it, as Flink's
    ``from_source(source, strategy, name)`` does inside the source operator.
    """
    specs = list(specs)
    if specs and specs[0].kind == "source":
        src = specs[0]
        strategy = src.params.get("watermark_strategy")
        specs = specs[1:]
        if strategy is not None:
            specs.insert(0, OperatorSpec("timestamps", "Timestamps/Watermarks", src.transformation_id,
                                         uid=f"{src.uid or f'op{src.transformation_id}'}-watermarks",
                                         params={"strategy": strategy}))
    ops: list[Operator] = []
    out: Emit = tail_out
    wm: Callable[[int], None] = tail_watermark
    for spec in reversed(specs):
        op = _make(spec, out, push_results, buffer_records)
        op.name = spec.name
        op.uid = spec.uid or f"op{spec.transformation_id}"
        op.emit_watermark = wm
        op.runtime = runtime_for(spec.transformation_id)
        ops.append(op)
        out = op.process_batch
        wm = op.process_watermark
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
    elif k == "timestamps":
        op = TimestampsAndWatermarksOperator(out, spec.params["strategy"])
    elif k == "window":
        op = WindowOperator(out, spec.key_selector, spec.params)
    elif k == "co_map":
        op = CoMapOperator(out, spec.fn)
    elif k == "co_flat_map":
        op = CoFlatMapOperator(out, spec.fn)
    elif k in ("co_process", "keyed_co_process"):
        op = CoProcessOperator(out, spec.fn, spec.params.get("key_selectors"))
    elif k in ("map_batches", "filter_batches", "aggregate_batches"):
        from taskmanager.operators.vectorized import make_operator  # imports numpy/pyarrow: only when used

        op = make_operator(k, out, spec.fn, spec.key_selector, spec.params)
    elif k == "sink":
        op = SinkOperator(spec.fn)
    elif k == "collect":
        if push_results is None:
            raise RuntimeError("a collect sink needs a JobManager to push results to")
        op = CollectOperator(push_results, buffer_records)
    else:
        raise ValueError(f"unknown operator kind {k!r}")
    return op  # type: ignore[no-any-return]
