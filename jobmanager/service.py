"""The JobManager's gRPC service: converts protobuf to the Dispatcher's calls and back."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc

from jobmanager.dispatcher import Dispatcher, JobSubmissionError, load_savepoint
from jobmanager.results import ResultsClosedError
from weir.rpc import weir_pb2, weir_pb2_grpc
from weir.rpc.convert import TaskMetric, job_to_pb, metrics_from_pb, slots_from_pb

log = logging.getLogger("weir.jobmanager")


class JobManagerService(weir_pb2_grpc.JobManagerServiceServicer):
    def __init__(self, dispatcher: Dispatcher, jobmanager_id: str) -> None:
        self.d = dispatcher
        self.id = jobmanager_id

    async def _job(self, job_id: str, context: Any) -> Any:
        job = self.d.jobs.get(job_id)
        if job is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no job with id {job_id!r}: see 'weir list'")
        return job

    async def SubmitJob(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC's names
        savepoint = None
        if request.savepoint_path:
            try:
                savepoint = await asyncio.to_thread(load_savepoint, request.savepoint_path)
            except Exception as e:  # noqa: BLE001 - any unreadable savepoint is the caller's error to see
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                    f"cannot restore from savepoint {request.savepoint_path}: {e}")
        try:
            job = await self.d.submit_persisted(request.job_name, request.job_graph, request.topology, savepoint,
                                                request.allow_non_restored_state)
        except JobSubmissionError as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        return weir_pb2.SubmitJobResponse(job_id=job.job_id)

    async def TriggerSavepoint(self, request: Any, context: Any) -> Any:  # noqa: N802
        await self._job(request.job_id, context)
        try:
            path = await self.d.trigger_savepoint(request.job_id, request.target or None, request.stop)
        except (RuntimeError, TimeoutError) as e:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(e) or "the savepoint timed out")
        return weir_pb2.SavepointResponse(path=path)

    async def ReportCheckpoint(self, request: Any, context: Any) -> Any:  # noqa: N802
        await self.d.checkpoint_report(request.execution_id, request.vertex_id, request.subtask,
                                       request.checkpoint_id, request.ack, request.state, request.reason)
        return weir_pb2.Empty()

    async def GetJob(self, request: Any, context: Any) -> Any:  # noqa: N802
        return job_to_pb((await self._job(request.job_id, context)).info())

    async def ListJobs(self, request: Any, context: Any) -> Any:  # noqa: N802
        return weir_pb2.ListJobsResponse(jobs=[job_to_pb(j.info()) for j in self.d.jobs.values()])

    async def CancelJob(self, request: Any, context: Any) -> Any:  # noqa: N802
        await self._job(request.job_id, context)
        return job_to_pb((await self.d.cancel(request.job_id)).info())

    async def FetchResults(self, request: Any, context: Any) -> AsyncIterator[Any]:  # noqa: N802
        job = await self._job(request.job_id, context)
        if job.results is None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "the job has no collect sink")
        try:
            async for batch in job.results.stream():
                yield weir_pb2.ResultBatch(records=batch)
        except ResultsClosedError as e:
            yield weir_pb2.ResultBatch(end=True, failure_cause=str(e))
            return
        yield weir_pb2.ResultBatch(end=True)

    async def GetOverview(self, request: Any, context: Any) -> Any:  # noqa: N802
        reg = self.d.registry
        return weir_pb2.ClusterOverview(
            jobmanager_id=self.id,
            slots_total=reg.total_slots,
            slots_free=len(reg.free_slots()),
            taskmanagers=[
                weir_pb2.TaskManagerStatus(
                    taskmanager_id=tm.id, address=tm.address, slots=len(tm.slots),
                    free_slots=len(tm.slots) - len(tm.allocated), pid=tm.pid, last_heartbeat=tm.last_heartbeat,
                )
                for tm in reg.taskmanagers.values()
            ],
        )

    async def RegisterTaskManager(self, request: Any, context: Any) -> Any:  # noqa: N802
        self.d.registry.register(request.taskmanager_id, request.address, slots_from_pb(request.slots),
                                 request.pid, time.time())
        log.info("TaskManager %s registered from %s with %d slot(s)", request.taskmanager_id, request.address,
                 len(request.slots))
        self.d.wake()
        return weir_pb2.RegisterTaskManagerResponse(jobmanager_id=self.id)

    async def Heartbeat(self, request: Any, context: Any) -> Any:  # noqa: N802
        known = self.d.registry.heartbeat(request.taskmanager_id, slots_from_pb(request.slots), time.time())
        if known:
            self.d.metrics(metrics_from_pb(request.metrics))
        return weir_pb2.HeartbeatResponse(known=known)

    async def UpdateTaskState(self, request: Any, context: Any) -> Any:  # noqa: N802
        if request.state in ("FINISHED", "FAILED", "CANCELED"):
            self.d.metrics([TaskMetric(request.execution_id, request.vertex_id, request.subtask,
                                       request.records_in, request.records_out)])
        await self.d.task_state(request.execution_id, request.vertex_id, request.subtask, request.state,
                                request.failure_cause)
        return weir_pb2.Empty()

    async def PushResults(self, request: Any, context: Any) -> Any:  # noqa: N802
        job = self.d.by_execution.get(request.execution_id)
        if job is None or job.results is None or job.execution_id != request.execution_id:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no running execution {request.execution_id}")
        assert job is not None and job.results is not None
        try:
            await job.results.push(request.records, request.end)
        except ResultsClosedError as e:
            await context.abort(grpc.StatusCode.CANCELLED, str(e))
        return weir_pb2.Empty()
