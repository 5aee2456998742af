"""Keyed state of every kind, timers, connected streams and bad timestamps, on a real cluster and both backends."""

from __future__ import annotations

import collections
from typing import Any

import cloudpickle
import pytest

import tests.integration.sources as sources_module
from tests.integration.sources import SegmentedSource
from weir.common import Duration
from weir.common.watermark_strategy import WatermarkStrategy
from weir.datastream import (
    EmbeddedRocksDBStateBackend,
    HashMapStateBackend,
    JobExecutionException,
    KeyedCoProcessFunction,
    KeyedProcessFunction,
    OutputTag,
    RuntimeContext,
    StreamExecutionEnvironment,
)
from weir.datastream.connectors import NumberSequenceSource
from weir.datastream.functions import AggregateFunction
from weir.datastream.state import (
    AggregatingStateDescriptor,
    ListStateDescriptor,
    MapStateDescriptor,
    ReducingStateDescriptor,
    ValueStateDescriptor,
)

pytestmark = pytest.mark.integration
cloudpickle.register_pickle_by_value(sources_module)
BACKENDS = {"hashmap": HashMapStateBackend, "rocksdb": EmbeddedRocksDBStateBackend}


class Avg(AggregateFunction):
    def create_accumulator(self) -> tuple[int, int]:
        return (0, 0)

    def add(self, value: int, acc: tuple[int, int]) -> tuple[int, int]:
        return (acc[0] + value, acc[1] + 1)

    def get_result(self, acc: tuple[int, int]) -> float:
        return acc[0] / acc[1]

    def merge(self, a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
        return (a[0] + b[0], a[1] + b[1])


class EveryState(KeyedProcessFunction):
    """Per key: a count (value), the last three values (list), counts by residue (map), a sum (reducing) and a
    mean (aggregating); emits all of them for every record."""

    def open(self, runtime_context: RuntimeContext) -> None:
        self.count = runtime_context.get_state(ValueStateDescriptor("count"))
        self.last = runtime_context.get_list_state(ListStateDescriptor("last"))
        self.by_mod = runtime_context.get_map_state(MapStateDescriptor("by_mod"))
        self.total = runtime_context.get_reducing_state(ReducingStateDescriptor("total", lambda a, b: a + b))
        self.mean = runtime_context.get_aggregating_state(AggregatingStateDescriptor("mean", Avg()))

    def process_element(self, value: int, ctx: Any) -> Any:
        n = (self.count.value() or 0) + 1
        self.count.update(n)
        last = list(self.last.get() or [])[-2:] + [value]
        self.last.update(last)
        m = value % 3
        self.by_mod.put(m, (self.by_mod.get(m) or 0) + 1)
        self.total.add(value)
        self.mean.add(value)
        if n % 50 == 0:
            self.by_mod.clear()
        yield (ctx.get_current_key(), n, tuple(last), tuple(sorted(self.by_mod.items())), self.total.get(),
               self.mean.get())


def every_state_reference(values: list[int], key: Any) -> collections.Counter:
    out: collections.Counter = collections.Counter()
    st: dict[Any, dict[str, Any]] = {}
    for v in values:
        k = key(v)
        s = st.setdefault(k, {"n": 0, "last": [], "mod": {}, "sum": 0, "cnt": 0})
        s["n"] += 1
        s["last"] = s["last"][-2:] + [v]
        s["mod"][v % 3] = s["mod"].get(v % 3, 0) + 1
        s["sum"] += v
        s["cnt"] += 1
        if s["n"] % 50 == 0:
            s["mod"] = {}
        out[(k, s["n"], tuple(s["last"]), tuple(sorted(s["mod"].items())), s["sum"], s["sum"] / s["cnt"])] += 1
    return out


@pytest.mark.parametrize("backend", ["hashmap", "rocksdb"])
def test_every_state_kind_per_key(on_cluster: str, backend: str) -> None:
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(2)
    env.set_state_backend(BACKENDS[backend]())
    n = 6_000
    # one source subtask: each key's records arrive in order, so the rolling state is deterministic
    out = (env.from_collection(list(range(n))).key_by(lambda v: v % 17).process(EveryState())
           .execute_and_collect())
    assert collections.Counter(out) == every_state_reference(list(range(n)), lambda v: v % 17)


class TimersInOrder(KeyedProcessFunction):
    """Registers an event-time timer at each record's timestamp and at ts + 1000 (twice, to test dedup)."""

    def process_element(self, value: Any, ctx: Any) -> Any:
        ts = ctx.timestamp()
        ctx.timer_service().register_event_time_timer(ts)
        ctx.timer_service().register_event_time_timer(ts + 1_000)
        ctx.timer_service().register_event_time_timer(ts + 1_000)
        return []

    def on_timer(self, timestamp: int, ctx: Any) -> Any:
        yield (ctx.get_current_key(), timestamp, ctx.timestamp())


@pytest.mark.parametrize("backend", ["hashmap", "rocksdb"])
def test_event_timers_fire_once_per_key_and_time_in_order(on_cluster: str, backend: str) -> None:
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(2)
    env.set_state_backend(BACKENDS[backend]())
    env.get_config().set_auto_watermark_interval(10)
    segs = [[(f"k{i % 5}", i * 37 % 2_000 + s * 1_000) for i in range(40)] for s in range(8)]
    strategy = WatermarkStrategy.for_bounded_out_of_orderness(Duration.of_millis(2_000)).with_timestamp_assigner(
        lambda r, _: r[1])
    out = list(env.from_source(SegmentedSource(segs, pause_ms=30), strategy, "segs")
               .key_by(lambda r: r[0]).process(TimersInOrder()).execute_and_collect())
    expected = collections.Counter()
    for k in {r[0] for s in segs for r in s}:
        stamps = {r[1] for s in segs for r in s if r[0] == k} | {r[1] + 1_000 for s in segs for r in s if r[0] == k}
        for t in stamps:
            expected[(k, t, t)] += 1
    assert collections.Counter(out) == expected  # once per (key, timestamp), with the timer's timestamp
    for k in {r[0] for r in out}:
        times = [t for key, t, _ in out if key == k]
        assert times == sorted(times), f"timers of {k} fired out of order"


class Enrich(KeyedCoProcessFunction):
    """Joins orders (input 1) with the latest price of their product (input 2), buffering orders that arrive first."""

    def open(self, runtime_context: RuntimeContext) -> None:
        self.price = runtime_context.get_state(ValueStateDescriptor("price"))
        self.waiting = runtime_context.get_list_state(ListStateDescriptor("waiting"))

    def process_element1(self, order: Any, ctx: Any) -> Any:
        p = self.price.value()
        if p is None:
            self.waiting.add(order)
            return []
        return [(order[1], ctx.get_current_key(), order[2] * p)]

    def process_element2(self, price: Any, ctx: Any) -> Any:
        first = self.price.value() is None
        self.price.update(price[1])
        if first:
            for order in self.waiting.get() or []:
                yield (order[1], ctx.get_current_key(), order[2] * price[1])
            self.waiting.clear()


@pytest.mark.parametrize("backend", ["hashmap", "rocksdb"])
def test_keyed_co_process_joins_two_streams(on_cluster: str, backend: str) -> None:
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(2)
    env.set_state_backend(BACKENDS[backend]())
    orders = env.from_collection([(f"p{i % 10}", i, i % 7 + 1) for i in range(2_000)])
    prices = env.from_collection([(f"p{i}", i + 1) for i in range(10)])
    out = (orders.connect(prices).key_by(lambda o: o[0], lambda p: p[0]).process(Enrich())
           .execute_and_collect())
    assert sorted(out) == [(i, f"p{i % 10}", (i % 7 + 1) * (i % 10 + 1)) for i in range(2_000)]


def test_timestamp_assigner_failure_fails_the_job_and_shows_the_record(on_cluster: str) -> None:
    env = StreamExecutionEnvironment.get_execution_environment()
    strategy = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(lambda r, _: r["ts"])
    env.from_collection([{"ts": 1}, {"ts": 2}, {"when": 3}]).assign_timestamps_and_watermarks(strategy).print()
    with pytest.raises(JobExecutionException) as e:
        env.execute("bad timestamps")
    assert "{'when': 3}" in e.value.cause and "timestamp assigner failed" in e.value.cause


def test_bad_timestamps_go_to_the_side_output_with_the_policy(on_cluster: str) -> None:
    env = StreamExecutionEnvironment.get_execution_environment()
    env.get_config().set_string("pipeline.invalid-timestamp-policy", "side-output")
    strategy = WatermarkStrategy.for_monotonous_timestamps().with_timestamp_assigner(lambda r, _: r[1])
    data = [("ok", i) for i in range(100)] + [("bad", "yesterday"), ("bad", None)]
    good = env.from_collection(data).assign_timestamps_and_watermarks(strategy)
    bad = good.get_side_output(OutputTag("invalid-timestamps"))
    out = list(good.map(lambda r: ("good", r)).union(bad.map(lambda r: ("side", r))).execute_and_collect())
    assert sorted((r for k, r in out if k == "side"), key=str) == sorted([("bad", "yesterday"), ("bad", None)], key=str)
    assert len([r for k, r in out if k == "good"]) == 100


def test_window_build_errors_are_clear() -> None:
    from weir.common import Time
    from weir.datastream.window import TumblingEventTimeWindows

    with pytest.raises(ValueError, match="size"):
        TumblingEventTimeWindows.of(Time.seconds(0))
    env = StreamExecutionEnvironment.get_execution_environment()
    ws = env.from_source(NumberSequenceSource(1, 10), None, "n").key_by(lambda x: x).window(
        TumblingEventTimeWindows.of(Time.seconds(1)))
    with pytest.raises(ValueError, match="lateness"):
        ws.allowed_lateness(-1)
    with pytest.raises(TypeError, match="window assigner"):
        env.from_collection([1]).key_by(lambda x: x).window("1 minute")  # type: ignore[arg-type]
