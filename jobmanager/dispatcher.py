"""The Dispatcher owns every job's lifecycle: CREATED -> RUNNING -> FINISHED | FAILED | CANCELING -> CANCELED.

It reacts to events (a submission, a task state report, a TaskManager lost, a cancel request, a scheduling
tick) and talks to TaskManagers only through the ``TaskManagerGateway`` protocol, so its logic runs without a
network in tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import pickle
import time
import uuid
from dataclasses import dataclass, field
from typing import Protocol

from jobmanager.registry import TaskManagerRegistry
from jobmanager.results import ResultBuffer
from jobmanager.scheduler import SlotRef, choose_slots, plan_deployments
from weir.graph.deployment import TaskDeployment
from weir.graph.jobgraph import JobGraph
from weir.rpc.convert import JobInfo, TaskMetric, VertexInfo

log = logging.getLogger("weir.jobmanager")

TERMINAL = ("FINISHED", "FAILED", "CANCELED")


class TaskManagerGateway(Protocol):
    async def deploy(self, address: str, execution_id: str, graph: bytes, deployments: list[TaskDeployment]) -> None:
        ...

    async def cancel(self, address: str, execution_id: str) -> None: ...


class JobSubmissionError(ValueError):
    """A submission the JobManager cannot accept; the message says why."""


@dataclass
class Job:
    job_id: str
    name: str
    graph_bytes: bytes
    topology: JobGraph
    submitted_at: float
    state: str = "CREATED"
    start_time: float = 0.0
    end_time: float = 0.0
    failure_cause: str = ""
    attempt: int = 0
    execution_id: str = ""
    slots: list[SlotRef] = field(default_factory=list)
    task_states: dict[tuple[str, int], str] = field(default_factory=dict)
    metrics: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict)
    results: ResultBuffer | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def info(self) -> JobInfo:
        vertices = []
        for v in self.topology.vertices:
            vi = VertexInfo(v.id, v.name, v.parallelism)
            for i in range(v.parallelism):
                rin, rout = self.metrics.get((v.id, i), (0, 0))
                vi.records_in += rin
                vi.records_out += rout
                st = self.task_states.get((v.id, i))
                vi.running += st == "RUNNING"
                vi.finished += st == "FINISHED"
            vertices.append(vi)
        return JobInfo(self.job_id, self.name, self.state, self.start_time or self.submitted_at, self.end_time,
                       self.failure_cause, vertices, self.topology.slots_needed)


class Dispatcher:
    def __init__(
        self,
        registry: TaskManagerRegistry,
        gateway: TaskManagerGateway,
        address: str,
        slot_request_timeout: float = 60.0,
    ) -> None:
        self.registry = registry
        self.gateway = gateway
        self.address = address
        self.slot_request_timeout = slot_request_timeout
        self.jobs: dict[str, Job] = {}
        self.by_execution: dict[str, Job] = {}
        self._wake = asyncio.Event()
        self._background: set[asyncio.Task[None]] = set()

    # ---- events ----
    def submit(self, name: str, graph_bytes: bytes, topology_bytes: bytes) -> Job:
        try:
            topo = pickle.loads(topology_bytes)
        except Exception as e:
            raise JobSubmissionError(f"the job's topology could not be read ({e!r}): is the client's weir "
                                     "version the same as the JobManager's?") from e
        if not isinstance(topo, JobGraph) or not topo.vertices:
            raise JobSubmissionError("the submission holds no job graph")
        job = Job(uuid.uuid4().hex, name or topo.name, graph_bytes, topo, time.time())
        if any(op.kind == "collect" for v in topo.vertices for op in v.operators):
            job.results = ResultBuffer()
        self.jobs[job.job_id] = job
        log.info("job %s (%s) submitted: %d vertices, needs %d slots", job.job_id, job.name,
                 len(topo.vertices), topo.slots_needed)
        self._wake.set()
        return job

    async def schedule(self) -> None:
        """Deploy waiting jobs whose slots are available; fail those that waited too long."""
        now = time.time()
        for job in list(self.jobs.values()):
            if job.state != "CREATED":
                continue
            needed = job.topology.slots_needed
            free = self.registry.free_slots()
            chosen = choose_slots(free, needed)
            if chosen is not None:
                await self._deploy(job, chosen)
            elif now - job.submitted_at > self.slot_request_timeout:
                await self._finish(
                    job,
                    "FAILED",
                    f"could not get {needed} slot(s) within {self.slot_request_timeout:g} s: the cluster has "
                    f"{len(free)} free of {self.registry.total_slots} slot(s) on "
                    f"{len(self.registry.taskmanagers)} TaskManager(s). Start more TaskManagers "
                    "(weir taskmanager --slots N) or lower the job's parallelism.",
                )

    async def _deploy(self, job: Job, slots: list[SlotRef]) -> None:
        job.attempt += 1
        job.execution_id = f"{job.job_id}-{job.attempt}"
        job.slots = slots
        job.task_states = {(v.id, i): "DEPLOYING" for v in job.topology.vertices for i in range(v.parallelism)}
        self.registry.allocate(job.job_id, slots)
        self.by_execution[job.execution_id] = job
        job.state = "RUNNING"
        job.start_time = time.time()
        plan = plan_deployments(job.topology, job.job_id, job.execution_id, slots, self.address, job.attempt - 1)
        log.info("job %s: deploying %d subtasks to %d slot(s)", job.job_id, len(job.task_states), len(slots))
        try:
            await asyncio.gather(
                *(self.gateway.deploy(addr, job.execution_id, job.graph_bytes, ds) for addr, ds in plan.items())
            )
        except Exception as e:  # noqa: BLE001 - any deployment failure fails the job with its reason
            await self._fail(job, f"deployment to a TaskManager failed: {e}")

    async def task_state(self, execution_id: str, vertex_id: str, subtask: int, state: str, cause: str) -> None:
        job = self.by_execution.get(execution_id)
        if job is None or job.execution_id != execution_id or job.state in TERMINAL:
            return
        job.task_states[(vertex_id, subtask)] = state
        if state == "FAILED" and job.state == "RUNNING":
            await self._fail(job, cause)
        elif state == "FINISHED" and job.state == "RUNNING" and all(
            s == "FINISHED" for s in job.task_states.values()
        ):
            await self._finish(job, "FINISHED", "")

    def metrics(self, ms: list[TaskMetric]) -> None:
        for m in ms:
            job = self.by_execution.get(m.execution_id)
            if job is not None and job.execution_id == m.execution_id:
                job.metrics[(m.vertex_id, m.subtask)] = (m.records_in, m.records_out)

    async def taskmanager_lost(self, tm_id: str, reason: str) -> None:
        tm = self.registry.remove(tm_id)
        if tm is None:
            return
        log.error("TaskManager %s (%s) lost: %s", tm_id, tm.address, reason)
        for job in self.jobs.values():
            if job.state in ("RUNNING", "CANCELING") and any(s.taskmanager_id == tm_id for s in job.slots):
                await self._fail(job, f"TaskManager {tm_id} at {tm.address} was lost: {reason}",
                                 skip_tm=tm.address)

    async def cancel(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise KeyError(job_id)
        if job.state == "CREATED":
            await self._finish(job, "CANCELED", "")
        elif job.state == "RUNNING":
            job.state = "CANCELING"
            await self._cancel_tasks(job)
            await self._finish(job, "CANCELED", "")
        return job

    # ---- transitions ----
    async def _cancel_tasks(self, job: Job, skip_tm: str | None = None) -> None:
        addrs = {s.taskmanager_address for s in job.slots if s.taskmanager_address != skip_tm}
        results = await asyncio.gather(
            *(self.gateway.cancel(a, job.execution_id) for a in addrs), return_exceptions=True
        )
        for a, r in zip(addrs, results, strict=True):
            if isinstance(r, Exception):
                log.warning("cancel of %s on %s failed: %s", job.execution_id, a, r)

    async def _fail(self, job: Job, cause: str, skip_tm: str | None = None) -> None:
        """Fail ``job`` at once; its remaining tasks are cancelled in the background.

        The job leaves RUNNING before any await, so no later report can act on it twice, and the caller (often a
        TaskManager's state report) is not held up by the cancellation round trip.
        """
        job.failure_cause = cause
        job.state = "FAILED"

        async def cancel_then_finish() -> None:
            await self._cancel_tasks(job, skip_tm)
            await self._finish(job, "FAILED", cause)

        task = asyncio.get_running_loop().create_task(cancel_then_finish())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _finish(self, job: Job, state: str, cause: str) -> None:
        job.state = state
        job.failure_cause = cause
        job.end_time = time.time()
        self.registry.release(job.job_id)
        if job.results is not None:
            await job.results.close(None if state == "FINISHED" else f"job {job.job_id} {state}:\n{cause}")
        job.done.set()
        log.info("job %s %s%s", job.job_id, state, f": {cause.splitlines()[-1] if cause else ''}" if cause else "")
        self._wake.set()

    async def run(self, heartbeat_timeout: float, tick: float = 0.2) -> None:
        """Scheduling and liveness loop of the JobManager."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), tick)
            self._wake.clear()
            for tm in self.registry.expired(time.time(), heartbeat_timeout):
                await self.taskmanager_lost(tm.id, f"no heartbeat for {heartbeat_timeout:g} s")
            await self.schedule()

    def wake(self) -> None:
        self._wake.set()
