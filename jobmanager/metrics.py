"""The JobManager's Prometheus metrics, on its own CollectorRegistry (never prometheus_client's global one).

``JobManagerCollector`` reads the Dispatcher and the TaskManager registry when scraped, so nothing is counted on
the hot paths:

- ``weir_jobmanager_jobs{state}``: jobs the JobManager knows, by state (every state present, 0 when none).
- ``weir_jobmanager_job_restarts_total{job}``: restarts of each job (counters reset when the JobManager restarts).
- ``weir_jobmanager_checkpoints_total{job,result="completed|failed"}``: checkpoints (not savepoints) per job.
- ``weir_jobmanager_checkpoint_duration_seconds{job}``: trigger to completion of the latest retained checkpoint.
- ``weir_jobmanager_checkpoint_size_bytes{job}``: full state size of the latest retained checkpoint (every state
  file it references, shared incremental files included, plus inline operator state).
- ``weir_jobmanager_checkpoint_alignment_seconds{job}``: the longest barrier alignment (first barrier to last) of a
  subtask in the latest retained checkpoint.
- ``weir_jobmanager_last_checkpoint_age_seconds{job}``: seconds since the latest retained checkpoint completed,
  for jobs that have not ended.
- ``weir_jobmanager_taskmanagers``: registered TaskManagers.
- ``weir_jobmanager_slots{state="total|free"}``: slots of the registered TaskManagers.

``job`` is the job id. Scrapes must run in the JobManager's event loop thread (the Dispatcher is not locked).

``JobEvents`` reads what the Dispatcher records on each Job besides its state: how long each retained checkpoint
took and when each failure happened.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

if TYPE_CHECKING:
    from jobmanager.checkpoint.store import CheckpointMetadata
    from jobmanager.dispatcher import Dispatcher, Job

log = logging.getLogger("weir.jobmanager")

JOB_STATES = ("CREATED", "RUNNING", "RESTARTING", "CANCELING", "FINISHED", "FAILED", "CANCELED")
TERMINAL_STATES = ("FINISHED", "FAILED", "CANCELED")


def checkpoint_size(md: CheckpointMetadata) -> int:
    """Bytes of a checkpoint's state: the files of its keyed state handles (shared ones included) and the inline
    operator state."""
    keyed = sum(getattr(h, "size", 0) for states in md.operators.values() for s in states for h in s.keyed)
    inline = sum(len(s.operator or b"") for states in md.operators.values() for s in states)
    return int(keyed + inline)


@dataclass(frozen=True)
class Failure:
    """One failure of a job's execution: when, why, and whether the job restarted after it."""

    timestamp: float
    cause: str
    restarted: bool


class JobEvents:
    """Checkpoint durations and failure times per job, as the Dispatcher records them on each Job."""

    def __init__(self, max_failures: int = 16) -> None:
        self.max_failures = max_failures
        self.dispatcher: Dispatcher | None = None
        self.attached = False

    def attach(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self.attached = True

    def _job(self, job_id: str) -> Job | None:
        return self.dispatcher.jobs.get(job_id) if self.dispatcher is not None else None

    def duration(self, job_id: str, checkpoint_id: int) -> float | None:
        job = self._job(job_id)
        return None if job is None else job.checkpoint_durations.get(checkpoint_id)

    def history(self, job_id: str) -> list[Failure]:
        """The job's recorded failures, oldest first."""
        job = self._job(job_id)
        if job is None:
            return []
        return [Failure(t, cause, restarted) for t, cause, restarted in list(job.failure_history)[-self.max_failures:]]


class JobManagerCollector(Collector):
    def __init__(self, dispatcher: Dispatcher, events: JobEvents | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.dispatcher = dispatcher
        self.events = events
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        d = self.dispatcher
        now = self.clock()
        jobs = list(d.jobs.values())

        by_state = Counter(j.state for j in jobs)
        states = GaugeMetricFamily("weir_jobmanager_jobs", "Jobs known to the JobManager, by state",
                                   labels=["state"])
        for s in (*JOB_STATES, *sorted(set(by_state) - set(JOB_STATES))):
            states.add_metric([s], by_state.get(s, 0))
        yield states

        restarts = CounterMetricFamily("weir_jobmanager_job_restarts", "Restarts of the job", labels=["job"])
        checkpoints = CounterMetricFamily("weir_jobmanager_checkpoints",
                                          "Checkpoints of the job (savepoints excluded), by result",
                                          labels=["job", "result"])
        duration = GaugeMetricFamily("weir_jobmanager_checkpoint_duration_seconds",
                                     "Trigger to completion of the job's latest retained checkpoint",
                                     labels=["job"])
        size = GaugeMetricFamily("weir_jobmanager_checkpoint_size_bytes",
                                 "Full state size of the job's latest retained checkpoint", labels=["job"])
        alignment = GaugeMetricFamily("weir_jobmanager_checkpoint_alignment_seconds",
                                      "Longest barrier alignment of a subtask in the job's latest retained "
                                      "checkpoint", labels=["job"])
        age = GaugeMetricFamily("weir_jobmanager_last_checkpoint_age_seconds",
                                "Seconds since the job's latest retained checkpoint completed (jobs not ended)",
                                labels=["job"])
        for j in jobs:
            restarts.add_metric([j.job_id], j.restarts)
            checkpoints.add_metric([j.job_id, "completed"], j.checkpoints_completed)
            checkpoints.add_metric([j.job_id, "failed"], j.checkpoints_failed)
            if not j.completed:
                continue
            latest = j.completed[-1]
            size.add_metric([j.job_id], checkpoint_size(latest))
            alignment.add_metric([j.job_id], latest.alignment_seconds)
            took = self.events.duration(j.job_id, latest.checkpoint_id) if self.events else None
            if took is not None:
                duration.add_metric([j.job_id], took)
            if j.state not in TERMINAL_STATES:
                age.add_metric([j.job_id], max(0.0, now - latest.timestamp))
        yield from (restarts, checkpoints, duration, size, alignment, age)

        reg = d.registry
        yield GaugeMetricFamily("weir_jobmanager_taskmanagers", "Registered TaskManagers",
                                value=len(reg.taskmanagers))
        slots = GaugeMetricFamily("weir_jobmanager_slots", "Slots of the registered TaskManagers",
                                  labels=["state"])
        slots.add_metric(["total"], reg.total_slots)
        slots.add_metric(["free"], len(reg.free_slots()))
        yield slots


def jobmanager_registry(dispatcher: Dispatcher, events: JobEvents | None = None) -> CollectorRegistry:
    """A fresh registry holding the JobManager's collector (and nothing of the process-global registry)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(JobManagerCollector(dispatcher, events))
    return registry
