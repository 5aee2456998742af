"""Scheduling, pure: a job graph and the free slots in, slot choice and deployment descriptors out.

Slot sharing as in Flink's default group: subtask i of every vertex runs in the job's i-th slot, so a job
needs as many slots as its widest vertex. Slots are taken spread over TaskManagers (slot 0 of every
TaskManager before slot 1 of any), so parallel subtasks land on different hosts when there are several.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from weir.graph.deployment import TaskDeployment
from weir.graph.jobgraph import JobGraph


@dataclass(frozen=True)
class SlotRef:
    taskmanager_id: str
    taskmanager_address: str
    index: int
    data_address: str


def choose_slots(free: list[SlotRef], needed: int) -> list[SlotRef] | None:
    """``needed`` slots spread across TaskManagers, or None when there are not enough."""
    if len(free) < needed:
        return None
    tm_order: dict[str, int] = {}
    for s in free:
        tm_order.setdefault(s.taskmanager_id, len(tm_order))
    by_rank = sorted(
        free,
        key=lambda s: (
            sum(1 for o in free if o.taskmanager_id == s.taskmanager_id and o.index < s.index),
            tm_order[s.taskmanager_id],
        ),
    )
    return by_rank[:needed]


def plan_deployments(
    graph: JobGraph,
    job_id: str,
    execution_id: str,
    slots: list[SlotRef],
    jobmanager_address: str,
    attempt: int = 0,
) -> dict[str, list[TaskDeployment]]:
    """Deployment descriptors grouped by TaskManager address."""
    if len(slots) < graph.slots_needed:
        raise ValueError(f"the job needs {graph.slots_needed} slots, got {len(slots)}")
    out: dict[str, list[TaskDeployment]] = defaultdict(list)
    for v in graph.vertices:
        addresses = {
            ei: [slots[c].data_address for c in range(graph.vertex(graph.edges[ei].target).parallelism)]
            for ei in v.outputs
        }
        for i in range(v.parallelism):
            s = slots[i]
            out[s.taskmanager_address].append(
                TaskDeployment(
                    job_id=job_id,
                    execution_id=execution_id,
                    vertex_id=v.id,
                    subtask=i,
                    slot=s.index,
                    attempt=attempt,
                    output_addresses=addresses,
                    jobmanager_address=jobmanager_address,
                )
            )
    return dict(out)
