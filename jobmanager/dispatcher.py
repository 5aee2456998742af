"""The Dispatcher owns every job's lifecycle:
CREATED -> RUNNING -> FINISHED | FAILED | CANCELING -> CANCELED, and RUNNING -> RESTARTING -> CREATED on failure
when the restart strategy allows it.

It reacts to events (a submission, a task state report, a checkpoint acknowledgement, a TaskManager lost, a cancel
request, a scheduling tick) and talks to TaskManagers only through the ``TaskManagerGateway`` protocol, so its
logic runs without a network in tests. Checkpoint decisions come from each execution's CheckpointCoordinator;
storage IO runs in threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from jobmanager.checkpoint.coordinator import CheckpointConfig, CheckpointCoordinator, CompletedCheckpoint, Decisions
from jobmanager.checkpoint.store import (
    CheckpointMetadata,
    CheckpointValidationError,
    build_metadata,
    discard,
    metadata_path,
    read_metadata,
    validate,
    write_metadata,
)
from jobmanager.failover import RestartStrategy, restart_strategy_from
from jobmanager.registry import TaskManagerRegistry
from jobmanager.results import ResultBuffer
from jobmanager.scheduler import SlotRef, choose_slots, plan_deployments
from state.keygroups import key_group_range
from state.storage import checkpoint_storage_for
from weir.graph.deployment import CheckpointSettings, OperatorSubtaskState, RestoreState, TaskDeployment
from weir.graph.jobgraph import JobGraph
from weir.rpc.convert import JobInfo, TaskMetric, VertexInfo

log = logging.getLogger("weir.jobmanager")

TERMINAL = ("FINISHED", "FAILED", "CANCELED")


class TaskManagerGateway(Protocol):
    async def deploy(self, address: str, execution_id: str, graph: bytes, deployments: list[TaskDeployment]) -> None:
        ...

    async def cancel(self, address: str, execution_id: str) -> None: ...

    async def checkpoint_control(self, address: str, execution_id: str, kind: str, checkpoint_id: int,
                                 savepoint_target: str = "") -> None: ...


class JobSubmissionError(ValueError):
    """A submission the JobManager cannot accept; the message says why."""


def _checkpoint_config(conf: dict[str, str]) -> CheckpointConfig:
    def num(key: str, default: int) -> int:
        v = conf.get(key)
        try:
            return default if v is None else int(v)
        except ValueError:
            raise JobSubmissionError(f"{key}: {v!r} is not a number of milliseconds") from None

    return CheckpointConfig(
        interval_ms=num("execution.checkpointing.interval", 0),
        mode=conf.get("execution.checkpointing.mode", "EXACTLY_ONCE"),
        timeout_ms=num("execution.checkpointing.timeout", 600_000),
        min_pause_ms=num("execution.checkpointing.min-pause", 0),
        max_concurrent=1,
        tolerable_failures=num("execution.checkpointing.tolerable-failed-checkpoints", 0),
        retained=max(1, num("state.checkpoints.num-retained", 1)),
    )


@dataclass
class TaskLoad:
    """A subtask's busy and backpressured time ratios, from the cumulative seconds its heartbeats carry.

    A ratio is the growth of the cumulative figure over the wall time between two samples at least
    ``MIN_WINDOW`` apart (heartbeats come every second or so; closer samples would be noise).
    """

    MIN_WINDOW = 0.8

    at: float | None = None
    busy: float = 0.0
    backpressured: float = 0.0
    busy_ratio: float | None = None
    backpressured_ratio: float | None = None

    def update(self, now: float, busy: float, backpressured: float) -> None:
        if self.at is not None and now - self.at < self.MIN_WINDOW and busy >= self.busy:
            return
        if self.at is not None and busy >= self.busy and backpressured >= self.backpressured:
            dt = now - self.at
            self.busy_ratio = min(1.0, (busy - self.busy) / dt)
            self.backpressured_ratio = min(1.0, (backpressured - self.backpressured) / dt)
        self.at, self.busy, self.backpressured = now, busy, backpressured


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
    load: dict[tuple[str, int], TaskLoad] = field(default_factory=dict)  # busy / backpressured time ratios
    results: ResultBuffer | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    # checkpoints and recovery
    checkpoint_config: CheckpointConfig = field(default_factory=CheckpointConfig)
    storage_uri: str = ""
    storage_options: dict[str, str] = field(default_factory=dict)
    restart: RestartStrategy | None = None
    coordinator: CheckpointCoordinator | None = None
    completed: list[CheckpointMetadata] = field(default_factory=list)  # retained, oldest first
    restore_from: CheckpointMetadata | None = None  # a savepoint given at submission
    allow_non_restored: bool = False
    next_checkpoint_id: int = 1
    checkpoints_completed: int = 0
    checkpoints_failed: int = 0
    restarts: int = 0
    last_failure: str = ""
    final_commit_sent: bool = False
    savepoint_waiters: dict[int, asyncio.Future[str]] = field(default_factory=dict)
    checkpoint_durations: dict[int, float] = field(default_factory=dict)  # retained checkpoints only, seconds
    # (unix time, cause, restarted) of the last failures, oldest first
    failure_history: deque[tuple[float, str, bool]] = field(default_factory=lambda: deque(maxlen=16))

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
                vi.finished += st in ("FINISHED", "FINISHING")
            vertices.append(vi)
        return JobInfo(self.job_id, self.name, self.state, self.start_time or self.submitted_at, self.end_time,
                       self.failure_cause, vertices, self.topology.slots_needed, self.restarts, self.last_failure,
                       self.checkpoints_completed, self.checkpoints_failed,
                       self.completed[-1].checkpoint_id if self.completed else 0)


class Dispatcher:
    def __init__(
        self,
        registry: TaskManagerRegistry,
        gateway: TaskManagerGateway,
        address: str,
        slot_request_timeout: float = 60.0,
        checkpoints_dir: str | None = None,
        savepoints_dir: str | None = None,
        defaults: dict[str, str] | None = None,
    ) -> None:
        self.registry = registry
        self.gateway = gateway
        self.address = address
        self.slot_request_timeout = slot_request_timeout
        home = os.environ.get("WEIR_HOME", os.path.join(os.path.expanduser("~"), ".weir"))
        self.checkpoints_dir = checkpoints_dir or "file://" + os.path.join(home, "checkpoints")
        self.savepoints_dir = savepoints_dir or "file://" + os.path.join(home, "savepoints")
        self.defaults = dict(defaults or {})
        self.jobs: dict[str, Job] = {}
        self.by_execution: dict[str, Job] = {}
        self._wake = asyncio.Event()
        self._background: set[asyncio.Task[None]] = set()
        self._storages: dict[str, Any] = {}
        self.ha: Any = None  # jobmanager.ha.HAStore when high availability is configured

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _storage(self, uri: str, options: dict[str, str]) -> Any:
        st = self._storages.get(uri)
        if st is None:
            st = self._storages[uri] = checkpoint_storage_for(uri, options)
        return st

    # ---- events ----
    def submit(self, name: str, graph_bytes: bytes, topology_bytes: bytes,
               savepoint: CheckpointMetadata | None = None, allow_non_restored: bool = False,
               job_id: str | None = None) -> Job:
        try:
            topo = pickle.loads(topology_bytes)
        except Exception as e:
            raise JobSubmissionError(f"the job's topology could not be read ({e!r}): is the client's weir "
                                     "version the same as the JobManager's?") from e
        if not isinstance(topo, JobGraph) or not topo.vertices:
            raise JobSubmissionError("the submission holds no job graph")
        conf = {**self.defaults, **topo.config}
        job = Job(job_id or uuid.uuid4().hex, name or topo.name, graph_bytes, topo, time.time())
        job.checkpoint_config = _checkpoint_config(conf)
        job.storage_uri = conf.get("state.checkpoints.dir") or self.checkpoints_dir
        job.storage_options = {k: v for k, v in conf.items() if k.startswith("s3.")}
        try:
            job.restart = restart_strategy_from(conf, job.checkpoint_config.enabled)
        except ValueError as e:
            raise JobSubmissionError(str(e)) from None
        if savepoint is not None:
            self._check_savepoint(topo, savepoint, allow_non_restored)
            job.restore_from = savepoint
            job.next_checkpoint_id = savepoint.checkpoint_id + 1
        if any(op.kind == "collect" for v in topo.vertices for op in v.operators):
            job.results = ResultBuffer()
        self.jobs[job.job_id] = job
        log.info("job %s (%s) submitted: %d vertices, needs %d slots%s", job.job_id, job.name,
                 len(topo.vertices), topo.slots_needed,
                 f", checkpoints every {job.checkpoint_config.interval_ms} ms to {job.storage_uri}"
                 if job.checkpoint_config.enabled else "")
        self._wake.set()
        return job

    async def submit_persisted(self, name: str, graph_bytes: bytes, topology_bytes: bytes,
                               savepoint: CheckpointMetadata | None = None, allow_non_restored: bool = False) -> Job:
        """Submit, and with high availability keep the submission in the HA directory first."""
        job = self.submit(name, graph_bytes, topology_bytes, savepoint, allow_non_restored)
        if self.ha is not None:
            try:
                await asyncio.to_thread(self.ha.save_submission, job.job_id, job.name, graph_bytes, topology_bytes,
                                        savepoint, allow_non_restored)
            except Exception as e:
                del self.jobs[job.job_id]
                raise JobSubmissionError(f"cannot record the job in the HA directory: {e}") from e
        return job

    def recover(self, recovered: list[Any]) -> None:
        """Resume jobs a previous JobManager was running (from the HA directory), from their latest checkpoints."""
        for r in recovered:
            job = self.submit(r.name, r.graph_bytes, r.topology_bytes, r.savepoint, r.allow_non_restored,
                              job_id=r.job_id)
            job.completed = list(r.checkpoints)
            job.restarts = r.restarts
            if job.completed:
                job.next_checkpoint_id = job.completed[-1].checkpoint_id + 1
            log.info("job %s (%s) recovered from the HA directory%s", job.job_id, job.name,
                     f" at checkpoint {job.completed[-1].checkpoint_id}" if job.completed else "")

    async def _persist_checkpoints(self, job: Job) -> None:
        if self.ha is not None:
            await asyncio.to_thread(self.ha.save_checkpoints, job.job_id, list(job.completed), job.restarts)

    @staticmethod
    def _check_savepoint(topo: JobGraph, md: CheckpointMetadata, allow_non_restored: bool) -> None:
        uids = {op.uid or f"op{op.transformation_id}" for v in topo.vertices for op in v.operators}
        uids |= {f"{op.uid or f'op{op.transformation_id}'}-watermarks" for v in topo.vertices for op in v.operators}
        missing = [u for u, states in md.operators.items()
                   if u not in uids and any(s.keyed or s.operator for s in states)]
        if missing and not allow_non_restored:
            raise JobSubmissionError(
                f"the savepoint has state for operators the job does not have (uids {sorted(missing)}): give them "
                "the same uid() as before, or pass --allow-non-restored-state to drop that state"
            )

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

    async def _restore_point(self, job: Job) -> CheckpointMetadata | None:
        """The newest retained checkpoint whose files are all there and whole (falling back to older ones), or
        the submitted savepoint. Raises CheckpointValidationError when checkpoints exist but none is usable."""
        problems = []
        while job.completed:
            md = job.completed[-1]
            try:
                await asyncio.to_thread(validate, self._storage(md.storage_uri, job.storage_options), md)
                return md
            except CheckpointValidationError as e:
                log.error("job %s: cannot restore checkpoint %d: %s", job.job_id, md.checkpoint_id, e)
                problems.append(str(e))
                job.completed.pop()
        if problems:
            raise CheckpointValidationError("no retained checkpoint can be restored: " + "; ".join(problems))
        return job.restore_from

    def _restore_for(self, job: Job, md: CheckpointMetadata, vertex_id: str, subtask: int) -> RestoreState:
        v = job.topology.vertex(vertex_id)
        kgs = key_group_range(v.max_parallelism, v.parallelism, subtask)
        ops: dict[str, list[OperatorSubtaskState]] = {}
        uids = [op.uid or f"op{op.transformation_id}" for op in v.operators]
        uids += [f"{u}-watermarks" for u in uids]
        for uid in uids:
            states = md.operators.get(uid)
            if states is None:
                continue
            # keyed handles: only those overlapping this subtask's key groups travel
            ops[uid] = [
                OperatorSubtaskState(
                    [h for h in s.keyed if h.key_groups[0] < kgs.stop and kgs.start < h.key_groups[1]], s.operator)
                for s in states
            ]
        return RestoreState(md.checkpoint_id, ops, md.storage_uri, job.storage_options)

    async def _deploy(self, job: Job, slots: list[SlotRef]) -> None:
        try:
            restore = await self._restore_point(job)
        except CheckpointValidationError as e:
            await self._finish(job, "FAILED", str(e))
            return
        job.attempt += 1
        job.execution_id = f"{job.job_id}-{job.attempt}"
        job.slots = slots
        job.task_states = {(v.id, i): "DEPLOYING" for v in job.topology.vertices for i in range(v.parallelism)}
        job.final_commit_sent = False
        self.registry.allocate(job.job_id, slots)
        self.by_execution[job.execution_id] = job
        job.state = "RUNNING"
        job.start_time = job.start_time or time.time()
        cc = job.checkpoint_config
        settings = CheckpointSettings(job.storage_uri, job.storage_options, cc.mode != "AT_LEAST_ONCE")
        plan = plan_deployments(job.topology, job.job_id, job.execution_id, slots, self.address, job.attempt - 1)
        for ds in plan.values():
            for d in ds:
                d.checkpointing = settings
                if restore is not None:
                    d.restore = self._restore_for(job, restore, d.vertex_id, d.subtask)
        if restore is not None:
            job.next_checkpoint_id = max(job.next_checkpoint_id, restore.checkpoint_id + 1)
        job.coordinator = CheckpointCoordinator(cc, list(job.task_states), job.next_checkpoint_id)
        job.coordinator.start(time.time())
        log.info("job %s: deploying %d subtasks to %d slot(s)%s", job.job_id, len(job.task_states), len(slots),
                 f", restoring checkpoint {restore.checkpoint_id}" if restore is not None else "")
        addrs = list(plan)
        results = await asyncio.gather(
            *(self.gateway.deploy(addr, job.execution_id, job.graph_bytes, plan[addr]) for addr in addrs),
            return_exceptions=True,
        )
        failed = [(a, r) for a, r in zip(addrs, results, strict=True) if isinstance(r, BaseException)]
        for addr, _ in failed:
            # a broken connection declares the TaskManager lost now, not at its heartbeat timeout
            self._lost_by_address(addr, "a deployment to it failed")
        if failed and job.state == "RUNNING":
            await self._fail(job, f"deployment to TaskManager {failed[0][0]} failed: {failed[0][1]}",
                             skip_tm=failed[0][0])

    async def task_state(self, execution_id: str, vertex_id: str, subtask: int, state: str, cause: str) -> None:
        job = self.by_execution.get(execution_id)
        if job is None or job.execution_id != execution_id or job.state != "RUNNING":
            return
        job.task_states[(vertex_id, subtask)] = state
        if state == "FAILED":
            await self._fail(job, cause)
            return
        if state in ("FINISHED", "FINISHING") and job.coordinator is not None:
            await self._checkpoint_decisions(job, job.coordinator.task_finished((vertex_id, subtask)))
        states = job.task_states.values()
        if all(s == "FINISHED" for s in states):
            await self._finish(job, "FINISHED", "")
        elif not job.final_commit_sent and all(s in ("FINISHED", "FINISHING") for s in states):
            # every task has finished its input: transactional sinks may now make their last data visible
            job.final_commit_sent = True
            await self._control_all(job, "commit-final", 0)

    def metrics(self, ms: list[TaskMetric], now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for m in ms:
            job = self.by_execution.get(m.execution_id)
            if job is not None and job.execution_id == m.execution_id:
                job.metrics[(m.vertex_id, m.subtask)] = (m.records_in, m.records_out)
                load = job.load.get((m.vertex_id, m.subtask))
                if load is None:
                    load = job.load[(m.vertex_id, m.subtask)] = TaskLoad()
                load.update(now, m.busy_seconds, m.backpressured_seconds)

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
        if job.state in ("CREATED", "RESTARTING"):
            job.state = "CANCELING"
            await self._finish(job, "CANCELED", "")
        elif job.state == "RUNNING":
            job.state = "CANCELING"
            if job.coordinator is not None:
                job.coordinator.stop()
            await self._cancel_tasks(job)
            await self._finish(job, "CANCELED", "")
        return job

    # ---- checkpoints ----
    async def _control_all(self, job: Job, kind: str, checkpoint_id: int, target: str = "") -> None:
        addrs = {s.taskmanager_address for s in job.slots}
        results = await asyncio.gather(
            *(self.gateway.checkpoint_control(a, job.execution_id, kind, checkpoint_id, target) for a in addrs),
            return_exceptions=True,
        )
        for a, r in zip(addrs, results, strict=True):
            if isinstance(r, Exception):
                log.warning("job %s: %s of checkpoint %d to %s failed: %s", job.job_id, kind, checkpoint_id, a, r)

    async def _checkpoint_tick(self, job: Job, now: float) -> None:
        if job.coordinator is None or job.state != "RUNNING":
            return
        if any(s not in ("RUNNING", "FINISHED", "FINISHING") for s in job.task_states.values()):
            return  # not every task is running yet: a barrier would wait for it
        d = job.coordinator.tick(now)
        if d.trigger is not None:
            job.next_checkpoint_id = d.trigger + 1
            # never awaited here: a TaskManager that vanished without closing its connection would hold the
            # scheduling and heartbeat loop until the call's deadline
            self._spawn(self._control_all(job, "trigger", d.trigger))
        await self._checkpoint_decisions(job, d)

    async def trigger_savepoint(self, job_id: str, target: str | None, stop: bool = False) -> str:
        job = self.jobs.get(job_id)
        if job is None:
            raise KeyError(job_id)
        if job.state != "RUNNING" or job.coordinator is None:
            raise RuntimeError(f"job {job_id} is {job.state}: only a running job can take a savepoint")
        if any(s != "RUNNING" for s in job.task_states.values()):
            raise RuntimeError(f"job {job_id} is not fully running yet (or is finishing): try again shortly")
        target = (target or f"{self.savepoints_dir.rstrip('/')}/savepoint-{job_id[:8]}-{int(time.time())}")
        cid = job.coordinator.trigger_savepoint(time.time(), target)
        job.next_checkpoint_id = cid + 1
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        job.savepoint_waiters[cid] = fut
        await self._control_all(job, "trigger", cid, target)
        path = await asyncio.wait_for(fut, job.checkpoint_config.timeout_ms / 1000)
        if stop:
            await self.cancel(job_id)
        return path

    async def checkpoint_report(self, execution_id: str, vertex_id: str, subtask: int, checkpoint_id: int,
                                ok: bool, state: bytes, reason: str) -> None:
        job = self.by_execution.get(execution_id)
        if job is None or job.execution_id != execution_id or job.coordinator is None:
            return
        task = (vertex_id, subtask)
        if ok:
            d = job.coordinator.ack(time.time(), checkpoint_id, task, state)
        else:
            d = job.coordinator.decline(checkpoint_id, task, reason)
        await self._checkpoint_decisions(job, d)

    async def _checkpoint_decisions(self, job: Job, d: Decisions) -> None:
        for cc in d.completed:
            await self._completed(job, cc)
        for cid, reason in d.aborted:
            job.checkpoints_failed += 1
            log.warning("job %s: checkpoint %d aborted: %s", job.job_id, cid, reason)
            fut = job.savepoint_waiters.pop(cid, None)
            if fut is not None and not fut.done():
                fut.set_exception(RuntimeError(f"savepoint failed: {reason}"))
            if job.state == "RUNNING":
                self._spawn(self._control_all(job, "abort", cid))
        if d.fail_job and job.state == "RUNNING":
            await self._fail(job, d.fail_job)

    async def _completed(self, job: Job, cc: CompletedCheckpoint) -> None:
        if cc.savepoint is not None:
            md = build_metadata(cc.checkpoint_id, job.job_id, cc.completed_at, cc.savepoint, cc.states, True)
            storage = self._storage(cc.savepoint, job.storage_options)
            try:
                await asyncio.to_thread(write_metadata, storage, "_metadata", md)
            except Exception as e:  # noqa: BLE001
                fut = job.savepoint_waiters.pop(cc.checkpoint_id, None)
                if fut is not None and not fut.done():
                    fut.set_exception(RuntimeError(f"writing the savepoint's metadata failed: {e}"))
                return
            log.info("job %s: savepoint %d written to %s", job.job_id, cc.checkpoint_id, cc.savepoint)
            fut = job.savepoint_waiters.pop(cc.checkpoint_id, None)
            if fut is not None and not fut.done():
                fut.set_result(cc.savepoint)
            return
        md = build_metadata(cc.checkpoint_id, job.job_id, cc.completed_at, job.storage_uri, cc.states, False)
        storage = self._storage(job.storage_uri, job.storage_options)
        try:
            # the metadata is written last: a checkpoint without it never happened
            await asyncio.to_thread(write_metadata, storage, metadata_path(job.job_id, cc.checkpoint_id), md)
        except Exception as e:  # noqa: BLE001
            job.checkpoints_failed += 1
            log.error("job %s: writing the metadata of checkpoint %d failed: %s", job.job_id, cc.checkpoint_id, e)
            return
        job.checkpoints_completed += 1
        job.completed.append(md)
        subsumed = job.completed[: -job.checkpoint_config.retained]
        job.completed = job.completed[-job.checkpoint_config.retained:]
        job.checkpoint_durations[cc.checkpoint_id] = cc.completed_at - cc.triggered_at
        for old in subsumed:
            job.checkpoint_durations.pop(old.checkpoint_id, None)
        try:
            await self._persist_checkpoints(job)  # before anything is discarded: the HA copy must stay valid
        except Exception as e:  # noqa: BLE001
            log.error("job %s: recording checkpoint %d in the HA directory failed: %s", job.job_id,
                      cc.checkpoint_id, e)
            subsumed = []
        log.info("job %s: checkpoint %d completed in %.0f ms", job.job_id, cc.checkpoint_id,
                 (cc.completed_at - cc.triggered_at) * 1000)
        if job.state == "RUNNING":
            self._spawn(self._control_all(job, "complete", cc.checkpoint_id))
        for old in subsumed:
            try:
                await asyncio.to_thread(discard, storage, old, list(job.completed))
            except Exception as e:  # noqa: BLE001 - leftover files cost space, not correctness
                log.warning("job %s: cleaning up checkpoint %d failed: %s", job.job_id, old.checkpoint_id, e)

    # ---- transitions ----
    async def _cancel_tasks(self, job: Job, skip_tm: str | None = None) -> None:
        addrs = {s.taskmanager_address for s in job.slots if s.taskmanager_address != skip_tm}
        results = await asyncio.gather(
            *(self.gateway.cancel(a, job.execution_id) for a in addrs), return_exceptions=True
        )
        for a, r in zip(addrs, results, strict=True):
            if isinstance(r, ConnectionError):
                # a refused connection declares the TaskManager lost now, not at its heartbeat timeout, so the
                # restart does not try to deploy onto it
                self._lost_by_address(a, "its RPC endpoint refused the connection")
            elif isinstance(r, Exception):
                log.warning("cancel of %s on %s failed: %s", job.execution_id, a, r)

    def _lost_by_address(self, address: str, reason: str) -> None:
        for tm in list(self.registry.taskmanagers.values()):
            if tm.address == address:
                self.registry.remove(tm.id)
                log.error("TaskManager %s (%s) declared lost: %s", tm.id, address, reason)

    async def _fail(self, job: Job, cause: str, skip_tm: str | None = None) -> None:
        """Fail the current execution at once; restart it if the restart strategy allows, else fail the job.

        The job leaves RUNNING before any await, so no later report can act on it twice, and the caller (often a
        TaskManager's state report) is not held up by the cancellation round trip.
        """
        if job.coordinator is not None:
            job.coordinator.stop()
        delay = job.restart.on_failure(time.time()) if job.restart is not None else None
        job.last_failure = cause
        job.failure_history.append((time.time(), cause, delay is not None))
        if delay is None:
            job.failure_cause = cause
            job.state = "FAILED"

            async def cancel_then_finish() -> None:
                await self._cancel_tasks(job, skip_tm)
                await self._finish(job, "FAILED", cause)

            self._spawn(cancel_then_finish())
            return
        job.state = "RESTARTING"
        job.restarts += 1
        first_line = next((ln for ln in reversed(cause.strip().splitlines()) if ln.strip()), cause)
        log.warning("job %s: restarting in %.1f s (restart %d, %s) after: %s", job.job_id, delay, job.restarts,
                    job.restart.describe() if job.restart else "", first_line)

        async def restart() -> None:
            await self._cancel_tasks(job, skip_tm)
            self.registry.release(job.job_id)
            await asyncio.sleep(delay)
            if job.state == "RESTARTING":
                job.state = "CREATED"
                job.submitted_at = time.time()  # the slot-request timeout counts from the restart
                self._wake.set()

        self._spawn(restart())

    async def _finish(self, job: Job, state: str, cause: str) -> None:
        job.state = state
        job.failure_cause = cause
        job.end_time = time.time()
        if job.coordinator is not None:
            job.coordinator.stop()
        self.registry.release(job.job_id)
        for fut in job.savepoint_waiters.values():
            if not fut.done():
                fut.set_exception(RuntimeError(f"job {job.job_id} {state}"))
        job.savepoint_waiters.clear()
        if job.results is not None:
            await job.results.close(None if state == "FINISHED" else f"job {job.job_id} {state}:\n{cause}")
        job.done.set()
        if self.ha is not None:
            try:
                await asyncio.to_thread(self.ha.mark_terminal, job.job_id, state)
            except Exception as e:  # noqa: BLE001
                log.error("job %s: recording its end in the HA directory failed: %s", job.job_id, e)
        log.info("job %s %s%s", job.job_id, state, f": {cause.splitlines()[-1] if cause else ''}" if cause else "")
        self._wake.set()

    async def run(self, heartbeat_timeout: float, tick: float = 0.05) -> None:
        """Scheduling, liveness and checkpoint-triggering loop of the JobManager."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), tick)
            self._wake.clear()
            for tm in self.registry.expired(time.time(), heartbeat_timeout):
                await self.taskmanager_lost(tm.id, f"no heartbeat for {heartbeat_timeout:g} s")
            await self.schedule()
            now = time.time()
            for job in list(self.jobs.values()):
                await self._checkpoint_tick(job, now)

    def wake(self) -> None:
        self._wake.set()


def load_savepoint(path: str, options: dict[str, str] | None = None) -> CheckpointMetadata:
    """Read a savepoint (its directory URI, or the URI of its ``_metadata``)."""
    base = path[: -len("/_metadata")] if path.endswith("/_metadata") else path
    storage = checkpoint_storage_for(base, options or {})
    md = read_metadata(storage, "_metadata")
    validate(storage, md)
    return md
