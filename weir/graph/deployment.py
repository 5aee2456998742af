"""What the JobManager tells a TaskManager to run: one TaskDeployment per subtask."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from weir.graph.jobgraph import JobGraph


@dataclass
class OperatorSubtaskState:
    """What one subtask of one operator put in a checkpoint.

    Attributes:
        keyed: keyed state handles (``state.snapshot.KeyedStateHandle``), each for a range of key groups.
        operator: pickled non-keyed state (a source's splits, a sink's pending transactions), opaque to the
            JobManager; None when the operator has none.
    """

    keyed: list[Any] = field(default_factory=list)
    operator: bytes | None = None


@dataclass
class TaskStateSnapshot:
    """A subtask's acknowledgement of a checkpoint: its operators' states by operator id (uid), and how long its
    barrier alignment took (first barrier to last, 0 for a source or a single input channel)."""

    operators: dict[str, OperatorSubtaskState] = field(default_factory=dict)
    alignment_seconds: float = 0.0

    @property
    def size(self) -> int:
        return sum(getattr(h, "size", 0) for s in self.operators.values() for h in s.keyed) + sum(
            len(s.operator or b"") for s in self.operators.values())

    @property
    def uploaded_bytes(self) -> int:
        return sum(getattr(h, "uploaded_bytes", 0) for s in self.operators.values() for h in s.keyed) + sum(
            len(s.operator or b"") for s in self.operators.values())


@dataclass
class CheckpointSettings:
    """What a task needs to take part in checkpoints."""

    storage_uri: str
    storage_options: dict[str, str] = field(default_factory=dict)
    exactly_once: bool = True


@dataclass
class RestoreState:
    """State a subtask starts from: by operator uid, the states of ALL subtasks of that operator in the restored
    checkpoint (operator state, e.g. source splits, is redistributed; keyed handles are filtered by key group)."""

    checkpoint_id: int
    operators: dict[str, list[OperatorSubtaskState]]
    storage_uri: str
    storage_options: dict[str, str] = field(default_factory=dict)


@dataclass
class TaskDeployment:
    """One subtask of one vertex in one execution (attempt) of a job.

    Attributes:
        output_addresses: for each output edge index, the data-plane address (host:port) of the slot worker
            running each consumer subtask, indexed by consumer subtask.
        jobmanager_address: where collect sinks push their results.
    """

    job_id: str
    execution_id: str
    vertex_id: str
    subtask: int
    slot: int
    attempt: int = 0
    output_addresses: dict[int, list[str]] = field(default_factory=dict)
    jobmanager_address: str = ""
    checkpointing: CheckpointSettings | None = None
    restore: RestoreState | None = None


def input_channel_counts(graph: JobGraph, vertex_id: str) -> list[tuple[int, int]]:
    """(edge index, number of channels) for each input edge of ``vertex_id``.

    A forward edge connects producer i to consumer i only; every other partitioner connects each producer
    subtask to each consumer subtask.
    """
    v = graph.vertex(vertex_id)
    out = []
    for ei in v.inputs:
        e = graph.edges[ei]
        n = 1 if e.partitioner.kind == "forward" else graph.vertex(e.source).parallelism
        out.append((ei, n))
    return out


def producer_channels(graph: JobGraph, edge_index: int, producer_subtask: int) -> list[int]:
    """The consumer subtasks that producer ``producer_subtask`` of an edge sends to."""
    e = graph.edges[edge_index]
    if e.partitioner.kind == "forward":
        return [producer_subtask]
    return list(range(graph.vertex(e.target).parallelism))
