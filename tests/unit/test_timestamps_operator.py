"""TimestampsAndWatermarksOperator: assignment, periodic watermarks, idleness, bad timestamps."""

from __future__ import annotations

from typing import Any

import pytest

from state.memory import HashMapKeyedStateBackend
from taskmanager.operators.base import OperatorRuntime
from taskmanager.operators.timestamps import InvalidTimestampError, TimestampsAndWatermarksOperator
from taskmanager.timers import MAX_TIME, ProcessingTimeService
from weir.common import Duration
from weir.common.watermark_strategy import WatermarkStrategy
from weir.datastream.functions import RuntimeContext


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self) -> int:
        return self.now


def make(strategy: Any, config: dict[str, str] | None = None) -> tuple[Any, Clock, list, list, list, list]:
    clock = Clock()
    out: list = []
    wms: list = []
    status: list = []
    side: list = []
    op = TimestampsAndWatermarksOperator(lambda v, t: out.append((v, t)), strategy)
    op.emit_watermark = wms.append
    op.runtime = OperatorRuntime(ProcessingTimeService(clock), lambda n: HashMapKeyedStateBackend(), status.append,
                                 side_outputs={"invalid-timestamps": lambda v, t: side.append(v)},
                                 config=config or {"pipeline.auto-watermark-interval": "100"})
    op.open(RuntimeContext("t", 0, 1, 128))
    return op, clock, out, wms, status, side


def tick(op: Any, clock: Clock, ms: int) -> None:
    clock.now += ms
    op.runtime.processing_time.run_due()


def test_assigns_timestamps_and_emits_bounded_watermarks_periodically() -> None:
    s = WatermarkStrategy.for_bounded_out_of_orderness(Duration.of_millis(50)).with_timestamp_assigner(
        lambda v, _: v * 10)
    op, clock, out, wms, _, _ = make(s)
    op.process_batch([3, 1, 7], None)
    assert out == [([3, 1, 7], [30, 10, 70])]
    assert wms == []  # only periodically
    tick(op, clock, 100)
    assert wms == [70 - 50 - 1]
    tick(op, clock, 100)
    assert wms == [19]  # no advance, nothing emitted
    op.process_batch([2], None)  # older: the watermark never goes back
    tick(op, clock, 100)
    assert wms == [19]
    op.process_batch([20], None)
    tick(op, clock, 100)
    assert wms == [19, 149]


def test_upstream_watermarks_are_replaced_except_the_final_one() -> None:
    op, clock, out, wms, _, _ = make(WatermarkStrategy.for_monotonous_timestamps())
    op.process_watermark(5)
    assert wms == []
    op.process_watermark(MAX_TIME)
    assert wms == [MAX_TIME]


def test_idleness_marks_the_output_idle_then_active() -> None:
    s = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(lambda v, _: v).with_idleness(
        Duration.of_millis(300))
    op, clock, out, wms, status, _ = make(s)
    op.process_batch([1], None)
    tick(op, clock, 100)
    tick(op, clock, 100)
    assert status == []
    tick(op, clock, 100)
    tick(op, clock, 100)
    assert status == [True]
    op.process_batch([2], None)
    assert status == [True, False]


def test_a_failing_assigner_fails_with_the_record_or_diverts_it() -> None:
    s = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(lambda v, _: v["ts"])
    op, *_ = make(s)
    with pytest.raises(InvalidTimestampError, match="'oops'"):
        op.process_batch([{"ts": 1}, {"oops": 2}], None)
    op, clock, out, wms, status, side = make(
        s, {"pipeline.auto-watermark-interval": "100", "pipeline.invalid-timestamp-policy": "side-output"})
    op.process_batch([{"ts": 1}, {"oops": 2}, {"ts": "noon"}, {"ts": 3.0}], None)
    assert out == [([{"ts": 1}, {"ts": 3.0}], [1, 3])]
    assert side == [[{"oops": 2}, {"ts": "noon"}]]
    assert op.invalid == 2
