"""Completed checkpoints of a job: their metadata in checkpoint storage, retention, and deletion of files no
retained checkpoint references. Blocking IO: the Dispatcher calls these from a thread."""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from typing import Any

from weir.graph.deployment import OperatorSubtaskState, TaskStateSnapshot

METADATA = "_metadata"


class CheckpointValidationError(IOError):
    """A checkpoint's metadata or one of its state files is missing or truncated."""


@dataclass
class CheckpointMetadata:
    """What a completed checkpoint or savepoint holds: every operator's subtask states by operator uid.

    ``operators[uid][i]`` is subtask i's state, so the operator's parallelism was ``len(operators[uid])``.
    ``storage_uri`` is where the state files live (relative paths in the handles resolve against it).
    """

    checkpoint_id: int
    job_id: str
    timestamp: float
    storage_uri: str
    operators: dict[str, list[OperatorSubtaskState]] = field(default_factory=dict)
    savepoint: bool = False
    alignment_seconds: float = 0.0  # the longest barrier alignment of any subtask

    def state_files(self) -> list[Any]:
        return [f for states in self.operators.values() for s in states for h in s.keyed for f in h.files]


def build_metadata(checkpoint_id: int, job_id: str, timestamp: float, storage_uri: str,
                   states: dict[tuple[str, int], bytes], savepoint: bool) -> CheckpointMetadata:
    """Regroup the tasks' acknowledgements (pickled TaskStateSnapshots by (vertex, subtask)) by operator uid."""
    by_uid: dict[str, dict[int, OperatorSubtaskState]] = {}
    alignment = 0.0
    for (_, subtask), raw in states.items():
        snap: TaskStateSnapshot = pickle.loads(raw)
        alignment = max(alignment, snap.alignment_seconds)
        for uid, st in snap.operators.items():
            by_uid.setdefault(uid, {})[subtask] = st
    operators = {
        uid: [subs.get(i, OperatorSubtaskState()) for i in range(max(subs) + 1)] for uid, subs in by_uid.items()
    }
    return CheckpointMetadata(checkpoint_id, job_id, timestamp, storage_uri, operators, savepoint, alignment)


def metadata_path(job_id: str, checkpoint_id: int) -> str:
    return f"{job_id}/chk-{checkpoint_id}/{METADATA}"


def write_metadata(storage: Any, path: str, md: CheckpointMetadata) -> None:
    storage.write(path, pickle.dumps(md, protocol=5))


def read_metadata(storage: Any, path: str) -> CheckpointMetadata:
    try:
        raw = storage.read(path)
    except FileNotFoundError as e:
        raise CheckpointValidationError(f"checkpoint metadata {storage.uri(path)} is missing") from e
    try:
        md = pickle.loads(raw)
    except Exception as e:
        raise CheckpointValidationError(f"checkpoint metadata {storage.uri(path)} is corrupt: {e}") from e
    if not isinstance(md, CheckpointMetadata):
        raise CheckpointValidationError(f"{storage.uri(path)} is not weir checkpoint metadata")
    return md


def validate(storage: Any, md: CheckpointMetadata) -> None:
    """Every state file exists with its recorded size; raises CheckpointValidationError naming the first that
    does not (a restore must never read partial state)."""
    for f in md.state_files():
        try:
            size = storage.size(f.path)
        except FileNotFoundError:
            raise CheckpointValidationError(
                f"state file {storage.uri(f.path)} of checkpoint {md.checkpoint_id} is missing") from None
        if size != f.size:
            raise CheckpointValidationError(
                f"state file {storage.uri(f.path)} of checkpoint {md.checkpoint_id} is truncated or altered: "
                f"{size} bytes, expected {f.size}")


def discard(storage: Any, md: CheckpointMetadata, retained: list[CheckpointMetadata]) -> None:
    """Delete a subsumed checkpoint: its own directory, and its shared files that no retained checkpoint uses."""
    for path in storage.list(f"{md.job_id}/chk-{md.checkpoint_id}/"):
        storage.delete(path)
    in_use = {f.path for r in retained for f in r.state_files()}
    for f in md.state_files():
        if f.shared and f.path not in in_use:
            storage.delete(f.path)
