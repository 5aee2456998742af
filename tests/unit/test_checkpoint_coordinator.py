"""CheckpointCoordinator (pure): triggering, acknowledgements, aborts and failure counting, on a fake clock."""

from __future__ import annotations

import pytest

from jobmanager.checkpoint.coordinator import CheckpointConfig, CheckpointCoordinator

A0, A1, B0 = ("a", 0), ("a", 1), ("b", 0)
TASKS = [A0, A1, B0]
T0 = 1000.0  # the coordinator starts here


def coord(tasks=TASKS, next_id: int = 1, **kw) -> CheckpointCoordinator:
    kw.setdefault("interval_ms", 1000)
    c = CheckpointCoordinator(CheckpointConfig(**kw), list(tasks), next_id)
    c.start(T0)
    return c


def ack_all(c: CheckpointCoordinator, now: float, cid: int, tasks=TASKS):
    ds = [c.ack(now, cid, t, f"state-{t[0]}{t[1]}-{cid}") for t in tasks]
    return ds


# ---- triggering ----


def test_disabled_never_triggers():
    c = coord(interval_ms=0)
    assert not c.config.enabled
    assert c.tick(T0 + 10_000).trigger is None
    assert c.pending == {}


def test_not_started_never_triggers():
    c = CheckpointCoordinator(CheckpointConfig(interval_ms=10), TASKS)
    assert c.tick(T0 + 100).trigger is None


def test_interval_counts_from_start_and_from_last_trigger():
    c = coord(interval_ms=1000)
    assert c.tick(T0 + 0.999).trigger is None
    assert c.tick(T0 + 1.0).trigger == 1
    assert set(c.pending) == {1}
    assert c.pending[1].waiting == set(TASKS)
    ack_all(c, T0 + 1.1, 1)
    assert c.tick(T0 + 1.9).trigger is None  # 0.9 s since the last trigger
    assert c.tick(T0 + 2.0).trigger == 2


def test_max_concurrent_one_nothing_while_pending():
    c = coord(interval_ms=100)
    assert c.tick(T0 + 1).trigger == 1
    for dt in (2, 3, 50):
        assert c.tick(T0 + dt).trigger is None
    assert list(c.pending) == [1]
    ack_all(c, T0 + 51, 1)
    assert c.tick(T0 + 51).trigger == 2


def test_min_pause_counts_from_the_last_completion():
    c = coord(interval_ms=100, min_pause_ms=5000)
    assert c.tick(T0 + 10).trigger == 1
    ack_all(c, T0 + 20, 1)
    assert c.tick(T0 + 24.9).trigger is None  # interval elapsed, min pause not
    assert c.tick(T0 + 25).trigger == 2


def test_ids_continue_from_next_id():
    c = coord(next_id=42, interval_ms=10)
    assert c.tick(T0 + 1).trigger == 42
    assert c.next_id == 43


# ---- acknowledgements ----


def test_ack_from_every_task_completes_with_their_states():
    c = coord()
    cid = c.tick(T0 + 1).trigger
    d1 = c.ack(T0 + 1.5, cid, A0, "s0")
    d2 = c.ack(T0 + 1.6, cid, A1, "s1")
    assert d1.completed == [] and d2.completed == []
    assert c.pending[cid].waiting == {B0}
    d = c.ack(T0 + 2.0, cid, B0, "sb")
    (cc,) = d.completed
    assert (cc.checkpoint_id, cc.triggered_at, cc.completed_at, cc.savepoint) == (cid, T0 + 1, T0 + 2.0, None)
    assert cc.states == {A0: "s0", A1: "s1", B0: "sb"}
    assert c.pending == {}
    assert d.aborted == [] and d.fail_job is None


def test_unknown_and_duplicate_acks_are_ignored():
    c = coord()
    cid = c.tick(T0 + 1).trigger
    assert c.ack(T0 + 2, cid, A0, "first").completed == []
    # a duplicate does not overwrite the state nor count twice
    assert c.ack(T0 + 2, cid, A0, "dup").completed == []
    assert c.pending[cid].states == {A0: "first"}
    # a task the job does not have
    assert c.ack(T0 + 2, cid, ("zz", 0), "x").completed == []
    # an unknown checkpoint
    d = c.ack(T0 + 2, 99, A1, "x")
    assert d.completed == [] and d.aborted == []
    assert c.pending[cid].waiting == {A1, B0}
    d = ack_all(c, T0 + 3, cid, [A1, B0])[-1]
    assert len(d.completed) == 1 and d.completed[0].states[A0] == "first"
    # acks after completion are ignored too
    assert c.ack(T0 + 4, cid, A0, "late").completed == []


def test_completion_subsumes_older_pending_checkpoints():
    c = coord(interval_ms=10, max_concurrent=2)
    assert c.tick(T0 + 1).trigger == 1
    assert c.tick(T0 + 2).trigger == 2
    assert set(c.pending) == {1, 2}
    c.ack(T0 + 2.1, 1, A0, "x")
    d = ack_all(c, T0 + 3, 2)[-1]
    assert [cc.checkpoint_id for cc in d.completed] == [2]
    assert [cid for cid, _ in d.aborted] == [1]
    assert "subsumed by 2" in d.aborted[0][1]
    assert c.pending == {}


def test_completion_resets_consecutive_failures():
    c = coord(interval_ms=10, tolerable_failures=1)
    cid = c.tick(T0 + 1).trigger
    assert c.decline(cid, A0, "disk full").fail_job is None
    assert c.consecutive_failures == 1
    cid = c.tick(T0 + 2).trigger
    ack_all(c, T0 + 2.5, cid)
    assert c.consecutive_failures == 0
    cid = c.tick(T0 + 3).trigger
    assert c.decline(cid, A0, "disk full").fail_job is None  # one failure again: tolerated


# ---- aborts ----


def test_timeout_aborts_and_counts_toward_tolerable_failures():
    c = coord(interval_ms=10, timeout_ms=2000, tolerable_failures=1)
    cid = c.tick(T0 + 1).trigger
    d = c.tick(T0 + 3.0)  # exactly the timeout: not yet expired
    assert d.aborted == [] and set(c.pending) == {cid}
    d = c.tick(T0 + 3.01)
    assert d.aborted == [(cid, f"checkpoint {cid} expired after 2000 ms")]
    assert d.fail_job is None
    assert c.consecutive_failures == 1
    assert d.trigger == cid + 1  # nothing pending any more: the next one starts
    d = c.tick(T0 + 6)
    assert [a for a, _ in d.aborted] == [cid + 1]
    assert d.fail_job is not None
    assert "tolerable number of failed checkpoints (1)" in d.fail_job
    assert f"checkpoint {cid + 1} expired" in d.fail_job


def test_zero_tolerable_failures_fails_on_the_first_timeout():
    c = coord(interval_ms=10, timeout_ms=100)
    cid = c.tick(T0 + 1).trigger
    d = c.tick(T0 + 2)
    assert [a for a, _ in d.aborted] == [cid]
    assert d.fail_job is not None


def test_decline_aborts_names_the_task_and_counts():
    c = coord(interval_ms=10, tolerable_failures=1)
    cid = c.tick(T0 + 1).trigger
    d = c.decline(cid, B0, "upload failed: boom")
    assert d.aborted == [(cid, "declined by b/0: upload failed: boom")]
    assert d.fail_job is None
    assert c.pending == {}
    # a later ack of the declined checkpoint changes nothing
    assert ack_all(c, T0 + 2, cid)[-1].completed == []
    # declining an unknown checkpoint is a no-op and does not count
    d = c.decline(77, B0, "x")
    assert d.aborted == [] and d.fail_job is None
    assert c.consecutive_failures == 1
    cid = c.tick(T0 + 2).trigger
    d = c.decline(cid, A0, "again")
    assert d.fail_job is not None and "again" in d.fail_job


def test_task_finished_stops_triggering_and_aborts_pending():
    c = coord(interval_ms=10)
    cid = c.tick(T0 + 1).trigger
    c.ack(T0 + 1.5, cid, A0, "x")
    d = c.task_finished(A1)
    assert d.aborted == [(cid, "task a/1 finished")]
    assert d.fail_job is None
    assert c.consecutive_failures == 0, "a finished task is not a failed checkpoint"
    assert c.pending == {}
    assert c.tick(T0 + 100).trigger is None
    with pytest.raises(RuntimeError, match="already finished"):
        c.trigger_savepoint(T0 + 100, "file:///sp")


def test_stop_aborts_everything_and_stops_triggering():
    c = coord(interval_ms=10)
    cid = c.tick(T0 + 1).trigger
    assert c.stop() == [cid]
    assert c.pending == {}
    assert c.tick(T0 + 100).trigger is None


# ---- savepoints ----


def test_savepoint_is_triggered_at_once_and_completes_with_its_target():
    c = coord(interval_ms=60_000)
    sp = c.trigger_savepoint(T0 + 1, "file:///tmp/sp-1")
    assert sp == 1
    assert c.pending[sp].savepoint == "file:///tmp/sp-1"
    assert c.tick(T0 + 2).trigger is None  # a pending savepoint blocks periodic checkpoints
    d = ack_all(c, T0 + 3, sp)[-1]
    (cc,) = d.completed
    assert cc.savepoint == "file:///tmp/sp-1"
    assert c.next_id == 2
    # the interval counts from the savepoint's trigger
    assert c.tick(T0 + 60.5).trigger is None
    assert c.tick(T0 + 61).trigger == 2


def test_savepoint_while_a_checkpoint_is_pending_subsumes_it():
    c = coord(interval_ms=10)
    cid = c.tick(T0 + 1).trigger
    sp = c.trigger_savepoint(T0 + 2, "file:///sp")
    assert sp == cid + 1
    d = ack_all(c, T0 + 3, sp)[-1]
    assert [x.checkpoint_id for x in d.completed] == [sp]
    assert [a for a, _ in d.aborted] == [cid]


def test_failed_savepoints_do_not_count_toward_tolerable_failures():
    """As in Flink: a savepoint that expires or is declined fails only itself, with zero tolerable failures too."""
    c = coord(interval_ms=60_000, timeout_ms=100)
    sp = c.trigger_savepoint(T0 + 1, "file:///sp")
    d = c.tick(T0 + 2)
    assert [a for a, _ in d.aborted] == [sp]
    assert d.fail_job is None and c.consecutive_failures == 0
    sp = c.trigger_savepoint(T0 + 3, "file:///sp")
    d = c.decline(sp, A0, "disk full")
    assert d.aborted == [(sp, "declined by a/0: disk full")]
    assert d.fail_job is None and c.consecutive_failures == 0
    # a periodic checkpoint's failure still counts
    cid = c.tick(T0 + 100).trigger
    d = c.decline(cid, A0, "boom")
    assert d.fail_job is not None
