"""TaskExecutor: the TaskManager daemon.

It offers ``slots`` slots, each a worker process (``taskmanager.worker``) it supervises, registers them with
the JobManager, heartbeats with task metrics, forwards deployments and cancellations to the workers, and
reports task states. It restarts no task on its own -- the JobManager decides -- but keeps every slot backed
by a live worker: a worker that dies fails its tasks and is replaced by a fresh process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import re
import shutil
import signal
import socket
import sys
import tempfile
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import grpc

from taskmanager.network import frame
from weir.graph.deployment import TaskDeployment
from weir.rpc import GRPC_OPTIONS, tls, weir_pb2, weir_pb2_grpc
from weir.rpc.auth import aio_channel, bind, server_interceptors
from weir.rpc.convert import SlotAddress, TaskMetric, metrics_to_pb, slots_to_pb

log = logging.getLogger("weir.taskmanager")


_LOCAL_DIR = re.compile(r"weir-tm-[0-9a-f]+-p(\d+)@(.+?)-")


def local_dir_prefix(taskmanager_id: str) -> str:
    """The name a TaskManager's local directory starts with: its id, pid and host (see remove_stale_local_dirs)."""
    host = re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname())[:32]
    return f"weir-{taskmanager_id}-p{os.getpid()}@{host}-"


def remove_stale_local_dirs(parent: str) -> None:
    """Remove the local directories of TaskManagers of this host that died without cleaning up (SIGKILL, OOM): a
    directory named for a process that no longer exists holds state of tasks that are gone. Directories named for
    another host (a directory shared between containers, whose process ids mean nothing here) are left alone."""
    host = local_dir_prefix("tm-0").split("@", 1)[1][:-1]
    with contextlib.suppress(OSError):
        for name in os.listdir(parent):
            m = _LOCAL_DIR.match(name)
            if m is None or int(m.group(1)) == os.getpid() or m.group(2) != host:
                continue
            try:
                os.kill(int(m.group(1)), 0)
            except ProcessLookupError:
                shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
            except PermissionError:
                pass  # alive, another user's


@dataclass
class Slot:
    index: int
    process: asyncio.subprocess.Process | None = None
    writer: asyncio.StreamWriter | None = None
    data_address: str = ""
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    # (execution_id, vertex_id, subtask) -> last state
    tasks: dict[tuple[str, str, int], str] = field(default_factory=dict)


class TaskExecutor(weir_pb2_grpc.TaskExecutorServiceServicer):
    def __init__(
        self,
        jobmanager: str,
        slots: int,
        host: str = "127.0.0.1",
        port: int = 0,
        advertised_host: str | None = None,
        heartbeat_interval: float = 1.0,
        state_backend: str = "hashmap",
        tmp_dir: str | None = None,
        metrics_port: int | None = None,
    ) -> None:
        self.metrics_port = metrics_port
        if state_backend not in ("hashmap", "rocksdb"):
            raise ValueError(f"unknown state backend {state_backend!r}: use hashmap or rocksdb")
        self.state_backend = state_backend
        self.tmp_dir = tmp_dir
        if slots < 1:
            raise ValueError(f"a TaskManager needs at least one slot, got --slots {slots}")
        self.jobmanager = jobmanager
        self.host = host
        self.port = port
        self.advertised_host = advertised_host or host
        self.heartbeat_interval = heartbeat_interval
        self.id = f"tm-{uuid.uuid4().hex[:8]}"
        self.slots = [Slot(i) for i in range(slots)]
        self.metrics: dict[tuple[str, str, int], TaskMetric] = {}
        self.snapshots: dict[tuple[str, str, int], dict[str, Any]] = {}  # latest per running subtask (/metrics)
        self.registered = False
        self.jobmanager_id: str | None = None
        self._stopping = False
        self._control_server: asyncio.Server | None = None
        self._control_address = ""
        self._control_dir = ""
        self._server: grpc.aio.Server | None = None
        self.address = ""
        self._cancel_waiters: dict[str, list[asyncio.Future[None]]] = defaultdict(list)

    # ---- workers ----
    async def _spawn(self, slot: Slot) -> None:
        slot.ready.clear()
        env = dict(os.environ)
        slot.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "taskmanager.worker",
            "--slot", str(slot.index),
            "--control", self._control_address,
            "--host", self.host if self.host not in ("0.0.0.0", "::") else self.advertised_host,
            "--advertised-host", self.advertised_host,
            "--parent-pid", str(os.getpid()),
            "--local-dir", os.path.join(self._local_root, f"slot-{slot.index}"),
            "--state-backend", self.state_backend,
            env=env,
        )
        asyncio.get_running_loop().create_task(self._watch(slot, slot.process))

    async def _watch(self, slot: Slot, proc: asyncio.subprocess.Process) -> None:
        code = await proc.wait()
        if self._stopping or slot.process is not proc:
            return
        cause = (
            f"the worker process of slot {slot.index} on TaskManager {self.id} ({self.address}) exited "
            f"with code {code} (pid {proc.pid}); a signal or running out of memory are the usual causes"
        )
        log.error(cause)
        lost, slot.tasks, slot.writer = slot.tasks, {}, None
        # the replacement's data address reaches the JobManager before the failure does, so the job's slot is
        # never offered again under the dead worker's address
        await self._spawn(slot)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(slot.ready.wait(), 30)
        await self._heartbeat_once()
        for (ex, v, s), state in lost.items():
            if state in ("DEPLOYING", "RUNNING", "FINISHING"):
                await self._report(ex, v, s, "FAILED", cause)

    async def _control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        slot: Slot | None = None
        try:
            while True:
                kind, _, payload = await frame.read_frame(reader)
                msg = pickle.loads(payload)
                if msg[0] == "hello":
                    slot = self.slots[msg[1]]
                    slot.writer, slot.data_address = writer, msg[2]
                    slot.ready.set()
                elif msg[0] == "state" and slot is not None:
                    _, ex, v, s, state, cause, rin, rout = msg
                    slot.tasks[(ex, v, s)] = state
                    self.metrics[(ex, v, s)] = TaskMetric(ex, v, s, rin, rout)
                    if state in ("FINISHED", "FAILED", "CANCELED"):
                        slot.tasks.pop((ex, v, s), None)
                    await self._report(ex, v, s, state, cause, rin, rout)
                elif msg[0] == "ckpt":
                    _, ex, v, s, cid, ok, state, reason = msg
                    loop = asyncio.get_running_loop()
                    loop.create_task(self._report_checkpoint(ex, v, s, cid, ok, state, reason))
                elif msg[0] == "metrics":
                    for ex, v, s, rin, rout, snapshot in msg[1]:
                        load = (snapshot.get("busy_seconds", 0.0), snapshot.get("backpressured_seconds", 0.0)) \
                            if isinstance(snapshot, dict) else (0.0, 0.0)
                        self.metrics[(ex, v, s)] = TaskMetric(ex, v, s, rin, rout, *load)
                        if snapshot is not None:
                            self.snapshots[(ex, v, s)] = snapshot
                elif msg[0] == "canceled":
                    for fut in self._cancel_waiters.pop(f"{slot.index if slot else -1}:{msg[1]}", []):
                        if not fut.done():
                            fut.set_result(None)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass

    # ---- JobManager side ----
    def _stub(self) -> weir_pb2_grpc.JobManagerServiceStub:
        return weir_pb2_grpc.JobManagerServiceStub(self._jm_channel)

    async def _report(self, ex: str, v: str, s: int, state: str, cause: str, rin: int = 0, rout: int = 0) -> None:
        msg = weir_pb2.TaskStateUpdate(taskmanager_id=self.id, execution_id=ex, vertex_id=v, subtask=s,
                                       state=state, failure_cause=cause, records_in=rin, records_out=rout)
        for attempt in range(5):
            try:
                await self._stub().UpdateTaskState(msg, timeout=10)
                return
            except grpc.aio.AioRpcError as e:
                log.warning("could not report %s of %s/%s to the JobManager (%s), attempt %d",
                            state, v, s, e.code().name, attempt + 1)
                await asyncio.sleep(0.5)

    async def _report_checkpoint(self, ex: str, v: str, s: int, cid: int, ok: bool, state: bytes,
                                 reason: str) -> None:
        msg = weir_pb2.CheckpointReport(taskmanager_id=self.id, execution_id=ex, vertex_id=v, subtask=s,
                                        checkpoint_id=cid, ack=ok, state=state, reason=reason)
        try:
            await self._stub().ReportCheckpoint(msg, timeout=30)
        except grpc.aio.AioRpcError as e:
            log.warning("could not report checkpoint %d of %s/%d: %s", cid, v, s, e.code().name)

    def _cancel_everything(self) -> None:
        for slot in self.slots:
            if slot.writer is None or slot.writer.is_closing():
                continue
            for ex in {k[0] for k in slot.tasks}:
                log.warning("cancelling execution %s of the previous JobManager", ex)
                slot.writer.write(frame.encode_obj(frame.CONTROL, 0, ("cancel", ex)))

    def _slot_addresses(self) -> list[SlotAddress]:
        return [SlotAddress(s.index, s.data_address) for s in self.slots]

    async def _register(self) -> None:
        req = weir_pb2.RegisterTaskManagerRequest(
            taskmanager_id=self.id, address=self.address, slots=slots_to_pb(self._slot_addresses()), pid=os.getpid()
        )
        delay = 0.2
        while not self._stopping:
            try:
                resp = await self._stub().RegisterTaskManager(req, timeout=5)
                if self.jobmanager_id is not None and resp.jobmanager_id != self.jobmanager_id:
                    # a new JobManager (a restart from its HA directory) knows nothing of the old one's tasks: it
                    # redeploys its jobs from their checkpoints, so the tasks still running here must go
                    self._cancel_everything()
                self.jobmanager_id = resp.jobmanager_id
                self.registered = True
                log.info("registered with the JobManager at %s as %s (%d slots)", self.jobmanager, self.id,
                         len(self.slots))
                return
            except grpc.aio.AioRpcError as e:
                why = tls.describe_failure(e.details() or "", self.jobmanager, tls.internal())
                if why is None and e.code() == grpc.StatusCode.UNAUTHENTICATED:
                    why = e.details()
                log.warning("cannot register with the JobManager at %s (%s%s); retrying in %.1f s",
                            self.jobmanager, e.code().name, f": {why}" if why else "", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _heartbeat_once(self) -> None:
        req = weir_pb2.HeartbeatRequest(
            taskmanager_id=self.id,
            metrics=metrics_to_pb(list(self.metrics.values())),
            slots=slots_to_pb(self._slot_addresses()),
        )
        try:
            resp = await self._stub().Heartbeat(req, timeout=5)
        except grpc.aio.AioRpcError as e:
            log.warning("heartbeat to the JobManager at %s failed: %s", self.jobmanager, e.code().name)
            return
        if not resp.known:
            log.warning("the JobManager does not know this TaskManager (it restarted?): registering again")
            await self._register()

    async def _heartbeats(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.heartbeat_interval)
            await self._heartbeat_once()
            # metrics of ended executions are sent once more, then forgotten
            live = {k for s in self.slots for k in s.tasks}
            for k in [k for k in self.metrics if k not in live]:
                del self.metrics[k]
            for k in [k for k in self.snapshots if k not in live]:
                del self.snapshots[k]

    # ---- gRPC service ----
    async def DeployTasks(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC's name
        deployments: list[TaskDeployment] = pickle.loads(request.deployments)
        by_slot: dict[int, list[TaskDeployment]] = defaultdict(list)
        for d in deployments:
            by_slot[d.slot].append(d)
        for idx, ds in by_slot.items():
            if not 0 <= idx < len(self.slots):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"no slot {idx} on {self.id}")
            slot = self.slots[idx]
            await slot.ready.wait()
            for d in ds:
                slot.tasks[(d.execution_id, d.vertex_id, d.subtask)] = "DEPLOYING"
            assert slot.writer is not None
            msg = ("deploy", request.execution_id, request.job_graph, ds)
            slot.writer.write(frame.encode_obj(frame.CONTROL, 0, msg))
        return weir_pb2.Empty()

    async def ControlCheckpoint(self, request: Any, context: Any) -> Any:  # noqa: N802
        msg = ("checkpoint", request.execution_id, request.kind, request.checkpoint_id, request.savepoint_target)
        for slot in self.slots:
            if slot.writer is not None and not slot.writer.is_closing() and any(
                k[0] == request.execution_id for k in slot.tasks
            ):
                slot.writer.write(frame.encode_obj(frame.CONTROL, 0, msg))
        return weir_pb2.Empty()

    async def CancelExecution(self, request: Any, context: Any) -> Any:  # noqa: N802
        waits = []
        for slot in self.slots:
            if (slot.writer is None or slot.writer.is_closing()
                    or not any(k[0] == request.execution_id for k in slot.tasks)):
                continue
            fut = asyncio.get_running_loop().create_future()
            self._cancel_waiters[f"{slot.index}:{request.execution_id}"].append(fut)
            waits.append(fut)
            slot.writer.write(frame.encode_obj(frame.CONTROL, 0, ("cancel", request.execution_id)))
        if waits:
            await asyncio.wait(waits, timeout=10)
        return weir_pb2.Empty()

    # ---- lifecycle ----
    async def start(self) -> None:
        # the slots' local disk: RocksDB state of running tasks; removed when the TaskManager stops
        if self.tmp_dir:
            os.makedirs(self.tmp_dir, exist_ok=True)
        remove_stale_local_dirs(self.tmp_dir or tempfile.gettempdir())
        self._local_root = tempfile.mkdtemp(prefix=local_dir_prefix(self.id), dir=self.tmp_dir)
        # the workers' control connection: a Unix socket in a directory only this user can enter (a TCP port on
        # loopback would let any local process pose as a worker); Unix socket paths are limited to ~107 bytes
        self._control_address = os.path.join(self._local_root, "control.sock")
        if len(self._control_address.encode()) > 100:
            self._control_dir = tempfile.mkdtemp(prefix="weir-ctl-")
            self._control_address = os.path.join(self._control_dir, "control.sock")
        self._control_server = await asyncio.start_unix_server(self._control, self._control_address)
        self._server = grpc.aio.server(options=GRPC_OPTIONS, interceptors=server_interceptors())
        weir_pb2_grpc.add_TaskExecutorServiceServicer_to_server(self, self._server)
        bound = bind(self._server, f"{self.host}:{self.port}")
        if bound == 0:
            raise OSError(f"cannot bind the TaskManager's RPC port on {self.host}:{self.port}")
        self.address = f"{self.advertised_host}:{bound}"
        await self._server.start()
        self._jm_channel = aio_channel(self.jobmanager, GRPC_OPTIONS)
        if self.metrics_port is not None:
            from taskmanager.metrics import TaskManagerCollector, serve

            collector = TaskManagerCollector(
                lambda: dict(self.snapshots),
                lambda: (len(self.slots), sum(1 for s in self.slots if not s.tasks)),
            )
            try:
                serve(self.host, self.metrics_port, collector, tls.rest())
            except OSError as e:
                raise OSError(f"cannot serve metrics on {self.host}:{self.metrics_port}: {e}; pick another "
                              "--metrics-port") from e
            log.info("metrics at %s://%s:%d/metrics", "https" if tls.rest() else "http", self.advertised_host,
                     self.metrics_port)
        for slot in self.slots:
            await self._spawn(slot)
        await asyncio.wait_for(asyncio.gather(*(s.ready.wait() for s in self.slots)), 60)
        await self._register()

    async def serve_forever(self) -> None:
        await self.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        hb = loop.create_task(self._heartbeats())
        log.info("weir TaskManager %s at %s with %d slots (pid %d), JobManager %s", self.id, self.address,
                 len(self.slots), os.getpid(), self.jobmanager)
        await stop.wait()
        hb.cancel()
        await self.stop()

    async def stop(self) -> None:
        self._stopping = True
        for slot in self.slots:
            if slot.process is not None and slot.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    slot.process.kill()
                await slot.process.wait()
        if self._server is not None:
            await self._server.stop(1)
        if self._control_server is not None:
            self._control_server.close()
        shutil.rmtree(self._local_root, ignore_errors=True)
        if self._control_dir:
            shutil.rmtree(self._control_dir, ignore_errors=True)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def run(jobmanager: str, slots: int, host: str, port: int, advertised_host: str | None,
        heartbeat_interval: float, state_backend: str = "hashmap", tmp_dir: str | None = None,
        metrics_port: int | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s taskmanager %(levelname)s %(message)s")
    te = TaskExecutor(jobmanager, slots, host, port, advertised_host, heartbeat_interval, state_backend, tmp_dir,
                      metrics_port)
    asyncio.run(te.serve_forever())
