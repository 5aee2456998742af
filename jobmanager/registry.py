"""TaskManager registration, heartbeats and the slot pool."""

from __future__ import annotations

from dataclasses import dataclass, field

from jobmanager.scheduler import SlotRef
from weir.rpc.convert import SlotAddress


@dataclass
class TaskManagerInfo:
    id: str
    address: str
    slots: list[SlotAddress]
    pid: int
    last_heartbeat: float
    registered_at: float
    allocated: dict[int, str] = field(default_factory=dict)  # slot index -> job id


class TaskManagerRegistry:
    """Who is alive and which slots are free. Pure: callers pass the clock."""

    def __init__(self) -> None:
        self.taskmanagers: dict[str, TaskManagerInfo] = {}

    def register(self, tm_id: str, address: str, slots: list[SlotAddress], pid: int, now: float) -> None:
        self.taskmanagers[tm_id] = TaskManagerInfo(tm_id, address, list(slots), pid, now, now)

    def heartbeat(self, tm_id: str, slots: list[SlotAddress], now: float) -> bool:
        """Record a heartbeat; False when the TaskManager is unknown (it must register again)."""
        tm = self.taskmanagers.get(tm_id)
        if tm is None:
            return False
        tm.last_heartbeat = now
        if slots:
            tm.slots = list(slots)
        return True

    def expired(self, now: float, timeout: float) -> list[TaskManagerInfo]:
        return [tm for tm in self.taskmanagers.values() if now - tm.last_heartbeat > timeout]

    def remove(self, tm_id: str) -> TaskManagerInfo | None:
        return self.taskmanagers.pop(tm_id, None)

    def free_slots(self) -> list[SlotRef]:
        return [
            SlotRef(tm.id, tm.address, s.index, s.data_address)
            for tm in self.taskmanagers.values()
            for s in tm.slots
            if s.index not in tm.allocated and s.data_address
        ]

    @property
    def total_slots(self) -> int:
        return sum(len(tm.slots) for tm in self.taskmanagers.values())

    def allocate(self, job_id: str, slots: list[SlotRef]) -> None:
        for s in slots:
            self.taskmanagers[s.taskmanager_id].allocated[s.index] = job_id

    def release(self, job_id: str) -> None:
        for tm in self.taskmanagers.values():
            for idx in [i for i, j in tm.allocated.items() if j == job_id]:
                del tm.allocated[idx]
