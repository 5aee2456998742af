"""High availability: the JobManager keeps every submitted job and its retained checkpoints in its HA directory
(``high-availability.storageDir``, file:// or s3://), so a JobManager killed and started again with the same
directory resumes its unfinished jobs from their latest checkpoints. Blocking IO: called from threads.

Layout: ``jobs/<job id>/submission`` (the submission as received: graph, topology, name, savepoint),
``jobs/<job id>/checkpoints`` (the retained checkpoints' metadata, newest last, rewritten after each completion),
``jobs/<job id>/terminal`` (written when the job ends: it is not resumed).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from typing import Any

from jobmanager.checkpoint.store import CheckpointMetadata


@dataclass
class RecoveredJob:
    job_id: str
    name: str
    graph_bytes: bytes
    topology_bytes: bytes
    savepoint: CheckpointMetadata | None
    allow_non_restored: bool
    checkpoints: list[CheckpointMetadata] = field(default_factory=list)
    restarts: int = 0


class HAStore:
    def __init__(self, storage: Any) -> None:
        self.storage = storage

    def save_submission(self, job_id: str, name: str, graph_bytes: bytes, topology_bytes: bytes,
                        savepoint: CheckpointMetadata | None, allow_non_restored: bool) -> None:
        rec = RecoveredJob(job_id, name, graph_bytes, topology_bytes, savepoint, allow_non_restored)
        self.storage.write(f"jobs/{job_id}/submission", pickle.dumps(rec, protocol=5))

    def save_checkpoints(self, job_id: str, checkpoints: list[CheckpointMetadata], restarts: int) -> None:
        self.storage.write(f"jobs/{job_id}/checkpoints", pickle.dumps((checkpoints, restarts), protocol=5))

    def mark_terminal(self, job_id: str, state: str) -> None:
        self.storage.write(f"jobs/{job_id}/terminal", state.encode())

    def recover(self) -> list[RecoveredJob]:
        """The jobs that were submitted and have not ended, with their retained checkpoints."""
        paths = set(self.storage.list("jobs"))
        out = []
        for p in sorted(paths):
            if not p.endswith("/submission"):
                continue
            base = p[: -len("submission")]
            if base + "terminal" in paths:
                continue
            rec: RecoveredJob = pickle.loads(self.storage.read(p))
            if base + "checkpoints" in paths:
                rec.checkpoints, rec.restarts = pickle.loads(self.storage.read(base + "checkpoints"))
            out.append(rec)
        return out
