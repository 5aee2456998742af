from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Empty(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SubmitJobRequest(_message.Message):
    __slots__ = ("savepoint_path", "allow_non_restored_state", "job_name", "job_graph", "topology")
    SAVEPOINT_PATH_FIELD_NUMBER: _ClassVar[int]
    ALLOW_NON_RESTORED_STATE_FIELD_NUMBER: _ClassVar[int]
    JOB_NAME_FIELD_NUMBER: _ClassVar[int]
    JOB_GRAPH_FIELD_NUMBER: _ClassVar[int]
    TOPOLOGY_FIELD_NUMBER: _ClassVar[int]
    savepoint_path: str
    allow_non_restored_state: bool
    job_name: str
    job_graph: bytes
    topology: bytes
    def __init__(self, savepoint_path: _Optional[str] = ..., allow_non_restored_state: _Optional[bool] = ..., job_name: _Optional[str] = ..., job_graph: _Optional[bytes] = ..., topology: _Optional[bytes] = ...) -> None: ...

class SubmitJobResponse(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class SavepointRequest(_message.Message):
    __slots__ = ("job_id", "target", "stop")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    target: str
    stop: bool
    def __init__(self, job_id: _Optional[str] = ..., target: _Optional[str] = ..., stop: _Optional[bool] = ...) -> None: ...

class SavepointResponse(_message.Message):
    __slots__ = ("path",)
    PATH_FIELD_NUMBER: _ClassVar[int]
    path: str
    def __init__(self, path: _Optional[str] = ...) -> None: ...

class JobIdRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class VertexStatus(_message.Message):
    __slots__ = ("vertex_id", "name", "parallelism", "records_in", "records_out", "running", "finished")
    VERTEX_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARALLELISM_FIELD_NUMBER: _ClassVar[int]
    RECORDS_IN_FIELD_NUMBER: _ClassVar[int]
    RECORDS_OUT_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    vertex_id: str
    name: str
    parallelism: int
    records_in: int
    records_out: int
    running: int
    finished: int
    def __init__(self, vertex_id: _Optional[str] = ..., name: _Optional[str] = ..., parallelism: _Optional[int] = ..., records_in: _Optional[int] = ..., records_out: _Optional[int] = ..., running: _Optional[int] = ..., finished: _Optional[int] = ...) -> None: ...

class JobStatus(_message.Message):
    __slots__ = ("job_id", "name", "state", "start_time", "end_time", "failure_cause", "vertices", "slots_needed", "restarts", "last_failure", "checkpoints_completed", "checkpoints_failed", "last_checkpoint_id")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    FAILURE_CAUSE_FIELD_NUMBER: _ClassVar[int]
    VERTICES_FIELD_NUMBER: _ClassVar[int]
    SLOTS_NEEDED_FIELD_NUMBER: _ClassVar[int]
    RESTARTS_FIELD_NUMBER: _ClassVar[int]
    LAST_FAILURE_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINTS_COMPLETED_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINTS_FAILED_FIELD_NUMBER: _ClassVar[int]
    LAST_CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    name: str
    state: str
    start_time: float
    end_time: float
    failure_cause: str
    vertices: _containers.RepeatedCompositeFieldContainer[VertexStatus]
    slots_needed: int
    restarts: int
    last_failure: str
    checkpoints_completed: int
    checkpoints_failed: int
    last_checkpoint_id: int
    def __init__(self, job_id: _Optional[str] = ..., name: _Optional[str] = ..., state: _Optional[str] = ..., start_time: _Optional[float] = ..., end_time: _Optional[float] = ..., failure_cause: _Optional[str] = ..., vertices: _Optional[_Iterable[_Union[VertexStatus, _Mapping]]] = ..., slots_needed: _Optional[int] = ..., restarts: _Optional[int] = ..., last_failure: _Optional[str] = ..., checkpoints_completed: _Optional[int] = ..., checkpoints_failed: _Optional[int] = ..., last_checkpoint_id: _Optional[int] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[JobStatus]
    def __init__(self, jobs: _Optional[_Iterable[_Union[JobStatus, _Mapping]]] = ...) -> None: ...

class FetchResultsRequest(_message.Message):
    __slots__ = ("job_id", "offset")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    offset: int
    def __init__(self, job_id: _Optional[str] = ..., offset: _Optional[int] = ...) -> None: ...

class ResultBatch(_message.Message):
    __slots__ = ("records", "end", "failure_cause")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    FAILURE_CAUSE_FIELD_NUMBER: _ClassVar[int]
    records: bytes
    end: bool
    failure_cause: str
    def __init__(self, records: _Optional[bytes] = ..., end: _Optional[bool] = ..., failure_cause: _Optional[str] = ...) -> None: ...

class TaskManagerStatus(_message.Message):
    __slots__ = ("taskmanager_id", "address", "slots", "free_slots", "pid", "last_heartbeat")
    TASKMANAGER_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    FREE_SLOTS_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    taskmanager_id: str
    address: str
    slots: int
    free_slots: int
    pid: int
    last_heartbeat: float
    def __init__(self, taskmanager_id: _Optional[str] = ..., address: _Optional[str] = ..., slots: _Optional[int] = ..., free_slots: _Optional[int] = ..., pid: _Optional[int] = ..., last_heartbeat: _Optional[float] = ...) -> None: ...

class ClusterOverview(_message.Message):
    __slots__ = ("jobmanager_id", "slots_total", "slots_free", "taskmanagers")
    JOBMANAGER_ID_FIELD_NUMBER: _ClassVar[int]
    SLOTS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FREE_FIELD_NUMBER: _ClassVar[int]
    TASKMANAGERS_FIELD_NUMBER: _ClassVar[int]
    jobmanager_id: str
    slots_total: int
    slots_free: int
    taskmanagers: _containers.RepeatedCompositeFieldContainer[TaskManagerStatus]
    def __init__(self, jobmanager_id: _Optional[str] = ..., slots_total: _Optional[int] = ..., slots_free: _Optional[int] = ..., taskmanagers: _Optional[_Iterable[_Union[TaskManagerStatus, _Mapping]]] = ...) -> None: ...

class SlotInfo(_message.Message):
    __slots__ = ("index", "data_address")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    DATA_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    index: int
    data_address: str
    def __init__(self, index: _Optional[int] = ..., data_address: _Optional[str] = ...) -> None: ...

class RegisterTaskManagerRequest(_message.Message):
    __slots__ = ("taskmanager_id", "address", "slots", "pid")
    TASKMANAGER_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    taskmanager_id: str
    address: str
    slots: _containers.RepeatedCompositeFieldContainer[SlotInfo]
    pid: int
    def __init__(self, taskmanager_id: _Optional[str] = ..., address: _Optional[str] = ..., slots: _Optional[_Iterable[_Union[SlotInfo, _Mapping]]] = ..., pid: _Optional[int] = ...) -> None: ...

class RegisterTaskManagerResponse(_message.Message):
    __slots__ = ("jobmanager_id",)
    JOBMANAGER_ID_FIELD_NUMBER: _ClassVar[int]
    jobmanager_id: str
    def __init__(self, jobmanager_id: _Optional[str] = ...) -> None: ...

class TaskMetrics(_message.Message):
    __slots__ = ("execution_id", "vertex_id", "subtask", "records_in", "records_out", "busy_seconds", "backpressured_seconds")
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    VERTEX_ID_FIELD_NUMBER: _ClassVar[int]
    SUBTASK_FIELD_NUMBER: _ClassVar[int]
    RECORDS_IN_FIELD_NUMBER: _ClassVar[int]
    RECORDS_OUT_FIELD_NUMBER: _ClassVar[int]
    BUSY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    BACKPRESSURED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    execution_id: str
    vertex_id: str
    subtask: int
    records_in: int
    records_out: int
    busy_seconds: float
    backpressured_seconds: float
    def __init__(self, execution_id: _Optional[str] = ..., vertex_id: _Optional[str] = ..., subtask: _Optional[int] = ..., records_in: _Optional[int] = ..., records_out: _Optional[int] = ..., busy_seconds: _Optional[float] = ..., backpressured_seconds: _Optional[float] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("taskmanager_id", "metrics", "slots")
    TASKMANAGER_ID_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    taskmanager_id: str
    metrics: _containers.RepeatedCompositeFieldContainer[TaskMetrics]
    slots: _containers.RepeatedCompositeFieldContainer[SlotInfo]
    def __init__(self, taskmanager_id: _Optional[str] = ..., metrics: _Optional[_Iterable[_Union[TaskMetrics, _Mapping]]] = ..., slots: _Optional[_Iterable[_Union[SlotInfo, _Mapping]]] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("known",)
    KNOWN_FIELD_NUMBER: _ClassVar[int]
    known: bool
    def __init__(self, known: _Optional[bool] = ...) -> None: ...

class TaskStateUpdate(_message.Message):
    __slots__ = ("taskmanager_id", "execution_id", "vertex_id", "subtask", "state", "failure_cause", "records_in", "records_out")
    TASKMANAGER_ID_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    VERTEX_ID_FIELD_NUMBER: _ClassVar[int]
    SUBTASK_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    FAILURE_CAUSE_FIELD_NUMBER: _ClassVar[int]
    RECORDS_IN_FIELD_NUMBER: _ClassVar[int]
    RECORDS_OUT_FIELD_NUMBER: _ClassVar[int]
    taskmanager_id: str
    execution_id: str
    vertex_id: str
    subtask: int
    state: str
    failure_cause: str
    records_in: int
    records_out: int
    def __init__(self, taskmanager_id: _Optional[str] = ..., execution_id: _Optional[str] = ..., vertex_id: _Optional[str] = ..., subtask: _Optional[int] = ..., state: _Optional[str] = ..., failure_cause: _Optional[str] = ..., records_in: _Optional[int] = ..., records_out: _Optional[int] = ...) -> None: ...

class CheckpointReport(_message.Message):
    __slots__ = ("taskmanager_id", "execution_id", "vertex_id", "subtask", "checkpoint_id", "ack", "state", "reason")
    TASKMANAGER_ID_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    VERTEX_ID_FIELD_NUMBER: _ClassVar[int]
    SUBTASK_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    taskmanager_id: str
    execution_id: str
    vertex_id: str
    subtask: int
    checkpoint_id: int
    ack: bool
    state: bytes
    reason: str
    def __init__(self, taskmanager_id: _Optional[str] = ..., execution_id: _Optional[str] = ..., vertex_id: _Optional[str] = ..., subtask: _Optional[int] = ..., checkpoint_id: _Optional[int] = ..., ack: _Optional[bool] = ..., state: _Optional[bytes] = ..., reason: _Optional[str] = ...) -> None: ...

class PushResultsRequest(_message.Message):
    __slots__ = ("execution_id", "subtask", "records", "end")
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    SUBTASK_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    execution_id: str
    subtask: int
    records: bytes
    end: bool
    def __init__(self, execution_id: _Optional[str] = ..., subtask: _Optional[int] = ..., records: _Optional[bytes] = ..., end: _Optional[bool] = ...) -> None: ...

class DeployTasksRequest(_message.Message):
    __slots__ = ("execution_id", "job_graph", "deployments")
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_GRAPH_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENTS_FIELD_NUMBER: _ClassVar[int]
    execution_id: str
    job_graph: bytes
    deployments: bytes
    def __init__(self, execution_id: _Optional[str] = ..., job_graph: _Optional[bytes] = ..., deployments: _Optional[bytes] = ...) -> None: ...

class CancelExecutionRequest(_message.Message):
    __slots__ = ("execution_id",)
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    execution_id: str
    def __init__(self, execution_id: _Optional[str] = ...) -> None: ...

class CheckpointControl(_message.Message):
    __slots__ = ("execution_id", "kind", "checkpoint_id", "savepoint_target")
    EXECUTION_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    SAVEPOINT_TARGET_FIELD_NUMBER: _ClassVar[int]
    execution_id: str
    kind: str
    checkpoint_id: int
    savepoint_target: str
    def __init__(self, execution_id: _Optional[str] = ..., kind: _Optional[str] = ..., checkpoint_id: _Optional[int] = ..., savepoint_target: _Optional[str] = ...) -> None: ...
