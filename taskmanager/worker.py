"""A slot worker: the process behind one TaskManager slot.

It runs one asyncio event loop holding the worker's data-plane server and the subtasks deployed to the slot
(slot sharing: at most one subtask of each vertex). It talks to its TaskManager over one local control
connection and dies with it: PR_SET_PDEATHSIG kills it if the TaskManager process dies, and losing the control
connection ends it too, so a SIGKILLed TaskManager never leaves orphans.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import logging
import os
import pickle
import signal
import sys
import traceback
from typing import Any

import cloudpickle

from taskmanager.network import frame
from taskmanager.network.connection import ConnectionManager
from taskmanager.task import StreamTask
from weir.graph import python_files
from weir.graph.deployment import TaskDeployment
from weir.graph.jobgraph import JobGraph
from weir.rpc import tls
from weir.rpc.auth import cluster_token

log = logging.getLogger("weir.worker")

PR_SET_PDEATHSIG = 1
# Garbage collection in a slot worker, as gc.set_threshold(young, older, oldest). Records die by reference count;
# what survives a young collection is mostly state and timers, so a young collection's pause grows with the young
# threshold: 100,000 paused 20-60 ms (W4 p=1: p99.9 50-65 ms), 10,000 pauses ~1/10 of that (p99.9 29-30 ms, W2 p=1
# p99 17 -> 5 ms) for the same CPU. The older generations (a rescan of all state) run only every 1,000 young ones.
GC_THRESHOLDS = (10_000, 1_000, 100)
# The interpreter's thread switch interval in a slot worker (default 5 ms). A checkpoint's upload thread gives up
# the GIL at every file operation and then waited up to 5 ms for the busy mailbox thread to hand it back, so W5
# (checkpoints every 1 s) completed one every 3-5 s; at 1 ms they complete at the configured interval (9-11 in an
# 11 s job instead of 2-3), which is what a checkpoint interval promises (sink commits, replay after a failure).
SWITCH_INTERVAL = 0.001


def die_with_parent(expected_parent: int) -> None:
    """Ask the kernel to SIGKILL this process when its parent dies (Linux), from the child itself.

    Called first thing in the child rather than as a ``preexec_fn``: forking a process whose gRPC threads are
    busy and running Python before exec can deadlock or abort the child. The parent-pid check afterwards
    closes the window in which the parent could have died before the prctl.
    """
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != expected_parent:
        os._exit(1)


class Worker:
    def __init__(self, slot: int, control: str, host: str, advertised_host: str, parent_pid: int,
                 local_dir: str, state_backend: str = "hashmap") -> None:
        self.local_dir = local_dir
        self.state_backend = state_backend
        self.slot = slot
        self.control_address = control
        self.host = host
        self.advertised_host = advertised_host
        self.parent_pid = parent_pid
        self.connections = ConnectionManager(f"slot-{slot}", token=cluster_token(), tls=tls.internal())
        self.tasks: dict[tuple[str, str, int], tuple[StreamTask, asyncio.Task[None]]] = {}
        self.writer: asyncio.StreamWriter | None = None
        self._jm_channels: dict[str, Any] = {}

    def send(self, msg: tuple[Any, ...]) -> None:
        if self.writer is not None and not self.writer.is_closing():
            self.writer.write(frame.encode_obj(frame.CONTROL, 0, msg))

    async def run(self) -> None:
        address = await self.connections.start(self.host, self.advertised_host)
        reader, self.writer = await asyncio.open_unix_connection(self.control_address)
        self.send(("hello", self.slot, address, os.getpid()))
        metrics = asyncio.get_running_loop().create_task(self._metrics_loop())
        try:
            while True:
                kind, _, payload = await frame.read_frame(reader)
                if kind != frame.CONTROL:
                    continue
                msg = pickle.loads(payload)
                if msg[0] == "deploy":
                    self._deploy(msg[1], msg[2], msg[3])
                elif msg[0] == "cancel":
                    await self._cancel(msg[1])
                elif msg[0] == "checkpoint":
                    self._checkpoint_control(*msg[1:])
        except (asyncio.IncompleteReadError, ConnectionError):
            log.info("slot %d: TaskManager went away; exiting", self.slot)
        finally:
            metrics.cancel()
            for _, t in self.tasks.values():
                t.cancel()
            await self.connections.close()

    async def _metrics_loop(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            if os.getppid() != self.parent_pid:
                log.error("slot %d: TaskManager (pid %d) is gone; exiting", self.slot, self.parent_pid)
                os._exit(1)
            rows = [
                (k[0], k[1], k[2], t.counters.records_in, t.records_out(), t.metric_snapshot())
                for k, (t, _) in self.tasks.items()
            ]
            if rows:
                self.send(("metrics", rows))

    def _deploy(self, execution_id: str, graph_bytes: bytes, deployments: list[TaskDeployment]) -> None:
        try:
            graph_bytes, _ = python_files.unpack(graph_bytes, self.local_dir)
            graph: JobGraph = cloudpickle.loads(graph_bytes)
        except Exception:
            cause = "the job could not be loaded on the TaskManager:\n" + traceback.format_exc()
            for d in deployments:
                self.send(("state", d.execution_id, d.vertex_id, d.subtask, "FAILED", cause, 0, 0))
            return
        loop = asyncio.get_running_loop()
        for d in deployments:
            key = (d.execution_id, d.vertex_id, d.subtask)

            task_dir = os.path.join(self.local_dir, f"{d.execution_id}-{d.vertex_id}-{d.subtask}")
            task = StreamTask(d, graph, self.connections, self._reporter(d), self._pusher(d),
                              local_dir=task_dir, state_backend=self.state_backend,
                              report_checkpoint=self._checkpoint_reporter(d))
            self.tasks[key] = (task, loop.create_task(self._run_task(key, task)))

    def _reporter(self, d: TaskDeployment) -> Any:
        def report(state: str, cause: str) -> None:
            t = self.tasks.get((d.execution_id, d.vertex_id, d.subtask))
            rin, rout = (t[0].counters.records_in, t[0].records_out()) if t else (0, 0)
            self.send(("state", d.execution_id, d.vertex_id, d.subtask, state, cause, rin, rout))

        return report

    def _checkpoint_reporter(self, d: TaskDeployment) -> Any:
        def report(checkpoint_id: int, ok: bool, state: bytes, reason: str) -> None:
            self.send(("ckpt", d.execution_id, d.vertex_id, d.subtask, checkpoint_id, ok, state, reason))

        return report

    def _checkpoint_control(self, execution_id: str, kind: str, checkpoint_id: int, target: str) -> None:
        """Checkpoint triggers go to source tasks (they start the barriers); the rest to every task."""
        from taskmanager.task import M_CONTROL

        for (ex, _, _), (task, _) in self.tasks.items():
            if ex != execution_id or (kind == "trigger" and not task.vertex.is_source):
                continue
            task.mailbox.put_nowait((M_CONTROL, -1, (kind, checkpoint_id, target)))

    async def _run_task(self, key: tuple[str, str, int], task: StreamTask) -> None:
        try:
            await task.run()
        finally:
            self.send(("metrics", [(*key, task.counters.records_in, task.records_out(), None)]))
            self.tasks.pop(key, None)

    def _pusher(self, d: TaskDeployment) -> Any:
        from weir.rpc import GRPC_OPTIONS, weir_pb2, weir_pb2_grpc
        from weir.rpc.auth import aio_channel

        async def push(records: bytes, end: bool) -> None:
            ch = self._jm_channels.get(d.jobmanager_address)
            if ch is None:
                ch = self._jm_channels[d.jobmanager_address] = aio_channel(d.jobmanager_address, GRPC_OPTIONS)
            stub = weir_pb2_grpc.JobManagerServiceStub(ch)
            await stub.PushResults(
                weir_pb2.PushResultsRequest(execution_id=d.execution_id, subtask=d.subtask, records=records, end=end)
            )

        return push

    async def _cancel(self, execution_id: str) -> None:
        victims = [(k, t) for k, (_, t) in self.tasks.items() if k[0] == execution_id]
        for _, t in victims:
            t.cancel()
        for _, t in victims:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self.connections.unregister_execution(execution_id)
        self.send(("canceled", execution_id))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="weir slot worker (started by a TaskManager)")
    p.add_argument("--slot", type=int, required=True)
    p.add_argument("--control", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--advertised-host", default=None)
    p.add_argument("--parent-pid", type=int, required=True)
    p.add_argument("--local-dir", required=True, help="the slot's directory on local disk (RocksDB state)")
    p.add_argument("--state-backend", default="hashmap", choices=["hashmap", "rocksdb"])
    a = p.parse_args(argv)
    die_with_parent(a.parent_pid)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s slot-{a.slot} %(levelname)s %(name)s: %(message)s")
    import gc

    gc.freeze()  # the interpreter's and libraries' objects never need scanning again
    # records are short-lived tuples: the default thresholds (700, 10, 10) ran a young collection every few
    # records of a buffer; state and timers then got rescanned by the older generations (W4: ~18% of the CPU)
    gc.set_threshold(*GC_THRESHOLDS)
    sys.setswitchinterval(SWITCH_INTERVAL)
    os.makedirs(a.local_dir, exist_ok=True)
    worker = Worker(a.slot, a.control, a.host, a.advertised_host or a.host, a.parent_pid, a.local_dir,
                    a.state_backend)
    asyncio.run(worker.run())


if __name__ == "__main__":
    main()
