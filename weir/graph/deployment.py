"""What the JobManager tells a TaskManager to run: one TaskDeployment per subtask."""

from __future__ import annotations

from dataclasses import dataclass, field

from weir.graph.jobgraph import JobGraph


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
