"""ClusterPipelineExecutor: what ``env.execute()`` calls (found through the ``weir.executors`` entry point).

The JobManager address comes from ``weir run --jobmanager`` (the execution context) or ``WEIR_JOBMANAGER``.
With neither, the executor starts a local cluster sized for the job and tears it down when the job ends
(or at interpreter exit for ``execute_async``), as PyFlink's local execution does.
"""

from __future__ import annotations

import atexit
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from client.gateway import JobManagerClient, JobManagerError
from client.local_cluster import LocalCluster
from client.packaging import package
from weir.datastream.execution import (
    JobExecutionException,
    JobExecutionResult,
    JobStatus,
    get_context,
)
from weir.graph.jobgraph import JobGraph
from weir.rpc.convert import JobInfo

ProgressFn = Callable[[JobInfo], None]


class ClusterJobClient:
    """A submitted job. Owns the local cluster started for it, if any, and stops it when the job ends."""

    def __init__(self, gateway: JobManagerClient, job_id: str, cluster: LocalCluster | None,
                 progress: ProgressFn | None = None) -> None:
        self.gateway = gateway
        self.job_id = job_id
        self.cluster = cluster
        self.progress = progress
        if cluster is not None:
            atexit.register(self.shutdown)

    def get_job_id(self) -> str:
        return self.job_id

    def get_job_status(self) -> str:
        return self.gateway.get_job(self.job_id).state

    def get_job_info(self) -> JobInfo:
        return self.gateway.get_job(self.job_id)

    def cancel(self) -> None:
        self.gateway.cancel(self.job_id)

    def wait(self, poll: float = 0.1) -> JobInfo:
        last_progress = 0.0
        while True:
            info = self.gateway.get_job(self.job_id)
            now = time.monotonic()
            if self.progress is not None and (info.is_terminal or now - last_progress >= 1.0):
                self.progress(info)
                last_progress = now
            if info.is_terminal:
                return info
            time.sleep(poll)

    def get_job_execution_result(self) -> JobExecutionResult:
        try:
            info = self.wait()
        finally:
            self.shutdown()
        if info.state != JobStatus.FINISHED:
            raise JobExecutionException(self.job_id, info.state, info.failure_cause or "canceled")
        return JobExecutionResult(self.job_id, int((info.end_time - info.start_time) * 1000))

    def shutdown(self) -> None:
        if self.cluster is not None:
            cluster, self.cluster = self.cluster, None
            cluster.stop()
            atexit.unregister(self.shutdown)


class ClusterPipelineExecutor:
    def _connect(self, graph: JobGraph, detached: bool) -> tuple[JobManagerClient, LocalCluster | None]:
        ctx = get_context()
        address = (ctx.jobmanager_address if ctx else None) or os.environ.get("WEIR_JOBMANAGER")
        if address:
            return JobManagerClient(address), None
        if detached and ctx is not None:
            raise RuntimeError(
                "a detached run (-d) needs a running cluster: pass --jobmanager HOST:PORT or set WEIR_JOBMANAGER "
                "(start a local one with 'weir cluster start')"
            )
        cluster = LocalCluster(taskmanagers=1, slots=max(1, graph.slots_needed), quiet=True)
        cluster.start()
        return JobManagerClient(cluster.address), cluster

    def execute(self, graph: JobGraph, detached: bool) -> ClusterJobClient:
        graph_bytes, topo_bytes = package(graph)
        gateway, cluster = self._connect(graph, detached)
        try:
            ctx0 = get_context()
            job_id = gateway.submit(graph.name, graph_bytes, topo_bytes,
                                    ctx0.savepoint_path if ctx0 else None,
                                    bool(ctx0 and ctx0.allow_non_restored_state))
        except BaseException:
            if cluster is not None:
                cluster.stop()
            raise
        ctx = get_context()
        if ctx is not None:
            if ctx.job_ids is None:
                ctx.job_ids = []
            ctx.job_ids.append(job_id)
        progress = getattr(ctx, "progress", None) if ctx is not None else None
        return ClusterJobClient(gateway, job_id, cluster, progress)

    def collect(self, graph: JobGraph) -> tuple[ClusterJobClient, Iterator[Any]]:
        client = self.execute(graph, detached=False)
        return client, _ResultIterator(client)


class _ResultIterator(Iterator[Any]):
    def __init__(self, client: ClusterJobClient) -> None:
        self.client = client
        self._buffers = client.gateway.fetch_results(client.job_id)
        self._current: Iterator[Any] = iter(())
        self._done = False

    def __iter__(self) -> _ResultIterator:
        return self

    def __next__(self) -> Any:
        while True:
            try:
                return next(self._current)
            except StopIteration:
                pass
            if self._done:
                raise StopIteration
            try:
                self._current = iter(next(self._buffers))
            except StopIteration:
                self._done = True
                info = self.client.wait()
                self.client.shutdown()
                if info.state != JobStatus.FINISHED:
                    raise JobExecutionException(self.client.job_id, info.state, info.failure_cause) from None
                raise
            except JobManagerError:
                self._done = True
                info = self.client.wait()
                self.client.shutdown()
                raise JobExecutionException(self.client.job_id, info.state, info.failure_cause) from None

    def close(self) -> None:
        if not self._done:
            self._done = True
            try:
                if not self.client.get_job_info().is_terminal:
                    self.client.cancel()
            except Exception as e:  # noqa: BLE001 - closing must not raise over the user's own error
                print(f"weir: could not cancel job {self.client.job_id}: {e}", file=sys.stderr)
        self.client.shutdown()
