"""The JobManager's Prometheus metrics, on its own CollectorRegistry (never prometheus_client's global one).

``JobManagerCollector`` reads the Dispatcher and the TaskManager registry when scraped, so nothing is counted on
the hot paths:

- ``weir_jobmanager_jobs{state}``: jobs the JobManager knows, by state (every state present, 0 when none).
- ``weir_jobmanager_job_restarts_total{job}``: restarts of each job (counters reset when the JobManager restarts).
- ``weir_jobmanager_checkpoints_total{job,result="completed|failed"}``: checkpoints (not savepoints) per job.
- ``weir_jobmanager_checkpoint_duration_seconds{job}``: trigger to completion of the latest retained checkpoint.
- ``weir_jobmanager_checkpoint_size_bytes{job}``: full state size of the latest retained checkpoint (every state
  file it references, shared incremental files included, plus inline operator state).
- ``weir_jobmanager_last_checkpoint_age_seconds{job}``: seconds since the latest retained checkpoint completed,
  for jobs that have not ended.
- ``weir_jobmanager_taskmanagers``: registered TaskManagers.
- ``weir_jobmanager_slots{state="total|free"}``: slots of the registered TaskManagers.

``job`` is the job id. Scrapes must run in the JobManager's event loop thread (the Dispatcher is not locked).

``JobEvents`` keeps the two facts the Dispatcher does not record: how long each retained checkpoint took (the
metadata holds the completion time only) and when each failure happened. It observes the Dispatcher's
checkpoint-completion and failure steps (``Dispatcher._completed`` and ``Dispatcher._fail``) by wrapping them on the
instance; if those steps move, it logs a warning and the REST API and metrics go without those values.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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
    """Checkpoint durations and failure times per job, recorded as the Dispatcher completes checkpoints and fails
    executions (see the module docstring). Bounded: durations of retained checkpoints only, the last
    ``max_failures`` failures of each job."""

    def __init__(self, max_failures: int = 16) -> None:
        self.max_failures = max_failures
        self.durations: dict[str, dict[int, float]] = {}  # job id -> checkpoint id -> seconds
        self.failures: dict[str, deque[Failure]] = {}
        self.attached = False

    def attach(self, dispatcher: Dispatcher) -> None:
        completed = getattr(dispatcher, "_completed", None)
        fail = getattr(dispatcher, "_fail", None)
        if completed is None or fail is None:
            log.warning("the Dispatcher has no _completed/_fail step to observe: checkpoint durations and failure "
                        "times will be missing from the REST API and the metrics")
            return

        async def observed_completed(job: Job, cc: Any, *args: Any, **kwargs: Any) -> None:
            await completed(job, cc, *args, **kwargs)
            self.checkpoint_completed(job, cc.checkpoint_id, cc.completed_at - cc.triggered_at, cc.savepoint)

        async def observed_fail(job: Job, *args: Any, **kwargs: Any) -> None:
            now = time.time()
            await fail(job, *args, **kwargs)
            self.failed(job, now)

        dispatcher._completed = observed_completed  # type: ignore[method-assign]
        dispatcher._fail = observed_fail  # type: ignore[method-assign]
        self.attached = True

    def checkpoint_completed(self, job: Job, checkpoint_id: int, seconds: float, savepoint: str | None) -> None:
        if savepoint is not None:
            return
        retained = {md.checkpoint_id for md in job.completed}
        if checkpoint_id not in retained:
            return  # its metadata could not be written: it did not happen
        durations = self.durations.setdefault(job.job_id, {})
        durations[checkpoint_id] = seconds
        for cid in [c for c in durations if c not in retained]:
            del durations[cid]

    def failed(self, job: Job, timestamp: float) -> None:
        self.failures.setdefault(job.job_id, deque(maxlen=self.max_failures)).append(
            Failure(timestamp, job.last_failure, job.state == "RESTARTING"))

    def duration(self, job_id: str, checkpoint_id: int) -> float | None:
        return self.durations.get(job_id, {}).get(checkpoint_id)

    def history(self, job_id: str) -> list[Failure]:
        """The job's recorded failures, oldest first."""
        return list(self.failures.get(job_id, ()))


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
            took = self.events.duration(j.job_id, latest.checkpoint_id) if self.events else None
            if took is not None:
                duration.add_metric([j.job_id], took)
            if j.state not in TERMINAL_STATES:
                age.add_metric([j.job_id], max(0.0, now - latest.timestamp))
        yield from (restarts, checkpoints, duration, size, age)

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
