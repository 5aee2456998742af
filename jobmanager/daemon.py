"""The JobManager process: the gRPC control plane and the Dispatcher's scheduling loop."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import ssl
import uuid

import grpc

from jobmanager.dispatcher import Dispatcher
from jobmanager.gateway import GrpcTaskManagerGateway
from jobmanager.registry import TaskManagerRegistry
from jobmanager.rest import JobManagerRest
from jobmanager.service import JobManagerService
from weir.rpc import GRPC_OPTIONS, weir_pb2_grpc
from weir.rpc.auth import bind, server_interceptors

log = logging.getLogger("weir.jobmanager")


class JobManager:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 6123,
        advertised_host: str | None = None,
        heartbeat_timeout: float = 10.0,
        slot_request_timeout: float = 60.0,
        checkpoints_dir: str | None = None,
        savepoints_dir: str | None = None,
        ha_dir: str | None = None,
        rest_port: int = 8081,
        rest_token: str | None = None,
        job_defaults: dict[str, str] | None = None,
        *,
        rest_read_without_token: bool = False,
        rest_ssl: ssl.SSLContext | None = None,
    ) -> None:
        self.job_defaults = dict(job_defaults or {})  # cluster-level job settings (restart strategy, checkpointing)
        self.ha_dir = ha_dir
        self.checkpoints_dir = checkpoints_dir
        self.savepoints_dir = savepoints_dir
        self.host = host
        self.port = port
        self.advertised_host = advertised_host or host
        self.heartbeat_timeout = heartbeat_timeout
        self.id = f"jm-{uuid.uuid4().hex[:8]}"
        self.gateway = GrpcTaskManagerGateway()
        self.registry = TaskManagerRegistry()
        self.dispatcher: Dispatcher | None = None
        self.slot_request_timeout = slot_request_timeout
        self.address = ""
        self.rest_port = rest_port  # 0: any free port; the bound one is self.rest.port
        self.rest_token = rest_token or None  # when set, REST cancel and savepoint need "Authorization: Bearer"
        self.rest_read_without_token = rest_read_without_token
        self.rest_ssl = rest_ssl  # HTTPS for REST when set
        self.rest: JobManagerRest | None = None

    async def start(self) -> None:
        self.server = grpc.aio.server(options=GRPC_OPTIONS, interceptors=server_interceptors())
        bound = bind(self.server, f"{self.host}:{self.port}")
        if bound == 0:
            raise OSError(
                f"cannot bind the JobManager's RPC port {self.host}:{self.port}: is another JobManager running? "
                "Pick another with --port."
            )
        self.address = f"{self.advertised_host}:{bound}"
        self.dispatcher = Dispatcher(self.registry, self.gateway, self.address, self.slot_request_timeout,
                                     self.checkpoints_dir, self.savepoints_dir, self.job_defaults)
        if self.ha_dir:
            from jobmanager.ha import HAStore
            from state.storage import checkpoint_storage_for

            self.dispatcher.ha = HAStore(checkpoint_storage_for(self.ha_dir))
            recovered = await asyncio.to_thread(self.dispatcher.ha.recover)
            self.dispatcher.recover(recovered)
        self.rest = JobManagerRest(self, self.host, self.rest_port, self.rest_token,
                                   read_without_token=self.rest_read_without_token, ssl=self.rest_ssl)
        await self.rest.start()
        weir_pb2_grpc.add_JobManagerServiceServicer_to_server(JobManagerService(self.dispatcher, self.id), self.server)
        await self.server.start()
        self._loop_task = asyncio.get_running_loop().create_task(self.dispatcher.run(self.heartbeat_timeout))

    async def serve_forever(self) -> None:
        await self.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        log.info("weir JobManager %s listening on %s (pid %d)", self.id, self.address, os.getpid())
        assert self.rest is not None
        log.info("weir JobManager REST API and /metrics on %s://%s", "https" if self.rest_ssl else "http",
                 self.rest.address)
        await stop.wait()
        self._loop_task.cancel()
        await self.rest.close()
        await self.server.stop(1)
        await self.gateway.close()


def run(host: str, port: int, advertised_host: str | None, heartbeat_timeout: float,
        slot_request_timeout: float, checkpoints_dir: str | None = None, savepoints_dir: str | None = None,
        ha_dir: str | None = None, rest_port: int = 8081, rest_token: str | None = None,
        job_defaults: dict[str, str] | None = None, *, rest_read_without_token: bool = False,
        rest_ssl: ssl.SSLContext | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s jobmanager %(levelname)s %(message)s")
    jm = JobManager(host, port, advertised_host, heartbeat_timeout, slot_request_timeout, checkpoints_dir,
                    savepoints_dir, ha_dir, rest_port, rest_token, job_defaults,
                    rest_read_without_token=rest_read_without_token, rest_ssl=rest_ssl)
    asyncio.run(jm.serve_forever())
