"""Barrier alignment, pure: which input channels are blocked and when a task takes its snapshot.

Exactly-once (aligned, Flink's default): when barrier n arrives on a channel, that channel is blocked -- the task
sets its later input aside -- until barrier n has arrived on every channel that has not ended; then the task
snapshots, forwards the barrier and processes what it set aside. At-least-once: nothing is blocked and the snapshot
is taken when the last barrier arrives. A barrier of a newer checkpoint while one is aligning aborts the older one
(its snapshot would never complete), as in Flink.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Decision:
    """What the task must do after a barrier or end-of-partition: snapshot ``trigger`` (a checkpoint id), and
    abort ``abort`` (a checkpoint id whose alignment was overtaken)."""

    trigger: int | None = None
    abort: int | None = None


NOTHING = Decision()


class BarrierAligner:
    def __init__(self, num_channels: int, exactly_once: bool = True) -> None:
        self.n = num_channels
        self.exactly_once = exactly_once
        self.pending: int | None = None  # checkpoint being aligned
        self.arrived: set[int] = set()
        self.ended: set[int] = set()
        self.last_completed = 0

    def is_blocked(self, channel: int) -> bool:
        return self.exactly_once and self.pending is not None and channel in self.arrived

    @property
    def aligning(self) -> bool:
        return self.pending is not None

    def on_barrier(self, channel: int, checkpoint_id: int) -> Decision:
        if checkpoint_id <= self.last_completed:
            return NOTHING  # a late barrier of a checkpoint already taken or aborted
        abort = None
        if self.pending is not None and checkpoint_id > self.pending:
            abort = self.pending
            self.last_completed = max(self.last_completed, self.pending)
            self.pending = None
            self.arrived = set()
        if self.pending is None:
            if checkpoint_id < (self.last_completed + 1):
                return Decision(abort=abort)
            self.pending = checkpoint_id
            self.arrived = set()
        if checkpoint_id < self.pending:
            return Decision(abort=abort)
        self.arrived.add(channel)
        return self._maybe_complete(abort)

    def on_end_of_partition(self, channel: int) -> Decision:
        self.ended.add(channel)
        if self.pending is None:
            return NOTHING
        return self._maybe_complete(None)

    def _maybe_complete(self, abort: int | None) -> Decision:
        assert self.pending is not None
        if len(self.arrived | self.ended) >= self.n:
            cid = self.pending
            self.last_completed = cid
            self.pending = None
            self.arrived = set()
            return Decision(trigger=cid, abort=abort)
        return Decision(abort=abort)
