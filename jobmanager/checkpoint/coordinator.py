"""CheckpointCoordinator, pure: decides when to trigger checkpoints and tracks them from trigger to completion.

It takes events -- a tick with the clock, an acknowledgement with a task's state, a decline, a task's end -- and
returns decisions -- trigger checkpoint n at the sources, complete checkpoint n (write its metadata, then notify
the tasks), abort checkpoint n, fail the job after too many failed checkpoints. The Dispatcher carries them out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TaskId = tuple[str, int]  # (vertex id, subtask)


@dataclass
class CheckpointConfig:
    """PyFlink's CheckpointConfig settings, in milliseconds."""

    interval_ms: int = 0  # 0: checkpointing disabled
    mode: str = "EXACTLY_ONCE"  # or AT_LEAST_ONCE
    timeout_ms: int = 600_000
    min_pause_ms: int = 0
    max_concurrent: int = 1
    tolerable_failures: int = 0
    retained: int = 1

    @property
    def enabled(self) -> bool:
        return self.interval_ms > 0


@dataclass
class PendingCheckpoint:
    checkpoint_id: int
    triggered_at: float
    waiting: set[TaskId]
    states: dict[TaskId, Any] = field(default_factory=dict)
    savepoint: str | None = None  # target for savepoints


@dataclass
class CompletedCheckpoint:
    checkpoint_id: int
    triggered_at: float
    completed_at: float
    states: dict[TaskId, Any]
    savepoint: str | None = None


@dataclass
class Decisions:
    trigger: int | None = None
    completed: list[CompletedCheckpoint] = field(default_factory=list)
    aborted: list[tuple[int, str]] = field(default_factory=list)
    fail_job: str | None = None


class CheckpointCoordinator:
    """Checkpoints of one execution attempt of a job (a restart builds a new one, continuing the ids)."""

    def __init__(self, config: CheckpointConfig, tasks: list[TaskId], next_id: int = 1) -> None:
        self.config = config
        self.tasks = set(tasks)
        self.finished: set[TaskId] = set()
        self.next_id = next_id
        self.pending: dict[int, PendingCheckpoint] = {}
        self.last_trigger = 0.0
        self.last_completed_at = 0.0
        self.consecutive_failures = 0
        self.started_at: float | None = None
        self.stopped = False

    def start(self, now: float) -> None:
        self.started_at = now
        self.last_trigger = now

    def tick(self, now: float) -> Decisions:
        """Trigger a periodic checkpoint when it is due; abort checkpoints past their timeout."""
        d = Decisions()
        timeout = self.config.timeout_ms / 1000
        for cid, p in list(self.pending.items()):
            if now - p.triggered_at > timeout:
                del self.pending[cid]
                d.aborted.append((cid, f"checkpoint {cid} expired after {self.config.timeout_ms} ms"))
                self._failed(d, p, f"checkpoint {cid} expired")
        if (
            self.config.enabled
            and not self.stopped
            and self.started_at is not None
            and not self.finished
            and len(self.pending) < self.config.max_concurrent
            and now - self.last_trigger >= self.config.interval_ms / 1000
            and now - self.last_completed_at >= self.config.min_pause_ms / 1000
        ):
            d.trigger = self._new(now, None)
        return d

    def trigger_savepoint(self, now: float, target: str) -> int:
        if self.finished:
            raise RuntimeError("cannot take a savepoint: some of the job's tasks have already finished")
        return self._new(now, target)

    def _new(self, now: float, savepoint: str | None) -> int:
        cid = self.next_id
        self.next_id += 1
        self.last_trigger = now
        self.pending[cid] = PendingCheckpoint(cid, now, set(self.tasks), savepoint=savepoint)
        return cid

    def ack(self, now: float, checkpoint_id: int, task: TaskId, state: Any) -> Decisions:
        d = Decisions()
        p = self.pending.get(checkpoint_id)
        if p is None or task not in p.waiting:
            return d
        p.waiting.discard(task)
        p.states[task] = state
        if not p.waiting:
            del self.pending[checkpoint_id]
            self.last_completed_at = now
            self.consecutive_failures = 0
            d.completed.append(CompletedCheckpoint(checkpoint_id, p.triggered_at, now, p.states, p.savepoint))
            # an older pending checkpoint can never complete once a newer one did (barriers overtook it)
            for cid in [c for c in self.pending if c < checkpoint_id]:
                del self.pending[cid]
                d.aborted.append((cid, f"checkpoint {cid} was subsumed by {checkpoint_id}"))
        return d

    def decline(self, checkpoint_id: int, task: TaskId, reason: str) -> Decisions:
        d = Decisions()
        p = self.pending.pop(checkpoint_id, None)
        if p is not None:
            d.aborted.append((checkpoint_id, f"declined by {task[0]}/{task[1]}: {reason}"))
            self._failed(d, p, reason)
        return d

    def task_finished(self, task: TaskId) -> Decisions:
        """A task reached the end of its input: no new checkpoints (its state is final); pending ones abort."""
        self.finished.add(task)
        d = Decisions()
        for cid in list(self.pending):
            del self.pending[cid]
            d.aborted.append((cid, f"task {task[0]}/{task[1]} finished"))
        return d

    def _failed(self, d: Decisions, p: PendingCheckpoint, reason: str) -> None:
        if p.savepoint is not None:
            return  # as in Flink, a failed savepoint fails only itself: the caller is told, the job goes on
        self.consecutive_failures += 1
        if self.consecutive_failures > self.config.tolerable_failures:
            d.fail_job = (
                f"exceeded the tolerable number of failed checkpoints ({self.config.tolerable_failures}): {reason}"
            )

    def stop(self) -> list[int]:
        """The execution ends: abort everything pending."""
        self.stopped = True
        ids = list(self.pending)
        self.pending.clear()
        return ids
