"""weir.datastream.window: windows, assigners (against references built from SEMANTICS.md), triggers."""

from __future__ import annotations

import dataclasses
import pickle
import random
from typing import Any

import cloudpickle
import pytest

from weir.common.time import Duration, Time
from weir.datastream.functions import ReduceFunction
from weir.datastream.state import ReducingStateDescriptor
from weir.datastream.window import (
    MAX_TIMESTAMP,
    MIN_TIMESTAMP,
    ContinuousEventTimeTrigger,
    ContinuousProcessingTimeTrigger,
    CountSlidingWindowAssigner,
    CountTrigger,
    CountTumblingWindowAssigner,
    CountWindow,
    DynamicEventTimeSessionWindows,
    DynamicProcessingTimeSessionWindows,
    EventTimeSessionWindows,
    EventTimeTrigger,
    GlobalWindow,
    GlobalWindows,
    MergingWindowAssigner,
    NeverTrigger,
    ProcessingTimeSessionWindows,
    ProcessingTimeTrigger,
    PurgingTrigger,
    SessionWindowTimeGapExtractor,
    SlidingEventTimeWindows,
    SlidingProcessingTimeWindows,
    TimeWindow,
    Trigger,
    TriggerResult,
    TumblingEventTimeWindows,
    TumblingProcessingTimeWindows,
    WindowAssigner,
)

CONTINUE = TriggerResult.CONTINUE
FIRE = TriggerResult.FIRE
FIRE_AND_PURGE = TriggerResult.FIRE_AND_PURGE


# ---------------------------------------------------------------------------------------------------------------------
# Test doubles
# ---------------------------------------------------------------------------------------------------------------------


class AssignerCtx:
    """WindowAssignerContext with a settable processing time."""

    def __init__(self, now: int = 0) -> None:
        self.now = now

    def get_current_processing_time(self) -> int:
        return self.now


def no_ctx() -> AssignerCtx:
    """A context whose clock must not be consulted by event-time assigners."""

    class Exploding(AssignerCtx):
        def get_current_processing_time(self) -> int:
            raise AssertionError("event-time assigner read the processing-time clock")

    return Exploding()


class FakeReducingState:
    def __init__(self, store: dict[Any, Any], key: Any, reducer: Any) -> None:
        self._store, self._key, self._reducer = store, key, reducer

    def get(self) -> Any:
        return self._store.get(self._key)

    def add(self, value: Any) -> None:
        current = self._store.get(self._key)
        self._store[self._key] = value if current is None else self._reducer(current, value)

    def clear(self) -> None:
        self._store.pop(self._key, None)


def reducer_of(descriptor: ReducingStateDescriptor) -> Any:
    fn = descriptor.get_reduce_function()
    return fn.reduce if isinstance(fn, ReduceFunction) else fn


class FakeTriggerContext:
    """TriggerContext / OnMergeContext: records timer calls, keeps state per (window, state name)."""

    def __init__(self, window: Any = None, watermark: int = MIN_TIMESTAMP, processing_time: int = 0) -> None:
        self.window = window
        self.watermark = watermark
        self.processing_time = processing_time
        self.calls: list[tuple[str, int]] = []
        self.state: dict[tuple[Any, str], Any] = {}
        self.merged_windows: list[Any] = []

    def get_current_processing_time(self) -> int:
        return self.processing_time

    def get_current_watermark(self) -> int:
        return self.watermark

    def register_processing_time_timer(self, time: int) -> None:
        self.calls.append(("register_proc", time))

    def register_event_time_timer(self, time: int) -> None:
        self.calls.append(("register_event", time))

    def delete_processing_time_timer(self, time: int) -> None:
        self.calls.append(("delete_proc", time))

    def delete_event_time_timer(self, time: int) -> None:
        self.calls.append(("delete_event", time))

    def get_partitioned_state(self, state_descriptor: Any) -> FakeReducingState:
        assert isinstance(state_descriptor, ReducingStateDescriptor)
        return FakeReducingState(self.state, (self.window, state_descriptor.get_name()), reducer_of(state_descriptor))

    def merge_partitioned_state(self, state_descriptor: Any) -> None:
        target = self.get_partitioned_state(state_descriptor)
        for w in self.merged_windows:
            value = self.state.pop((w, state_descriptor.get_name()), None)
            if value is not None:
                target.add(value)

    def take_calls(self) -> list[tuple[str, int]]:
        calls, self.calls = self.calls, []
        return calls


# ---------------------------------------------------------------------------------------------------------------------
# References (independent of the implementation: truncating division + search + containment check)
# ---------------------------------------------------------------------------------------------------------------------


def ref_tumbling(ts: int, size: int, offset: int) -> TimeWindow:
    k0 = int((ts - offset) / size)  # truncates toward zero; fine for the small values used here
    found = [
        TimeWindow(offset + k * size, offset + k * size + size)
        for k in range(k0 - 2, k0 + 3)
        if offset + k * size <= ts < offset + k * size + size
    ]
    assert len(found) == 1
    return found[0]


def ref_sliding(ts: int, size: int, slide: int, offset: int) -> list[TimeWindow]:
    """Every window [s, s + size) with s = offset + k * slide that contains ts, latest start first."""
    k0 = int((ts - offset) / slide)
    ks = range(k0 - size // slide - 3, k0 + 3)
    starts = [offset + k * slide for k in ks if offset + k * slide <= ts < offset + k * slide + size]
    return [TimeWindow(s, s + size) for s in sorted(starts, reverse=True)]


def ref_merge_groups(windows: list[TimeWindow]) -> set[tuple[frozenset[TimeWindow], TimeWindow]]:
    """Connected components of the 'intersects, bounds included' graph, by union-find over all pairs."""
    distinct = sorted(set(windows), key=lambda w: (w.start, w.end))
    parent = list(range(len(distinct)))

    def find(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for i, a in enumerate(distinct):
        for j, b in enumerate(distinct):
            if a.start <= b.end and b.start <= a.end:
                parent[find(i)] = find(j)
    groups: dict[int, list[TimeWindow]] = {}
    for i, w in enumerate(distinct):
        groups.setdefault(find(i), []).append(w)
    return {
        (frozenset(g), TimeWindow(min(w.start for w in g), max(w.end for w in g)))
        for g in groups.values()
        if len(g) > 1
    }


def random_timestamps(rng: random.Random, n: int) -> list[int]:
    return [rng.randint(-100_000, 100_000) for _ in range(n)] + [0, -1, 1, -100_000, 99_999]


# ---------------------------------------------------------------------------------------------------------------------
# Windows
# ---------------------------------------------------------------------------------------------------------------------


def test_time_window_basics():
    w = TimeWindow(0, 5)
    assert (w.start, w.end, w.max_timestamp()) == (0, 5, 4)
    assert TimeWindow(-10, 0).max_timestamp() == -1
    assert w == TimeWindow(0, 5) and hash(w) == hash(TimeWindow(0, 5))
    assert w != TimeWindow(0, 6)
    assert len({w, TimeWindow(0, 5), TimeWindow(1, 5)}) == 2
    assert sorted([TimeWindow(5, 10), TimeWindow(0, 7), TimeWindow(0, 5)]) == [
        TimeWindow(0, 5),
        TimeWindow(0, 7),
        TimeWindow(5, 10),
    ]
    assert TimeWindow(0, 5) < TimeWindow(1, 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        w.start = 1  # type: ignore[misc]
    for dumps, loads in ((pickle.dumps, pickle.loads), (cloudpickle.dumps, pickle.loads)):
        assert loads(dumps(TimeWindow(-3, 7))) == TimeWindow(-3, 7)


def test_time_window_intersects_bounds_included_and_cover():
    a = TimeWindow(0, 5)
    assert a.intersects(TimeWindow(5, 10)) and TimeWindow(5, 10).intersects(a)  # touching
    assert a.intersects(TimeWindow(-3, 0)) and TimeWindow(-3, 0).intersects(a)
    assert a.intersects(TimeWindow(1, 2)) and TimeWindow(1, 2).intersects(a)  # contained
    assert not a.intersects(TimeWindow(6, 10)) and not TimeWindow(6, 10).intersects(a)
    assert not a.intersects(TimeWindow(-5, -1))
    assert a.cover(TimeWindow(3, 9)) == TimeWindow(0, 9)
    assert TimeWindow(3, 9).cover(a) == TimeWindow(0, 9)
    assert a.cover(TimeWindow(1, 2)) == a
    assert a.cover(TimeWindow(20, 30)) == TimeWindow(0, 30)


def test_get_window_start_with_offset_matches_reference():
    rng = random.Random(7)
    for _ in range(3000):
        size = rng.randint(1, 1000)
        offset = rng.randint(-size + 1, size - 1)
        ts = rng.randint(-1_000_000, 1_000_000)
        assert TimeWindow.get_window_start_with_offset(ts, offset, size) == ref_tumbling(ts, size, offset).start
    assert TimeWindow.get_window_start_with_offset(-1, 0, 10) == -10
    assert TimeWindow.get_window_start_with_offset(-10, 0, 10) == -10
    assert TimeWindow.get_window_start_with_offset(-11, 0, 10) == -20
    assert TimeWindow.get_window_start_with_offset(2, 3, 10) == -7


def test_global_window_singleton_and_pickle():
    g = GlobalWindow.get()
    assert g is GlobalWindow.get() and g is GlobalWindow()
    assert g.max_timestamp() == 2**63 - 1 == MAX_TIMESTAMP
    assert pickle.loads(pickle.dumps(g)) is g
    assert pickle.loads(cloudpickle.dumps(g)) is g
    assert g == GlobalWindow.get() and hash(g) == hash(GlobalWindow.get())
    assert g != TimeWindow(0, 1)
    assert repr(g) == "GlobalWindow"


def test_count_window():
    w = CountWindow(3)
    assert w.id == 3 and w.max_timestamp() == 2**63 - 1
    assert w == CountWindow(3) and w != CountWindow(4) and hash(w) == hash(CountWindow(3))
    assert CountWindow(1) < CountWindow(2)
    assert pickle.loads(pickle.dumps(w)) == w


# ---------------------------------------------------------------------------------------------------------------------
# Time-window assigners
# ---------------------------------------------------------------------------------------------------------------------


def test_tumbling_event_time_matches_reference():
    rng = random.Random(1)
    for _ in range(300):
        size = rng.randint(1, 5000)
        offset = rng.choice([0, rng.randint(-size + 1, size - 1)])
        assigner = TumblingEventTimeWindows.of(Time.milliseconds(size), Time.milliseconds(offset))
        for ts in random_timestamps(rng, 10) + [offset, offset - 1, offset + size]:
            assert assigner.assign_windows("x", ts, no_ctx()) == [ref_tumbling(ts, size, offset)], (size, offset, ts)


def test_tumbling_examples():
    assigner = TumblingEventTimeWindows.of(Time.seconds(5))
    assert assigner.assign_windows(None, 12_345, no_ctx()) == [TimeWindow(10_000, 15_000)]
    assert assigner.assign_windows(None, 15_000, no_ctx()) == [TimeWindow(15_000, 20_000)]
    assert assigner.assign_windows(None, -1, no_ctx()) == [TimeWindow(-5_000, 0)]
    # Days in UTC+8 (offset -8h): an epoch-scale timestamp.
    day = TumblingEventTimeWindows.of(Time.days(1), Time.hours(-8))
    ts = 1_700_000_000_123
    (w,) = day.assign_windows(None, ts, no_ctx())
    assert w.start <= ts < w.end and w.end - w.start == 86_400_000
    assert (w.start + 8 * 3_600_000) % 86_400_000 == 0
    assert (day.get_size(), day.get_offset()) == (86_400_000, -8 * 3_600_000)


def test_tumbling_processing_time_uses_clock_not_timestamp():
    assigner = TumblingProcessingTimeWindows.of(Time.milliseconds(100), Time.milliseconds(30))
    rng = random.Random(2)
    for now in random_timestamps(rng, 200):
        for timestamp in (None, 5, MIN_TIMESTAMP):
            assert assigner.assign_windows("x", timestamp, AssignerCtx(now)) == [ref_tumbling(now, 100, 30)]


@pytest.mark.parametrize("processing", [False, True])
def test_sliding_matches_reference(processing: bool):
    rng = random.Random(3 + processing)
    for _ in range(300):
        size = rng.randint(1, 400)
        # slides that divide size, that do not, and that are larger than size (gaps between windows)
        slide = rng.choice([rng.randint(1, size), max(1, size // rng.randint(1, 5)), rng.randint(size, 2 * size)])
        offset = rng.choice([0, rng.randint(-slide + 1, slide - 1)])
        for ts in random_timestamps(rng, 8):
            expected = ref_sliding(ts, size, slide, offset)
            if processing:
                assigner: WindowAssigner[Any, Any] = SlidingProcessingTimeWindows.of(size, slide, offset)
                got = assigner.assign_windows("x", None, AssignerCtx(ts))
            else:
                assigner = SlidingEventTimeWindows.of(Time.milliseconds(size), Time.milliseconds(slide), offset)
                got = assigner.assign_windows("x", ts, no_ctx())
            assert got == expected, (size, slide, offset, ts)
            if size % slide == 0:
                assert len(got) == size // slide


def test_sliding_example_order_latest_start_first():
    assigner = SlidingEventTimeWindows.of(Time.milliseconds(10), Time.milliseconds(3))
    assert assigner.assign_windows(None, 12, no_ctx()) == [
        TimeWindow(12, 22),
        TimeWindow(9, 19),
        TimeWindow(6, 16),
        TimeWindow(3, 13),
    ]
    negative = SlidingEventTimeWindows.of(Duration.of_millis(4), Duration.of_millis(2), Duration.of_millis(-1))
    assert negative.assign_windows(None, -4, no_ctx()) == [TimeWindow(-5, -1), TimeWindow(-7, -3)]
    assert (negative.get_size(), negative.get_slide(), negative.get_offset()) == (4, 2, -1)


def test_event_time_session_assigns_gap_window():
    assigner = EventTimeSessionWindows.with_gap(Time.seconds(5))
    assert assigner.get_gap() == 5000
    assert assigner.assign_windows("x", 1234, no_ctx()) == [TimeWindow(1234, 6234)]
    assert assigner.assign_windows("x", -7, no_ctx()) == [TimeWindow(-7, 4993)]
    assert isinstance(assigner, MergingWindowAssigner)


def test_processing_time_session_uses_clock():
    assigner = ProcessingTimeSessionWindows.with_gap(Time.milliseconds(100))
    assert assigner.assign_windows("x", 5, AssignerCtx(1000)) == [TimeWindow(1000, 1100)]
    assert assigner.assign_windows("x", None, AssignerCtx(-50)) == [TimeWindow(-50, 50)]


class LengthGap(SessionWindowTimeGapExtractor):
    def extract(self, element: Any) -> int:
        return len(element) * 10


def test_dynamic_session_gaps():
    by_class = EventTimeSessionWindows.with_dynamic_gap(LengthGap())
    assert isinstance(by_class, DynamicEventTimeSessionWindows) and by_class.is_event_time()
    assert by_class.assign_windows("abc", 100, no_ctx()) == [TimeWindow(100, 130)]
    by_lambda = EventTimeSessionWindows.with_dynamic_gap(lambda e: e["gap"])
    assert by_lambda.assign_windows({"gap": 7}, 1, no_ctx()) == [TimeWindow(1, 8)]
    time_gap = EventTimeSessionWindows.with_dynamic_gap(lambda e: Time.seconds(1))
    assert time_gap.assign_windows("x", 0, no_ctx()) == [TimeWindow(0, 1000)]
    proc = ProcessingTimeSessionWindows.with_dynamic_gap(lambda e: 20)
    assert isinstance(proc, DynamicProcessingTimeSessionWindows) and not proc.is_event_time()
    assert proc.assign_windows("x", None, AssignerCtx(500)) == [TimeWindow(500, 520)]
    with pytest.raises(ValueError, match="0 < gap"):
        by_class.assign_windows("", 5, no_ctx())  # empty element: gap 0
    with pytest.raises(ValueError, match="0 < gap"):
        ProcessingTimeSessionWindows.with_dynamic_gap(lambda e: 0).assign_windows("x", None, AssignerCtx(0))
    with pytest.raises(ValueError, match="0 < gap"):
        EventTimeSessionWindows.with_dynamic_gap(lambda e: -5).assign_windows("x", 1, no_ctx())
    with pytest.raises(TypeError, match="SessionWindowTimeGapExtractor"):
        EventTimeSessionWindows.with_dynamic_gap(5)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------------------------
# Session merging
# ---------------------------------------------------------------------------------------------------------------------


def collect_merges(windows: list[TimeWindow]) -> list[tuple[list[TimeWindow], TimeWindow]]:
    merges: list[tuple[list[TimeWindow], TimeWindow]] = []
    EventTimeSessionWindows.with_gap(Time.milliseconds(5)).merge_windows(
        windows, lambda to_merge, result: merges.append((list(to_merge), result))
    )
    return merges


def test_bridging_element_merges_three_windows():
    assigner = EventTimeSessionWindows.with_gap(Time.milliseconds(5))
    open_sessions = assigner.assign_windows("a", 0, no_ctx()) + assigner.assign_windows("b", 12, no_ctx())
    assert collect_merges(open_sessions) == []  # [0, 5) and [12, 17) do not touch
    bridge = assigner.assign_windows("c", 6, no_ctx())  # [6, 11): 5 < 6 and 11 < 12, touches neither
    assert collect_merges(open_sessions + bridge) == []
    bridge = assigner.assign_windows("d", 5, no_ctx())  # [5, 10) touches [0, 5); not [12, 17)
    assert collect_merges(open_sessions + bridge) == [([TimeWindow(0, 5), TimeWindow(5, 10)], TimeWindow(0, 10))]
    bridge = assigner.assign_windows("e", 7, no_ctx())  # [7, 12): touches [12, 17) only
    assert collect_merges([*open_sessions, *bridge]) == [([TimeWindow(7, 12), TimeWindow(12, 17)], TimeWindow(7, 17))]
    three = [TimeWindow(0, 5), TimeWindow(10, 15), TimeWindow(4, 11)]  # the new window bridges both
    assert collect_merges(three) == [([TimeWindow(0, 5), TimeWindow(4, 11), TimeWindow(10, 15)], TimeWindow(0, 15))]


def test_touching_windows_merge_and_gaps_do_not():
    assert collect_merges([TimeWindow(5, 10), TimeWindow(0, 5)]) == [
        ([TimeWindow(0, 5), TimeWindow(5, 10)], TimeWindow(0, 10))
    ]
    assert collect_merges([TimeWindow(0, 5), TimeWindow(6, 10)]) == []
    assert collect_merges([TimeWindow(0, 5)]) == []
    assert collect_merges([]) == []
    # Duplicates count once; two separate groups give two callbacks.
    assert collect_merges([TimeWindow(0, 5), TimeWindow(0, 5)]) == []
    assert collect_merges([TimeWindow(20, 25), TimeWindow(0, 5), TimeWindow(3, 8), TimeWindow(24, 30)]) == [
        ([TimeWindow(0, 5), TimeWindow(3, 8)], TimeWindow(0, 8)),
        ([TimeWindow(20, 25), TimeWindow(24, 30)], TimeWindow(20, 30)),
    ]


def test_merge_windows_matches_union_find_reference():
    rng = random.Random(11)
    for _ in range(500):
        windows = []
        for _ in range(rng.randint(0, 12)):
            start = rng.randint(-60, 60)
            windows.append(TimeWindow(start, start + rng.randint(1, 12)))
        merges = collect_merges(windows)
        for group, _result in merges:
            assert group == sorted(group, key=lambda w: w.start)
            assert len(set(group)) == len(group)
        assert {(frozenset(g), r) for g, r in merges} == ref_merge_groups(windows), windows
        assert len(merges) == len(ref_merge_groups(windows))


def test_merge_callback_object_and_static_merge():
    class Recorder(MergingWindowAssigner.MergeCallback):
        def __init__(self) -> None:
            self.calls: list[Any] = []

        def merge(self, to_be_merged: list[Any], merge_result: Any) -> None:
            self.calls.append((to_be_merged, merge_result))

    recorder = Recorder()
    ProcessingTimeSessionWindows.with_gap(10).merge_windows([TimeWindow(0, 3), TimeWindow(3, 4)], recorder)
    assert recorder.calls == [([TimeWindow(0, 3), TimeWindow(3, 4)], TimeWindow(0, 4))]
    calls: list[Any] = []
    TimeWindow.merge_windows([TimeWindow(1, 2), TimeWindow(2, 3)], lambda a, b: calls.append(b))
    assert calls == [TimeWindow(1, 3)]
    with pytest.raises(TypeError):
        TimeWindow.merge_windows([TimeWindow(1, 2), TimeWindow(2, 3)], 42)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------------------------
# Missing timestamps, validation, defaults
# ---------------------------------------------------------------------------------------------------------------------

EVENT_TIME_ASSIGNERS = [
    TumblingEventTimeWindows.of(Time.seconds(1)),
    SlidingEventTimeWindows.of(Time.seconds(2), Time.seconds(1)),
    EventTimeSessionWindows.with_gap(Time.seconds(1)),
    EventTimeSessionWindows.with_dynamic_gap(lambda e: 5),
]


@pytest.mark.parametrize("assigner", EVENT_TIME_ASSIGNERS, ids=repr)
@pytest.mark.parametrize("timestamp", [None, MIN_TIMESTAMP])
def test_event_time_assigner_without_timestamp_explains(assigner: WindowAssigner[Any, Any], timestamp: Any):
    with pytest.raises(ValueError, match="assign_timestamps_and_watermarks") as err:
        assigner.assign_windows("x", timestamp, no_ctx())
    assert "timestamp assigner" in str(err.value) and type(assigner).__name__ in str(err.value)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: TumblingEventTimeWindows.of(Time.milliseconds(0)), "size > 0"),
        (lambda: TumblingEventTimeWindows.of(Time.milliseconds(-5)), "size > 0"),
        (lambda: TumblingEventTimeWindows.of(Time.seconds(1), Time.seconds(1)), r"abs\(offset\) < size"),
        (lambda: TumblingEventTimeWindows.of(Time.seconds(1), Time.seconds(-1)), r"abs\(offset\) < size"),
        (lambda: TumblingProcessingTimeWindows.of(Time.seconds(1), Time.seconds(2)), r"abs\(offset\) < size"),
        (lambda: TumblingProcessingTimeWindows.of(0), "size > 0"),
        (lambda: SlidingEventTimeWindows.of(Time.seconds(0), Time.seconds(1)), "size > 0"),
        (lambda: SlidingEventTimeWindows.of(Time.seconds(1), Time.seconds(0)), "slide > 0"),
        (lambda: SlidingEventTimeWindows.of(Time.seconds(1), Time.milliseconds(-1)), "slide > 0"),
        (lambda: SlidingEventTimeWindows.of(10, 3, 3), r"abs\(offset\) < slide"),
        (lambda: SlidingProcessingTimeWindows.of(10, 3, -3), r"abs\(offset\) < slide"),
        (lambda: SlidingProcessingTimeWindows.of(10, 0), "slide > 0"),
        (lambda: EventTimeSessionWindows.with_gap(Time.seconds(0)), "gap > 0"),
        (lambda: ProcessingTimeSessionWindows.with_gap(Time.milliseconds(-1)), "gap > 0"),
        (lambda: CountTumblingWindowAssigner.of(0), "window_size > 0"),
        (lambda: CountSlidingWindowAssigner.of(0, 1), "window_size > 0"),
        (lambda: CountSlidingWindowAssigner.of(3, 0), "window_slide > 0"),
        (lambda: ContinuousEventTimeTrigger.of(Time.seconds(0)), "positive interval"),
        (lambda: ContinuousProcessingTimeTrigger.of(-1), "positive interval"),
    ],
)
def test_invalid_arguments_raise_value_error(build: Any, message: str):
    with pytest.raises(ValueError, match=message):
        build()


def test_valid_edge_arguments_and_types():
    assert TumblingEventTimeWindows.of(Time.seconds(1), Time.milliseconds(999)).get_offset() == 999
    assert TumblingEventTimeWindows.of(Time.seconds(1), Time.milliseconds(-999)).get_offset() == -999
    assert SlidingEventTimeWindows.of(10, 3, -2).get_offset() == -2
    assert SlidingEventTimeWindows.of(3, 10).assign_windows(None, 5, no_ctx()) == []  # slide > size: a gap
    assert TumblingEventTimeWindows.of(Duration.of_seconds(2)).get_size() == 2000
    with pytest.raises(TypeError):
        TumblingEventTimeWindows.of("10")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        CountTumblingWindowAssigner.of(2.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        PurgingTrigger.of("trigger")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("assigner", "trigger_type", "event_time"),
    [
        (TumblingEventTimeWindows.of(Time.seconds(1)), EventTimeTrigger, True),
        (SlidingEventTimeWindows.of(Time.seconds(2), Time.seconds(1)), EventTimeTrigger, True),
        (EventTimeSessionWindows.with_gap(Time.seconds(1)), EventTimeTrigger, True),
        (EventTimeSessionWindows.with_dynamic_gap(lambda e: 1), EventTimeTrigger, True),
        (TumblingProcessingTimeWindows.of(Time.seconds(1)), ProcessingTimeTrigger, False),
        (SlidingProcessingTimeWindows.of(Time.seconds(2), Time.seconds(1)), ProcessingTimeTrigger, False),
        (ProcessingTimeSessionWindows.with_gap(Time.seconds(1)), ProcessingTimeTrigger, False),
        (ProcessingTimeSessionWindows.with_dynamic_gap(lambda e: 1), ProcessingTimeTrigger, False),
        (GlobalWindows.create(), NeverTrigger, False),
        (CountTumblingWindowAssigner.of(3), PurgingTrigger, False),
        (CountSlidingWindowAssigner.of(3, 1), CountTrigger, False),
    ],
    ids=repr,
)
def test_default_triggers_and_time_domain(assigner: WindowAssigner[Any, Any], trigger_type: type, event_time: bool):
    assert type(assigner.get_default_trigger()) is trigger_type
    assert type(assigner.get_default_trigger(env=object())) is trigger_type
    assert assigner.is_event_time() is event_time
    merging = "SessionWindows" in type(assigner).__name__
    assert isinstance(assigner, MergingWindowAssigner) is merging
    if merging:
        assert assigner.get_default_trigger().can_merge()


def test_global_windows_assign_global_window_and_never_fire():
    assigner = GlobalWindows.create()
    assert assigner.assign_windows("x", None, AssignerCtx()) == [GlobalWindow.get()]
    assert assigner.assign_windows("x", 123, AssignerCtx()) == [GlobalWindow.get()]
    trigger = assigner.get_default_trigger()
    ctx = FakeTriggerContext(GlobalWindow.get(), watermark=MAX_TIMESTAMP, processing_time=MAX_TIMESTAMP)
    g = GlobalWindow.get()
    results = [trigger.on_element("x", i, g, ctx) for i in range(100)]
    results += [trigger.on_event_time(MAX_TIMESTAMP, g, ctx), trigger.on_processing_time(MAX_TIMESTAMP, g, ctx)]
    trigger.on_merge(g, ctx)
    trigger.clear(g, ctx)
    assert set(results) == {CONTINUE}
    assert ctx.calls == [] and ctx.state == {}
    assert not trigger.can_merge()


def test_count_tumbling_assigner_fires_and_purges_every_size():
    assigner = CountTumblingWindowAssigner.of(3)
    assert assigner.window_size == 3 and assigner.count_evictor_size is None
    assert assigner.assign_windows("x", None, AssignerCtx()) == [GlobalWindow.get()]
    trigger = assigner.get_default_trigger()
    assert isinstance(trigger, PurgingTrigger) and isinstance(trigger.get_nested_trigger(), CountTrigger)
    assert trigger.get_nested_trigger().get_count() == 3
    ctx = FakeTriggerContext(GlobalWindow.get())
    results = [trigger.on_element(i, 0, GlobalWindow.get(), ctx) for i in range(7)]
    assert results == [CONTINUE, CONTINUE, FIRE_AND_PURGE, CONTINUE, CONTINUE, FIRE_AND_PURGE, CONTINUE]
    assert ctx.calls == []


def test_count_sliding_assigner_fires_every_slide_and_keeps_last_size():
    assigner = CountSlidingWindowAssigner.of(5, 2)
    assert (assigner.window_size, assigner.window_slide, assigner.count_evictor_size) == (5, 2, 5)
    assert assigner.assign_windows("x", 7, AssignerCtx()) == [GlobalWindow.get()]
    trigger = assigner.get_default_trigger()
    assert isinstance(trigger, CountTrigger) and trigger.get_count() == 2
    ctx = FakeTriggerContext(GlobalWindow.get())
    results = [trigger.on_element(i, 0, GlobalWindow.get(), ctx) for i in range(6)]
    assert results == [CONTINUE, FIRE, CONTINUE, FIRE, CONTINUE, FIRE]  # never purges


# ---------------------------------------------------------------------------------------------------------------------
# Triggers
# ---------------------------------------------------------------------------------------------------------------------


def test_trigger_result_flags():
    assert [(r.is_fire(), r.is_purge()) for r in (CONTINUE, FIRE, TriggerResult.PURGE, FIRE_AND_PURGE)] == [
        (False, False),
        (True, False),
        (False, True),
        (True, True),
    ]
    assert len(TriggerResult) == 4


def test_trigger_base_defaults():
    class OnlyFires(Trigger[Any, Any]):
        def on_element(self, element: Any, timestamp: int, window: Any, ctx: Any) -> TriggerResult:
            return FIRE

        def on_processing_time(self, time: int, window: Any, ctx: Any) -> TriggerResult:
            return CONTINUE

        def on_event_time(self, time: int, window: Any, ctx: Any) -> TriggerResult:
            return CONTINUE

        def clear(self, window: Any, ctx: Any) -> None:
            pass

    trigger = OnlyFires()
    assert trigger.can_merge() is False
    with pytest.raises(NotImplementedError, match="does not support merging"):
        trigger.on_merge(TimeWindow(0, 1), FakeTriggerContext())
    with pytest.raises(TypeError):
        Trigger()  # type: ignore[abstract]
    purging = PurgingTrigger.of(trigger)
    assert purging.can_merge() is False
    with pytest.raises(NotImplementedError):
        purging.on_merge(TimeWindow(0, 1), FakeTriggerContext())


def test_event_time_trigger():
    trigger = EventTimeTrigger.create()
    w = TimeWindow(0, 100)
    ctx = FakeTriggerContext(w, watermark=50)
    assert trigger.on_element("x", 10, w, ctx) is CONTINUE
    assert ctx.take_calls() == [("register_event", 99)]
    ctx.watermark = 98
    assert trigger.on_element("x", 10, w, ctx) is CONTINUE
    assert ctx.take_calls() == [("register_event", 99)]
    ctx.watermark = 99  # max_timestamp <= watermark: late within lateness, fire at once, no timer
    assert trigger.on_element("x", 10, w, ctx) is FIRE
    assert ctx.take_calls() == []
    assert trigger.on_event_time(99, w, ctx) is FIRE
    assert trigger.on_event_time(98, w, ctx) is CONTINUE
    assert trigger.on_event_time(100, w, ctx) is CONTINUE
    assert trigger.on_processing_time(99, w, ctx) is CONTINUE
    assert trigger.can_merge() is True
    merged = TimeWindow(0, 200)
    ctx.watermark = 198
    trigger.on_merge(merged, ctx)
    assert ctx.take_calls() == [("register_event", 199)]
    ctx.watermark = 199  # not strictly before the merged window's end: no timer
    trigger.on_merge(merged, ctx)
    assert ctx.take_calls() == []
    trigger.clear(w, ctx)
    assert ctx.take_calls() == [("delete_event", 99)]


def test_processing_time_trigger():
    trigger = ProcessingTimeTrigger.create()
    w = TimeWindow(1000, 2000)
    ctx = FakeTriggerContext(w, processing_time=5000, watermark=MAX_TIMESTAMP)
    assert trigger.on_element("x", 0, w, ctx) is CONTINUE  # never fires from on_element, as in Flink
    assert ctx.take_calls() == [("register_proc", 1999)]
    assert trigger.on_processing_time(1999, w, ctx) is FIRE
    assert trigger.on_event_time(1999, w, ctx) is CONTINUE
    assert trigger.can_merge() is True
    ctx.processing_time = 1998
    trigger.on_merge(w, ctx)
    assert ctx.take_calls() == [("register_proc", 1999)]
    ctx.processing_time = 1999
    trigger.on_merge(w, ctx)
    assert ctx.take_calls() == []
    trigger.clear(w, ctx)
    assert ctx.take_calls() == [("delete_proc", 1999)]


def test_count_trigger_counts_per_window_fires_and_resets():
    trigger = CountTrigger.of(3)
    assert repr(trigger) == "CountTrigger(3)"
    a, b = TimeWindow(0, 10), TimeWindow(10, 20)
    ctx = FakeTriggerContext(a)
    assert [trigger.on_element(i, i, a, ctx) for i in range(2)] == [CONTINUE, CONTINUE]
    ctx.window = b
    assert trigger.on_element("b", 0, b, ctx) is CONTINUE  # b counts separately
    ctx.window = a
    assert trigger.on_element("x", 0, a, ctx) is FIRE
    assert (a, "count") not in ctx.state  # reset after firing
    assert [trigger.on_element(i, i, a, ctx) for i in range(3)] == [CONTINUE, CONTINUE, FIRE]
    assert trigger.on_event_time(9, a, ctx) is CONTINUE and trigger.on_processing_time(9, a, ctx) is CONTINUE
    assert ctx.calls == []
    descriptor = trigger.state_descriptor
    assert isinstance(descriptor, ReducingStateDescriptor) and descriptor.get_name() == "count"
    assert trigger.state_descriptor is descriptor  # built once
    # clear
    trigger.on_element("x", 0, a, ctx)
    assert ctx.state[(a, "count")] == 1
    trigger.clear(a, ctx)
    assert (a, "count") not in ctx.state


def test_count_trigger_merge_adds_counts():
    trigger = CountTrigger.of(4)
    a, b, merged = TimeWindow(0, 5), TimeWindow(5, 10), TimeWindow(0, 10)
    ctx = FakeTriggerContext(a)
    trigger.on_element("x", 0, a, ctx)
    trigger.on_element("x", 1, a, ctx)
    ctx.window = b
    trigger.on_element("x", 5, b, ctx)
    assert trigger.can_merge()
    ctx.window, ctx.merged_windows = merged, [a, b]
    trigger.on_merge(merged, ctx)
    assert ctx.state == {(merged, "count"): 3}
    assert trigger.on_element("x", 6, merged, ctx) is FIRE


def test_purging_trigger_turns_fire_into_fire_and_purge_everywhere():
    w = TimeWindow(0, 100)
    ctx = FakeTriggerContext(w, watermark=99)
    event = PurgingTrigger.of(EventTimeTrigger.create())
    assert event.on_element("x", 1, w, ctx) is FIRE_AND_PURGE
    assert event.on_event_time(99, w, ctx) is FIRE_AND_PURGE
    assert event.on_event_time(50, w, ctx) is CONTINUE
    ctx.watermark = 0
    assert event.on_element("x", 1, w, ctx) is CONTINUE
    assert ctx.take_calls() == [("register_event", 99)]
    proc = PurgingTrigger.of(ProcessingTimeTrigger.create())
    assert proc.on_processing_time(99, w, ctx) is FIRE_AND_PURGE
    assert event.can_merge() and proc.can_merge()
    event.on_merge(TimeWindow(0, 300), ctx)
    assert ctx.take_calls() == [("register_event", 299)]
    event.clear(w, ctx)
    assert ctx.take_calls() == [("delete_event", 99)]

    class Purges(EventTimeTrigger):
        def on_event_time(self, time: int, window: TimeWindow, ctx: Any) -> TriggerResult:
            return TriggerResult.PURGE

    assert PurgingTrigger.of(Purges()).on_event_time(1, w, ctx) is TriggerResult.PURGE
    assert repr(event) == "PurgingTrigger(EventTimeTrigger())"


def test_continuous_event_time_trigger():
    trigger = ContinuousEventTimeTrigger.of(Time.milliseconds(10))
    assert trigger.get_interval() == 10
    w = TimeWindow(0, 100)
    ctx = FakeTriggerContext(w, watermark=0)
    assert trigger.on_element("x", 23, w, ctx) is CONTINUE
    assert ctx.take_calls() == [("register_event", 99), ("register_event", 30)]
    assert ctx.state[(w, "fire-time")] == 30
    assert trigger.on_element("x", 5, w, ctx) is CONTINUE  # a fire time is pending: only the end-of-window timer
    assert ctx.take_calls() == [("register_event", 99)]
    assert trigger.on_event_time(25, w, ctx) is CONTINUE  # not the pending fire time
    assert trigger.on_event_time(30, w, ctx) is FIRE
    assert ctx.take_calls() == [("register_event", 40)]
    assert ctx.state[(w, "fire-time")] == 40
    assert trigger.on_event_time(99, w, ctx) is FIRE  # end of window
    assert trigger.on_processing_time(40, w, ctx) is CONTINUE
    trigger.clear(w, ctx)
    assert ctx.take_calls() == [("delete_event", 40)]
    assert (w, "fire-time") not in ctx.state
    trigger.clear(w, ctx)  # nothing pending: nothing deleted
    assert ctx.take_calls() == []
    descriptor = trigger.state_descriptor
    assert isinstance(descriptor, ReducingStateDescriptor) and descriptor.get_name() == "fire-time"


def test_continuous_event_time_trigger_clamps_to_window_end_and_fires_late_at_once():
    trigger = ContinuousEventTimeTrigger.of(10)
    w = TimeWindow(0, 35)  # max timestamp 34
    ctx = FakeTriggerContext(w, watermark=MIN_TIMESTAMP)
    trigger.on_element("x", 28, w, ctx)
    assert ctx.take_calls() == [("register_event", 34), ("register_event", 30)]
    assert trigger.on_event_time(30, w, ctx) is FIRE
    assert ctx.take_calls() == [("register_event", 34)]  # min(40, 34)
    assert trigger.on_event_time(34, w, ctx) is FIRE
    late = TimeWindow(100, 200)
    ctx.window, ctx.watermark = late, 199
    assert trigger.on_element("x", 150, late, ctx) is FIRE
    assert ctx.take_calls() == [] and (late, "fire-time") not in ctx.state


def test_continuous_event_time_trigger_negative_timestamp_uses_java_remainder():
    # Flink computes ts - ts % interval with Java's remainder (sign of the dividend): -5 - (-5) + 10 = 10.
    trigger = ContinuousEventTimeTrigger.of(10)
    w = TimeWindow(-100, 100)
    ctx = FakeTriggerContext(w)
    trigger.on_element("x", -5, w, ctx)
    assert ctx.take_calls() == [("register_event", 99), ("register_event", 10)]
    ctx.state.clear()
    trigger.on_element("x", -20, w, ctx)
    assert ctx.take_calls() == [("register_event", 99), ("register_event", -10)]


def test_continuous_event_time_trigger_merge_takes_earliest_fire_time():
    trigger = ContinuousEventTimeTrigger.of(10)
    a, b, merged = TimeWindow(0, 50), TimeWindow(40, 90), TimeWindow(0, 90)
    ctx = FakeTriggerContext(a)
    trigger.on_element("x", 27, a, ctx)  # fire at 30
    ctx.window = b
    trigger.on_element("x", 41, b, ctx)  # fire at 50
    ctx.take_calls()
    assert trigger.can_merge()
    ctx.window, ctx.merged_windows = merged, [a, b]
    trigger.on_merge(merged, ctx)
    assert ctx.state == {(merged, "fire-time"): 30}
    assert ctx.take_calls() == [("register_event", 30)]
    ctx.merged_windows = [TimeWindow(500, 600)]  # no state anywhere: no timer
    ctx.state.clear()
    trigger.on_merge(merged, ctx)
    assert ctx.take_calls() == []


def test_continuous_processing_time_trigger():
    trigger = ContinuousProcessingTimeTrigger.of(Time.milliseconds(100))
    assert trigger.get_interval() == 100
    w = TimeWindow(0, 1000)
    ctx = FakeTriggerContext(w, processing_time=234, watermark=MAX_TIMESTAMP)
    assert trigger.on_element("x", 999_999, w, ctx) is CONTINUE  # element timestamp ignored; clock used
    assert ctx.take_calls() == [("register_proc", 300)]
    ctx.processing_time = 280
    assert trigger.on_element("x", 0, w, ctx) is CONTINUE
    assert ctx.take_calls() == []  # pending fire time: nothing new
    assert trigger.on_processing_time(250, w, ctx) is CONTINUE
    assert trigger.on_processing_time(300, w, ctx) is FIRE
    assert ctx.take_calls() == [("register_proc", 400)]
    assert trigger.on_event_time(400, w, ctx) is CONTINUE
    ctx.state[(w, "fire-time")] = 900
    assert trigger.on_processing_time(900, w, ctx) is FIRE
    assert ctx.take_calls() == [("register_proc", 999)]  # clamped to the window's max timestamp
    assert trigger.on_processing_time(999, w, ctx) is FIRE
    trigger.clear(w, ctx)
    calls = ctx.take_calls()
    assert calls[-1] == ("delete_proc", 999) and (w, "fire-time") not in ctx.state
    # merge
    a, b, merged = TimeWindow(0, 1000), TimeWindow(500, 1500), TimeWindow(0, 1500)
    ctx.state = {(a, "fire-time"): 700, (b, "fire-time"): 600}
    ctx.window, ctx.merged_windows = merged, [a, b]
    trigger.on_merge(merged, ctx)
    assert ctx.state == {(merged, "fire-time"): 600}
    assert ctx.take_calls() == [("register_proc", 600)]


# ---------------------------------------------------------------------------------------------------------------------
# Pickling
# ---------------------------------------------------------------------------------------------------------------------


def test_assigners_and_triggers_survive_cloudpickle():
    objects: list[Any] = [
        TumblingEventTimeWindows.of(Time.seconds(1), Time.milliseconds(5)),
        SlidingProcessingTimeWindows.of(Time.seconds(3), Time.seconds(1)),
        EventTimeSessionWindows.with_dynamic_gap(lambda e: e * 2),
        CountSlidingWindowAssigner.of(4, 2),
        PurgingTrigger.of(ContinuousEventTimeTrigger.of(Time.seconds(1))),
    ]
    clones = [pickle.loads(cloudpickle.dumps(o)) for o in objects]
    assert [type(c) for c in clones] == [type(o) for o in objects]
    assert clones[0].assign_windows(None, 1234, no_ctx()) == [TimeWindow(1005, 2005)]
    assert clones[1].assign_windows(None, None, AssignerCtx(2500)) == objects[1].assign_windows(
        None, None, AssignerCtx(2500)
    )
    assert clones[2].assign_windows(21, 100, no_ctx()) == [TimeWindow(100, 142)]
    assert clones[3].count_evictor_size == 4
    w = TimeWindow(0, 5000)
    ctx = FakeTriggerContext(w, watermark=0)
    clones[4].on_element("x", 1500, w, ctx)
    assert ctx.take_calls() == [("register_event", 4999), ("register_event", 2000)]
    assert clones[4].on_event_time(2000, w, ctx) is FIRE_AND_PURGE


def test_assigner_parameters_are_read_only_properties():
    tumbling = TumblingEventTimeWindows.of(Time.seconds(10), Time.seconds(-3))
    assert (tumbling.size, tumbling.offset) == (10_000, -3_000)
    proc = TumblingProcessingTimeWindows.of(Time.seconds(2))
    assert (proc.size, proc.offset) == (2000, 0)
    for sliding in (
        SlidingEventTimeWindows.of(Time.seconds(10), Time.seconds(4), Time.seconds(1)),
        SlidingProcessingTimeWindows.of(Time.seconds(10), Time.seconds(4), Time.seconds(1)),
    ):
        assert (sliding.size, sliding.slide, sliding.offset) == (10_000, 4_000, 1_000)
    assert EventTimeSessionWindows.with_gap(Time.seconds(3)).gap == 3000
    assert ProcessingTimeSessionWindows.with_gap(Time.seconds(4)).gap == 4000
    with pytest.raises(AttributeError):
        tumbling.size = 5  # type: ignore[misc]
