"""BarrierAligner (pure): which channels are blocked and when a task snapshots, exactly-once and at-least-once."""

from __future__ import annotations

from taskmanager.network.barrier import NOTHING, BarrierAligner, Decision


def blocked(a: BarrierAligner) -> list[int]:
    return [c for c in range(a.n) if a.is_blocked(c)]


# ---- exactly-once ----


def test_exactly_once_blocks_each_channel_once_its_barrier_arrived():
    a = BarrierAligner(3)
    assert blocked(a) == [] and not a.aligning
    assert a.on_barrier(1, 1) == Decision()
    assert a.aligning
    assert blocked(a) == [1]
    assert a.on_barrier(0, 1) == Decision()
    assert blocked(a) == [0, 1]
    # the last channel's barrier triggers the snapshot and unblocks everything
    assert a.on_barrier(2, 1) == Decision(trigger=1)
    assert blocked(a) == [] and not a.aligning
    assert a.last_completed == 1


def test_duplicate_barrier_on_the_same_channel_does_not_complete_the_alignment():
    a = BarrierAligner(2)
    assert a.on_barrier(0, 1) == NOTHING
    assert a.on_barrier(0, 1) == NOTHING
    assert blocked(a) == [0]
    assert a.on_barrier(1, 1).trigger == 1


def test_single_channel_triggers_at_once_and_next_checkpoints_follow():
    a = BarrierAligner(1)
    assert a.on_barrier(0, 1) == Decision(trigger=1)
    assert a.on_barrier(0, 2) == Decision(trigger=2)
    assert a.on_barrier(0, 5) == Decision(trigger=5)  # ids may skip (aborted checkpoints upstream)
    assert blocked(a) == []


def test_trigger_when_all_non_ended_channels_delivered():
    a = BarrierAligner(3)
    assert a.on_end_of_partition(2) == NOTHING  # not aligning: nothing to do
    assert not a.aligning
    assert a.on_barrier(0, 1) == NOTHING
    assert a.on_barrier(1, 1) == Decision(trigger=1)  # channel 2 ended: not waited for
    # a later checkpoint too
    assert a.on_barrier(1, 2) == NOTHING
    assert a.on_barrier(0, 2) == Decision(trigger=2)


def test_end_of_partition_completes_an_alignment():
    a = BarrierAligner(3)
    a.on_barrier(0, 4)
    a.on_barrier(1, 4)
    assert blocked(a) == [0, 1]
    assert a.on_end_of_partition(2) == Decision(trigger=4)
    assert blocked(a) == [] and not a.aligning
    assert a.last_completed == 4


def test_end_of_partition_of_a_blocked_channel_does_not_complete_early():
    a = BarrierAligner(3)
    a.on_barrier(0, 1)
    assert a.on_end_of_partition(0) == NOTHING  # channel 0 had delivered already; channel 1 and 2 still missing
    assert a.aligning
    assert a.on_barrier(1, 1) == NOTHING
    assert a.on_barrier(2, 1) == Decision(trigger=1)


def test_newer_barrier_aborts_the_older_alignment():
    a = BarrierAligner(2)
    a.on_barrier(0, 1)
    assert blocked(a) == [0]
    # barrier 2 overtakes checkpoint 1 (e.g. 1 was aborted upstream): 1 can never complete here
    d = a.on_barrier(1, 2)
    assert d == Decision(trigger=None, abort=1)
    assert a.aligning and a.pending == 2
    assert blocked(a) == [1], "channel 0 delivered only barrier 1: it is unblocked, channel 1 waits for 2"
    assert a.on_barrier(0, 2) == Decision(trigger=2)
    assert blocked(a) == []


def test_late_barriers_of_completed_or_aborted_checkpoints_are_ignored():
    a = BarrierAligner(2)
    a.on_barrier(0, 1)
    a.on_barrier(1, 1)
    assert a.on_barrier(0, 1) == NOTHING  # a late duplicate of the completed checkpoint
    assert not a.aligning and blocked(a) == []
    a.on_barrier(0, 2)
    a.on_barrier(1, 3)  # aborts 2
    assert a.on_barrier(1, 2) == NOTHING  # a late barrier of the aborted checkpoint
    assert a.pending == 3
    assert blocked(a) == [1]


def test_older_barrier_while_aligning_a_newer_is_ignored():
    a = BarrierAligner(3)
    a.on_barrier(0, 5)
    # checkpoint 4 never reached this task before; its barrier now is older than the one aligning
    assert a.on_barrier(1, 4) == NOTHING
    assert blocked(a) == [0], "the old barrier does not block its channel"
    assert a.pending == 5


# ---- at-least-once ----


def test_at_least_once_never_blocks_and_triggers_on_the_last_barrier():
    a = BarrierAligner(3, exactly_once=False)
    assert a.on_barrier(0, 1) == NOTHING
    assert a.aligning
    assert blocked(a) == []
    assert a.on_barrier(2, 1) == NOTHING
    assert blocked(a) == []
    assert a.on_barrier(1, 1) == Decision(trigger=1)
    assert blocked(a) == []
    a.on_barrier(0, 2)
    assert a.on_end_of_partition(1) == NOTHING
    assert blocked(a) == []
    assert a.on_barrier(2, 2) == Decision(trigger=2)


def test_at_least_once_newer_barrier_aborts_older():
    a = BarrierAligner(2, exactly_once=False)
    a.on_barrier(0, 1)
    assert a.on_barrier(1, 2) == Decision(abort=1)
    assert blocked(a) == []
    assert a.on_barrier(0, 2) == Decision(trigger=2)
