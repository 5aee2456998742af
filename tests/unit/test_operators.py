"""Runtime operators (taskmanager/operators): stateless, keyed, sinks, chains."""

from __future__ import annotations

import asyncio
import os
import pickle
from collections import namedtuple
from typing import Any

import pytest

from taskmanager.operators.chain import build_chain
from taskmanager.operators.keyed import KeyedProcessOperator, KeyedReduceOperator
from taskmanager.operators.sink import CollectOperator, SinkOperator
from taskmanager.operators.stateless import FilterOperator, FlatMapOperator, MapOperator, ProcessOperator
from tests.unit.recorder import Recorder
from weir.common import Row
from weir.common.serialization import Encoder
from weir.datastream import StreamExecutionEnvironment
from weir.datastream.connectors import FileSink, PrintSink
from weir.datastream.data_stream import _field_aggregate
from weir.datastream.functions import (
    FilterFunction,
    FlatMapFunction,
    KeyedProcessFunction,
    KeySelector,
    MapFunction,
    ProcessFunction,
    ReduceFunction,
    RuntimeContext,
    SinkFunction,
)
from weir.datastream.state import ValueStateDescriptor
from weir.graph.jobgraph import OperatorSpec


def with_runtime(op: Any) -> Any:
    """Give an operator what its task would: processing time, a hashmap keyed backend, side outputs."""
    from state.memory import HashMapKeyedStateBackend
    from taskmanager.operators.base import OperatorRuntime
    from taskmanager.timers import ProcessingTimeService

    op.runtime = OperatorRuntime(ProcessingTimeService(), lambda name: HashMapKeyedStateBackend(), lambda idle: None)
    op.uid = "op"
    return op


def prepared(op: Any) -> Any:
    with_runtime(op).open(ctx())
    return op


def ctx(index: int = 0, parallelism: int = 1, name: str = "task") -> RuntimeContext:
    return RuntimeContext(name, index, parallelism, 128)


# ---- map / filter / flat_map / process ----


def test_map_with_lambda_and_function_object_keeps_timestamps():
    class Double(MapFunction):
        def map(self, value):
            return value * 2

    for fn in (lambda x: x * 2, Double()):
        rec = Recorder()
        op = MapOperator(rec, fn)
        op.open(ctx())
        op.process_batch([1, 2, 3], None)
        op.process_batch([4], [40])
        assert rec.calls == [([2, 4, 6], None), ([8], [40])]


def test_function_lifecycle_open_close():
    events = []

    class F(MapFunction):
        def open(self, runtime_context):
            events.append(("open", runtime_context.get_index_of_this_subtask()))

        def map(self, value):
            return value

        def close(self):
            events.append(("close",))

    op = MapOperator(Recorder(), F())
    op.open(ctx(index=3, parallelism=4))
    op.close()
    assert events == [("open", 3), ("close",)]


def test_filter_with_and_without_timestamps():
    class Even(FilterFunction):
        def filter(self, value):
            return value % 2 == 0

    rec = Recorder()
    op = FilterOperator(rec, Even())
    op.process_batch([1, 2, 3, 4], None)
    op.process_batch([5, 6, 7, 8], [50, 60, 70, 80])
    op.process_batch([9, 11], None)  # nothing passes: nothing emitted
    op.process_batch([13], [130])
    assert rec.calls == [([2, 4], None), ([6, 8], [60, 80])]


def test_flat_map_generator_list_tuple_none():
    def fn(v):
        if v == 0:
            return None  # no output
        if v == 1:
            return [v, v]
        if v == 2:
            return (v,)
        return (v * 10 + i for i in range(v))

    rec = Recorder()
    op = FlatMapOperator(rec, fn)
    op.process_batch([0, 1, 2, 3], None)
    assert rec.calls == [([1, 1, 2, 30, 31, 32], None)]
    op.process_batch([0, 1, 3], [100, 101, 103])
    assert rec.calls[1] == ([1, 1, 30, 31, 32], [101, 101, 103, 103, 103])


def test_flat_map_function_object_yielding():
    class Split(FlatMapFunction):
        def flat_map(self, value):
            yield from value.split()

    rec = Recorder()
    FlatMapOperator(rec, Split()).process_batch(["a b", "", "c"], [1, 2, 3])
    assert rec.calls == [(["a", "b", "c"], [1, 1, 3])]


def test_flat_map_all_empty_emits_nothing():
    rec = Recorder()
    op = FlatMapOperator(rec, lambda v: [])
    op.process_batch([1, 2], None)
    op.process_batch([1, 2], [1, 2])
    assert rec.calls == []


@pytest.mark.parametrize("timestamps", [None, [1]])
@pytest.mark.parametrize("bad", ["abc", b"abc", 42])
def test_flat_map_returning_non_iterable_or_str_raises(bad, timestamps):
    op = FlatMapOperator(Recorder(), lambda v: bad)
    with pytest.raises(TypeError, match="flat_map"):
        op.process_batch(["x"], timestamps)


def test_process_function_sees_timestamps_and_keeps_them():
    class P(ProcessFunction):
        def process_element(self, value, ctx):
            if value < 0:
                return None
            yield (value, ctx.timestamp())
            if value > 1:
                yield (value, "again")

    rec = Recorder()
    op = prepared(ProcessOperator(rec, P()))
    op.process_batch([1, -1, 2], [10, 20, 30])
    assert rec.calls == [([(1, 10), (2, 30), (2, "again")], [10, 30, 30])]
    op.process_batch([2], None)
    assert rec.calls[1] == ([(2, None), (2, "again")], None)
    op.process_batch([-5], None)
    assert len(rec.calls) == 2


def test_process_timer_service_requires_keyed_stream():
    class P(ProcessFunction):
        def process_element(self, value, ctx):
            ctx.timer_service()

    with pytest.raises(RuntimeError, match="key_by"):
        prepared(ProcessOperator(Recorder(), P())).process_batch([1], None)


# ---- keyed reduce and field aggregates ----


def test_keyed_reduce_is_rolling_per_key():
    class Add(ReduceFunction):
        def reduce(self, a, b):
            return (a[0], a[1] + b[1])

    rec = Recorder()
    op = prepared(KeyedReduceOperator(rec, Add(), lambda v: v[0]))
    op.process_batch([("a", 1), ("b", 10), ("a", 2)], None)
    op.process_batch([("b", 5), ("a", 3)], [7, 8])
    assert rec.calls == [
        ([("a", 1), ("b", 10), ("a", 3)], None),
        ([("b", 15), ("a", 6)], [7, 8]),
    ]


def test_keyed_reduce_with_key_selector_object():
    class Mod(KeySelector):
        def get_key(self, value):
            return value % 3

    rec = Recorder()
    op = prepared(KeyedReduceOperator(rec, lambda a, b: a + b, Mod()))
    op.process_batch(list(range(9)), None)
    # rolling sums per residue class: 0,1,2 | 0+3,1+4,2+5 | 3+6,5+7,7+8
    assert rec.values == [0, 1, 2, 3, 5, 7, 9, 12, 15]


def rolling(kind: str, position: Any, records: list[Any], key=lambda v: 0) -> list[Any]:
    rec = Recorder()
    prepared(KeyedReduceOperator(rec, _field_aggregate(kind, position), key)).process_batch(records, None)
    return rec.values


def test_field_aggregate_tuples_only_the_field_changes():
    recs = [("a", 3, "first"), ("a", 1, "second"), ("a", 5, "third")]
    assert rolling("sum", 1, recs) == [("a", 3, "first"), ("a", 4, "first"), ("a", 9, "first")]
    assert rolling("min", 1, recs) == [("a", 3, "first"), ("a", 1, "first"), ("a", 1, "first")]
    assert rolling("max", 1, recs) == [("a", 3, "first"), ("a", 3, "first"), ("a", 5, "first")]


def test_field_aggregate_per_key():
    recs = [("a", 1), ("b", 100), ("a", 2), ("b", 50), ("a", 4)]
    assert rolling("sum", 1, recs, key=lambda v: v[0]) == [("a", 1), ("b", 100), ("a", 3), ("b", 150), ("a", 7)]
    assert rolling("min", 1, recs, key=lambda v: v[0]) == [("a", 1), ("b", 100), ("a", 1), ("b", 50), ("a", 1)]


def test_field_aggregate_tuple_by_name_raises():
    with pytest.raises(TypeError, match="index"):
        rolling("sum", "x", [(1, 2), (1, 3)])


def test_field_aggregate_rows_by_name_and_index():
    recs = [Row(k="a", v=3, tag="first"), Row(k="a", v=1, tag="second"), Row(k="a", v=5, tag="third")]
    out = rolling("sum", "v", recs)
    assert [r.v for r in out] == [3, 4, 9]
    assert [r.tag for r in out] == ["first"] * 3
    assert [r.k for r in out] == ["a"] * 3
    assert all(r.as_dict() == {"k": "a", "v": r.v, "tag": "first"} for r in out)
    out = rolling("max", 1, recs)
    assert [tuple(r) for r in out] == [("a", 3, "first"), ("a", 3, "first"), ("a", 5, "first")]
    positional = [Row("a", 2), Row("a", 1)]
    assert [tuple(r) for r in rolling("min", 1, positional)] == [("a", 2), ("a", 1)]
    # inputs are not modified
    assert [r.v for r in recs] == [3, 1, 5]


def test_field_aggregate_lists_and_dicts():
    lists = [["a", 2, "x"], ["a", 7, "y"], ["a", 1, "z"]]
    assert rolling("sum", 1, lists) == [["a", 2, "x"], ["a", 9, "x"], ["a", 10, "x"]]
    assert rolling("max", 1, lists) == [["a", 2, "x"], ["a", 7, "x"], ["a", 7, "x"]]
    assert lists == [["a", 2, "x"], ["a", 7, "y"], ["a", 1, "z"]], "inputs must not be mutated"
    dicts = [{"k": "a", "n": 2, "t": 1}, {"k": "a", "n": 5, "t": 2}, {"k": "a", "n": 3, "t": 3}]
    assert rolling("sum", "n", dicts) == [
        {"k": "a", "n": 2, "t": 1},
        {"k": "a", "n": 7, "t": 1},
        {"k": "a", "n": 10, "t": 1},
    ]
    assert rolling("min", "n", dicts) == [{"k": "a", "n": 2, "t": 1}] * 3
    assert dicts[0] == {"k": "a", "n": 2, "t": 1}


def test_field_aggregate_plain_numbers():
    nums = [5, 3, 8, 1]
    assert rolling("sum", 0, nums) == [5, 8, 16, 17]
    assert rolling("min", 0, nums) == [5, 3, 3, 1]
    assert rolling("max", 0, nums) == [5, 5, 8, 8]
    with pytest.raises(TypeError):
        rolling("sum", 1, [1, 2])


def test_field_aggregate_keeps_namedtuple_type():
    Sale = namedtuple("Sale", "shop amount")
    out = rolling("sum", 1, [Sale("s", 1), Sale("s", 2)])
    assert out == [Sale("s", 1), Sale("s", 3)]
    assert all(type(r) is Sale for r in out)


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("sum", [("a", 4, "x"), ("b", 1, "y"), ("a", 6, "x"), ("b", 10, "y")]),
        ("min", [("a", 4, "x"), ("b", 1, "y"), ("a", 2, "x"), ("b", 1, "y")]),
        ("max", [("a", 4, "x"), ("b", 1, "y"), ("a", 4, "x"), ("b", 9, "y")]),
    ],
)
def test_keyed_stream_aggregates_through_the_api(method, expected):
    env = StreamExecutionEnvironment.get_execution_environment()
    records = [("a", 4, "x"), ("b", 1, "y"), ("a", 2, "z"), ("b", 9, "w")]
    getattr(env.from_collection(records).key_by(lambda v: v[0]), method)(1).print()
    graph = env.get_job_graph()
    (spec,) = [op for v in graph.vertices for op in v.operators if op.kind == "reduce"]
    rec = Recorder()
    op = prepared(KeyedReduceOperator(rec, spec.fn, spec.key_selector))
    op.process_batch(records, None)
    assert rec.values == expected


# ---- keyed process with state ----


class CountPerKey(KeyedProcessFunction):
    def open(self, runtime_context):
        self.count = runtime_context.get_state(ValueStateDescriptor("count"))

    def process_element(self, value, ctx):
        n = (self.count.value() or 0) + 1
        self.count.update(n)
        yield (ctx.get_current_key(), n, ctx.timestamp())


def test_keyed_process_value_state_per_key():
    rec = Recorder()
    op = prepared(KeyedProcessOperator(rec, CountPerKey(), lambda v: v[0]))
    op.process_batch([("a", 1), ("b", 1), ("a", 2)], None)
    op.process_batch([("a", 3), ("c", 1), ("b", 2)], [10, 20, 30])
    assert rec.calls == [
        ([("a", 1, None), ("b", 1, None), ("a", 2, None)], None),
        ([("a", 3, 10), ("c", 1, 20), ("b", 2, 30)], [10, 20, 30]),
    ]


def test_keyed_process_state_clear_and_multiple_outputs():
    class Dedupe(KeyedProcessFunction):
        def open(self, runtime_context):
            self.seen = runtime_context.get_state(ValueStateDescriptor("seen"))

        def process_element(self, value, ctx):
            if value[1] == "reset":
                self.seen.clear()
                return None
            if self.seen.value() is None:
                self.seen.update(True)
                return [value, value]  # a list works as well as a generator
            return None

    rec = Recorder()
    op = prepared(KeyedProcessOperator(rec, Dedupe(), lambda v: v[0]))
    op.process_batch([("a", 1), ("a", 2), ("b", 1), ("a", "reset"), ("a", 3)], None)
    assert rec.values == [("a", 1), ("a", 1), ("b", 1), ("b", 1), ("a", 3), ("a", 3)]


def test_keyed_process_event_timers_fire_once_per_key_and_time_in_order():
    class T(KeyedProcessFunction):
        def process_element(self, value, ctx):
            ctx.timer_service().register_event_time_timer(value[1])
            ctx.timer_service().register_event_time_timer(value[1])  # twice: still one firing

        def on_timer(self, timestamp, ctx):
            yield (ctx.get_current_key(), timestamp, ctx.timestamp())

    rec = Recorder()
    op = prepared(KeyedProcessOperator(rec, T(), lambda v: v[0]))
    op.process_batch([("a", 30), ("b", 10), ("a", 10), ("b", 50)], None)
    op.process_watermark(29)
    op.process_watermark(100)
    assert rec.calls == [
        ([("b", 10, 10), ("a", 10, 10)], [10, 10]),
        ([("a", 30, 30), ("b", 50, 50)], [30, 50]),
    ]


def test_keyed_state_outside_keyed_stream_is_a_clear_error():
    with pytest.raises(RuntimeError, match="key_by"):
        ctx().get_state(ValueStateDescriptor("x"))


# ---- sinks ----


def test_sink_function_gets_records_timestamps_and_lifecycle():
    events: list[Any] = []

    class Collect(SinkFunction):
        def open(self, runtime_context):
            events.append("open")

        def invoke(self, value, context):
            events.append((value, context.timestamp()))

        def close(self):
            events.append("close")

    op = SinkOperator(Collect())
    op.open(ctx())
    op.process_batch(["a", "b"], None)
    op.process_batch(["c"], [42])
    op.end_input()
    op.close()
    assert events == ["open", ("a", None), ("b", None), ("c", 42), "close"]
    assert op.records == 3


def test_sink_plain_callable():
    got: list[Any] = []
    op = SinkOperator(got.append)
    op.open(ctx())
    op.process_batch([1, 2], None)
    op.process_batch([3], [30])
    op.end_input()
    op.close()
    assert got == [1, 2, 3]
    assert op.records == 3


def visible(path) -> list[str]:
    return sorted(f for f in os.listdir(path) if not f.startswith("."))


def test_file_sink_hidden_until_end_of_input(tmp_path):
    base = tmp_path / "out"
    sink = FileSink.for_row_format(str(base), Encoder.simple_string_encoder()).build()
    op = SinkOperator(sink)
    op.open(ctx(index=1, parallelism=2))
    op.process_batch([1, "two"], None)
    op.process_batch([Row(a=3)], [5])
    assert visible(base) == []
    hidden = os.listdir(base)
    assert len(hidden) == 1 and hidden[0].startswith(".") and hidden[0].endswith(".inprogress")
    op.end_input()
    op.close()
    (name,) = visible(base)
    assert os.listdir(base) == [name], "the in-progress file is gone"
    assert name.startswith("part-") and name.endswith("-1-0")  # subtask index 1
    assert (base / name).read_text() == "1\ntwo\nRow(a=3)\n"


def test_file_sink_subtasks_write_separate_files(tmp_path):
    base = tmp_path / "out"
    sink = FileSink.for_row_format(str(base), Encoder.simple_string_encoder()).build()
    ops = [SinkOperator(sink) for _ in range(2)]
    for i, op in enumerate(ops):
        op.open(ctx(index=i, parallelism=2))
        op.process_batch([f"s{i}-r{j}" for j in range(3)], None)
        op.end_input()
        op.close()
    names = visible(base)
    assert len(names) == 2
    lines = sorted(line for n in names for line in (base / n).read_text().splitlines())
    assert lines == sorted(f"s{i}-r{j}" for i in range(2) for j in range(3))


def test_file_sink_closed_without_finish_stays_invisible(tmp_path):
    base = tmp_path / "out"
    op = SinkOperator(FileSink(str(base), Encoder.simple_string_encoder()))
    op.open(ctx())
    op.process_batch(["x"], None)
    op.close()  # failure / cancel path: no end_input
    assert visible(base) == []


@pytest.mark.parametrize(
    ("identifier", "index", "parallelism", "prefix"),
    [
        (None, 0, 1, ""),
        (None, 2, 3, "3> "),
        ("orders", 0, 1, "orders> "),
        ("orders", 1, 4, "orders:2> "),
    ],
)
def test_print_sink_prefix(capsys, identifier, index, parallelism, prefix):
    op = SinkOperator(PrintSink(identifier))
    op.open(ctx(index=index, parallelism=parallelism))
    op.process_batch([1, "a"], None)
    op.end_input()
    op.close()
    captured = capsys.readouterr()
    assert captured.out == f"{prefix}1\n{prefix}a\n"
    assert captured.err == ""


def test_print_sink_to_stderr(capsys):
    op = SinkOperator(PrintSink("e", stderr=True))
    op.open(ctx())
    op.process_batch([7], None)
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", "e> 7\n")


def test_collect_operator_pushes_full_buffers_then_end():
    pushes: list[tuple[bytes, bool]] = []

    async def push(data: bytes, end: bool) -> None:
        pushes.append((data, end))

    async def main():
        op = CollectOperator(push, buffer_records=3)
        op.process_batch([1, 2], None)
        await op.drain()
        assert pushes == []
        op.process_batch([3, 4], None)
        await op.drain()
        op.process_batch([5], None)
        op.end_input()
        await op.finish()

    asyncio.run(main())
    assert [(pickle.loads(d) if d else None, e) for d, e in pushes] == [
        ([1, 2, 3, 4], False),
        ([5], False),
        (None, True),
    ]


# ---- chains ----


def test_build_chain_links_operators_head_first():
    got: list[Any] = []
    specs = [
        OperatorSpec("source", "Source", 0),
        OperatorSpec("map", "Inc", 1, fn=lambda x: x + 1),
        OperatorSpec("filter", "Odd", 2, fn=lambda x: x % 2 == 1),
        OperatorSpec("flat_map", "Dup", 3, fn=lambda x: [x, x]),
        OperatorSpec("sink", "Sink", 4, fn=got.append),
    ]
    tail = Recorder()
    ops = build_chain(specs, tail, lambda wm: None, lambda tid: with_runtime(MapOperator(tail, str)).runtime,
                      None, 100)
    assert [type(o) for o in ops] == [MapOperator, FilterOperator, FlatMapOperator, SinkOperator]
    assert [o.name for o in ops] == ["Inc", "Odd", "Dup", "Sink"]
    for o in ops:
        o.open(ctx())
    ops[0].process_batch([0, 1, 2, 3, 4], None)
    assert got == [1, 1, 3, 3, 5, 5]
    assert tail.calls == []  # a sink ends the chain


def test_build_chain_tail_output_and_keyed_ops():
    specs = [
        OperatorSpec("map", "M", 0, fn=lambda x: (x % 2, x)),
        OperatorSpec("reduce", "R", 1, fn=lambda a, b: (a[0], a[1] + b[1]), key_selector=lambda v: v[0]),
    ]
    tail = Recorder()
    ops = build_chain(specs, tail, lambda wm: None, lambda tid: with_runtime(MapOperator(tail, str)).runtime,
                      None, 100)
    assert [type(o) for o in ops] == [MapOperator, KeyedReduceOperator]
    for o in ops:
        o.open(ctx())
    ops[0].process_batch([1, 2, 3, 4], [1, 2, 3, 4])
    assert tail.calls == [([(1, 1), (0, 2), (1, 4), (0, 6)], [1, 2, 3, 4])]


def test_build_chain_errors():
    with pytest.raises(RuntimeError, match="collect"):
        build_chain([OperatorSpec("collect", "C", 0)], Recorder(), lambda wm: None, lambda tid: None, None, 10)
    with pytest.raises(ValueError, match="bogus"):
        build_chain([OperatorSpec("bogus", "B", 0)], Recorder(), lambda wm: None, lambda tid: None, None, 10)


@pytest.mark.parametrize("bad", ["text", b"bytes", 42])
def test_keyed_process_results_must_be_iterables_of_records(bad):
    """process_element / on_timer may return None, a list, a tuple, a generator or any other iterable; a string,
    bytes or a non-iterable is a mistake (yield forgotten, a record returned bare) named with its function."""

    class Bad(KeyedProcessFunction):
        def process_element(self, value, ctx):
            ctx.timer_service().register_event_time_timer(value[1])
            return iter([value]) if value[0] == "ok" else bad

        def on_timer(self, timestamp, ctx):
            return bad

    rec = Recorder()
    op = prepared(KeyedProcessOperator(rec, Bad(), lambda v: v[0]))
    op.process_batch([("ok", 5)], None)
    assert rec.values == [("ok", 5)]
    with pytest.raises(TypeError, match=r"on_timer must yield or return an iterable of records, got"):
        op.process_watermark(10)
    with pytest.raises(TypeError, match=r"process_element must yield or return an iterable of records, got"):
        op.process_batch([("bad", 20)], None)
