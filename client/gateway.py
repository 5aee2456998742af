"""JobManagerClient: the synchronous client of the JobManager's control plane, speaking dataclasses."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from typing import Any

import grpc

from weir.rpc import GRPC_OPTIONS, tls, weir_pb2, weir_pb2_grpc
from weir.rpc.auth import sync_channel
from weir.rpc.convert import ClusterOverview, JobInfo, job_from_pb, overview_from_pb


class JobManagerUnreachableError(ConnectionError):
    pass


class JobManagerError(RuntimeError):
    """The JobManager refused a request; the message is its reason."""


class JobManagerClient:
    def __init__(self, address: str, timeout: float = 30.0) -> None:
        self.address = address
        self.timeout = timeout
        self._channel = sync_channel(address, GRPC_OPTIONS)
        self._stub = weir_pb2_grpc.JobManagerServiceStub(self._channel)

    def _call(self, method: str, request: Any, timeout: float | None = None) -> Any:
        try:
            return getattr(self._stub, method)(request, timeout=timeout or self.timeout)
        except grpc.RpcError as e:
            code = e.code()  # type: ignore[attr-defined]
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                advice = tls.describe_failure(e.details() or "", self.address,  # type: ignore[attr-defined]
                                              tls.internal())
                if advice is not None:
                    raise JobManagerUnreachableError(f"cannot reach the JobManager at {self.address}: {advice}") \
                        from None
                raise JobManagerUnreachableError(
                    f"cannot reach the JobManager at {self.address} ({code.name}): is it running? Start one with "
                    "'weir cluster start' or 'weir jobmanager', or name another with --jobmanager HOST:PORT "
                    "(or WEIR_JOBMANAGER)."
                ) from None
            raise JobManagerError(e.details()) from None  # type: ignore[attr-defined]

    def submit(self, name: str, graph_bytes: bytes, topology_bytes: bytes, savepoint_path: str | None = None,
               allow_non_restored_state: bool = False) -> str:
        req = weir_pb2.SubmitJobRequest(job_name=name, job_graph=graph_bytes, topology=topology_bytes,
                                        savepoint_path=savepoint_path or "",
                                        allow_non_restored_state=allow_non_restored_state)
        return str(self._call("SubmitJob", req, timeout=max(self.timeout, 300)).job_id)

    def get_job(self, job_id: str) -> JobInfo:
        return job_from_pb(self._call("GetJob", weir_pb2.JobIdRequest(job_id=job_id)))

    def list_jobs(self) -> list[JobInfo]:
        return [job_from_pb(j) for j in self._call("ListJobs", weir_pb2.Empty()).jobs]

    def savepoint(self, job_id: str, target: str | None = None, stop: bool = False, timeout: float = 600) -> str:
        """Take a savepoint (and with ``stop``, cancel the job after it); returns the savepoint's URI."""
        req = weir_pb2.SavepointRequest(job_id=job_id, target=target or "", stop=stop)
        return str(self._call("TriggerSavepoint", req, timeout=timeout).path)

    def cancel(self, job_id: str) -> JobInfo:
        return job_from_pb(self._call("CancelJob", weir_pb2.JobIdRequest(job_id=job_id)))

    def overview(self, timeout: float | None = None) -> ClusterOverview:
        return overview_from_pb(self._call("GetOverview", weir_pb2.Empty(), timeout=timeout))

    def fetch_results(self, job_id: str) -> Iterator[list[Any]]:
        """Yield result buffers as the collect sink produces them; raises JobManagerError on job failure."""
        stream = self._stub.FetchResults(weir_pb2.FetchResultsRequest(job_id=job_id))
        try:
            for batch in stream:
                if batch.end:
                    if batch.failure_cause:
                        raise JobManagerError(batch.failure_cause)
                    return
                yield pickle.loads(batch.records)
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.CANCELLED:  # type: ignore[attr-defined]
                return
            raise JobManagerError(f"result stream broke: {e.details()}") from None  # type: ignore[attr-defined]
        finally:
            stream.cancel()

    def close(self) -> None:
        self._channel.close()
