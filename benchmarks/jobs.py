"""The benchmark workloads: user functions, job builders and their single-process baselines.

The user functions live here, at module level, so the job and its baseline call the very same code.
``benchmarks.run`` registers this module with cloudpickle to be pickled by value, so TaskManagers
that cannot import ``benchmarks`` still run the jobs.

Each workload has two jobs: the throughput job (``build_*``: numbers -> the workload's logic -> a discarding
sink, as fast as it goes) and the latency job (``latency_*``: the same logic over ``(payload, created)`` records
from a rate-limited ``LatencySource``, each user function wrapped to carry ``created`` along, into a
``LatencySink`` that histograms ``now - created``). Where several records make one output (a reduce, a window),
the output carries the newest of their creation times.
"""

from __future__ import annotations

import heapq
from typing import Any

from benchmarks.connectors import InterleavedSequenceSource, LatencySink, LatencySource
from weir.common import Duration, Time, Types, WatermarkStrategy
from weir.datastream import (
    DataStream,
    EmbeddedRocksDBStateBackend,
    HashMapStateBackend,
    StreamExecutionEnvironment,
)
from weir.datastream.connectors import NumberSequenceSource, Sink, SinkWriter
from weir.datastream.functions import KeyedProcessFunction, RuntimeContext
from weir.datastream.state import MapStateDescriptor
from weir.datastream.window import TumblingEventTimeWindows

W2_KEYS = 10_000
"""Distinct keys of the W2 keyed reduce."""

W3_KEYS = 10_000
"""Distinct keys of the W3 window aggregation."""
W3_STEP_MS = 2
"""Event time between consecutive W3 records: a 1-minute window holds 30,000 records, 3 per key."""
W3_DISORDER_MS = 2_000
"""W3 records are up to this late relative to the highest timestamp before them (the watermark's bound)."""
W3_WINDOW_MS = 60_000
"""W3's tumbling window size (``Time.minutes(1)``)."""

W4_CUSTOMERS = 10_000
"""Distinct customers of the W4 transactions."""
W4_STEP_MS = 10
"""Event time between consecutive W4 transactions: 30,000 per 5 minutes, about 3 per customer."""
W4_DISORDER_MS = 5_000
"""W4 transactions are up to this late (the watermark's bound), as in examples/fraud_detection.py."""
VELOCITY_MS = 5 * 60_000
"""The velocity rule's horizon: the customer's transactions of the last 5 minutes."""
MAX_COUNT = 5
"""The velocity rule alerts above this many transactions within the horizon..."""
MAX_AMOUNT = 2_000
"""...or above this total amount."""

_MIN_TIMESTAMP = -(2**63)
"""``TimestampAssigner.NO_TIMESTAMP``: what a timestamp assigner gets as the record's previous timestamp."""
_MAX_TIMESTAMP = 2**63 - 1
"""The final watermark at the end of a bounded input: every window and timer fires."""

_MASK64 = 2**64 - 1
_GOLDEN64 = 0x9E3779B97F4A7C15


# ---- user functions (shared by the jobs and the baselines) ----

def double(x: int) -> int:
    """W1 map: x -> 2x."""
    return x * 2


def not_multiple_of_3(x: int) -> bool:
    """W1 filter: keep x unless it is a multiple of 3."""
    return x % 3 != 0


def expand(x: int) -> tuple[int, ...]:
    """W1 flat_map: x -> (x,), and (x, x // 10) for every multiple of 10 (1.2 outputs per input after W1's map
    and filter)."""
    return (x, x // 10) if x % 10 == 0 else (x,)


def to_key_one(x: int) -> tuple[int, int]:
    """W2 map: x -> (key, 1) with ``W2_KEYS`` distinct keys."""
    return (x % W2_KEYS, 1)


def first_field(record: tuple[Any, ...]) -> Any:
    """Key selector of W2, W3 and W4: the first field, the key of a (key, count) pair, a (key, ts, value)
    record or a (customer, amount, ts) transaction."""
    return record[0]


def sum_counts(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    """W2 reduce: add the counts of two pairs of the same key."""
    return (a[0], a[1] + b[1])


def _mix(n: int) -> int:
    """A cheap deterministic 64-bit hash of ``n`` (Fibonacci hashing, high bits folded down): the generators'
    per-record randomness, without the cost of seeding a ``random.Random`` per record."""
    h = (n * _GOLDEN64) & _MASK64
    return h ^ (h >> 29)


def w3_event(n: int) -> tuple[int, int, int]:
    """W3 map: record n -> (key, ts, value); key n % ``W3_KEYS``, ts = n * ``W3_STEP_MS`` plus 0..2 s of disorder.

    The disorder never exceeds ``W3_DISORDER_MS`` (every earlier record has ts <= 2 (n - 1) + 2000), so with a
    2-second bounded-out-of-orderness watermark no record is late.
    """
    h = _mix(n)
    return (n % W3_KEYS, n * W3_STEP_MS + (h >> 32) % (W3_DISORDER_MS + 1), h & 0xFF)


def w3_event_time(value: tuple[int, int, int], record_timestamp: int) -> int:
    """W3 timestamp assigner: the ts field of (key, ts, value)."""
    return value[1]


def sum_values(a: tuple[int, int, int], b: tuple[int, int, int]) -> tuple[int, int, int]:
    """W3 window reduce: add the values of two (key, ts, value) records of the same key and window."""
    return (a[0], a[1], a[2] + b[2])


def w4_transaction(n: int) -> tuple[int, int, int]:
    """W4 map: transaction n -> (customer, amount, ts), one every ``W4_STEP_MS`` ms, up to 5 s out of order.

    As in examples/fraud_detection.py, now and then one customer bursts (8 transactions of 200..699 close
    together, every 997).
    """
    h = _mix(n)
    customer = h % W4_CUSTOMERS
    amount = 1 + (h >> 16) % 399
    if n % 997 < 8:
        customer = (n // 997) % W4_CUSTOMERS
        amount = 200 + (h >> 16) % 500
    return (customer, amount, n * W4_STEP_MS + (h >> 32) % (W4_DISORDER_MS + 1))


def w4_transaction_time(value: tuple[int, int, int], record_timestamp: int) -> int:
    """W4 timestamp assigner: the ts field of (customer, amount, ts)."""
    return value[2]


class VelocityRule(KeyedProcessFunction):
    """W4: examples/fraud_detection.py's ``VelocityRule``, copied (the benchmarks do not import the examples).

    Keeps the customer's transactions of the last 5 minutes; checks the rule when the watermark passes each
    transaction's time, so the result does not depend on arrival order."""

    def open(self, runtime_context: RuntimeContext) -> None:
        """Declares the MapState ts -> amounts of the customer's recent transactions."""
        self.recent = runtime_context.get_map_state(
            MapStateDescriptor("recent", Types.LONG(), Types.LIST(Types.LONG())))

    def process_element(self, value: Any, ctx: Any) -> None:
        """Remembers the transaction and registers an event-time timer at its time."""
        amounts = self.recent.get(value[2]) or []
        self.recent.put(value[2], amounts + [value[1]])
        ctx.timer_service().register_event_time_timer(value[2])

    def on_timer(self, timestamp: int, ctx: Any) -> Any:
        """Evaluates the rule at ``timestamp`` and drops transactions older than the horizon."""
        horizon = timestamp - VELOCITY_MS
        count = total = 0
        for ts in list(self.recent.keys()):
            if ts <= horizon:
                self.recent.remove(ts)  # clean-up: older than the rule's 5 minutes
            elif ts <= timestamp:
                count += len(self.recent.get(ts))
                total += sum(self.recent.get(ts))
        if count > MAX_COUNT or total > MAX_AMOUNT:
            yield ("alert", ctx.get_current_key(), timestamp, total, count)


def v1_first(b: Any) -> dict[str, Any]:
    """V1's first map_batches (before the rebalance): n -> (x = 2n, y = n % 7), two int64 columns."""
    import pyarrow.compute as pc

    n = b["f0"]
    return {"x": pc.multiply(n, 2), "y": pc.remainder(n, 7)}


def v1_second(b: Any) -> dict[str, Any]:
    """V1's second map_batches (after the rebalance): (x, y) -> x + 3y. Its columns are named ``x, y`` when they
    crossed the edge as columns, ``f0, f1`` when as records (``pipeline.columnar-exchange: false``)."""
    import pyarrow.compute as pc

    x, y = (b["x"], b["y"]) if "x" in b.schema.names else (b["f0"], b["f1"])
    return {"z": pc.add(x, pc.multiply(y, 3))}


# ---- a discarding sink ----

class _CountingWriter(SinkWriter):
    """Counts the records it receives and drops them."""

    def __init__(self) -> None:
        self.count = 0

    def write_batch(self, values: list[Any]) -> None:
        """Count one buffer of records."""
        self.count += len(values)


class CountingSink(Sink):
    """A sink whose writers only count: measures the pipeline, not an external system."""

    def create_writer(self, ctx: RuntimeContext) -> SinkWriter:
        """One counting writer per subtask."""
        return _CountingWriter()


# ---- latency variants: the same functions on (payload, created) records ----

def lat_double(r: tuple[int, float]) -> tuple[int, float]:
    """``double`` on the payload."""
    return (double(r[0]), r[1])


def lat_not_multiple_of_3(r: tuple[int, float]) -> bool:
    """``not_multiple_of_3`` on the payload."""
    return not_multiple_of_3(r[0])


def lat_expand(r: tuple[int, float]) -> list[tuple[int, float]]:
    """``expand`` on the payload; every output carries the input's creation time."""
    c = r[1]
    return [(y, c) for y in expand(r[0])]


def lat_v1_first(b: Any) -> dict[str, Any]:
    """``v1_first`` on the payload column, ``created`` carried along."""
    return {**v1_first(b), "created": b["f1"]}


def lat_v1_second(b: Any) -> dict[str, Any]:
    """``v1_second``, ``created`` carried along (the latency sink reads it as the record's last field)."""
    created = b["created"] if "created" in b.schema.names else b["f2"]
    return {**v1_second(b), "created": created}


def lat_to_key_one(r: tuple[int, float]) -> tuple[tuple[int, int], float]:
    """``to_key_one`` on the payload."""
    return (to_key_one(r[0]), r[1])


def lat_key(r: tuple[tuple[Any, ...], float]) -> Any:
    """Key selector of the latency jobs: ``first_field`` of the payload."""
    return r[0][0]


def lat_sum_counts(a: tuple[tuple[int, int], float], b: tuple[tuple[int, int], float]) -> tuple[tuple[int, int], float]:
    """``sum_counts`` on the payloads; the output is caused by ``b``, and carries its creation time."""
    return (sum_counts(a[0], b[0]), b[1])


def lat_w3_event(r: tuple[int, float]) -> tuple[tuple[int, int, int], float]:
    """``w3_event`` on the payload."""
    return (w3_event(r[0]), r[1])


def lat_w3_event_time(value: tuple[tuple[int, int, int], float], record_timestamp: int) -> int:
    """``w3_event_time`` of the payload."""
    return value[0][1]


def lat_sum_values(a: tuple[tuple[int, int, int], float],
                   b: tuple[tuple[int, int, int], float]) -> tuple[tuple[int, int, int], float]:
    """``sum_values`` on the payloads; a window's result carries its newest record's creation time."""
    return (sum_values(a[0], b[0]), a[1] if a[1] > b[1] else b[1])


def lat_window_of(r: tuple[tuple[int, int, int], float]) -> int:
    """The start of the W3 window a latency job's window result belongs to (from the ts it carries)."""
    ts = r[0][1]
    return ts - ts % W3_WINDOW_MS


def lat_w4_transaction(r: tuple[int, float]) -> tuple[tuple[int, int, int], float]:
    """``w4_transaction`` on the payload."""
    return (w4_transaction(r[0]), r[1])


def lat_w4_transaction_time(value: tuple[tuple[int, int, int], float], record_timestamp: int) -> int:
    """``w4_transaction_time`` of the payload."""
    return value[0][2]


class LatencyVelocityRule(VelocityRule):
    """``VelocityRule`` over ``((customer, amount, ts), created)``: the MapState keeps per ts ``[amounts, newest
    created]``, and an alert -- caused by the watermark passing a transaction's time -- carries that transaction's
    creation time last."""

    def process_element(self, value: Any, ctx: Any) -> None:
        """Remembers the transaction (and its creation time) and registers an event-time timer at its time."""
        (_, amount, ts), created = value
        entry = self.recent.get(ts)
        if entry is None:
            self.recent.put(ts, [[amount], created])
        else:
            self.recent.put(ts, [entry[0] + [amount], max(entry[1], created)])
        ctx.timer_service().register_event_time_timer(ts)

    def on_timer(self, timestamp: int, ctx: Any) -> Any:
        """``VelocityRule.on_timer``; the alert carries the creation time of the transactions at ``timestamp``."""
        horizon = timestamp - VELOCITY_MS
        count = total = 0
        created = 0.0
        for ts in list(self.recent.keys()):
            if ts <= horizon:
                self.recent.remove(ts)
            elif ts <= timestamp:
                amounts, c = self.recent.get(ts)
                count += len(amounts)
                total += sum(amounts)
                if ts == timestamp:
                    created = c
        if count > MAX_COUNT or total > MAX_AMOUNT:
            yield ("alert", ctx.get_current_key(), timestamp, total, count, created)


# ---- jobs ----

def build_w1(env: StreamExecutionEnvironment, records: int, parallelism: int = 1) -> None:
    """W1: NumberSequenceSource -> map -> filter -> flat_map -> discarding sink, all chained."""
    env.set_parallelism(parallelism)
    (
        env.from_source(NumberSequenceSource(0, records - 1), source_name="Numbers")
        .map(double)
        .filter(not_multiple_of_3)
        .flat_map(expand)
        .sink_to(CountingSink())
        .name("Discard")
    )


def latency_w1(env: StreamExecutionEnvironment, source: LatencySource, sink: LatencySink, parallelism: int) -> None:
    """W1's latency job."""
    env.set_parallelism(parallelism)
    (
        env.from_source(source, source_name="Rate-limited numbers")
        .map(lat_double)
        .filter(lat_not_multiple_of_3)
        .flat_map(lat_expand)
        .sink_to(sink)
        .name("Latency")
    )


def build_w2(env: StreamExecutionEnvironment, records: int, parallelism: int = 2) -> None:
    """W2: NumberSequenceSource -> map to (key, 1) -> key_by -> reduce (sum) -> discarding sink."""
    env.set_parallelism(parallelism)
    (
        env.from_source(NumberSequenceSource(0, records - 1), source_name="Numbers")
        .map(to_key_one)
        .key_by(first_field)
        .reduce(sum_counts)
        .sink_to(CountingSink())
        .name("Discard")
    )


def latency_w2(env: StreamExecutionEnvironment, source: LatencySource, sink: LatencySink, parallelism: int) -> None:
    """W2's latency job."""
    env.set_parallelism(parallelism)
    (
        env.from_source(source, source_name="Rate-limited numbers")
        .map(lat_to_key_one)
        .key_by(lat_key)
        .reduce(lat_sum_counts)
        .sink_to(sink)
        .name("Latency")
    )


V1_RECORDS_OFF = {"pipeline.columnar-exchange": "false"}
"""The job configuration of V1-records: V1's buffers cross the rebalance as records (the path before columns
crossed task boundaries)."""


def _build_v1(env: StreamExecutionEnvironment, records: int, parallelism: int, columnar: bool) -> None:
    env.set_parallelism(parallelism)
    if not columnar:
        for k, v in V1_RECORDS_OFF.items():
            env.get_config().set_string(k, v)
    (
        env.from_source(NumberSequenceSource(0, records - 1), source_name="Numbers")
        .map_batches(v1_first)
        .rebalance()
        .map_batches(v1_second, output_records="value")
        .sink_to(CountingSink())
        .name("Discard")
    )


def build_v1(env: StreamExecutionEnvironment, records: int, parallelism: int = 2) -> None:
    """V1: NumberSequenceSource -> map_batches -> rebalance -> map_batches -> discarding sink; the buffers cross
    the rebalance as columns (Arrow IPC between workers)."""
    _build_v1(env, records, parallelism, True)


def build_v1_records(env: StreamExecutionEnvironment, records: int, parallelism: int = 2) -> None:
    """V1 with its buffers crossing the rebalance as records (pickled), converted at both ends."""
    _build_v1(env, records, parallelism, False)


def _latency_v1(env: StreamExecutionEnvironment, source: LatencySource, sink: LatencySink, parallelism: int,
                columnar: bool) -> None:
    env.set_parallelism(parallelism)
    if not columnar:
        for k, v in V1_RECORDS_OFF.items():
            env.get_config().set_string(k, v)
    (
        env.from_source(source, source_name="Rate-limited numbers")
        .map_batches(lat_v1_first)
        .rebalance()
        .map_batches(lat_v1_second)
        .sink_to(sink)
        .name("Latency")
    )


def latency_v1(env: StreamExecutionEnvironment, source: LatencySource, sink: LatencySink, parallelism: int) -> None:
    """V1's latency job."""
    _latency_v1(env, source, sink, parallelism, True)


def latency_v1_records(env: StreamExecutionEnvironment, source: LatencySource, sink: LatencySink,
                       parallelism: int) -> None:
    """V1-records' latency job."""
    _latency_v1(env, source, sink, parallelism, False)


def _w3_window(events: DataStream, event_time: Any, key: Any, reduce: Any) -> DataStream:
    strategy = (WatermarkStrategy.for_bounded_out_of_orderness(Duration.of_seconds(W3_DISORDER_MS // 1000))
                .with_timestamp_assigner(event_time))
    return (
        events.assign_timestamps_and_watermarks(strategy)
        .key_by(key)
        .window(TumblingEventTimeWindows.of(Time.minutes(W3_WINDOW_MS // 60_000)))
        .reduce(reduce)
    )


def _build_w3(env: StreamExecutionEnvironment, records: int, parallelism: int) -> None:
    env.set_parallelism(parallelism)
    events = env.from_source(InterleavedSequenceSource(records), WatermarkStrategy.no_watermarks(),
                             "Numbers").map(w3_event)
    _w3_window(events, w3_event_time, first_field, sum_values).sink_to(CountingSink()).name("Discard")


def build_w3_hashmap(env: StreamExecutionEnvironment, records: int, parallelism: int = 1) -> None:
    """W3 on the hashmap backend: numbers (interleaved over the source subtasks) -> map to (key, ts, value) ->
    timestamps and 2 s bounded watermarks -> key_by -> 1-minute tumbling event-time window reduce (sum) ->
    discarding sink."""
    env.set_state_backend(HashMapStateBackend())
    _build_w3(env, records, parallelism)


def build_w3_rocksdb(env: StreamExecutionEnvironment, records: int, parallelism: int = 1) -> None:
    """W3 as ``build_w3_hashmap``, with the window contents in RocksDB (W5 adds checkpoints every second)."""
    env.set_state_backend(EmbeddedRocksDBStateBackend())
    _build_w3(env, records, parallelism)


def _latency_w3(env: StreamExecutionEnvironment, source: LatencySource, sink: LatencySink, parallelism: int) -> None:
    env.set_parallelism(parallelism)
    events = env.from_source(source, WatermarkStrategy.no_watermarks(), "Rate-limited numbers").map(lat_w3_event)
    # a window result is measured from the creation of the window's newest record over all keys (when the window's
    # input was complete), not from its own key's newest: that one may come up to a whole window earlier
    _w3_window(events, lat_w3_event_time, lat_key, lat_sum_values).sink_to(sink.with_group(lat_window_of)).name(
        "Latency")


def latency_w3_hashmap(env: StreamExecutionEnvironment, source: LatencySource, sink: LatencySink,
                       parallelism: int) -> None:
    """W3-hashmap's latency job."""
    env.set_state_backend(HashMapStateBackend())
    _latency_w3(env, source, sink, parallelism)


def latency_w3_rocksdb(env: StreamExecutionEnvironment, source: LatencySource, sink: LatencySink,
                       parallelism: int) -> None:
    """W3-rocksdb's (and W5's) latency job."""
    env.set_state_backend(EmbeddedRocksDBStateBackend())
    _latency_w3(env, source, sink, parallelism)


def _w4_rule(transactions: DataStream, event_time: Any, key: Any, rule: VelocityRule) -> DataStream:
    strategy = (WatermarkStrategy.for_bounded_out_of_orderness(Duration.of_seconds(W4_DISORDER_MS // 1000))
                .with_timestamp_assigner(event_time))
    return transactions.assign_timestamps_and_watermarks(strategy).key_by(key).process(rule).name("velocity rule")


def build_w4(env: StreamExecutionEnvironment, records: int, parallelism: int = 2) -> None:
    """W4: numbers (interleaved) -> map to transactions -> timestamps and 5 s bounded watermarks -> key_by
    customer -> VelocityRule (MapState, event-time timers) -> discarding sink."""
    env.set_parallelism(parallelism)
    transactions = env.from_source(InterleavedSequenceSource(records), WatermarkStrategy.no_watermarks(),
                                   "Transaction ids").map(w4_transaction)
    _w4_rule(transactions, w4_transaction_time, first_field, VelocityRule()).sink_to(CountingSink()).name("Discard")


def latency_w4(env: StreamExecutionEnvironment, source: LatencySource, sink: LatencySink, parallelism: int) -> None:
    """W4's latency job (alerts carry the creation time of the transaction whose timer raised them)."""
    env.set_parallelism(parallelism)
    transactions = env.from_source(source, WatermarkStrategy.no_watermarks(),
                                   "Rate-limited transaction ids").map(lat_w4_transaction)
    _w4_rule(transactions, lat_w4_transaction_time, lat_key, LatencyVelocityRule()).sink_to(sink).name("Latency")


# ---- baselines: one plain loop in this process, same functions, same records ----

def baseline_w1(records: int) -> int:
    """W1 as a plain loop; returns the number of records that reach the sink."""
    f_map, f_filter, f_flat = double, not_multiple_of_3, expand
    count = 0
    for x in range(records):
        y = f_map(x)
        if f_filter(y):
            for _ in f_flat(y):
                count += 1
    return count


def baseline_v1(records: int) -> int:
    """V1 as a plain loop: buffers of 1,024 numbers as Arrow batches through the same two functions, the results
    made records (as the sink gets them); returns the number of records."""
    import pyarrow as pa

    count = 0
    for start in range(0, records, 1024):
        batch = pa.RecordBatch.from_arrays([pa.array(range(start, min(start + 1024, records)))], names=["f0"])
        count += len(v1_second(pa.RecordBatch.from_pydict(v1_first(batch)))["z"].to_pylist())
    return count


_MISSING = object()


def baseline_w2(records: int) -> int:
    """W2 as a plain loop with a dict for the keyed state; the reduce's outputs are discarded."""
    f_map, f_key, f_reduce = to_key_one, first_field, sum_counts
    state: dict[Any, Any] = {}
    get = state.get
    count = 0
    for x in range(records):
        v: Any = f_map(x)
        k = f_key(v)
        acc = get(k, _MISSING)
        if acc is not _MISSING:
            v = f_reduce(acc, v)
        state[k] = v
        count += 1
    return count


def _fire_windows(contents: dict[Any, Any], pending: dict[int, list[Any]], watermark: int) -> int:
    """Emits (counts and discards) the windows whose end the watermark has passed, oldest first."""
    fired = 0
    for start in sorted(pending):
        if start + W3_WINDOW_MS - 1 > watermark:
            break
        for k in pending.pop(start):
            contents.pop((k, start))  # the window's result: emitted, then dropped
            fired += 1
    return fired


def baseline_w3(records: int) -> int:
    """W3 as a plain loop: dict[(key, window start)] of reduced values, windows fired by a bounded watermark.

    Same record-building, timestamp, key and reduce functions as the job. The watermark (max ts - 2 s - 1) is
    advanced every 1,024 records (the job's every 200 ms); a window fires when it passes the window's end - 1,
    the rest at the end of input. ``pending`` holds per window start the keys that have state in it -- the
    end-of-window timers. Returns the number of windows emitted.
    """
    f_event, f_ts, f_key, f_reduce = w3_event, w3_event_time, first_field, sum_values
    size, bound = W3_WINDOW_MS, W3_DISORDER_MS
    contents: dict[Any, Any] = {}
    pending: dict[int, list[Any]] = {}
    get = contents.get
    max_ts = watermark = _MIN_TIMESTAMP
    fired = late = 0
    for n in range(records):
        v: Any = f_event(n)
        ts = f_ts(v, _MIN_TIMESTAMP)
        if ts > max_ts:
            max_ts = ts
        start = ts - ts % size
        if start + size - 1 <= watermark:  # late: dropped, as by the window operator (never happens here)
            late += 1
            continue
        k = f_key(v)
        ck = (k, start)
        acc = get(ck, _MISSING)
        if acc is _MISSING:
            contents[ck] = v
            keys = pending.get(start)
            if keys is None:
                keys = pending[start] = []
            keys.append(k)
        else:
            contents[ck] = f_reduce(acc, v)
        if n & 1023 == 1023:
            watermark = max_ts - bound - 1
            fired += _fire_windows(contents, pending, watermark)
    return fired + _fire_windows(contents, pending, _MAX_TIMESTAMP)


def _fire_velocity(recent: dict[Any, dict[int, list[int]]], timers: list[tuple[int, Any]], watermark: int) -> int:
    """Evaluates the velocity rule for the timers at or before ``watermark``, in timestamp order, as
    ``VelocityRule.on_timer`` does; returns the number of alerts (counted and discarded)."""
    alerts = 0
    pop = heapq.heappop
    while timers and timers[0][0] <= watermark:
        timestamp, c = pop(timers)
        r = recent[c]
        horizon = timestamp - VELOCITY_MS
        count = total = 0
        for ts in list(r):
            if ts <= horizon:
                del r[ts]
            elif ts <= timestamp:
                amounts = r[ts]
                count += len(amounts)
                total += sum(amounts)
        if count > MAX_COUNT or total > MAX_AMOUNT:
            alerts += 1
    return alerts


def baseline_w4(records: int) -> int:
    """W4 as a plain loop: the velocity rule per customer, in event-time order, on dicts and a heap of timers.

    Same transaction, timestamp and key functions as the job. Per customer a dict ts -> amounts (the MapState);
    a timer (ts, customer) is pushed on the heap when the customer's first transaction at ts arrives (timers
    are deduplicated per key and time; no transaction is late, so none arrives after its timer fired). The
    watermark (max ts - 5 s - 1) advances every 1,024 records and fires the timers it passed, the rest fire at
    the end. Returns the number of alerts.
    """
    f_tx, f_ts, f_key = w4_transaction, w4_transaction_time, first_field
    bound = W4_DISORDER_MS
    recent: dict[Any, dict[int, list[int]]] = {}
    timers: list[tuple[int, Any]] = []
    push = heapq.heappush
    max_ts = _MIN_TIMESTAMP
    alerts = 0
    for n in range(records):
        v = f_tx(n)
        ts = f_ts(v, _MIN_TIMESTAMP)
        if ts > max_ts:
            max_ts = ts
        c = f_key(v)
        r = recent.get(c)
        if r is None:
            r = recent[c] = {}
        amounts = r.get(ts)
        if amounts is None:
            r[ts] = [v[1]]
            push(timers, (ts, c))
        else:
            r[ts] = amounts + [v[1]]
        if n & 1023 == 1023:
            alerts += _fire_velocity(recent, timers, max_ts - bound - 1)
    return alerts + _fire_velocity(recent, timers, _MAX_TIMESTAMP)
