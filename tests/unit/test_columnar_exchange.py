"""Columnar buffers between tasks: the Arrow IPC payload of a COLUMNS frame (round trips, malformed payloads), the
columnar RecordWriter (routing whole buffers, concatenation, order with events, credits), a local channel handing
over the Columns object itself, the task's decision and its error on a malformed buffer, and pyarrow staying out
of a TaskManager that runs no columnar job."""

from __future__ import annotations

import asyncio
import datetime
import pickle
import subprocess
import sys
from collections import namedtuple
from typing import Any

import pytest

pa = pytest.importorskip("pyarrow")
np = pytest.importorskip("numpy")

from taskmanager.network.connection import (  # noqa: E402
    M_END,
    M_EVENT,
    M_LOCAL_COLUMNS,
    ChannelKey,
    ConnectionManager,
    InputGate,
)
from taskmanager.network.partitioner import RecordWriter  # noqa: E402
from taskmanager.task import MalformedBufferError, StreamTask  # noqa: E402
from weir.common import Row  # noqa: E402
from weir.common.columnar import (  # noqa: E402
    ColumnarFrameError,
    Columns,
    RecordShape,
    concat_pieces,
    decode_ipc,
    encode_ipc,
    output_shape,
    records_to_batch,
    result_to_columns,
)
from weir.graph.jobgraph import JobEdge, JobGraph, JobVertex, OperatorSpec  # noqa: E402
from weir.graph.transformation import PartitionerSpec  # noqa: E402

pytestmark = pytest.mark.timeout(60)

Point = namedtuple("Point", ["x", "y"])


def round_trip(cols: Columns, shape: RecordShape, ts: list[Any] | None) -> tuple[Columns, RecordShape, Any]:
    payload = encode_ipc(cols, shape, ts)
    assert isinstance(payload, bytes)
    return decode_ipc(payload)


# ---- the IPC payload ----

@pytest.mark.parametrize("records", [
    [1, 2, 3],
    ["a", "", "ünï"],
    [1.5, None, -0.0],
    [(1, "a", 0.5), (2, None, None), (3, "c", 2.5)],
    [(None, None), (None, None)],  # columns of the null type
    [[1, "x"], [2, "y"]],
    [Point(1, 2.0), Point(3, 4.0)],
    [Row(1, "a"), Row(2, "b")],
    [Row(name="a", n=1), Row(name="b", n=None)],
    [{"k": "a", "v": [1, 2]}, {"k": "b", "v": []}],
    [(datetime.datetime(2024, 1, 2, 3, 4, 5), datetime.date(2024, 1, 2), b"\x00\xff", True)],
])
@pytest.mark.parametrize("timestamps", ["none", "ints", "some-none"])
def test_round_trip_gives_the_same_records_and_timestamps(records: list[Any], timestamps: str) -> None:
    batch, shape = records_to_batch(records)
    ts: list[Any] | None = None
    if timestamps == "ints":
        ts = [1000 + i for i in range(len(records))]
    elif timestamps == "some-none":
        ts = [None if i % 2 else i for i in range(len(records))]
    cols, shape2, ts2 = round_trip(Columns(batch), shape, ts)
    assert shape2 == shape and ts2 == ts
    assert cols.arrow().equals(batch) and cols.arrow().schema == batch.schema
    assert cols.to_records(shape2) == Columns(batch).to_records(shape) == records


def test_named_shapes_and_result_names_survive() -> None:
    batch, shape = records_to_batch([(1, 2), (3, 4)])
    out = output_shape(shape, ["k", "v"], "row")
    result = pa.RecordBatch.from_pydict({"k": pa.array([1, 2], pa.int32()), "v": [0.5, 1.5]})
    cols, shape2, _ = round_trip(Columns(result), out, None)
    assert shape2 == out and shape2.named
    assert cols.arrow().schema.field("k").type == pa.int32(), "types as produced, not re-inferred"
    assert cols.to_records(shape2) == [Row(k=1, v=0.5), Row(k=2, v=1.5)]


def test_numpy_columns_are_sent_as_arrow_and_make_the_same_records() -> None:
    arrays = {"i": np.array([1, -2, 3]), "f": np.array([0.5, np.nan, -0.0]), "b": np.array([True, False, True])}
    cols = result_to_columns(arrays)
    assert cols._batch is None
    _, shape = records_to_batch([(0,)])
    out = output_shape(shape, list(arrays))
    got, shape2, _ = round_trip(cols, out, [1, 2, 3])
    a, b = got.to_records(shape2), cols.to_records(out)
    assert [r[:1] + r[2:] for r in a] == [r[:1] + r[2:] for r in b]
    assert [repr(r[1]) for r in a] == [repr(r[1]) for r in b]  # nan and -0.0 as they were


def test_an_empty_batch_round_trips() -> None:
    batch = pa.RecordBatch.from_pydict({"a": pa.array([], pa.int64()), "s": pa.array([], pa.string())})
    shape = RecordShape("tuple", ("a", "s"))
    cols, shape2, ts = round_trip(Columns(batch), shape, [])
    assert cols.num_rows == 0 and cols.arrow().schema == batch.schema and ts == [] and shape2 == shape
    assert cols.to_records(shape2) == []


def test_the_batch_points_into_the_payload() -> None:
    batch = pa.RecordBatch.from_pydict({"a": np.arange(10_000)})
    payload = encode_ipc(Columns(batch), RecordShape("value", ("a",)), None)
    cols, _, _ = decode_ipc(payload)
    buf = cols.arrow().column(0).buffers()[1]
    base = np.frombuffer(payload, dtype=np.uint8).ctypes.data
    assert base <= buf.address < base + len(payload), "decoded without copying the column"


def _payload() -> bytes:
    batch, shape = records_to_batch([(1, "a"), (2, "b"), (3, None)])
    return encode_ipc(Columns(batch), shape, [1, 2, 3])


@pytest.mark.parametrize("damage", [
    lambda p: b"",
    lambda p: p[:3],
    lambda p: p[: len(p) // 2],  # truncated Arrow stream
    lambda p: b"\xff\xff\xff\xff" + p[4:],  # metadata length beyond the payload
    lambda p: p[:4] + b"\x00" * 20 + p[24:],  # the pickle zeroed
    lambda p: p[:-200] + bytes(200),  # the batch's body zeroed... or its offsets
    lambda p: b"\x00\x00\x00\x03abc" + b"\xff" * 64,
])
def test_a_malformed_payload_is_a_clear_error(damage: Any) -> None:
    with pytest.raises(ColumnarFrameError):
        decode_ipc(damage(_payload()))


def test_corrupt_offsets_are_caught_by_validation() -> None:
    batch = pa.RecordBatch.from_pydict({"s": ["ab", "cd", "ef"]})
    payload = bytearray(encode_ipc(Columns(batch), RecordShape("value", ("s",)), None))
    offsets = np.array([0, 2, 4, 6], dtype=np.int32).tobytes()
    at = bytes(payload).rfind(offsets)
    assert at > 0
    payload[at + 12: at + 16] = np.array([1 << 20], dtype=np.int32).tobytes()  # last offset far out of the data
    with pytest.raises(ColumnarFrameError):
        decode_ipc(bytes(payload))


def test_payload_with_misaligned_timestamps_or_two_batches_is_refused() -> None:
    batch, shape = records_to_batch([1, 2, 3])
    with pytest.raises(ColumnarFrameError, match="timestamps"):
        decode_ipc(encode_ipc(Columns(batch), shape, [1, 2]))
    meta = pickle.dumps((shape, None), protocol=5)
    sink = pa.BufferOutputStream()
    sink.write(len(meta).to_bytes(4, "big"))
    sink.write(meta)
    with pa.ipc.new_stream(sink, batch.schema) as w:
        w.write_batch(batch)
        w.write_batch(batch)
    with pytest.raises(ColumnarFrameError, match="more than one"):
        decode_ipc(sink.getvalue().to_pybytes())
    good = encode_ipc(Columns(batch), shape, None)
    ipc = good[4 + int.from_bytes(good[:4], "big"):]
    meta = pickle.dumps(("not a shape", None), protocol=5)
    with pytest.raises(ColumnarFrameError, match="shape"):
        decode_ipc(len(meta).to_bytes(4, "big") + meta + ipc)


# ---- concatenating a channel's waiting buffers ----

def test_concat_pieces_joins_neighbours_of_one_schema_and_keeps_timestamps_aligned() -> None:
    b1, shape = records_to_batch([(1, "a"), (2, "b")])
    b2, _ = records_to_batch([(3, "c")])
    b3, _ = records_to_batch([(4, None)])  # f1 is of the null type here: cannot join the others
    b4, _ = records_to_batch([(5, "e")])
    out = concat_pieces([(Columns(b1), shape, [1, 2]), (Columns(b2), shape, None), (Columns(b3), shape, [4]),
                         (Columns(b4), shape, None)])
    assert [(c.to_records(s), t) for c, s, t in out] == [
        ([(1, "a"), (2, "b"), (3, "c")], [1, 2, None]),
        ([(4, None)], [4]),
        ([(5, "e")], None),
    ]
    numpy_pieces = [(result_to_columns({"x": np.arange(3)}), RecordShape("value", ("x",)), None)] * 2
    (merged, _, ts), = concat_pieces(numpy_pieces)
    assert merged._batch is None and merged.numpy()["x"].tolist() == [0, 1, 2, 0, 1, 2] and ts is None


# ---- the columnar RecordWriter ----

class ColumnsChannel:
    """An output channel that logs buffers of columns (as records) and events, in order."""

    def __init__(self) -> None:
        self.log: list[Any] = []
        self.objects: list[Any] = []

    async def send(self, values: list[Any], timestamps: list[int] | None) -> None:
        raise AssertionError("a columnar writer sent records")

    async def send_columns(self, cols: Any, shape: Any, timestamps: list[int] | None) -> None:
        assert cols.num_rows > 0
        assert timestamps is None or len(timestamps) == cols.num_rows
        self.objects.append(cols)
        self.log.append(("columns", cols.to_records(shape), timestamps))

    async def event(self, ev: tuple[str, Any]) -> None:
        self.log.append(("event", ev))

    async def end(self) -> None:
        self.log.append(("end",))

    @property
    def rows(self) -> list[Any]:
        return [r for e in self.log if e[0] == "columns" for r in e[1]]


def col_writer(kind: str, n: int, buffer_records: int = 4) -> tuple[RecordWriter, list[ColumnsChannel]]:
    chans = [ColumnsChannel() for _ in range(n)]
    return RecordWriter(PartitionerSpec(kind), chans, 128, buffer_records, columnar=True), chans


def cols_of(values: list[Any]) -> tuple[Columns, RecordShape]:
    batch, shape = records_to_batch(values)
    return Columns(batch), shape


def test_a_keyed_partitioner_cannot_take_columns() -> None:
    with pytest.raises(ValueError, match="hash"):
        RecordWriter(PartitionerSpec("hash", lambda r: r), [ColumnsChannel()], 128, 4, columnar=True)


def test_rebalance_routes_whole_buffers_to_the_channel_with_fewest_rows() -> None:
    w, chans = col_writer("rebalance", 2)
    for values in ([1, 2, 3, 4], [5], [6, 7], [8, 9, 10, 11]):
        w.add_columns(*cols_of(values), None)
    asyncio.run(w.end())
    # 4 rows -> ch0; 1 -> ch1; 2 -> ch1 (1 < 4); 4 -> ch1 (3 < 4)
    assert chans[0].rows == [1, 2, 3, 4] and chans[1].rows == [5, 6, 7, 8, 9, 10, 11]
    assert w.records_out == 11 and w.pending == 0
    assert [e[0] for e in chans[1].log] == ["columns", "end"], "three buffers waiting together went as one"


def test_flush_sends_a_buffers_worth_unless_forced_and_events_come_after_the_data() -> None:
    async def go() -> tuple[RecordWriter, ColumnsChannel]:
        w, (ch,) = col_writer("forward", 1)
        w.add_columns(*cols_of([1, 2]), [10, 20])
        assert not w.has_full()
        await w.flush(False)
        assert ch.log == []
        w.add_columns(*cols_of([3, 4, 5]), [30, 40, 50])
        assert w.has_full()
        await w.flush(False)
        assert ch.log == [("columns", [1, 2, 3, 4, 5], [10, 20, 30, 40, 50])]
        w.add_columns(*cols_of([6]), None)
        await w.broadcast_event(("wm", 60))
        await w.end()
        return w, ch

    w, ch = asyncio.run(go())
    assert ch.log[1:] == [("columns", [6], None), ("event", ("wm", 60)), ("end",)]
    assert w.columnar_buffers_out == 2


def test_broadcast_gives_every_channel_all_rows_each_its_own_handle() -> None:
    w, chans = col_writer("broadcast", 3)
    w.add_columns(*cols_of([1, 2, 3, 4]), [1, 2, 3, 4])
    asyncio.run(w.end())
    assert all(ch.rows == [1, 2, 3, 4] for ch in chans)
    objs = [ch.objects[0] for ch in chans]
    assert len({id(o) for o in objs}) == 3 and len({id(o.arrow()) for o in objs}) == 1, "one immutable batch"


def test_shuffle_delivers_each_buffer_once() -> None:
    w, chans = col_writer("shuffle", 3, buffer_records=1)
    for i in range(30):
        w.add_columns(*cols_of([i]), None)
    asyncio.run(w.end())
    assert sorted(r for ch in chans for r in ch.rows) == list(range(30))


# ---- a local channel hands over the object, one credit per buffer ----

def test_local_channel_hands_over_the_columns_object_with_one_credit() -> None:
    async def go() -> None:
        mgr = ConnectionManager("w", initial_credit=2)
        gate = InputGate(asyncio.Queue())
        key = ChannelKey("ex", 0, 0, 0)
        gate.add_channel(key, 2)
        mgr.register_gate("ex", 0, 0, gate)
        out = await mgr.open_channel(mgr.address, key)
        cols, shape = cols_of([1, 2, 3])
        await out.send_columns(cols, shape, [1, 2, 3])
        await out.send_columns(cols, shape, None)
        assert out.credit.available == 0
        third = asyncio.ensure_future(out.send_columns(cols, shape, None))
        await asyncio.sleep(0)
        assert not third.done(), "no credit left: the sender waits"
        kind, idx, payload = gate.mailbox.get_nowait()
        assert kind == M_LOCAL_COLUMNS and idx == 0 and payload[0] is cols and payload[2] == [1, 2, 3]
        gate.consumed(0)
        gate.consumed(0)
        await asyncio.wait_for(third, 5)
        await out.event(("wm", 5))
        await out.end()
        kinds = [gate.mailbox.get_nowait()[0] for _ in range(gate.mailbox.qsize())]
        assert kinds == [M_LOCAL_COLUMNS, M_LOCAL_COLUMNS, M_EVENT, M_END]

    asyncio.run(go())


# ---- the task: which edges take columns, and a malformed buffer ----

def _graph(producer: list[str], consumer: list[str], kind: str, config: dict[str, str] | None = None) -> JobGraph:
    def ops(kinds: list[str]) -> list[OperatorSpec]:
        return [OperatorSpec(k, k, i, params={"schema": None}) for i, k in enumerate(kinds)]

    part = PartitionerSpec(kind, (lambda r: r) if kind == "hash" else None)
    a = JobVertex("a", "a", 2, 128, ops(producer), outputs=[0])
    b = JobVertex("b", "b", 2, 128, ops(consumer), inputs=[0])
    return JobGraph("g", [a, b], [JobEdge(0, "a", "b", part)], config=dict(config or {}))


def _task(graph: JobGraph, vertex: str = "a") -> StreamTask:
    t = StreamTask.__new__(StreamTask)
    t.graph = graph
    t.vertex = graph.vertex(vertex)
    return t


@pytest.mark.parametrize("producer,consumer,kind,config,expected", [
    (["source", "map_batches"], ["map_batches"], "rebalance", None, True),
    (["map", "filter_batches"], ["filter_batches", "map"], "forward", None, True),
    (["map_batches"], ["map_batches"], "broadcast", None, True),
    (["map_batches"], ["map_batches"], "hash", None, False),  # keyed: records
    (["map_batches"], ["map"], "rebalance", None, False),  # the consumer takes records
    (["map_batches", "map"], ["map_batches"], "rebalance", None, False),  # the producer's tail makes records
    (["map_batches"], ["aggregate_batches"], "rebalance", None, False),
    (["map_batches"], ["map_batches"], "rebalance", {"pipeline.columnar-exchange": "false"}, False),
])
def test_an_edge_takes_columns_only_between_columnar_operators_without_keys(
        producer: list[str], consumer: list[str], kind: str, config: dict[str, str] | None, expected: bool) -> None:
    assert _task(_graph(producer, consumer, kind, config))._columnar_edge(0) is expected


def test_a_malformed_columnar_buffer_fails_the_task_naming_its_channel() -> None:
    t = _task(_graph(["map_batches"], ["map_batches"], "rebalance"), "b")
    t.gate = InputGate(asyncio.Queue())
    t.gate.add_channel(ChannelKey("ex", 0, 1, 0), 4)
    t.counters = type("C", (), {"bytes_in": 0, "records_in": 0, "columnar_buffers_in": 0})()
    from taskmanager.network.connection import M_COLUMNS

    with pytest.raises(MalformedBufferError, match="malformed columnar buffer .* from subtask 1 on edge 0"):
        t._on_columns(M_COLUMNS, 0, b"\x00\x00\x00\x02garbage")


# ---- pyarrow only for columnar jobs ----

def test_the_taskmanager_does_not_import_pyarrow() -> None:
    code = ("import sys; import taskmanager.executor, taskmanager.worker, taskmanager.task, "
            "taskmanager.network.connection, taskmanager.network.partitioner, taskmanager.operators.chain; "
            "bad = [m for m in ('pyarrow', 'weir.common.columnar', 'taskmanager.operators.vectorized') "
            "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
