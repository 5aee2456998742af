"""How ``env.execute()`` reaches a cluster without ``weir`` importing the client package.

The executor is found through the ``weir.executors`` entry point (the client package registers
``client.executor:ClusterPipelineExecutor``); ``weir run`` installs a context (JobManager address, detached
mode, default parallelism) that the executor reads.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Protocol

from weir.graph.jobgraph import JobGraph


class JobStatus:
    """Job states, as in Flink."""

    CREATED = "CREATED"
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    CANCELING = "CANCELING"
    CANCELED = "CANCELED"
    TERMINAL = frozenset({"FINISHED", "FAILED", "CANCELED"})


class JobExecutionException(Exception):
    """A job ended FAILED (``cause`` holds the remote traceback) or CANCELED."""

    def __init__(self, job_id: str, state: str, cause: str) -> None:
        super().__init__(f"job {job_id} {state}:\n{cause}")
        self.job_id = job_id
        self.state = state
        self.cause = cause


@dataclass
class JobExecutionResult:
    job_id: str
    net_runtime_ms: int

    def get_job_id(self) -> str:
        return self.job_id

    def get_net_runtime(self) -> int:
        return self.net_runtime_ms


class JobClient(Protocol):
    def get_job_id(self) -> str: ...
    def get_job_status(self) -> str: ...
    def cancel(self) -> None: ...
    def get_job_execution_result(self) -> JobExecutionResult: ...


class PipelineExecutor(Protocol):
    def execute(self, graph: JobGraph, detached: bool) -> JobClient: ...
    def collect(self, graph: JobGraph) -> tuple[JobClient, Iterator[Any]]: ...


@dataclass
class ExecutionContext:
    """Set by ``weir run`` for the job file it runs."""

    jobmanager_address: str | None = None
    parallelism: int | None = None
    detached: bool = False
    job_ids: list[str] | None = None
    progress: Any = None  # callable(JobInfo) shown while an attached job runs
    savepoint_path: str | None = None  # weir run -s: restore the job from this savepoint
    allow_non_restored_state: bool = False


_context = threading.local()


def set_context(ctx: ExecutionContext | None) -> None:
    _context.value = ctx


def get_context() -> ExecutionContext | None:
    return getattr(_context, "value", None)


def load_executor() -> PipelineExecutor:
    eps = entry_points(group="weir.executors")
    for ep in eps:
        if ep.name == "default":
            return ep.load()()  # type: ignore[no-any-return]
    raise RuntimeError("no weir executor is installed: reinstall weir (pip install -e .)")
