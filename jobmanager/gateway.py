"""The gRPC implementation of the Dispatcher's TaskManagerGateway."""

from __future__ import annotations

import pickle

import grpc

from weir.graph.deployment import TaskDeployment
from weir.rpc import GRPC_OPTIONS, weir_pb2, weir_pb2_grpc
from weir.rpc.auth import aio_channel


class GrpcTaskManagerGateway:
    def __init__(self) -> None:
        self._channels: dict[str, grpc.aio.Channel] = {}

    def _stub(self, address: str) -> weir_pb2_grpc.TaskExecutorServiceStub:
        ch = self._channels.get(address)
        if ch is None:
            ch = self._channels[address] = aio_channel(address, GRPC_OPTIONS)
        return weir_pb2_grpc.TaskExecutorServiceStub(ch)

    async def deploy(self, address: str, execution_id: str, graph: bytes, deployments: list[TaskDeployment]) -> None:
        req = weir_pb2.DeployTasksRequest(
            execution_id=execution_id, job_graph=graph, deployments=pickle.dumps(deployments, protocol=5)
        )
        try:
            await self._stub(address).DeployTasks(req, timeout=60)
        except grpc.aio.AioRpcError as e:
            raise ConnectionError(f"TaskManager at {address}: {e.code().name} {e.details()}") from e

    async def cancel(self, address: str, execution_id: str) -> None:
        try:
            await self._stub(address).CancelExecution(weir_pb2.CancelExecutionRequest(execution_id=execution_id),
                                                      timeout=15)
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.UNAVAILABLE:
                raise ConnectionError(f"TaskManager at {address} is unreachable: {e.details()}") from e
            raise

    async def checkpoint_control(self, address: str, execution_id: str, kind: str, checkpoint_id: int,
                                 savepoint_target: str = "") -> None:
        req = weir_pb2.CheckpointControl(execution_id=execution_id, kind=kind, checkpoint_id=checkpoint_id,
                                         savepoint_target=savepoint_target)
        await self._stub(address).ControlCheckpoint(req, timeout=15)

    async def close(self) -> None:
        for ch in self._channels.values():
            await ch.close()
