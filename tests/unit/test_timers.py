"""The timer queue (taskmanager/timers.py) and the timers' snapshots by key group (KeyedStateMixin)."""

from __future__ import annotations

import pickle
import random
from dataclasses import dataclass
from typing import Any

import pytest

from state.keygroups import key_group_for, key_group_range
from taskmanager.operators.base import OperatorRuntime
from taskmanager.operators.keyed import KeyedProcessOperator
from taskmanager.operators.keyed_state import LEGACY_TIMERS_TABLE, TIMERS_STATE, KeyedStateMixin
from taskmanager.timers import (
    InternalTimerService,
    ProcessingTimeService,
    _TimerQueue,
    restore_timers_from_blobs,
    timers_by_key_group,
)
from tests.unit.recorder import Recorder
from tests.unit.test_state_snapshot import BACKENDS, MP, Env
from weir.datastream.functions import KeyedProcessFunction, RuntimeContext
from weir.graph.deployment import OperatorSubtaskState

# ---------------------------------------------------------------------------------------------------------------
# The queue
# ---------------------------------------------------------------------------------------------------------------


def drain(q: _TimerQueue, until: int) -> list[tuple[int, Any, Any]]:
    out = []
    while (due := q.pop_due(until)) is not None:
        ts, bucket = due
        out.extend((ts, k, ns) for k, ns in bucket)
    return out


def test_fires_in_timestamp_order_and_registration_order_within_one() -> None:
    q = _TimerQueue()
    assert q.add("a", None, 30) is True
    assert q.add("b", None, 10) is True
    assert q.add("c", None, 30) is False  # second timer at 30: not a new timestamp
    assert q.add("d", 1, 30) is False
    assert q.add("e", None, 20) is True
    assert len(q) == 5 and q.earliest == 10
    assert drain(q, 25) == [(10, "b", None), (20, "e", None)]
    assert len(q) == 3 and q.earliest == 30
    assert drain(q, 100) == [(30, "a", None), (30, "c", None), (30, "d", 1)]
    assert len(q) == 0 and q.earliest is None and q.by_ts == {}


def test_deduplicates_per_key_namespace_and_timestamp() -> None:
    q = _TimerQueue()
    for _ in range(3):
        q.add("a", "w", 5)  # a lone timer
        q.add("b", "w", 6)
        q.add("c", "w", 6)  # a dict bucket
        q.add("b", "w", 6)
    q.add("a", "x", 5)  # another namespace: another timer
    q.add("a", "w", 7)  # another timestamp: another timer
    q.add(1, "w", 6)
    q.add(1.0, "w", 6)  # equal keys are one key, as in a dict
    assert len(q) == 6
    assert drain(q, 10) == [(5, "a", "w"), (5, "a", "x"), (6, "b", "w"), (6, "c", "w"), (6, 1, "w"), (7, "a", "w")]


def test_buckets_answer_membership_for_the_window_operator() -> None:
    """The window fast path reads ``by_ts.get(ts)`` and asks ``(key, ns) in bucket``: true for both kinds."""
    q = _TimerQueue()
    q.add("a", 0, 59)
    lone = q.by_ts[59]
    assert ("a", 0) in lone and ("a", 1) not in lone and ("b", 0) not in lone and "a" not in lone
    assert len(lone) == 1
    q.add("b", 0, 59)
    both = q.by_ts[59]
    assert ("a", 0) in both and ("b", 0) in both and ("c", 0) not in both and len(both) == 2
    assert q.by_ts.get(60) is None


def test_remove() -> None:
    q = _TimerQueue()
    q.add("a", None, 5)
    q.add("b", None, 6)
    q.add("c", None, 6)
    q.remove("x", None, 5)  # absent: nothing
    q.remove("a", None, 99)
    q.remove("a", 1, 5)
    assert len(q) == 3
    q.remove("a", None, 5)  # the lone timer: its timestamp goes
    assert 5 not in q.by_ts and len(q) == 2
    q.remove("a", None, 5)
    q.remove("b", None, 6)
    assert len(q) == 1 and q.earliest == 6
    q.remove("c", None, 6)
    assert len(q) == 0 and q.by_ts == {} and q.earliest is None
    q.add("a", None, 5)  # again after removal: fires once
    assert drain(q, 10) == [(5, "a", None)]


def test_len_and_version_follow_every_change() -> None:
    rnd = random.Random(7)
    svc = InternalTimerService(ProcessingTimeService(clock=lambda: 0), lambda k, n, t: None, lambda k, n, t: None)
    model: set[tuple[Any, Any, int]] = set()
    versions = {svc.version}
    wm = 0
    for step in range(3000):
        op = rnd.random()
        key, ns, ts = rnd.randrange(6), rnd.randrange(2), wm + rnd.randrange(1, 12)
        before = svc.version
        if op < 0.55:
            svc.register_event_time_timer(key, ns, ts)
            changed = (key, ns, ts) not in model
            model.add((key, ns, ts))
        elif op < 0.85:
            svc.delete_event_time_timer(key, ns, ts)
            changed = (key, ns, ts) in model
            model.discard((key, ns, ts))
        else:
            wm += rnd.randrange(0, 4)
            fired: list[tuple[Any, Any, int]] = []
            svc.on_event_timer = lambda k, n, t: fired.append((k, n, t))  # noqa: B023
            svc.advance_watermark(wm)
            due = {t for t in model if t[2] <= wm}
            assert sorted(fired, key=lambda t: t[2]) == fired and set(fired) == due and len(fired) == len(due)
            model -= due
            changed = bool(due)
        assert len(svc.event) == svc.pending == len(model), step
        assert (svc.version != before) == changed, step
        if changed:
            assert svc.version not in versions  # never back to an earlier version
            versions.add(svc.version)
        assert {(k, n, t) for k, n, t, _ in svc.entries()} == model


def test_timers_registered_while_firing() -> None:
    fired: list[tuple[Any, int]] = []
    svc: InternalTimerService

    def on_timer(key: Any, ns: Any, ts: int) -> None:
        fired.append((key, ts))
        if key == "a" and ts == 10:
            svc.register_event_time_timer("due", None, 10)  # the timestamp firing now: fires in this advance
            svc.register_event_time_timer("due", None, 15)  # due too
            svc.register_event_time_timer("later", None, 50)  # not due yet
            svc.delete_event_time_timer("b", None, 10)  # its bucket was taken: fires all the same
            svc.delete_event_time_timer("c", None, 12)  # not taken yet: deleted

    svc = InternalTimerService(ProcessingTimeService(clock=lambda: 0), on_timer, lambda k, n, t: None)
    for key, ts in (("a", 10), ("b", 10), ("c", 12), ("d", 20)):
        svc.register_event_time_timer(key, None, ts)
    svc.advance_watermark(20)
    assert fired == [("a", 10), ("b", 10), ("due", 10), ("due", 15), ("d", 20)]
    assert svc.pending == 1 and svc.event.earliest == 50
    svc.advance_watermark(50)
    assert fired[-1] == ("later", 50) and svc.pending == 0


def test_processing_timers_schedule_each_timestamp_once_and_are_dropped_at_the_end() -> None:
    now = [0]
    pts = ProcessingTimeService(clock=lambda: now[0])
    fired: list[tuple[Any, Any, int]] = []
    svc = InternalTimerService(pts, lambda k, n, t: None, lambda k, n, t: fired.append((k, n, t)))
    svc.register_processing_time_timer("a", None, 100)
    svc.register_processing_time_timer("b", None, 100)
    svc.register_processing_time_timer("a", None, 200)
    assert len(pts._heap) == 2
    now[0] = 150
    pts.run_due()
    assert fired == [("a", None, 100), ("b", None, 100)] and svc.pending == 1
    v = svc.version
    svc.fire_all_processing_timers()
    assert svc.pending == 0 and svc.version != v
    now[0] = 300
    pts.run_due()
    assert fired == [("a", None, 100), ("b", None, 100)]


# ---------------------------------------------------------------------------------------------------------------
# Snapshots by key group
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Win:
    start: int
    end: int


NAMESPACES: list[Any] = [None, 0, -5, "w", ("t", 1), Win(0, 10), frozenset({1, 2}), 2.5, b"b"]
KEYS: list[Any] = [f"k{i}" for i in range(60)] + list(range(40)) + [("t", i) for i in range(20)] + [None, 3.5]


def fill(svc: InternalTimerService, keys: list[Any]) -> set[tuple[Any, Any, int, int]]:
    """Timers of both domains: some alone at their timestamp, some sharing one with other keys."""
    want = set()
    for i, key in enumerate(keys):
        ns = NAMESPACES[i % len(NAMESPACES)]
        timers = [(ns, 1000, 0), (NAMESPACES[(i + 1) % len(NAMESPACES)], 1000, 0), (ns, 5000 + i, 0),
                  (ns, 2000, 1), (None, 9000 + i, 1)]
        for n, ts, domain in timers:
            if domain == 0:
                svc.register_event_time_timer(key, n, ts)
            else:
                svc.register_processing_time_timer(key, n, ts)
            want.add((key, n, ts, domain))
    return want


def service() -> InternalTimerService:
    return InternalTimerService(ProcessingTimeService(clock=lambda: 0), lambda k, n, t: None, lambda k, n, t: None)


def test_blobs_hold_each_key_group_and_restore_exactly() -> None:
    svc = service()
    want = fill(svc, KEYS)
    blobs = timers_by_key_group(svc, MP)
    assert set(blobs) == {key_group_for(k, MP) for k in KEYS}
    for kg, blob in blobs.items():
        _, entries = pickle.loads(blob)
        assert {key_group_for(k, MP) for _, _, pairs in entries for k, _ in pairs} == {kg}
    again = service()
    restore_timers_from_blobs(again, blobs.values())
    assert set(again.entries()) == want and again.pending == len(want)
    assert timers_by_key_group(service(), MP) == {}


def test_unpicklable_namespace_is_named() -> None:
    svc = service()
    svc.register_event_time_timer("k", lambda: 1, 77)
    with pytest.raises(TypeError, match="event-time timer of key 'k' at 77"):
        timers_by_key_group(svc, MP)


@pytest.mark.parametrize("kind", BACKENDS)
def test_a_checkpoint_of_unpicklable_timers_fails_naming_them_and_the_next_one_writes_them_again(
    env: Env, kind: str
) -> None:
    op = make_op(env, kind, range(MP))
    fill(op.timers, KEYS[:3])
    op.timers.register_event_time_timer("k", lambda: 1, 77)
    # hashmap: in the synchronous part; RocksDB: in the upload (the blobs are produced there)
    with pytest.raises((TypeError, RuntimeError), match="event-time timer of key 'k' at 77"):
        checkpoint(env, op, 1)
    op.notify_checkpoint_aborted(1)  # (the JobManager aborts the declined checkpoint)
    op.timers.delete_event_time_timer("k", op.timers.event.by_ts[77][0][1], 77)
    restored = make_op(env, kind, range(MP), [checkpoint(env, op, 2)])
    assert restored.timers.pending == 3 * 5


def test_unknown_blob_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown format"):
        restore_timers_from_blobs(service(), [pickle.dumps((99, []))])


class _Op(KeyedStateMixin):
    """A keyed operator with nothing but a backend and a timer service."""



def make_op(env: Env, kind: str, key_groups: range, restore: list[OperatorSubtaskState] | None = None) -> _Op:
    op = _Op(Recorder())
    op.runtime = OperatorRuntime(ProcessingTimeService(clock=lambda: 0), lambda name: env.backend(kind),
                                 lambda idle: None)
    op.uid, op.key_groups, op.local_dir = "op", key_groups, env.local
    op.restore_states, op.restore_storage = restore, env.storage
    op.open_backend()
    op.timers = service()
    op.restore_timers()
    return op


def checkpoint(env: Env, op: _Op, cid: int, canonical: bool = False) -> OperatorSubtaskState:
    pending, _ = op.snapshot_state(cid, canonical)
    return OperatorSubtaskState([pending.upload(env.storage, f"chk-{cid}/{id(op)}", "shared")], None)


@pytest.mark.parametrize("canonical", [False, True], ids=["checkpoint", "savepoint"])
@pytest.mark.parametrize("dst", BACKENDS)
@pytest.mark.parametrize("src", BACKENDS)
def test_timers_restore_exactly_and_rescale_2_to_1_to_2(env: Env, src: str, dst: str, canonical: bool) -> None:
    # p=2
    states, want = [], set()
    for i in range(2):
        kgs = key_group_range(MP, 2, i)
        op = make_op(env, src, kgs)
        want |= fill(op.timers, [k for k in KEYS if key_group_for(k, MP) in kgs])
        states.append(checkpoint(env, op, 1 + i, canonical))
    # 2 -> 1
    one = make_op(env, dst, range(MP), states)
    assert set(one.timers.entries()) == want and one.timers.pending == len(want)
    # 1 -> 2: each subtask exactly the timers of its keys
    st = checkpoint(env, one, 10, canonical)
    union: set[tuple[Any, Any, int, int]] = set()
    for i in range(2):
        kgs = key_group_range(MP, 2, i)
        part = set(make_op(env, src, kgs, [st]).timers.entries())
        assert part == {t for t in want if key_group_for(t[0], MP) in kgs}, i
        union |= part
    assert union == want


@pytest.mark.parametrize("kind", BACKENDS)
def test_changed_timers_replace_the_last_snapshot_and_none_is_an_empty_one(env: Env, kind: str) -> None:
    op = make_op(env, kind, range(MP))
    fill(op.timers, KEYS[:10])
    st1 = checkpoint(env, op, 1)
    op.timers.advance_watermark(10**9)  # every event-time timer fires
    op.timers.fire_all_processing_timers()
    assert op.timers.pending == 0
    st2 = checkpoint(env, op, 2)
    assert op.backend.read_raw_state(TIMERS_STATE) == {}
    assert make_op(env, kind, range(MP), [st2]).timers.pending == 0
    assert make_op(env, kind, range(MP), [st1]).timers.pending == 10 * 5


@pytest.mark.parametrize("kind", BACKENDS)
def test_unchanged_timers_are_not_written_again(env: Env, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    op = make_op(env, kind, range(MP))
    writes: list[str] = []
    real = op.backend.write_raw_state_later
    monkeypatch.setattr(op.backend, "write_raw_state_later", lambda name, produce: (writes.append(name),
                                                                                  real(name, produce)))
    checkpoint(env, op, 1)
    assert writes == []  # a fresh operator without timers: nothing to write
    fill(op.timers, KEYS[:10])
    checkpoint(env, op, 2)
    st3 = checkpoint(env, op, 3)
    op.timers.register_event_time_timer(KEYS[0], None, 1000)  # a duplicate: no change
    checkpoint(env, op, 4)
    assert len(writes) == 1
    op.timers.delete_event_time_timer(KEYS[0], None, 1000)
    checkpoint(env, op, 5)
    assert len(writes) == 2
    op.notify_checkpoint_aborted(5)  # the write may be what failed: the next checkpoint writes them again
    checkpoint(env, op, 6)
    assert len(writes) == 3
    restored = make_op(env, kind, range(MP), [st3])
    assert restored.timers.pending == 10 * 5


def legacy_snapshot(env: Env, kind: str, want: set[tuple[Any, Any, int, int]], key_groups: range,
                    canonical: bool) -> OperatorSubtaskState:
    """A checkpoint as weir wrote it before raw keyed state: the timers in the ``_timers`` table, one entry per
    key holding ``[(domain, namespace, timestamp), ...]``."""
    b = env.backend(kind)
    table = b.table(LEGACY_TIMERS_TABLE)
    by_key: dict[Any, list[tuple[int, Any, int]]] = {}
    for key, ns, ts, domain in want:
        by_key.setdefault(key, []).append((domain, ns, ts))
    for key, lst in by_key.items():
        table[(key, None)] = lst
    b.table("state")[("k0", None)] = "kept"
    pending = b.snapshot(1, key_groups, env.local, canonical=canonical)
    return OperatorSubtaskState([pending.upload(env.storage, f"chk-legacy/{id(b)}", "shared")], None)


@pytest.mark.parametrize("canonical", [False, True], ids=["checkpoint", "savepoint"])
@pytest.mark.parametrize("dst", BACKENDS)
@pytest.mark.parametrize("src", BACKENDS)
def test_snapshots_of_the_old_per_key_format_restore(env: Env, src: str, dst: str, canonical: bool) -> None:
    svc = service()
    want = fill(svc, KEYS)
    old = legacy_snapshot(env, src, want, range(MP), canonical)
    op = make_op(env, dst, range(MP), [old])
    assert set(op.timers.entries()) == want
    assert op.backend.table("state")[("k0", None)] == "kept"
    assert dict(op.backend.table(LEGACY_TIMERS_TABLE).items()) == {}  # moved to the raw state
    # a timer deleted after the restore stays deleted through the next checkpoint (no stale copy in the table)
    key, ns, ts, domain = sorted(want, key=repr)[0]
    (op.timers.delete_event_time_timer if domain == 0 else op.timers.delete_processing_time_timer)(key, ns, ts)
    st = checkpoint(env, op, 2, canonical)
    assert set(make_op(env, src, range(MP), [st]).timers.entries()) == want - {(key, ns, ts, domain)}
    # and rescaled: the old format is split by key group too
    for i in range(2):
        kgs = key_group_range(MP, 2, i)
        part = set(make_op(env, dst, kgs, [old]).timers.entries())
        assert part == {t for t in want if key_group_for(t[0], MP) in kgs}


class _Alarm(KeyedProcessFunction):
    def process_element(self, value: Any, ctx: Any) -> None:
        ctx.timer_service().register_event_time_timer(value[1])

    def on_timer(self, timestamp: int, ctx: Any) -> Any:
        yield (ctx.get_current_key(), timestamp)


@pytest.mark.parametrize("kind", BACKENDS)
def test_keyed_process_timers_fire_after_a_restore(env: Env, kind: str) -> None:
    def op_of(restore: list[OperatorSubtaskState] | None) -> KeyedProcessOperator:
        op = KeyedProcessOperator(Recorder(), _Alarm(), lambda v: v[0])
        op.runtime = OperatorRuntime(ProcessingTimeService(clock=lambda: 0), lambda name: env.backend(kind),
                                     lambda idle: None)
        op.uid, op.key_groups, op.local_dir = "kp", range(MP), env.local
        op.restore_states, op.restore_storage = restore, env.storage
        op.open(RuntimeContext("t", 0, 1, MP))
        return op

    first = op_of(None)
    first.process_batch([("a", 10), ("b", 10), ("a", 30), ("c", 20)], None)
    first.process_watermark(15)
    pending, _ = first.snapshot_state(1, False)
    st = OperatorSubtaskState([pending.upload(env.storage, "chk-1/kp", "shared")], None)
    second = op_of([st])
    second.process_watermark(100)
    assert first.out.values == [("a", 10), ("b", 10)]  # type: ignore[attr-defined]
    assert second.out.values == [("c", 20), ("a", 30)]  # type: ignore[attr-defined]
