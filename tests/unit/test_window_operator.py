"""The WindowOperator (taskmanager/operators/window.py), driven directly: no sockets, no processes.

Every expected result below is derived from /work/shared/SEMANTICS.md (Flink's window rules), not from running the
code. Every test runs on both keyed state backends -- the hashmap one and RocksDB with a 2-entry cache, so that the
write-back cache really flushes and evicts -- and asserts the same expected results on both; the event-time tumbling
tests also run both the operator's fast path (default EventTimeTrigger) and its generic path (forced with a trivial
EventTimeTrigger subclass) and must agree.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from state.memory import HashMapKeyedStateBackend
from state.rocksdb import RocksDBKeyedStateBackend
from taskmanager.operators.base import OperatorRuntime
from taskmanager.operators.window import WindowOperator
from taskmanager.timers import ProcessingTimeService
from weir.datastream.functions import (
    AggregateFunction,
    AllWindowFunction,
    ProcessAllWindowFunction,
    ProcessWindowFunction,
    ReduceFunction,
    RuntimeContext,
    WindowFunction,
)
from weir.datastream.output_tag import OutputTag
from weir.datastream.state import ValueStateDescriptor
from weir.datastream.window import (
    MAX_TIMESTAMP,
    MIN_TIMESTAMP,
    ContinuousEventTimeTrigger,
    CountSlidingWindowAssigner,
    CountTrigger,
    CountTumblingWindowAssigner,
    EventTimeSessionWindows,
    EventTimeTrigger,
    ProcessingTimeTrigger,
    PurgingTrigger,
    SlidingEventTimeWindows,
    SlidingProcessingTimeWindows,
    TimeWindow,
    TumblingEventTimeWindows,
    TumblingProcessingTimeWindows,
)

MAX = MAX_TIMESTAMP
SIDE = OutputTag("side")


# ---------------------------------------------------------------------------------------------------------------------
# Harness
# ---------------------------------------------------------------------------------------------------------------------


class GenericEventTimeTrigger(EventTimeTrigger):
    """Behaves exactly as EventTimeTrigger, but is not one by type: forces the operator's generic path."""


PATHS = ["fast", "generic"]


def event_trigger(path: str) -> Any:
    """The trigger param selecting the fast path (None: the assigner's default) or the generic path."""
    return None if path == "fast" else GenericEventTimeTrigger()


class Harness:
    """A WindowOperator with a fake processing-time clock, recording output, late output, side output, watermarks.

    ``log`` keeps everything in emission order: ("out", value, ts), ("late", value, ts), ("side", value, ts),
    ("wm", watermark).
    """

    def __init__(self, backend: Any, assigner: Any, *, mode: str = "reduce", trigger: Any = None, lateness: int = 0,
                 late_tag: str | None = "late", reduce_fn: Any = None, agg_fn: Any = None, window_fn: Any = None,
                 all_: bool = False, key: Callable[[Any], Any] = lambda v: v[0], now: int = 0,
                 restore: tuple[list[Any], Any] | None = None, local_dir: str = "") -> None:
        self.now = now
        self.log: list[tuple[Any, ...]] = []
        self._seen = 0
        params = {"assigner": assigner, "trigger": trigger, "allowed_lateness": lateness, "late_tag": late_tag,
                  "mode": mode, "reduce_fn": reduce_fn, "agg_fn": agg_fn, "window_fn": window_fn, "all": all_}
        op = WindowOperator(self._out, key, params)
        self.pts = ProcessingTimeService(lambda: self.now)
        op.runtime = OperatorRuntime(self.pts, lambda name: backend, lambda idle: None,
                                     side_outputs={"late": self._recorder("late"), SIDE.tag_id: self._recorder("side")})
        op.uid = "w"
        op.key_groups = range(128)
        op.local_dir = local_dir
        if restore is not None:  # (OperatorSubtaskState list, checkpoint storage)
            op.restore_states, op.restore_storage = restore
        op.emit_watermark = lambda wm: self.log.append(("wm", wm))
        op.open(RuntimeContext("window-test", 0, 1, 128))
        self.op = op

    def _recorder(self, kind: str) -> Callable[[list[Any], list[int] | None], None]:
        def record(values: list[Any], timestamps: list[int] | None) -> None:
            ts = timestamps if timestamps is not None else [None] * len(values)
            assert len(ts) == len(values)
            self.log.extend((kind, v, t) for v, t in zip(values, ts, strict=True))
        return record

    def _out(self, values: list[Any], timestamps: list[int] | None) -> None:
        self._recorder("out")(values, timestamps)

    # ---- driving ----
    def el(self, key: Any, n: Any, ts: int | None = None) -> list[tuple[Any, Any]]:
        """One record ``(key, n)`` in a batch of its own; returns what the operator emitted for it."""
        self.op.process_batch([(key, n)], None if ts is None else [ts])
        return self.take()

    def batch(self, values: list[Any], timestamps: list[int] | None) -> list[tuple[Any, Any]]:
        self.op.process_batch(values, timestamps)
        return self.take()

    def wm(self, watermark: int) -> list[tuple[Any, Any]]:
        self.op.process_watermark(watermark)
        return self.take()

    def tick(self, now: int) -> list[tuple[Any, Any]]:
        """Advance the fake clock to ``now`` and run the due processing-time callbacks."""
        self.now = now
        self.pts.run_due()
        return self.take()

    # ---- reading ----
    def take(self) -> list[tuple[Any, Any]]:
        """Main-output (value, ts) pairs emitted since the last take."""
        new = self.log[self._seen:]
        self._seen = len(self.log)
        return [(e[1], e[2]) for e in new if e[0] == "out"]

    def of(self, kind: str) -> list[tuple[Any, Any]]:
        return [(e[1], e[2]) for e in self.log if e[0] == kind]

    @property
    def late(self) -> list[tuple[Any, Any]]:
        return self.of("late")

    def contents(self, key: Any, window: Any) -> Any:
        # the fast path keys a window's state by its start (an int), the generic path by the window
        ns = window.start if self.op.fast else window
        return self.op.contents.get((key, ns))


@pytest.fixture(params=["hashmap", "rocksdb"])
def make(request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    """``make(assigner, **params)`` -> a Harness on a fresh backend of the parametrized kind."""
    backends: list[Any] = []

    def backend(cache_entries: int) -> Any:
        if request.param == "hashmap":
            b: Any = HashMapKeyedStateBackend()
        else:
            b = RocksDBKeyedStateBackend(str(tmp_path / f"db{len(backends)}"), cache_entries=cache_entries)
        backends.append(b)
        return b

    def make_harness(assigner: Any, cache_entries: int = 2, **kw: Any) -> Harness:
        return Harness(backend(cache_entries), assigner, **kw)

    yield make_harness
    for b in backends:
        b.dispose()


def add(a: Any, b: Any) -> Any:
    """Sum of (key, n) records."""
    return (a[0], a[1] + b[1])


class Add(ReduceFunction):
    def reduce(self, value1: Any, value2: Any) -> Any:
        return add(value1, value2)


class CountSum(AggregateFunction):
    """(count, sum of n) of (key, n) records; mergeable (session windows)."""

    def create_accumulator(self) -> Any:
        return (0, 0)

    def add(self, value: Any, accumulator: Any) -> Any:
        return (accumulator[0] + 1, accumulator[1] + value[1])

    def get_result(self, accumulator: Any) -> Any:
        return accumulator

    def merge(self, acc_a: Any, acc_b: Any) -> Any:
        return (acc_a[0] + acc_b[0], acc_a[1] + acc_b[1])


class Tag(WindowFunction):
    """(key, window start, window end, the inputs as a list)."""

    def apply(self, key: Any, window: Any, inputs: Iterable[Any]) -> Iterable[Any]:
        return [(key, window.start, window.end, list(inputs))]


class KeyStartSum(WindowFunction):
    """(key, window start, sum of n over the inputs): the same for reduce (one pre-summed input) and list modes."""

    def apply(self, key: Any, window: Any, inputs: Iterable[Any]) -> Iterable[Any]:
        return [(key, window.start, sum(n for _, n in inputs))]


def mode_params(mode: str) -> dict[str, Any]:
    return {"reduce": {"mode": "reduce", "reduce_fn": Add()},
            "aggregate": {"mode": "aggregate", "agg_fn": CountSum()},
            "list": {"mode": "list"}}[mode]


def by_ts(pairs: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """Outputs of different keys firing at one timestamp have no defined order: compare them sorted."""
    return sorted(pairs, key=lambda p: (p[1], repr(p[0])))


# ---------------------------------------------------------------------------------------------------------------------
# Tumbling event-time windows: fast and generic path
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_tumbling_fires_when_watermark_reaches_end_minus_one(make, path):
    h = make(TumblingEventTimeWindows.of(10), trigger=event_trigger(path), reduce_fn=add)
    assert h.op.fast is (path == "fast")
    assert h.el("a", 1, 1) == []
    assert h.el("a", 2, 5) == []
    assert h.el("b", 10, 9) == []
    assert h.el("a", 4, 10) == []  # the next window [10, 20)
    assert h.el("a", 8, 19) == []
    assert h.wm(8) == []  # end - 1 = 9 not reached
    assert by_ts(h.wm(9)) == [(("a", 3), 9), (("b", 10), 9)]  # output timestamp: end - 1
    assert h.wm(18) == []
    assert h.wm(19) == [(("a", 12), 19)]
    # with allowed lateness 0 the window [0, 10) is late once the watermark reaches 9: an element for it is dropped
    assert h.el("a", 100, 9) == []
    assert h.late == [(("a", 100), 9)]
    assert h.wm(MAX) == []
    # each watermark is forwarded after the output it fired
    assert [e[0] for e in h.log] == ["wm", "out", "out", "wm", "wm", "out", "wm", "late", "wm"]
    assert [e[1] for e in h.log if e[0] == "wm"] == [8, 9, 18, 19, MAX]


@pytest.mark.parametrize("path", PATHS)
def test_tumbling_offset_and_negative_timestamps(make, path):
    # start = ts - ((ts - offset) % size), non-negative modulo: offset 3, size 10 -> [-7, 3), [3, 13)
    h = make(TumblingEventTimeWindows.of(10, 3), trigger=event_trigger(path), mode="list", window_fn=Tag())
    h.el("a", 1, -7)
    h.el("a", 2, 2)
    h.el("a", 4, 3)
    h.el("a", 8, -8)  # [-17, -7)
    assert h.wm(MAX) == [(("a", -17, -7, [("a", 8)]), -8),
                         (("a", -7, 3, [("a", 1), ("a", 2)]), 2),
                         (("a", 3, 13, [("a", 4)]), 12)]


def _reference_tumbling(steps: list[tuple[Any, ...]], size: int, lateness: int) -> list[tuple[list[Any], list[Any]]]:
    """Per step, (sorted fired outputs, sorted late records) of tumbling event-time windows with the default
    EventTimeTrigger and allowed lateness, straight from SEMANTICS.md. Outputs are ((key, start, sum), end - 1)."""
    wm = MIN_TIMESTAMP
    windows: dict[tuple[str, int], int] = {}
    result = []
    for step in steps:
        fired: list[Any] = []
        late: list[Any] = []
        if step[0] == "wm":
            new = step[1]
            for (k, s), total in windows.items():
                if wm < s + size - 1 <= new:  # fires when the watermark reaches end - 1
                    fired.append(((k, s, total), s + size - 1))
            wm = new
            for ks in [ks for ks in windows if ks[1] + size - 1 + lateness <= wm]:  # cleared after end-1+L
                del windows[ks]
        else:
            for (k, n), ts in zip(step[1], step[2], strict=True):
                s = ts - ts % size
                if s + size - 1 + lateness <= wm:  # the (only) window is late: a late element
                    late.append(((k, n), ts))
                    continue
                windows[(k, s)] = windows.get((k, s), 0) + n
                if s + size - 1 <= wm:  # within lateness, already fired: fire again at once
                    fired.append(((k, s, windows[(k, s)]), s + size - 1))
        result.append((sorted(fired), sorted(late)))
    return result


def _random_steps(seed: int) -> list[tuple[Any, ...]]:
    rng = random.Random(seed)
    steps: list[tuple[Any, ...]] = []
    wm, high, bit = -1, 0, 0
    for _ in range(160):
        if rng.random() < 0.3:
            wm = max(wm, high - rng.randint(0, 12))
            steps.append(("wm", wm))
            continue
        values, tss = [], []
        for _ in range(rng.randint(1, 4)):
            ts = max(0, high + rng.randint(-25, 6))
            high = max(high, ts)
            values.append((rng.choice("abc"), 1 << bit))  # distinct bits: a sum names its elements
            tss.append(ts)
            bit += 1
        steps.append(("el", values, tss))
    steps.append(("wm", MAX))
    return steps


def _run_steps(h: Harness, steps: list[Any]) -> list[tuple[list[Any], list[Any]]]:
    """Drive ``h`` through ``steps`` (("wm", watermark) or ("el", values, timestamps)); per step, the sorted
    (value, ts) pairs of main and late output it produced."""
    got = []
    for step in steps:
        h.op.process_watermark(step[1]) if step[0] == "wm" else h.op.process_batch(step[1], step[2])
        new = h.log[h._seen:]
        h._seen = len(h.log)
        got.append((sorted((e[1], e[2]) for e in new if e[0] == "out"),
                    sorted((e[1], e[2]) for e in new if e[0] == "late")))
    return got


@pytest.mark.parametrize("cache_entries", [2, 10_000], ids=["evicting-cache", "everything-cached"])
@pytest.mark.parametrize("mode", ["reduce", "aggregate", "list"])
@pytest.mark.parametrize("lateness", [0, 7])
def test_tumbling_fast_and_generic_paths_match_reference(make, mode, lateness, cache_entries):
    # (on RocksDB, reduce and aggregate take the fast path's cached loop, list the generic fast loop; the 2-entry
    # cache makes most windows miss the cache, so both of its branches run; with 10,000 entries nothing reaches
    # the DB, so the loop for a table the DB holds nothing of runs)
    steps = _random_steps(seed=lateness * 31 + len(mode))
    expected = _reference_tumbling(steps, 10, lateness)
    assert sum(len(late) for _, late in expected) > 5  # the scenario really has late elements...
    assert sum(len(f) for f, _ in expected) > 20
    params = {**mode_params(mode), "reduce_fn": add if mode == "reduce" else None, "window_fn": KeyStartSum(),
              "lateness": lateness}
    fast = make(TumblingEventTimeWindows.of(10), cache_entries=cache_entries, **params)
    generic = make(TumblingEventTimeWindows.of(10), trigger=GenericEventTimeTrigger(), cache_entries=cache_entries,
                   **params)
    assert fast.op.fast and not generic.op.fast
    for h in (fast, generic):
        assert _run_steps(h, steps) == expected
    assert fast.log == generic.log  # not just the same multisets: the same order
    if isinstance(fast.op.backend, RocksDBKeyedStateBackend):
        if cache_entries == 2:  # the 2-entry cache really was flushed and evicted
            assert fast.op.backend.cached_entries() <= 2 and not fast.op.contents.db_empty
        else:
            assert fast.op.contents.db_empty
    assert len(fast.op.contents) == 0 and len(generic.op.contents) == 0  # all state cleared after the final watermark


@pytest.mark.parametrize("cache_entries", [2, 10_000], ids=["evicting-cache", "everything-cached"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_tumbling_fast_reduce_without_window_function_matches_reference(make, seed, cache_entries):
    # the fast path's cheapest case (W3): reduce, no window function, no lateness -- whole timestamps fire at once;
    # on RocksDB with a cache that holds everything the records only touch the cache (``RocksDBTable.hot_path``)
    steps = _random_steps(seed=seed)
    expected = [([((k, total), t) for (k, _, total), t in fired], late)
                for fired, late in _reference_tumbling(steps, 10, 0)]
    h = make(TumblingEventTimeWindows.of(10), reduce_fn=add, cache_entries=cache_entries)
    assert [(sorted(f), sorted(la)) for f, la in expected] == _run_steps(h, steps)
    assert len(h.op.contents) == 0


@pytest.mark.parametrize("cache_entries", [2, 10_000], ids=["evicting-cache", "everything-cached"])
@pytest.mark.parametrize("mode", ["reduce", "aggregate", "list"])
def test_checkpoint_taken_while_windows_run_restores_the_state_at_the_barrier(tmp_path, mode, cache_entries):
    # RocksDB writes a checkpoint's entries out in the upload, after the barrier: records processed between the
    # barrier and the upload (windows updated, created, fired) must not reach it. A restored operator fed the
    # records after the barrier must emit exactly what the original emitted after it.
    from state.filesystem import FileSystemCheckpointStorage
    from weir.graph.deployment import OperatorSubtaskState

    storage = FileSystemCheckpointStorage((tmp_path / "chk").as_uri())
    steps = _random_steps(seed=5)
    cut = len(steps) // 2
    params = {**mode_params(mode), "reduce_fn": add if mode == "reduce" else None, "window_fn": KeyStartSum(),
              "lateness": 7}

    def run(h: Harness, part: list[tuple[Any, ...]]) -> None:
        for step in part:
            h.op.process_watermark(step[1]) if step[0] == "wm" else h.op.process_batch(step[1], step[2])

    backends = [RocksDBKeyedStateBackend(str(tmp_path / f"db{i}"), cache_entries=cache_entries) for i in range(2)]
    try:
        first = Harness(backends[0], TumblingEventTimeWindows.of(10), local_dir=str(tmp_path / "l0"), **params)
        run(first, steps[:cut])
        first.take()
        pending, _ = first.op.snapshot_state(1, False)
        run(first, steps[cut:])  # before the upload applies the checkpoint's write-out
        after = first.take()
        handle = pending.upload(storage, "chk-1/w", "shared")
        second = Harness(backends[1], TumblingEventTimeWindows.of(10), local_dir=str(tmp_path / "l1"),
                         restore=([OperatorSubtaskState([handle])], storage), **params)
        run(second, steps[cut:])
        assert len(after) > 5
        assert by_ts(second.take()) == by_ts(after)
    finally:
        for b in backends:
            b.dispose()


# ---------------------------------------------------------------------------------------------------------------------
# Allowed lateness, late data, state cleanup
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tagged", [True, False], ids=["side-output", "dropped"])
@pytest.mark.parametrize("path", PATHS)
def test_allowed_lateness_refires_then_late_elements(make, path, tagged):
    h = make(TumblingEventTimeWindows.of(10), trigger=event_trigger(path), lateness=5,
             late_tag="late" if tagged else None, reduce_fn=Add())
    w0 = TimeWindow(0, 10)
    assert h.el("a", 1, 3) == []
    assert h.wm(9) == [(("a", 1), 9)]
    assert h.el("a", 2, 4) == [(("a", 3), 9)]  # window fired, within lateness: fires again at once, updated
    assert h.el("b", 5, 2) == [(("b", 5), 9)]  # first element of b's window, already past its end: fires at once
    assert h.wm(13) == []
    assert h.el("a", 4, 8) == [(("a", 7), 9)]
    assert h.el("a", 16, 15) == []  # window [10, 20)
    assert h.contents("a", w0) == ("a", 7)
    assert h.wm(14) == []  # 9 + 5 <= 14: the [0, 10) windows are cleared, without firing again
    assert h.contents("a", w0) is None and h.contents("b", w0) is None
    assert h.batch([("a", 100), ("b", 200), ("a", 32)], [5, 9, 10]) == []  # two late, one for [10, 20)
    assert h.wm(19) == [(("a", 48), 19)]
    assert h.el("a", 64, 13) == [(("a", 112), 19)]
    assert h.wm(24) == []
    assert h.el("a", 1, 19) == []  # 19 + 5 <= 24: late
    assert h.wm(MAX) == []  # nothing left to fire
    late = [(("a", 100), 5), (("b", 200), 9), (("a", 1), 19)]
    if tagged:
        assert h.late == late
        assert h.op.late_dropped == 0
    else:
        assert h.late == []
        assert h.op.late_dropped == 3
    assert len(h.op.contents) == 0


@pytest.mark.parametrize("path", PATHS)
def test_late_element_counted_when_no_late_tag(make, path):
    h = make(TumblingEventTimeWindows.of(10), trigger=event_trigger(path), late_tag=None, reduce_fn=add)
    h.el("a", 1, 0)
    assert h.wm(9) == [(("a", 1), 9)]
    assert h.batch([("a", 2), ("a", 4), ("b", 8)], [0, 9, 10]) == []
    assert h.op.late_dropped == 2
    assert h.wm(19) == [(("b", 8), 19)]


# ---------------------------------------------------------------------------------------------------------------------
# Sliding windows
# ---------------------------------------------------------------------------------------------------------------------


def test_sliding_element_in_size_over_slide_windows(make):
    h = make(SlidingEventTimeWindows.of(15, 5), mode="list", window_fn=Tag())
    # 15 / 5 = 3 windows each: ts 7 -> [5, 20), [0, 15), [-5, 10); ts 12 -> [10, 25), [5, 20), [0, 15);
    # ts 3 -> [0, 15), [-5, 10), [-10, 5)
    h.el("a", 1, 7)
    h.el("a", 2, 12)
    h.el("a", 3, 3)
    assert h.wm(9) == [(("a", -10, 5, [("a", 3)]), 4), (("a", -5, 10, [("a", 1), ("a", 3)]), 9)]
    # ts 6 -> [5, 20), [0, 15), [-5, 10): the last is late (9 <= 9), the others are not: not a late element
    assert h.el("a", 4, 6) == []
    assert h.late == []
    assert h.wm(14) == [(("a", 0, 15, [("a", 1), ("a", 2), ("a", 3), ("a", 4)]), 14)]
    # ts 2 -> [0, 15), [-5, 10), [-10, 5): all late -> a late element
    assert h.el("a", 5, 2) == []
    assert h.late == [(("a", 5), 2)]
    assert h.wm(19) == [(("a", 5, 20, [("a", 1), ("a", 2), ("a", 4)]), 19)]
    assert h.wm(MAX) == [(("a", 10, 25, [("a", 2)]), 24)]
    assert len(h.op.contents) == 0


def test_sliding_within_lateness_refires_every_fired_window(make):
    h = make(SlidingEventTimeWindows.of(10, 5), lateness=10, reduce_fn=add, window_fn=KeyStartSum())
    h.el("a", 1, 7)  # [5, 15), [0, 10)
    assert h.wm(14) == [(("a", 0, 1), 9), (("a", 5, 1), 14)]
    # ts 8 at watermark 14: [5, 15) and [0, 10) both fired, both within lateness (14 + 10, 9 + 10 > 14)
    assert by_ts(h.el("a", 2, 8)) == [(("a", 0, 3), 9), (("a", 5, 3), 14)]
    assert h.wm(19) == []  # [0, 10) cleared at 9 + 10
    assert h.el("a", 4, 8) == [(("a", 5, 7), 14)]  # only [5, 15) is left; not a late element
    assert h.late == []


# ---------------------------------------------------------------------------------------------------------------------
# Session windows
# ---------------------------------------------------------------------------------------------------------------------


def _summary(mode: str, key: str, elements: list[tuple[str, int]]) -> list[Any]:
    """What Tag's ``inputs`` are for a window holding ``elements``, per mode."""
    if mode == "reduce":
        return [(key, sum(n for _, n in elements))]
    if mode == "aggregate":
        return [(len(elements), sum(n for _, n in elements))]
    return sorted(elements)


@pytest.mark.parametrize("mode", ["reduce", "aggregate", "list"])
def test_session_windows_merge_and_bridge(make, mode):
    h = make(EventTimeSessionWindows.with_gap(10), window_fn=Tag(), **mode_params(mode))
    sets = h.op.merging_sets
    h.el("a", 1, 0)  # [0, 10)
    h.el("a", 2, 20)  # [20, 30): separate
    assert sets.get(("a", None)) == [TimeWindow(0, 10), TimeWindow(20, 30)]
    h.el("b", 16, 0)  # [0, 10)
    h.el("b", 32, 5)  # [5, 15) intersects: [0, 15)
    h.el("a", 4, 10)  # [10, 20) touches both (bounds included): the three merge into [0, 30)
    assert sets.get(("a", None)) == [TimeWindow(0, 30)]
    assert sets.get(("b", None)) == [TimeWindow(0, 15)]
    h.el("a", 8, 35)  # [35, 45): 30 < 35, separate
    assert h.wm(9) == []  # the merged windows' end-of-window timers are gone
    # list contents of merged windows are concatenated: compare them as multisets
    def fired(out: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
        return [((k, s, e, sorted(inputs) if mode == "list" else inputs), ts) for (k, s, e, inputs), ts in out]

    assert fired(h.wm(14)) == [(("b", 0, 15, _summary(mode, "b", [("b", 16), ("b", 32)])), 14)]
    assert fired(h.wm(29)) == [(("a", 0, 30, _summary(mode, "a", [("a", 1), ("a", 2), ("a", 4)])), 29)]
    assert h.wm(MAX) == [(("a", 35, 45, _summary(mode, "a", [("a", 8)])), 44)]
    assert sets.get(("a", None)) is None and sets.get(("b", None)) is None
    assert len(h.op.contents) == 0


def test_session_late_merge_within_lateness_then_too_late(make):
    h = make(EventTimeSessionWindows.with_gap(10), lateness=10, reduce_fn=add, window_fn=Tag())
    h.el("a", 1, 0)  # [0, 10)
    assert h.wm(9) == [(("a", 0, 10, [("a", 1)]), 9)]
    # [5, 15) merges with the fired [0, 10) into [0, 15), which has not ended (14 > 9): fires at 14, not at once
    assert h.el("a", 2, 5) == []
    assert h.wm(13) == []
    assert h.wm(14) == [(("a", 0, 15, [("a", 3)]), 14)]
    assert h.wm(19) == []  # the cleanup timer of [0, 10) was moved to [0, 15): 14 + 10 = 24
    assert h.el("a", 4, 3) == [(("a", 0, 15, [("a", 7)]), 14)]  # [3, 13) falls in the ended [0, 15): fires at once
    assert h.el("a", 8, 12) == []  # [12, 22) extends it to [0, 22), which has not ended (21 > 19)
    assert h.wm(20) == []
    assert h.wm(21) == [(("a", 0, 22, [("a", 15)]), 21)]
    assert h.late == []
    assert h.wm(31) == []  # cleared at 21 + 10
    assert h.op.merging_sets.get(("a", None)) is None
    assert h.el("a", 16, 3) == []  # [3, 13): 12 + 10 <= 31, nothing to merge with: late
    assert h.late == [(("a", 16), 3)]
    assert h.op.merging_sets.get(("a", None)) is None
    assert h.wm(MAX) == []


# ---------------------------------------------------------------------------------------------------------------------
# Window functions
# ---------------------------------------------------------------------------------------------------------------------


class Inspect(ProcessWindowFunction):
    """Reports the context; counts its firings in per-window and in global state; clear() reports and clears."""

    def __init__(self) -> None:
        self.cleared: list[tuple[Any, Any]] = []

    def process(self, key: Any, context: ProcessWindowFunction.Context, elements: Iterable[Any]) -> Iterable[Any]:
        w = context.window()
        per = context.window_state().get_state(ValueStateDescriptor("per-window"))
        glob = context.global_state().get_state(ValueStateDescriptor("global"))
        per.update((per.value() or 0) + 1)
        glob.update((glob.value() or 0) + 1)
        context.output(SIDE, (key, w.start))
        yield (key, w.start, w.end, context.current_watermark(), context.current_processing_time(), per.value(),
               glob.value(), sorted(n for _, n in elements))

    def clear(self, context: ProcessWindowFunction.Context) -> None:
        per = context.window_state().get_state(ValueStateDescriptor("per-window"))
        self.cleared.append((context.window(), per.value()))
        per.clear()


@pytest.mark.parametrize("path", PATHS)
def test_process_window_function_context_and_state(make, path):
    fn = Inspect()
    h = make(TumblingEventTimeWindows.of(10), trigger=event_trigger(path), lateness=10, mode="list", window_fn=fn,
             now=1000)
    h.el("a", 1, 1)
    h.el("b", 5, 7)
    h.el("a", 2, 12)
    assert by_ts(h.wm(9)) == [(("a", 0, 10, 9, 1000, 1, 1, [1]), 9), (("b", 0, 10, 9, 1000, 1, 1, [5]), 9)]
    h.now = 1500
    # a late firing: the per-window count of [0, 10) goes on (2), so does a's global count
    assert h.el("a", 3, 5) == [(("a", 0, 10, 9, 1500, 2, 2, [1, 3]), 9)]
    # at 19 the [0, 10) windows are cleaned up (clear() sees their state) and a's [10, 20) fires: per-window state
    # starts afresh (1), global state is the key's (3)
    assert h.wm(19) == [(("a", 10, 20, 19, 1500, 1, 3, [2]), 19)]
    assert sorted(fn.cleared, key=repr) == [(TimeWindow(0, 10), 1), (TimeWindow(0, 10), 2)]
    assert h.wm(29) == []
    assert fn.cleared[2:] == [(TimeWindow(10, 20), 1)]
    # context.output: to the side output, with the window's end - 1
    assert sorted(h.of("side")) == [(("a", 0), 9), (("a", 0), 9), (("a", 10), 19), (("b", 0), 9)]
    # b's global state is its own, untouched by a's firings
    h.el("b", 6, 35)
    assert h.wm(MAX) == [(("b", 30, 40, MAX, 1500, 1, 2, [6]), 39)]


@pytest.mark.parametrize("mode", ["reduce", "aggregate", "list"])
def test_window_function_apply_gets_elements_or_single_aggregate(make, mode):
    h = make(TumblingEventTimeWindows.of(10), window_fn=Tag(), **mode_params(mode))
    h.el("a", 1, 1)
    h.el("a", 2, 8)
    h.el("a", 3, 4)
    h.el("a", 5, 15)
    elements = [("a", 1), ("a", 2), ("a", 3)]
    inputs = elements if mode == "list" else _summary(mode, "a", elements)  # arrival order for apply/process
    assert h.wm(MAX) == [(("a", 0, 10, inputs), 9), (("a", 10, 20, _summary(mode, "a", [("a", 5)])), 19)]


def test_plain_callable_window_function_and_reduce_into_process_function(make):
    h = make(TumblingEventTimeWindows.of(10), mode="list", window_fn=lambda key, w, els: [(key, w.end, len(els))])
    h.el("a", 1, 1)
    h.el("a", 1, 2)
    assert h.wm(9) == [(("a", 10, 2), 9)]

    class Wrap(ProcessWindowFunction):
        def process(self, key, context, elements):
            return [(key, context.window().start, list(elements))]

    h = make(TumblingEventTimeWindows.of(10), reduce_fn=add, window_fn=Wrap())
    h.el("a", 1, 1)
    h.el("a", 2, 2)
    assert h.wm(9) == [(("a", 0, [("a", 3)]), 9)]


def test_window_all_with_all_window_functions(make):
    class Sum(AllWindowFunction):
        def apply(self, window, inputs):
            return [(window.start, sum(inputs))]

    class Proc(ProcessAllWindowFunction):
        def process(self, context, elements):
            return [(context.window().start, context.current_watermark(), sorted(elements))]

    fns = {"apply": Sum(), "process": Proc(), "callable": lambda w, els: [(w.end, len(els))]}
    results = {}
    for name, fn in fns.items():
        h = make(TumblingEventTimeWindows.of(10), mode="list", window_fn=fn, all_=True, key=lambda v: 0)
        assert h.batch([1, 2, 4, 8], [1, 5, 12, 3]) == []
        results[name] = (h.wm(9), h.wm(MAX))
    assert results == {
        "apply": ([((0, 11), 9)], [((10, 4), 19)]),
        "process": ([((0, 9, [1, 2, 8]), 9)], [((10, MAX, [4]), 19)]),
        "callable": ([((10, 3), 9)], [((20, 1), 19)]),
    }


# ---------------------------------------------------------------------------------------------------------------------
# Count windows and triggers
# ---------------------------------------------------------------------------------------------------------------------


def test_count_tumbling_fires_every_n_per_key_and_purges(make):
    h = make(CountTumblingWindowAssigner.of(3), mode="list", window_fn=lambda k, w, els: [(k, list(els))])
    out = []
    for i, key in enumerate("aabaabbaa"):  # a: 0 1 3 4 7 8, b: 2 5 6
        out += h.el(key, i)  # no timestamps needed
    values = [v for v, _ in out]
    assert values == [("a", [("a", 0), ("a", 1), ("a", 3)]), ("b", [("b", 2), ("b", 5), ("b", 6)]),
                      ("a", [("a", 4), ("a", 7), ("a", 8)])]
    assert {ts for _, ts in out} == {MAX}  # the global window's max timestamp
    h.el("a", 9)
    assert h.wm(MAX) == []  # an incomplete count window never fires
    assert h.el("a", 10) == []
    assert h.el("a", 11) == [(("a", [("a", 9), ("a", 10), ("a", 11)]), MAX)]


def test_count_tumbling_reduce(make):
    h = make(CountTumblingWindowAssigner.of(3), reduce_fn=add)
    out = h.batch([("a", 1), ("a", 2), ("b", 100), ("a", 4), ("a", 8), ("a", 16), ("a", 32)], None)
    assert out == [(("a", 7), MAX), (("a", 56), MAX)]


def test_count_sliding_fires_every_slide_with_last_size_elements(make):
    h = make(CountSlidingWindowAssigner.of(4, 2), mode="list", window_fn=lambda k, w, els: [list(els)])
    out = [v for i in range(1, 9) for v, _ in h.el("a", i)]
    a = [("a", i) for i in range(9)]
    assert out == [a[1:3], a[1:5], a[3:7], a[5:9]]
    out = [v for i in range(1, 5) for v, _ in h.el("b", i)]  # per key
    assert out == [[("b", 1), ("b", 2)], [("b", 1), ("b", 2), ("b", 3), ("b", 4)]]


@pytest.mark.parametrize("mode", ["reduce", "aggregate"])
def test_count_sliding_with_reduce_or_aggregate(make, mode):
    # Flink: countWindow(4, 2) is GlobalWindows + CountTrigger(2) + CountEvictor(4): each firing reduces the last 4
    h = make(CountSlidingWindowAssigner.of(4, 2), **mode_params(mode))
    out = [v for i in range(1, 9) for v, _ in h.el("a", i)]
    if mode == "reduce":
        assert out == [("a", 3), ("a", 10), ("a", 18), ("a", 26)]
        h = make(CountSlidingWindowAssigner.of(4, 2), reduce_fn=lambda a, b: a + b, key=lambda v: 0)
        assert [v for i in range(1, 9) for v, _ in h.batch([i], None)] == [3, 10, 18, 26]  # plain ints too
    else:
        assert out == [(2, 3), (4, 10), (4, 18), (4, 26)]


def test_count_trigger_on_session_windows_merges_counts(make):
    h = make(EventTimeSessionWindows.with_gap(10), trigger=CountTrigger.of(3), mode="list", window_fn=Tag())
    assert h.el("a", 1, 0) == []
    assert h.el("a", 2, 20) == []
    # the bridge merges [0, 10) and [20, 30) (one element counted each) with its own: 3 elements, fires
    out = h.el("a", 4, 10)
    assert [(v[:3], sorted(v[3]), ts) for v, ts in out] == [(("a", 0, 30), [("a", 1), ("a", 2), ("a", 4)], 29)]
    assert h.el("a", 8, 15) == []  # the count starts over
    assert h.wm(MAX) == []  # CountTrigger never fires on time


def test_count_trigger_without_purge_accumulates_on_event_time_windows(make):
    h = make(TumblingEventTimeWindows.of(100), trigger=CountTrigger.of(2), reduce_fn=add)
    assert h.el("a", 1, 1) == []
    assert h.el("a", 2, 2) == [(("a", 3), 99)]
    assert h.el("a", 4, 3) == []
    assert h.el("a", 8, 4) == [(("a", 15), 99)]  # not purged: the whole window so far
    assert h.el("a", 16, 5) == []
    assert h.wm(99) == []  # CountTrigger does not fire on time; the window is cleared at 99
    assert h.el("a", 32, 150) == []
    assert h.el("a", 64, 160) == [(("a", 96), 199)]  # a fresh count in the next window
    assert len(h.op.contents) == 1


def test_purging_count_trigger(make):
    h = make(TumblingEventTimeWindows.of(100), trigger=PurgingTrigger.of(CountTrigger.of(2)), reduce_fn=add)
    assert h.el("a", 1, 1) == []
    assert h.el("b", 1, 1) == []
    assert h.el("a", 2, 2) == [(("a", 3), 99)]
    assert h.el("a", 4, 3) == []
    assert h.el("a", 8, 4) == [(("a", 12), 99)]  # purged after the first firing
    assert h.el("a", 16, 5) == []
    assert h.wm(99) == []  # leftovers (a: 16, b: 1) never fire, and are cleared
    assert len(h.op.contents) == 0


def test_purging_event_time_trigger_late_firing_sees_only_new_elements(make):
    h = make(TumblingEventTimeWindows.of(10), trigger=PurgingTrigger.of(EventTimeTrigger.create()), lateness=10,
             reduce_fn=add)
    assert not h.op.fast
    h.el("a", 1, 1)
    h.el("a", 2, 2)
    assert h.wm(9) == [(("a", 3), 9)]
    assert h.el("a", 4, 5) == [(("a", 4), 9)]  # fired and purged: the late firing has just the new element
    assert h.el("a", 8, 6) == [(("a", 8), 9)]
    assert h.wm(MAX) == []


def test_continuous_event_time_trigger_early_firings(make):
    h = make(TumblingEventTimeWindows.of(100), trigger=ContinuousEventTimeTrigger.of(30), reduce_fn=add)
    h.el("a", 1, 5)  # first early firing at 5 - 5 % 30 + 30 = 30
    assert h.wm(29) == []
    assert h.wm(30) == [(("a", 1), 99)]
    h.el("a", 2, 40)
    assert h.wm(59) == []
    assert h.wm(60) == [(("a", 3), 99)]
    h.el("a", 4, 70)
    # at 90 an early firing (the next one would be min(120, 99) = 99), at 99 the end of the window: one firing
    # for the (deduplicated) timer at 99
    assert h.wm(99) == [(("a", 7), 99), (("a", 7), 99)]
    assert h.wm(MAX) == []
    assert len(h.op.contents) == 0


def test_continuous_event_time_trigger_watermark_jump_fires_each_boundary(make):
    h = make(TumblingEventTimeWindows.of(100), trigger=ContinuousEventTimeTrigger.of(40), reduce_fn=add)
    h.el("a", 1, 10)
    h.el("b", 2, 50)  # b: first at 40 + 40 = 80
    # a: 40, 80, then 99; b: 80, 99 -- all due at once, in timestamp order
    assert by_ts(h.wm(MAX)) == [(("a", 1), 99)] * 3 + [(("b", 2), 99)] * 2
    assert [ts for _, ts in h.of("out")] == [99] * 5


# ---------------------------------------------------------------------------------------------------------------------
# Processing time
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("trigger", [None, ProcessingTimeTrigger.create()], ids=["default", "explicit"])
def test_processing_time_tumbling_with_fake_clock(make, trigger):
    h = make(TumblingProcessingTimeWindows.of(10), trigger=trigger, reduce_fn=add, now=3)
    assert h.batch([("a", 1), ("b", 10)], [500, 500]) == []  # record timestamps are ignored
    h.now = 8
    assert h.el("a", 2) == []
    assert h.tick(8) == []
    assert by_ts(h.tick(9)) == [(("a", 3), 9), (("b", 10), 9)]  # at end - 1, stamped end - 1
    h.now = 10
    assert h.el("a", 4) == []  # [10, 20)
    assert h.wm(MAX) == []  # watermarks do not fire processing-time windows
    assert h.tick(18) == []
    assert h.tick(25) == [(("a", 4), 19)]
    assert len(h.op.contents) == 0
    assert h.late == []


def test_processing_time_session_windows_merge(make):
    from weir.datastream.window import ProcessingTimeSessionWindows

    h = make(ProcessingTimeSessionWindows.with_gap(10), reduce_fn=add, window_fn=Tag())
    h.el("a", 1)  # [0, 10)
    h.now = 5
    h.el("a", 2)  # [5, 15): merged into [0, 15)
    h.el("b", 4)  # [5, 15)
    assert h.tick(9) == []  # the timer of the merged-away [0, 10) does not fire
    assert by_ts(h.tick(14)) == [(("a", 0, 15, [("a", 3)]), 14), (("b", 5, 15, [("b", 4)]), 14)]
    assert h.op.merging_sets.get(("a", None)) is None
    assert len(h.op.contents) == 0


def test_processing_time_trigger_on_event_time_windows(make):
    h = make(TumblingEventTimeWindows.of(10), trigger=ProcessingTimeTrigger.create(), reduce_fn=add)
    h.el("a", 1, 3)
    h.el("a", 2, 5)
    assert h.tick(8) == []
    assert h.tick(9) == [(("a", 3), 9)]  # processing time reached end - 1 (9); not purged
    assert h.el("a", 4, 7) == []  # registers a timer at 9 again, already due: fires at the next run
    assert h.tick(10) == [(("a", 7), 9)]
    assert h.wm(9) == []  # the event-time cleanup (end - 1 + 0) clears without firing
    assert h.el("a", 8, 8) == []
    assert h.late == [(("a", 8), 8)]
    assert len(h.op.contents) == 0


def test_processing_time_sliding_with_fake_clock(make):
    h = make(SlidingProcessingTimeWindows.of(10, 5), mode="list", window_fn=Tag(), now=7)
    h.el("a", 1)  # [5, 15), [0, 10)
    h.now = 12
    h.el("a", 2)  # [10, 20), [5, 15)
    assert h.tick(12) == [(("a", 0, 10, [("a", 1)]), 9)]  # due since 9
    assert h.tick(13) == []
    assert h.tick(14) == [(("a", 5, 15, [("a", 1), ("a", 2)]), 14)]
    assert h.tick(30) == [(("a", 10, 20, [("a", 2)]), 19)]


# ---------------------------------------------------------------------------------------------------------------------
# Errors and end of input
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("assigner, trigger", [
    (TumblingEventTimeWindows.of(10), None),
    (TumblingEventTimeWindows.of(10), GenericEventTimeTrigger()),
    (SlidingEventTimeWindows.of(10, 5), None),
    (EventTimeSessionWindows.with_gap(10), None),
], ids=["tumbling-fast", "tumbling-generic", "sliding", "session"])
@pytest.mark.parametrize("timestamps", [None, [None]], ids=["batch-without", "record-without"])
def test_record_without_timestamp_into_event_time_window_raises(make, assigner, trigger, timestamps):
    h = make(assigner, trigger=trigger, reduce_fn=add)
    with pytest.raises(ValueError, match="timestamp"):
        h.op.process_batch([("a", 1)], timestamps)


@pytest.mark.parametrize("kind", [
    "tumbling-fast",
    "tumbling-generic", "sliding", "session"])
def test_min_timestamp_marker_counts_as_no_timestamp(make, kind):
    # Long.MIN_VALUE is Flink's "record has no timestamp" marker (the timestamp assigner hands it to extractors of
    # records without one); both paths must treat it like None
    assigner = {"tumbling-fast": TumblingEventTimeWindows.of(10), "tumbling-generic": TumblingEventTimeWindows.of(10),
                "sliding": SlidingEventTimeWindows.of(10, 5), "session": EventTimeSessionWindows.with_gap(10)}[kind]
    h = make(assigner, trigger=GenericEventTimeTrigger() if kind == "tumbling-generic" else None, reduce_fn=add)
    with pytest.raises(ValueError, match="timestamp"):
        h.op.process_batch([("a", 1)], [MIN_TIMESTAMP])


@pytest.mark.parametrize("kind", ["tumbling-fast", "tumbling-generic", "sliding", "session"])
def test_final_watermark_fires_everything_pending_in_timestamp_order(make, kind):
    assigner = {"tumbling-fast": TumblingEventTimeWindows.of(10), "tumbling-generic": TumblingEventTimeWindows.of(10),
                "sliding": SlidingEventTimeWindows.of(10, 5), "session": EventTimeSessionWindows.with_gap(10)}[kind]
    trigger = GenericEventTimeTrigger() if kind == "tumbling-generic" else None
    h = make(assigner, trigger=trigger, lateness=5, reduce_fn=add, window_fn=Tag())
    h.el("a", 1, 3)
    h.el("a", 2, 12)
    h.el("b", 4, 105)
    h.wm(2)
    expected = {
        "tumbling-fast": [("a", 0, 10, 1), ("a", 10, 20, 2), ("b", 100, 110, 4)],
        "tumbling-generic": [("a", 0, 10, 1), ("a", 10, 20, 2), ("b", 100, 110, 4)],
        "sliding": [("a", -5, 5, 1), ("a", 0, 10, 1), ("a", 5, 15, 2), ("a", 10, 20, 2), ("b", 100, 110, 4),
                    ("b", 105, 115, 4)],
        "session": [("a", 3, 22, 3), ("b", 105, 115, 4)],  # [3, 13) and [12, 22) intersect
    }[kind]
    out = h.wm(MAX)
    assert out == [((k, s, e, [(k, n)]), e - 1) for k, s, e, n in expected]
    assert h.log[-1] == ("wm", MAX)  # forwarded after everything it fired
    assert len(h.op.contents) == 0
    assert h.op.timers.pending == 0
