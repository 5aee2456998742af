"""The vectorized path: records <-> columns (weir.common.columnar), the map_batches/filter_batches operators,
columns handed on inside a chain, and aggregate_batches against the record-at-a-time rolling sum/min/max."""

from __future__ import annotations

import random
from collections import namedtuple
from typing import Any

import pytest

pa = pytest.importorskip("pyarrow")
np = pytest.importorskip("numpy")
pc = pytest.importorskip("pyarrow.compute")

from state.memory import HashMapKeyedStateBackend  # noqa: E402
from taskmanager.operators import vectorized  # noqa: E402
from taskmanager.operators.base import OperatorRuntime  # noqa: E402
from taskmanager.operators.chain import build_chain  # noqa: E402
from taskmanager.operators.keyed import KeyedReduceOperator  # noqa: E402
from taskmanager.operators.stateless import MapOperator  # noqa: E402
from taskmanager.operators.vectorized import (  # noqa: E402
    AggregateBatchesOperator,
    FilterBatchesOperator,
    MapBatchesOperator,
    _Groups,
    _rolling,
)
from taskmanager.timers import ProcessingTimeService  # noqa: E402
from tests.unit.recorder import Recorder  # noqa: E402
from weir.common import Row, Types  # noqa: E402
from weir.common.columnar import (  # noqa: E402
    ColumnarError,
    batch_to_records,
    output_shape,
    records_to_batch,
    to_schema,
)
from weir.datastream import StreamExecutionEnvironment  # noqa: E402
from weir.datastream.data_stream import _field_aggregate  # noqa: E402
from weir.datastream.functions import RuntimeContext  # noqa: E402
from weir.graph.deployment import OperatorSubtaskState  # noqa: E402
from weir.graph.jobgraph import OperatorSpec, compile_job_graph  # noqa: E402

Point = namedtuple("Point", ["x", "y"])


def runtime(_: int = 0) -> OperatorRuntime:
    return OperatorRuntime(ProcessingTimeService(), lambda name: HashMapKeyedStateBackend(), lambda idle: None)


def ctx() -> RuntimeContext:
    return RuntimeContext("task", 0, 1, 128)


def prepared(op: Any) -> Any:
    op.runtime = runtime()
    op.uid = "op"
    op.open(ctx())
    return op


def map_batches(out: Any, fn: Any, schema: Any = None, batch_format: str = "arrow",
                output_records: str = "same") -> MapBatchesOperator:
    return prepared(MapBatchesOperator(out, fn, {"schema": to_schema(schema), "batch_format": batch_format,
                                                 "output_records": output_records}))


def chain(*specs: OperatorSpec) -> tuple[list[Any], Recorder, list[int]]:
    rec = Recorder()
    watermarks: list[int] = []
    ops = build_chain(list(specs), rec, watermarks.append, runtime, None, 1024)
    for op in ops:
        op.open(ctx())
    return ops, rec, watermarks


def spec(kind: str, tid: int, fn: Any, **params: Any) -> OperatorSpec:
    if kind in ("map_batches", "filter_batches"):
        params = {"schema": None, "batch_format": "arrow", **params}
    return OperatorSpec(kind, kind, tid, fn=fn, params=params)


# ---- records <-> columns ----

@pytest.mark.parametrize("values,arrow_type", [
    ([1, 2, 3], pa.int64()),
    ([1.5, 2.0], pa.float64()),
    ([1, 2.5], pa.float64()),
    (["a", "b"], pa.string()),
    ([1, None, 3], pa.int64()),
    ([None, None], pa.null()),
    ([True, False], pa.bool_()),
])
def test_schema_inference_of_scalars(values: list[Any], arrow_type: Any) -> None:
    batch, shape = records_to_batch(values)
    assert batch.schema.names == ["f0"] and batch.schema.types == [arrow_type]
    assert batch.column(0).to_pylist() == values
    assert shape.kind == "value"
    assert batch_to_records(batch, output_shape(shape, batch.schema.names)) == values


def test_schema_inference_of_tuples_with_nulls_per_field() -> None:
    recs = [(1, 1.5, "a", None), (None, 2.5, None, None), (3, None, "c", None)]
    batch, shape = records_to_batch(recs)
    assert batch.schema.names == ["f0", "f1", "f2", "f3"]
    assert batch.schema.types == [pa.int64(), pa.float64(), pa.string(), pa.null()]
    assert batch.column(0).null_count == 1
    assert batch_to_records(batch, output_shape(shape, batch.schema.names)) == recs


@pytest.mark.parametrize("recs", [
    [(1, "a"), (2, "b")],
    [[1, "a"], [2, "b"]],
    [Point(1, 2.5), Point(3, 4.5)],
    [Row(1, "a"), Row(2, "b")],
    [Row(id=1, name="a"), Row(id=2, name=None)],
    [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    [7, 8, 9],
    ["x", None, "z"],
])
def test_records_round_trip_through_columns(recs: list[Any]) -> None:
    batch, shape = records_to_batch(recs)
    back = batch_to_records(batch, output_shape(shape, batch.schema.names))
    assert back == recs
    assert [type(r) for r in back] == [type(r) for r in recs]
    if isinstance(recs[0], Row):
        assert [r._fields for r in back] == [r._fields for r in recs]


def test_column_names_by_record_shape() -> None:
    assert records_to_batch([Point(1, 2)])[0].schema.names == ["x", "y"]
    assert records_to_batch([Row(a=1, b=2)])[0].schema.names == ["a", "b"]
    assert records_to_batch([{"k": 1, "v": 2}])[0].schema.names == ["k", "v"]
    assert records_to_batch([(1, 2)])[0].schema.names == ["f0", "f1"]


def test_schema_fixes_types_and_names_positionally() -> None:
    schema = pa.schema([("id", pa.int32()), ("score", pa.float32())])
    batch, _ = records_to_batch([(1, 2), (3, None)], schema)
    assert batch.schema == schema
    assert batch.column(1).to_pylist() == [2.0, None]
    typed = to_schema(Types.ROW_NAMED(["id", "name"], [Types.LONG(), Types.STRING()]))
    assert typed == pa.schema([("id", pa.int64()), ("name", pa.string())])
    assert to_schema(Types.DOUBLE()) == pa.schema([("f0", pa.float64())])
    assert to_schema([("a", pa.int8())]) == pa.schema([("a", pa.int8())])
    # an all-None field keeps its type with a schema (without it: the null type)
    batch, _ = records_to_batch([None, None], pa.schema([("f0", pa.int64())]))
    assert batch.schema.types == [pa.int64()]


def test_schema_selects_fields_of_named_records() -> None:
    schema = pa.schema([("v", pa.float64())])
    batch, _ = records_to_batch([{"k": "a", "v": 1}, {"k": "b", "v": 2}], schema)
    assert batch.schema == schema and batch.column(0).to_pylist() == [1.0, 2.0]
    with pytest.raises(ColumnarError, match=r"map_batches: the schema's fields \['w'\]"):
        records_to_batch([{"k": "a"}], pa.schema([("w", pa.int64())]))
    with pytest.raises(ColumnarError, match="the schema has 1 fields but the records have 2"):
        records_to_batch([(1, 2)], pa.schema([("a", pa.int64())]))


@pytest.mark.parametrize("recs,message", [
    ([(1, 2), (1, 2, 3)], "same number of fields"),
    ([(1, 2), [1, 2]], "one shape"),
    ([(1, "a"), ("b", 2)], "field 'f0' cannot become an Arrow column"),
    ([{"a": 1}, {"b": 2}], "keys of the first"),
    ([{"a": 1}, {"a": 2, "b": 3}], "and no other"),
    ([Row(a=1), Row(b=2)], "same field names"),
    ([2**70], "field 'f0' cannot become an Arrow column"),
])
def test_records_that_do_not_fit_in_columns_are_refused_clearly(recs: list[Any], message: str) -> None:
    with pytest.raises(ColumnarError, match=message) as e:
        records_to_batch(recs)
    assert str(e.value).startswith("map_batches:")


def test_output_shape_follows_the_input_unless_asked() -> None:
    _, value = records_to_batch([1])
    assert output_shape(value, ["a"]).kind == "value"
    assert output_shape(value, ["a", "b"]).kind == "tuple"
    _, point = records_to_batch([Point(1, 2)])
    assert output_shape(point, ["x", "y"]).kind == "namedtuple"
    assert output_shape(point, ["x", "z"]).kind == "tuple"
    _, row = records_to_batch([Row(1, 2)])
    assert not output_shape(row, ["f0", "f1"]).named and output_shape(row, ["a", "b"]).named
    assert output_shape(value, ["a", "b"], "dict").kind == "dict"
    with pytest.raises(ColumnarError, match="one column"):
        output_shape(value, ["a", "b"], "value")


# ---- map_batches ----

def test_map_batches_buffers_in_records_out_with_timestamps() -> None:
    rec = Recorder()
    op = map_batches(rec, lambda b: {"x": pc.multiply(b["f0"], 10), "y": b["f1"]})
    op.process_batch([(1, "a"), (2, "b")], [100, 200])
    op.process_batch([(3, "c")], None)
    assert rec.calls == [([(10, "a"), (20, "b")], [100, 200]), ([(30, "c")], None)]


def test_map_batches_skips_empty_buffers_without_calling_the_function() -> None:
    calls: list[Any] = []
    rec = Recorder()
    op = map_batches(rec, lambda b: calls.append(b) or b)
    op.process_batch([], None)
    op.process_batch([], [])
    assert calls == [] and rec.calls == []


def test_map_batches_equals_map_on_the_same_records() -> None:
    rnd = random.Random(7)
    recs = [(rnd.randrange(-1000, 1000), rnd.random() * 100, rnd.choice(["a", "bb", None])) for _ in range(3000)]
    via_map, via_batches = Recorder(), Recorder()
    m = MapOperator(via_map, lambda r: (r[0] * 3 + 1, r[1] / 2, r[2]))
    b = map_batches(via_batches, lambda t: {"a": pc.add(pc.multiply(t["f0"], 3), 1), "b": pc.divide(t["f1"], 2),
                                            "c": t["f2"]})
    for i in range(0, len(recs), 1024):
        ts = list(range(i, min(i + 1024, len(recs))))
        m.process_batch(recs[i:i + 1024], ts)
        b.process_batch(recs[i:i + 1024], ts)
    assert via_batches.calls == via_map.calls


def test_map_batches_numpy_format() -> None:
    seen: list[Any] = []

    def fn(cols: dict[str, Any]) -> dict[str, Any]:
        seen.append({k: (type(v), v.dtype) for k, v in cols.items()})
        return {"id": cols["id"], "double": cols["v"] * 2.0}

    rec = Recorder()
    op = map_batches(rec, fn, batch_format="numpy")
    op.process_batch([Row(id=1, v=1.5), Row(id=2, v=-1.0)], [5, 6])
    assert seen == [{"id": (np.ndarray, np.dtype("int64")), "v": (np.ndarray, np.dtype("float64"))}]
    assert rec.values == [Row(id=1, double=3.0), Row(id=2, double=-2.0)]
    assert rec.values[0]._fields == ["id", "double"] and rec.timestamps == [5, 6]


@pytest.mark.parametrize("result", [
    lambda b: pa.Table.from_batches([b]),
    lambda b: {"f0": b["f0"].to_pylist()},
    lambda b: b["f0"],
    lambda b: b["f0"].to_numpy(),
    lambda b: pa.chunked_array([b["f0"]]),
])
def test_map_batches_accepts_tables_dicts_and_single_arrays(result: Any) -> None:
    rec = Recorder()
    map_batches(rec, result).process_batch([4, 5, 6], None)
    assert rec.values == [4, 5, 6]


@pytest.mark.parametrize("bad,message", [
    (lambda b: [1, 2, 3], "must return a pyarrow.RecordBatch.*got list"),
    (lambda b: None, "must return a pyarrow.RecordBatch.*got NoneType"),
    (lambda b: {"a": 1}, "column 'a' .* must be a NumPy array.*got int"),
    (lambda b: {"a": [1, 2, 3], "b": [1]}, "different lengths"),
    (lambda b: {1: [1, 2, 3]}, "not all column names"),
])
def test_map_batches_wrong_result_type_names_map_batches(bad: Any, message: str) -> None:
    with pytest.raises(ColumnarError, match=message) as e:
        map_batches(Recorder(), bad).process_batch([1, 2, 3], None)
    assert str(e.value).startswith("map_batches:")


def test_map_batches_other_number_of_rows_is_a_clear_error() -> None:
    op = map_batches(Recorder(), lambda b: b.slice(0, 2))
    with pytest.raises(ColumnarError, match=r"map_batches: the function returned 2 rows for a buffer of 3; "
                                            r"map_batches is one-to-one"):
        op.process_batch([1, 2, 3], None)


def test_a_failing_function_raises_its_own_error() -> None:
    def broken(batch: Any) -> Any:
        raise ZeroDivisionError("user bug")

    with pytest.raises(ZeroDivisionError, match="user bug"):
        map_batches(Recorder(), broken).process_batch([1], None)


def test_output_records_option() -> None:
    rec = Recorder()
    map_batches(rec, lambda b: {"n": b["f0"], "sq": pc.multiply(b["f0"], b["f0"])},
                output_records="dict").process_batch([2, 3], None)
    assert rec.values == [{"n": 2, "sq": 4}, {"n": 3, "sq": 9}]
    rec = Recorder()
    map_batches(rec, lambda b: {"n": b["f0"]}, output_records="row").process_batch([2], None)
    assert rec.values == [Row(n=2)] and rec.values[0]._fields == ["n"]


def test_nulls_come_back_as_none() -> None:
    rec = Recorder()
    map_batches(rec, lambda b: {"x": pc.multiply(b["f0"], 2)}).process_batch([1, None, 3], None)
    assert rec.values == [2, None, 6]


def test_watermarks_pass_through_and_no_state_is_snapshot() -> None:
    ops, rec, watermarks = chain(spec("map_batches", 1, lambda b: b, output_records="same"),
                                 spec("filter_batches", 2, lambda b: [True] * b.num_rows))
    ops[0].process_batch([1, 2], [10, 20])
    ops[0].process_watermark(15)
    ops[0].process_batch([3], [30])
    assert watermarks == [15] and rec.calls == [([1, 2], [10, 20]), ([3], [30])]
    assert [op.snapshot_state(1, False) for op in ops] == [(None, None), (None, None)]


# ---- chains: columns stay columns between columnar operators ----

def test_chained_columnar_operators_hand_on_the_batch_not_records(monkeypatch: pytest.MonkeyPatch) -> None:
    import weir.common.columnar as columnar

    conversions = {"to": 0, "from": 0}
    to_batch, to_records = columnar.records_to_batch, columnar.batch_to_records

    def counting_to(*a: Any, **k: Any) -> Any:
        conversions["to"] += 1
        return to_batch(*a, **k)

    def counting_from(*a: Any, **k: Any) -> Any:
        conversions["from"] += 1
        return to_records(*a, **k)

    monkeypatch.setattr(columnar, "records_to_batch", counting_to)
    monkeypatch.setattr(columnar, "batch_to_records", counting_from)
    got: list[Any] = []

    def second(batch: Any) -> Any:
        got.append(batch)
        return {"z": pc.add(batch["x"], batch["y"])}

    ops, rec, _ = chain(
        spec("map_batches", 1, lambda b: {"x": pc.multiply(b["f0"], 2), "y": b["f0"]}, output_records="same"),
        spec("filter_batches", 2, lambda b: pc.greater(b["x"], 2)),
        spec("map_batches", 3, second, output_records="value"),
        spec("map", 4, lambda v: v + 0.5),
    )
    assert [getattr(op, "columns_out", None) is not None for op in ops] == [True, True, False, False]
    ops[0].process_batch([1, 2, 3], [7, 8, 9])
    assert rec.calls == [([6.5, 9.5], [8, 9])]
    assert isinstance(got[0], pa.RecordBatch) and got[0].schema.names == ["x", "y"]
    assert conversions == {"to": 1, "from": 1}, "one conversion in at the head, one out at the last columnar op"


def test_a_schema_on_a_chained_operator_is_applied_to_the_columns() -> None:
    seen: list[Any] = []
    ops, rec, _ = chain(
        spec("map_batches", 1, lambda b: {"a": b["f0"]}, output_records="same"),
        spec("map_batches", 2, lambda b: seen.append(b.schema) or b, schema=pa.schema([("n", pa.float64())]),
             output_records="same"),
    )
    ops[0].process_batch([1, 2], None)
    assert seen == [pa.schema([("n", pa.float64())])] and rec.values == [1.0, 2.0]


def test_chain_with_numpy_format_and_rows() -> None:
    ops, rec, _ = chain(
        spec("map_batches", 1, lambda c: {"name": c["name"], "len": np.array([len(s) for s in c["name"]])},
             batch_format="numpy", output_records="same"),
        spec("filter_batches", 2, lambda c: c["len"] > 1, batch_format="numpy"),
    )
    ops[0].process_batch([Row(name="a"), Row(name="bcd"), Row(name="ef")], [1, 2, 3])
    assert rec.calls == [([Row(name="bcd", len=3), Row(name="ef", len=2)], [2, 3])]


def test_numpy_format_chains_hand_on_the_arrays_themselves() -> None:
    handed: list[Any] = []

    def first(c: dict[str, Any]) -> dict[str, Any]:
        out = {"x": c["f0"] * 2, "ok": c["f0"] % 2 == 0}
        handed.append(out["x"])
        return out

    def second(c: dict[str, Any]) -> dict[str, Any]:
        assert c["x"] is handed[0], "no Arrow round trip between numpy-format operators"
        return {"y": c["x"] + 0.5}

    ops, rec, _ = chain(spec("map_batches", 1, first, batch_format="numpy", output_records="same"),
                        spec("filter_batches", 2, lambda c: c["ok"], batch_format="numpy"),
                        spec("map_batches", 3, lambda c: {"x": c["x"], "y": c["x"] + 0.5}, batch_format="numpy",
                             output_records="same"),
                        spec("map_batches", 4, lambda b: {"y": b["y"]}, output_records="value"))
    ops[0].process_batch([1, 2, 3, 4], [1, 2, 3, 4])
    assert rec.calls == [([4.5, 8.5], [2, 4])]
    ops, rec, _ = chain(spec("map_batches", 1, first, batch_format="numpy", output_records="same"),
                        spec("map_batches", 2, second, batch_format="numpy", output_records="same"))
    handed.clear()
    ops[0].process_batch([1, 2], None)
    assert rec.values == [(2.5,), (4.5,)]  # (x, ok) made the records tuples; one column stays a tuple


@pytest.mark.parametrize("arrays", [
    {"i": np.array([1, -2, 3]), "f": np.array([0.5, float("nan"), -0.0])},
    {"b": np.array([True, False, True]), "u": np.array([2**64 - 1, 0, 7], dtype=np.uint64)},
    {"i8": np.array([1, 2, 3], dtype=np.int8), "f32": np.array([0.1, 0.2, 0.3], dtype=np.float32)},
])
def test_numpy_columns_become_the_same_records_as_through_arrow(arrays: dict[str, Any]) -> None:
    from weir.common.columnar import Columns, result_to_batch, result_to_columns

    direct = result_to_columns(arrays)
    assert direct._batch is None, "kept as NumPy arrays"
    for shape_of in ([(1,)], [Row(1)], [{"a": 1}], [1]):
        _, shape = records_to_batch(shape_of)
        out_shape = output_shape(shape, list(arrays))
        assert same_records(direct.to_records(out_shape), Columns(result_to_batch(arrays)).to_records(out_shape))


# ---- filter_batches ----

@pytest.mark.parametrize("mask", [
    lambda b: [True, False, None, True],
    lambda b: np.array([True, False, False, True]),
    lambda b: pa.array([True, False, None, True]),
    lambda b: pc.not_equal(pc.bit_wise_and(b["f0"], 1), 0),
])
def test_filter_batches_keeps_rows_and_their_timestamps(mask: Any) -> None:
    rec = Recorder()
    op = prepared(FilterBatchesOperator(rec, mask, {"schema": None, "batch_format": "arrow"}))
    op.process_batch([1, 2, 4, 5], [10, 20, 40, 50])
    assert rec.calls == [([1, 5], [10, 50])]


def test_filter_batches_emits_nothing_when_nothing_passes_and_checks_its_result() -> None:
    rec = Recorder()
    prepared(FilterBatchesOperator(rec, lambda b: [False, None], {})).process_batch([1, 2], None)
    assert rec.calls == []
    with pytest.raises(ColumnarError, match="filter_batches: the function returned 1 booleans for a buffer of 2"):
        prepared(FilterBatchesOperator(rec, lambda b: [True], {})).process_batch([1, 2], None)
    with pytest.raises(ColumnarError, match="filter_batches: the function must return a boolean array.*int64"):
        prepared(FilterBatchesOperator(rec, lambda b: b["f0"], {})).process_batch([1, 2], None)


# ---- aggregate_batches: equal to the record-at-a-time rolling sum/min/max ----

def record_path(agg: str, position: Any, key: Any, buffers: list[tuple[list[Any], Any]]) -> tuple[Recorder, Any]:
    rec = Recorder()
    op = prepared(KeyedReduceOperator(rec, _field_aggregate(agg, position), key))
    for values, ts in buffers:
        op.process_batch(values, ts)
    return rec, op


def batch_path(agg: str, position: Any, key: Any, buffers: list[tuple[list[Any], Any]],
               emit: str = "record") -> tuple[Recorder, Any]:
    rec = Recorder()
    op = prepared(AggregateBatchesOperator(rec, _field_aggregate(agg, position), key,
                                           {"agg": agg, "position": position, "emit": emit}))
    for values, ts in buffers:
        op.process_batch(values, ts)
    return rec, op


def buffers_of(records: list[Any], size: int, timestamps: bool = True) -> list[tuple[list[Any], Any]]:
    return [(records[i:i + size], list(range(i, i + len(records[i:i + size]))) if timestamps else None)
            for i in range(0, len(records), size)]


def same_records(a: list[Any], b: list[Any]) -> bool:
    """Equal, with the same types, and floats equal bit for bit (NaN included)."""
    def norm(v: Any) -> Any:
        if isinstance(v, float):
            return ("float", v.hex())
        if isinstance(v, Row):
            return ("Row", v._fields, [norm(x) for x in v._values])
        if isinstance(v, dict):
            return ("dict", {k: norm(x) for k, x in v.items()})
        if isinstance(v, tuple | list):
            return (type(v).__name__, [norm(x) for x in v])
        return (type(v).__name__, v)

    return [norm(v) for v in a] == [norm(v) for v in b]


@pytest.mark.parametrize("agg", ["sum", "min", "max"])
@pytest.mark.parametrize("keys", [1, 3, 40, 2000])  # few keys: a loop over keys; many: a loop over rounds
@pytest.mark.parametrize("field", ["int", "float"])
def test_aggregate_batches_equals_the_rolling_aggregate(agg: str, keys: int, field: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vectorized, "MIN_REPEATS", 1)  # arrays even for buffers of mostly distinct keys
    rnd = random.Random(keys * 31 + len(agg))
    def value() -> Any:
        return rnd.randrange(-10**6, 10**6) if field == "int" else rnd.uniform(-1e6, 1e6) * 10 ** rnd.randrange(-8, 8)
    recs = [(f"k{rnd.randrange(keys)}", value(), i) for i in range(5000)]
    buffers = buffers_of(recs, 1024)
    expected, ref = record_path(agg, 1, lambda r: r[0], buffers)
    got, op = batch_path(agg, 1, lambda r: r[0], buffers)
    assert same_records(got.values, expected.values)
    assert got.timestamps == expected.timestamps
    assert op.vectorized_buffers == len(buffers)
    assert op.state == ref.state, "the keyed state is the record path's"


@pytest.mark.parametrize("make", [
    lambda k, v, i: (k, v, i),
    lambda k, v, i: Point(k, v),
    lambda k, v, i: [k, v, i],
    lambda k, v, i: {"key": k, "x": v, "i": i},
    lambda k, v, i: Row(key=k, x=v, i=i),
])
def test_aggregate_batches_keeps_the_record_type_and_other_fields(make: Any) -> None:
    rnd = random.Random(3)
    recs = [make(rnd.randrange(5), rnd.randrange(100), i) for i in range(600)]
    position = 1 if isinstance(recs[0], tuple | list) else "x"
    key = (lambda r: r[0]) if isinstance(recs[0], tuple | list) else (lambda r: r["key"])
    for agg in ("sum", "min", "max"):
        buffers = buffers_of(recs, 100, timestamps=False)
        expected, _ = record_path(agg, position, key, buffers)
        got, op = batch_path(agg, position, key, buffers)
        assert same_records(got.values, expected.values)
        assert op.vectorized_buffers == len(buffers)


def test_buffers_with_few_repeated_keys_take_the_record_path() -> None:
    recs = [(i, i) for i in range(1024)] + [(i % 4, i) for i in range(1024)]
    expected, _ = record_path("sum", 1, lambda r: r[0], buffers_of(recs, 1024))
    got, op = batch_path("sum", 1, lambda r: r[0], buffers_of(recs, 1024))
    assert got.calls == expected.calls and op.vectorized_buffers == 1


def test_aggregate_batches_of_scalars() -> None:
    recs = [random.Random(i).randrange(50) for i in range(3000)]
    buffers = buffers_of(recs, 512)
    for agg in ("sum", "min", "max"):
        expected, _ = record_path(agg, 0, lambda v: v % 7, buffers)
        got, op = batch_path(agg, 0, lambda v: v % 7, buffers)
        assert got.calls == expected.calls and op.vectorized_buffers == len(buffers)


@pytest.mark.parametrize("recs", [
    [("a", 1), ("a", 2.5), ("b", 3)],  # ints and floats: Python's types, record by record
    [("a", True), ("a", True), ("a", False)],  # bools sum to ints
    [("a", 2**62), ("a", 2**62), ("a", 2**62)],  # beyond int64: Python ints grow
    [("a", "x"), ("a", "y")],  # strings: min/max by Python's order, sum concatenates
    [("a", 1.0), ("a", float("nan")), ("a", -0.0), ("a", 0.0), ("b", float("nan")), ("b", 1.0)],
])
def test_buffers_numpy_cannot_do_exactly_fall_back_with_the_same_results(recs: list[Any]) -> None:
    for agg in ("sum", "min", "max"):
        expected, _ = record_path(agg, 1, lambda r: r[0], [(recs, None)])
        got, _ = batch_path(agg, 1, lambda r: r[0], [(recs, None)])
        assert same_records(got.values, expected.values), agg


def test_float_sums_are_bit_for_bit_the_record_paths() -> None:
    # 0.1 + 0.2 + 0.3 differs from 0.1 + (0.2 + 0.3): the running sums must be folded in record order
    recs = [("k", x) for x in [0.1, 0.2, 0.3, 1e16, 1.0, -1e16, 0.7] * 50]
    for size in (1, 7, 350):
        expected, _ = record_path("sum", 1, lambda r: r[0], buffers_of(recs, size))
        got, _ = batch_path("sum", 1, lambda r: r[0], buffers_of(recs, size))
        assert same_records(got.values, expected.values)


def test_rolling_helper_both_strategies() -> None:
    vals = np.array([5, 1, 7, 2, 9, 3], dtype=np.int64)
    codes = np.array([0, 1, 0, 1, 0, 2])
    base = np.array([100, 0, 0], dtype=np.int64)
    has = np.array([True, False, False])
    g = _Groups(codes, 3)
    assert _rolling(vals, g, base, has, "sum").tolist() == [105, 1, 112, 3, 121, 3]
    assert _rolling(vals, g, base, has, "min").tolist() == [5, 1, 5, 1, 5, 3]
    one = np.zeros(6, dtype=np.intp)  # one group: the per-group loop
    assert _rolling(vals, _Groups(one, 1), np.array([0]), np.array([False]), "max").tolist() == [5, 5, 7, 7, 9, 9]


def test_aggregate_batches_per_buffer_emits_each_keys_last_rolling_output() -> None:
    recs = [("a", 1), ("b", 10), ("a", 2), ("c", 5), ("b", 1), ("a", 4)]
    buffers = [(recs[:4], [1, 2, 3, 4]), (recs[4:], [5, 6])]
    got, _ = batch_path("sum", 1, lambda r: r[0], buffers, emit="buffer")
    # buffer 1: a -> 3 (record 3), b -> 10 (record 2), c -> 5 (record 4), in the order of their last records
    assert got.calls == [([("b", 10), ("a", 3), ("c", 5)], [2, 3, 4]), ([("b", 11), ("a", 7)], [5, 6])]
    rolling, _ = record_path("sum", 1, lambda r: r[0], buffers)
    assert set(got.values) <= set(rolling.values)


def test_aggregate_batches_state_restores_from_and_into_the_record_path(tmp_path: Any) -> None:
    from state.storage import checkpoint_storage_for

    storage = checkpoint_storage_for(f"file://{tmp_path}/chk")
    first = [(f"k{i % 4}", i) for i in range(50)]
    rest = [(f"k{i % 6}", i) for i in range(50, 90)]

    def checkpoint(op: Any, n: int) -> OperatorSubtaskState:
        op.key_groups, op.local_dir = range(128), str(tmp_path)
        pending, _ = op.snapshot_state(n, False)
        return OperatorSubtaskState([pending.upload(storage, f"private/{n}", "shared")], None)

    def restored(op: Any, st: OperatorSubtaskState) -> Any:
        op.runtime, op.uid = runtime(), "op"
        op.restore_states, op.restore_storage = [st], storage
        op.key_groups, op.local_dir = range(128), str(tmp_path)
        op.open(ctx())
        return op

    key = lambda r: r[0]  # noqa: E731
    _, ref = record_path("sum", 1, key, [(first, None)])
    _, vec = batch_path("sum", 1, key, [(first, None)])
    expected, _ = record_path("sum", 1, key, [(first + rest, None)])
    for i, before in enumerate((ref, vec)):
        st = checkpoint(before, i + 1)
        for after in (KeyedReduceOperator(Recorder(), _field_aggregate("sum", 1), key),
                      AggregateBatchesOperator(Recorder(), _field_aggregate("sum", 1), key,
                                               {"agg": "sum", "position": 1})):
            restored(after, st).process_batch(rest, None)
            assert after.out.values == expected.values[len(first):]


# ---- the API ----

def test_api_checks_arguments_and_builds_a_chain() -> None:
    env = StreamExecutionEnvironment.get_execution_environment()
    nums = env.from_collection([1, 2, 3])
    with pytest.raises(TypeError, match="map_batches expects a callable"):
        nums.map_batches(42)
    with pytest.raises(ValueError, match="batch_format must be 'arrow' or 'numpy'"):
        nums.map_batches(lambda b: b, batch_format="pandas")
    with pytest.raises(ValueError, match="output_records"):
        nums.map_batches(lambda b: b, output_records="set")
    with pytest.raises(TypeError, match="schema must be"):
        nums.map_batches(lambda b: b, schema=42)
    with pytest.raises(ValueError, match="agg must be 'sum', 'min' or 'max'"):
        nums.key_by(lambda v: v).aggregate_batches("avg")
    with pytest.raises(ValueError, match="emit must be"):
        nums.key_by(lambda v: v).aggregate_batches("sum", emit="window")
    ds = (nums.map_batches(lambda b: b, schema=Types.ROW_NAMED(["n"], [Types.LONG()]))
          .filter_batches(lambda b: [True] * b.num_rows)
          .key_by(lambda v: v % 2).aggregate_batches("sum", emit="buffer"))
    ds.print()
    graph = compile_job_graph(env._sinks, "job", 1)
    kinds = [[op.kind for op in v.operators] for v in graph.vertices]
    assert kinds == [["source", "map_batches", "filter_batches"], ["aggregate_batches", "sink"]]
    mb = graph.vertices[0].operators[1]
    assert mb.params["schema"] == pa.schema([("n", pa.int64())]) and mb.params["output_records"] == "same"
    assert graph.vertices[1].operators[0].params == {"agg": "sum", "position": 0, "emit": "buffer"}
    assert graph.vertices[1].name.startswith("Keyed Sum (batches, per buffer)")
