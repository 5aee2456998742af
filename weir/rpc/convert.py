"""Dataclasses for what crosses the control plane, and their protobuf conversions."""

from __future__ import annotations

from dataclasses import dataclass, field

from weir.rpc import weir_pb2 as pb


@dataclass
class VertexInfo:
    vertex_id: str
    name: str
    parallelism: int
    records_in: int = 0
    records_out: int = 0
    running: int = 0
    finished: int = 0


@dataclass
class JobInfo:
    job_id: str
    name: str
    state: str
    start_time: float
    end_time: float = 0.0
    failure_cause: str = ""
    vertices: list[VertexInfo] = field(default_factory=list)
    slots_needed: int = 0
    restarts: int = 0
    last_failure: str = ""
    checkpoints_completed: int = 0
    checkpoints_failed: int = 0
    last_checkpoint_id: int = 0

    @property
    def is_terminal(self) -> bool:
        return self.state in ("FINISHED", "FAILED", "CANCELED")


@dataclass
class TaskMetric:
    execution_id: str
    vertex_id: str
    subtask: int
    records_in: int
    records_out: int
    busy_seconds: float = 0.0  # cumulative, since the task started
    backpressured_seconds: float = 0.0  # cumulative time waiting for credit downstream


@dataclass
class SlotAddress:
    index: int
    data_address: str


@dataclass
class TaskManagerSummary:
    taskmanager_id: str
    address: str
    slots: int
    free_slots: int
    pid: int
    last_heartbeat: float


@dataclass
class ClusterOverview:
    jobmanager_id: str
    slots_total: int
    slots_free: int
    taskmanagers: list[TaskManagerSummary]


def overview_from_pb(m: pb.ClusterOverview) -> ClusterOverview:
    return ClusterOverview(
        m.jobmanager_id,
        m.slots_total,
        m.slots_free,
        [TaskManagerSummary(t.taskmanager_id, t.address, t.slots, t.free_slots, t.pid, t.last_heartbeat)
         for t in m.taskmanagers],
    )


def job_to_pb(j: JobInfo) -> pb.JobStatus:
    return pb.JobStatus(
        job_id=j.job_id,
        name=j.name,
        state=j.state,
        start_time=j.start_time,
        end_time=j.end_time,
        failure_cause=j.failure_cause,
        slots_needed=j.slots_needed,
        restarts=j.restarts,
        last_failure=j.last_failure,
        checkpoints_completed=j.checkpoints_completed,
        checkpoints_failed=j.checkpoints_failed,
        last_checkpoint_id=j.last_checkpoint_id,
        vertices=[
            pb.VertexStatus(
                vertex_id=v.vertex_id,
                name=v.name,
                parallelism=v.parallelism,
                records_in=v.records_in,
                records_out=v.records_out,
                running=v.running,
                finished=v.finished,
            )
            for v in j.vertices
        ],
    )


def job_from_pb(m: pb.JobStatus) -> JobInfo:
    return JobInfo(
        job_id=m.job_id,
        name=m.name,
        state=m.state,
        start_time=m.start_time,
        end_time=m.end_time,
        failure_cause=m.failure_cause,
        slots_needed=m.slots_needed,
        restarts=m.restarts,
        last_failure=m.last_failure,
        checkpoints_completed=m.checkpoints_completed,
        checkpoints_failed=m.checkpoints_failed,
        last_checkpoint_id=m.last_checkpoint_id,
        vertices=[
            VertexInfo(v.vertex_id, v.name, v.parallelism, v.records_in, v.records_out, v.running, v.finished)
            for v in m.vertices
        ],
    )


def metrics_to_pb(ms: list[TaskMetric]) -> list[pb.TaskMetrics]:
    return [pb.TaskMetrics(execution_id=m.execution_id, vertex_id=m.vertex_id, subtask=m.subtask,
                           records_in=m.records_in, records_out=m.records_out, busy_seconds=m.busy_seconds,
                           backpressured_seconds=m.backpressured_seconds) for m in ms]


def metrics_from_pb(ms: list[pb.TaskMetrics]) -> list[TaskMetric]:
    return [TaskMetric(m.execution_id, m.vertex_id, m.subtask, m.records_in, m.records_out, m.busy_seconds,
                       m.backpressured_seconds) for m in ms]


def slots_to_pb(slots: list[SlotAddress]) -> list[pb.SlotInfo]:
    return [pb.SlotInfo(index=s.index, data_address=s.data_address) for s in slots]


def slots_from_pb(slots: list[pb.SlotInfo]) -> list[SlotAddress]:
    return [SlotAddress(s.index, s.data_address) for s in slots]
