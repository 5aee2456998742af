"""Event-time windows on a real cluster against a plain-Python reference of Flink's rules, on both state backends
and at parallelism 1 and 2. Watermarks are made deterministic with SegmentedSource (see tests/integration/sources.py),
so which elements are late -- beyond or within the allowed lateness -- follows from the data alone."""

from __future__ import annotations

import collections
import random
from typing import Any

import cloudpickle
import pytest

import tests.integration.sources as sources_module
from tests.integration.sources import SegmentedSource, watermarks_after_segments
from weir.common import Duration, Time
from weir.common.watermark_strategy import WatermarkStrategy
from weir.datastream import (
    EmbeddedRocksDBStateBackend,
    HashMapStateBackend,
    OutputTag,
    StreamExecutionEnvironment,
)
from weir.datastream.functions import AggregateFunction, ProcessWindowFunction, WindowFunction
from weir.datastream.window import (
    EventTimeSessionWindows,
    SlidingEventTimeWindows,
    TumblingEventTimeWindows,
)

pytestmark = pytest.mark.integration
cloudpickle.register_pickle_by_value(sources_module)

MIN = -(2**63)
B = 1_000  # bounded out-of-orderness of the watermark strategy
BACKENDS = {"hashmap": HashMapStateBackend, "rocksdb": EmbeddedRocksDBStateBackend}


def make_segments(seed: int, n_segments: int = 30, per_segment: int = 15, keys: int = 4) -> list[list[Any]]:
    """(key, ts, value) records drifting forward in time; some arrive up to 3 s late (beyond B)."""
    rnd = random.Random(seed)
    segs = []
    now = 0
    for _ in range(n_segments):
        seg = []
        for _ in range(per_segment):
            now += rnd.randrange(0, 120)
            delay = rnd.choice([0, 0, 0, 200, 600, 900, 1_500, 3_000])
            seg.append((f"k{rnd.randrange(keys)}", now - delay, rnd.randrange(1, 100)))
        segs.append(seg)
    return segs


def env_for(address: str, parallelism: int, backend: str) -> StreamExecutionEnvironment:
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(parallelism)
    env.set_state_backend(BACKENDS[backend]())
    env.get_config().set_auto_watermark_interval(10)
    return env


def timestamped(env: StreamExecutionEnvironment, segments: list[list[Any]]) -> Any:
    strategy = WatermarkStrategy.for_bounded_out_of_orderness(Duration.of_millis(B)).with_timestamp_assigner(
        lambda r, _: r[1]
    )
    return env.from_source(SegmentedSource(segments), strategy, "segments")


def reference_windows(segments: list[list[Any]], assign: Any, lateness: int) -> tuple[collections.Counter, list]:
    """Flink's WindowOperator with the default EventTimeTrigger, computed directly: (fires, late elements).

    A fire is (key, start, end, sum, count) of the window's contents at that moment."""
    wms = watermarks_after_segments(segments, lambda r: r[1], B)
    state: dict[tuple[str, int, int], list[int]] = {}
    timers: set[tuple[str, int, int]] = set()
    fires: collections.Counter = collections.Counter()
    late: list[Any] = []
    wm = MIN
    for seg, seg_wm in zip(segments, wms, strict=True):
        for k, ts, v in seg:
            live = [w for w in assign(ts) if w[1] - 1 + lateness > wm]
            if not live:
                if ts + lateness <= wm:
                    late.append((k, ts, v))
                continue
            for start, end in live:
                key = (k, start, end)
                if key not in state:
                    state[key] = [0, 0]
                    if end - 1 > wm:
                        timers.add(key)
                st = state[key]
                st[0] += v
                st[1] += 1
                if end - 1 <= wm:
                    fires[(*key, st[0], st[1])] += 1
        if seg_wm > wm:
            wm = seg_wm
            for key in [t for t in timers if t[2] - 1 <= wm]:
                timers.discard(key)
                fires[(*key, *state[key])] += 1
            for key in [s for s in state if s[2] - 1 + lateness <= wm]:
                del state[key]
    for key in timers:  # the final watermark
        fires[(*key, *state[key])] += 1
    return fires, late


def tumbling(size: int) -> Any:
    return lambda ts: [(ts - ts % size, ts - ts % size + size)]


def sliding(size: int, slide: int) -> Any:
    def assign(ts: int) -> list[tuple[int, int]]:
        last = ts - ts % slide
        return [(s, s + size) for s in range(last, ts - size, -slide)]

    return assign


class SumCount(AggregateFunction):
    def create_accumulator(self) -> tuple[int, int]:
        return (0, 0)

    def add(self, value: Any, acc: tuple[int, int]) -> tuple[int, int]:
        return (acc[0] + value[2], acc[1] + 1)

    def get_result(self, acc: tuple[int, int]) -> tuple[int, int]:
        return acc

    def merge(self, a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
        return (a[0] + b[0], a[1] + b[1])


class Describe(ProcessWindowFunction):
    def process(self, key: Any, context: Any, elements: Any) -> Any:
        (total, count), = elements
        w = context.window()
        yield (key, w.start, w.end, total, count)


class DescribeAll(ProcessWindowFunction):
    """Sees every element of the window (no pre-aggregation)."""

    def process(self, key: Any, context: Any, elements: Any) -> Any:
        els = list(elements)
        w = context.window()
        yield (key, w.start, w.end, sum(e[2] for e in els), len(els))


class ApplyAll(WindowFunction):
    def apply(self, key: Any, window: Any, inputs: Any) -> Any:
        els = list(inputs)
        return [(key, window.start, window.end, sum(e[2] for e in els), len(els))]


LATE = OutputTag("late")


def run_windows(address: str, parallelism: int, backend: str, segments: Any, assigner: Any, lateness: int,
                how: str) -> tuple[collections.Counter, list]:
    env = env_for(address, parallelism, backend)
    stream = timestamped(env, segments)
    if how == "reduce":  # reduce keeps the record type: carry (key, ts, sum, count)
        stream = stream.map(lambda r: (r[0], r[1], r[2], 1))
    windowed = (stream.key_by(lambda r: r[0]).window(assigner)
                .allowed_lateness(lateness).side_output_late_data(LATE))
    if how == "aggregate":
        main = windowed.aggregate(SumCount(), Describe())
    elif how == "reduce":
        main = windowed.reduce(lambda a, b: (a[0], max(a[1], b[1]), a[2] + b[2], a[3] + b[3]),
                               window_function=_ReduceDescribe())
    elif how == "process":
        main = windowed.process(DescribeAll())
    else:
        main = windowed.apply(ApplyAll())
    late = main.get_side_output(LATE).map(lambda r: ("late", r[:3]))
    got = list(main.map(lambda r: ("fire", r)).union(late).execute_and_collect())
    fires = collections.Counter(r for kind, r in got if kind == "fire")
    lates = sorted(r for kind, r in got if kind == "late")
    return fires, lates


class _ReduceDescribe(ProcessWindowFunction):
    def process(self, key: Any, context: Any, elements: Any) -> Any:
        (r,) = elements
        w = context.window()
        yield (key, w.start, w.end, r[2], r[3])


@pytest.mark.parametrize("backend", ["hashmap", "rocksdb"])
@pytest.mark.parametrize("parallelism", [1, 2])
def test_tumbling_windows_with_lateness_and_late_side_output(on_cluster: str, backend: str, parallelism: int) -> None:
    segs = make_segments(seed=7)
    expected, expected_late = reference_windows(segs, tumbling(1_000), lateness=500)
    assert expected_late, "the data must contain elements later than the allowed lateness"
    assert sum(expected.values()) > len({k[:3] for k in expected}), "and late firings within the lateness"
    fires, late = run_windows(on_cluster, parallelism, backend, segs, TumblingEventTimeWindows.of(Time.seconds(1)),
                              500, "aggregate")
    assert fires == expected
    assert late == sorted(expected_late)


@pytest.mark.parametrize("backend", ["hashmap", "rocksdb"])
@pytest.mark.parametrize("how", ["reduce", "process", "apply"])
def test_sliding_windows_every_function_kind(on_cluster: str, backend: str, how: str) -> None:
    segs = make_segments(seed=11)
    expected, expected_late = reference_windows(segs, sliding(1_500, 500), lateness=0)
    fires, late = run_windows(on_cluster, 2, backend, segs,
                              SlidingEventTimeWindows.of(Time.milliseconds(1_500), Time.milliseconds(500)), 0, how)
    assert fires == expected
    assert late == sorted(expected_late)


def session_segments(seed: int) -> list[list[Any]]:
    """Bursts per key separated by long silences; out of order within a burst (less than B)."""
    rnd = random.Random(seed)
    records = []
    for k in range(3):
        t = rnd.randrange(0, 500)
        for _ in range(6):
            for _ in range(rnd.randrange(1, 6)):
                records.append((f"k{k}", t, rnd.randrange(1, 50)))
                t += rnd.randrange(0, 250)
            t += rnd.randrange(2_000, 4_000)
    records.sort(key=lambda r: r[1] + rnd.randrange(0, 800))  # arrival order: out of order by < B
    return [records[i:i + 10] for i in range(0, len(records), 10)]


def reference_sessions(records: list[Any], gap: int) -> collections.Counter:
    out: collections.Counter = collections.Counter()
    by_key: dict[str, list[Any]] = collections.defaultdict(list)
    for r in records:
        by_key[r[0]].append(r)
    for k, rs in by_key.items():
        rs.sort(key=lambda r: r[1])
        start, end, total, count = rs[0][1], rs[0][1] + gap, 0, 0
        for _, ts, v in rs:
            if ts > end:  # [ts, ts+gap) does not touch the session (bounds included would merge at ts == end)
                out[(k, start, end, total, count)] += 1
                start, end, total, count = ts, ts + gap, 0, 0
            end = max(end, ts + gap)
            total += v
            count += 1
        out[(k, start, end, total, count)] += 1
    return out


@pytest.mark.parametrize("backend", ["hashmap", "rocksdb"])
@pytest.mark.parametrize("parallelism", [1, 2])
def test_session_windows_merge(on_cluster: str, backend: str, parallelism: int) -> None:
    segs = session_segments(seed=3)
    expected = reference_sessions([r for s in segs for r in s], gap=1_000)
    assert any(c > 1 for (_, _, _, _, c) in expected), "sessions must merge several elements"
    fires, late = run_windows(on_cluster, parallelism, backend, segs,
                              EventTimeSessionWindows.with_gap(Time.seconds(1)), 0, "aggregate")
    assert fires == expected
    assert late == []


def test_window_all_sees_the_whole_stream(on_cluster: str) -> None:
    from weir.datastream.functions import ProcessAllWindowFunction

    class Count(ProcessAllWindowFunction):
        def process(self, context: Any, elements: Any) -> Any:
            els = list(elements)
            yield (context.window().start, len(els), sum(e[2] for e in els))

    segs = make_segments(seed=5)
    expected, _ = reference_windows([[("all", ts, v) for _, ts, v in s] for s in segs], tumbling(2_000), 0)
    env = env_for(on_cluster, 2, "hashmap")
    out = (timestamped(env, segs).window_all(TumblingEventTimeWindows.of(Time.seconds(2))).process(Count())
           .execute_and_collect())
    assert collections.Counter(out) == collections.Counter((s, c, t) for (_, s, _, t, c) in expected.elements())
