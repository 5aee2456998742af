"""The Dispatcher's checkpoint and restart flow, driven with a fake TaskManagerGateway and file:// storage in
tmp_path: trigger, acknowledgements, metadata, retention, failure, restart and restore, commit-final."""

from __future__ import annotations

import asyncio
import pickle
import time

import cloudpickle
import pytest

from jobmanager.checkpoint.store import metadata_path, read_metadata
from jobmanager.dispatcher import Dispatcher
from jobmanager.ha import HAStore
from jobmanager.registry import TaskManagerRegistry
from state.filesystem import FileSystemCheckpointStorage
from state.keygroups import key_group_range
from state.snapshot import KeyedStateHandle, StateFile
from weir.datastream import StreamExecutionEnvironment
from weir.datastream.connectors import NumberSequenceSource
from weir.graph.deployment import OperatorSubtaskState, TaskDeployment, TaskStateSnapshot
from weir.graph.jobgraph import JobGraph, topology
from weir.rpc.convert import SlotAddress

# ---- helpers ----


class Gateway:
    """Records every call; never fails."""

    def __init__(self) -> None:
        self.deploys: list[tuple[str, str, list[TaskDeployment]]] = []
        self.cancels: list[tuple[str, str]] = []
        self.controls: list[tuple[str, str, str, int, str]] = []

    async def deploy(self, address: str, execution_id: str, graph: bytes, deployments: list[TaskDeployment]) -> None:
        self.deploys.append((address, execution_id, list(deployments)))

    async def cancel(self, address: str, execution_id: str) -> None:
        self.cancels.append((address, execution_id))

    async def checkpoint_control(self, address: str, execution_id: str, kind: str, checkpoint_id: int,
                                 savepoint_target: str = "") -> None:
        self.controls.append((address, execution_id, kind, checkpoint_id, savepoint_target))

    def kinds(self, execution_id: str | None = None) -> list[tuple[str, int]]:
        """(kind, checkpoint id) of the controls sent, once per kind and id, in order."""
        out: list[tuple[str, int]] = []
        for _, eid, kind, cid, _ in self.controls:
            if (execution_id is None or eid == execution_id) and (kind, cid) not in out:
                out.append((kind, cid))
        return out

    def deployments(self, execution_id: str) -> list[TaskDeployment]:
        return [t for _, eid, ds in self.deploys if eid == execution_id for t in ds]


def keyed_graph(conf: dict[str, str]) -> JobGraph:
    """source(2) -hash-> reduce+print(2), with ``conf`` in the job's configuration."""
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(2)
    (
        env.from_source(NumberSequenceSource(1, 100), source_name="nums")
        .key_by(lambda x: x % 10)
        .reduce(lambda a, b: a + b)
        .print()
    )
    g = env.get_job_graph("keyed")
    g.config.update(conf)
    return g


def config(tmp_path, **extra: str | None) -> dict[str, str]:
    """Checkpoints every second to tmp_path, fixed-delay restarts after 0 ms; ``extra`` overrides (None: remove)."""
    conf = {
        "execution.checkpointing.interval": "1000",
        "state.checkpoints.dir": "file://" + str(tmp_path / "checkpoints"),
        "restart-strategy.type": "fixed-delay",
        "restart-strategy.fixed-delay.attempts": "10",
        "restart-strategy.fixed-delay.delay": "0 ms",
    }
    conf.update(extra)
    return {k: v for k, v in conf.items() if v is not None}


def submission(g: JobGraph) -> tuple[bytes, bytes]:
    return cloudpickle.dumps(g), pickle.dumps(topology(g))


def make(tmp_path, **extra: str | None):
    reg = TaskManagerRegistry()
    for tm in ("tm0", "tm1"):
        reg.register(tm, f"{tm}:6000", [SlotAddress(i, f"{tm}:7{i:03d}") for i in range(2)], pid=1, now=0.0)
    gw = Gateway()
    d = Dispatcher(reg, gw, "jm:6123", slot_request_timeout=3600.0)
    job = d.submit("j", *submission(keyed_graph(config(tmp_path, **extra))))
    storage = FileSystemCheckpointStorage("file://" + str(tmp_path / "checkpoints"))
    return d, gw, job, storage


class Clock:
    """Ticks far enough apart that every interval has elapsed (the coordinator started at time.time())."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        self.now += 10.0
        return self.now


def tasks(job) -> list[tuple[str, int]]:
    return [(v.id, i) for v in job.topology.vertices for i in range(v.parallelism)]


def uids(job, vertex_id: str) -> list[str]:
    return [op.uid or f"op{op.transformation_id}" for op in job.topology.vertex(vertex_id).operators]


async def report_all(d: Dispatcher, job, state: str) -> None:
    for vid, i in tasks(job):
        await d.task_state(job.execution_id, vid, i, state, "")


def snapshot(storage, job, cid: int, vid: str, i: int) -> bytes:
    """Write subtask (vid, i)'s state files of checkpoint ``cid`` and return its acknowledgement: per operator a
    keyed handle for its key groups and some operator state."""
    v = job.topology.vertex(vid)
    kgs = key_group_range(v.max_parallelism, v.parallelism, i)
    ops = {}
    for uid in uids(job, vid):
        path = f"{job.job_id}/chk-{cid}/{vid}-{i}/{uid}/state"
        data = f"checkpoint {cid} of {vid}/{i}/{uid}".encode()
        storage.write(path, data)
        h = KeyedStateHandle("hashmap", (kgs.start, kgs.stop), v.max_parallelism, [StateFile(path, len(data), False)])
        ops[uid] = OperatorSubtaskState([h], pickle.dumps((uid, i, cid)))
    return pickle.dumps(TaskStateSnapshot(ops))


async def ack_all(d: Dispatcher, storage, job, cid: int) -> None:
    for vid, i in tasks(job):
        await d.checkpoint_report(job.execution_id, vid, i, cid, True, snapshot(storage, job, cid, vid, i), "")
        await settle(d)  # checkpoint control calls run in the background


async def checkpoint(d: Dispatcher, gw: Gateway, storage, job, clock: Clock) -> int:
    """Trigger the next checkpoint and acknowledge it from every task; its id."""
    before = len(gw.controls)
    await d._checkpoint_tick(job, clock())
    await settle(d)  # checkpoint control calls run in the background
    triggers = [c for c in gw.controls[before:] if c[2] == "trigger"]
    assert triggers, "no checkpoint was triggered"
    cid = triggers[0][3]
    await ack_all(d, storage, job, cid)
    return cid


async def settle(d: Dispatcher) -> None:
    """Let the Dispatcher's background work (cancel, restart after a 0 s delay) run to its end."""
    for _ in range(100):
        if not d._background:
            return
        await asyncio.gather(*list(d._background))
    raise AssertionError("background tasks never settled")


async def running(d: Dispatcher, job) -> None:
    await d.schedule()
    assert job.state == "RUNNING"
    await report_all(d, job, "RUNNING")


# ---- triggering ----


def test_checkpoint_triggered_only_when_all_tasks_running(tmp_path):
    async def main():
        d, gw, job, _ = make(tmp_path)
        clock = Clock()
        await d._checkpoint_tick(job, clock())  # not deployed yet
        await settle(d)  # checkpoint control calls run in the background
        await d.schedule()
        assert job.state == "RUNNING" and job.checkpoint_config.interval_ms == 1000
        await d._checkpoint_tick(job, clock())
        await settle(d)  # checkpoint control calls run in the background
        assert gw.controls == [], "tasks are still DEPLOYING"
        ts = tasks(job)
        for vid, i in ts[:-1]:
            await d.task_state(job.execution_id, vid, i, "RUNNING", "")
        await d._checkpoint_tick(job, clock())
        await settle(d)  # checkpoint control calls run in the background
        assert gw.controls == []
        await d.task_state(job.execution_id, *ts[-1], "RUNNING", "")
        await d._checkpoint_tick(job, clock())
        await settle(d)  # checkpoint control calls run in the background
        assert sorted((a, eid, k, c) for a, eid, k, c, _ in gw.controls) == [
            ("tm0:6000", job.execution_id, "trigger", 1),
            ("tm1:6000", job.execution_id, "trigger", 1),
        ]
        # max one pending: no second trigger before it completes
        await d._checkpoint_tick(job, clock())
        await settle(d)  # checkpoint control calls run in the background
        assert gw.kinds() == [("trigger", 1)]

    asyncio.run(main())


def test_no_checkpoints_without_an_interval(tmp_path):
    async def main():
        d, gw, job, _ = make(tmp_path, **{"execution.checkpointing.interval": "0"})
        await running(d, job)
        await d._checkpoint_tick(job, Clock()())
        await settle(d)  # checkpoint control calls run in the background
        assert gw.controls == []

    asyncio.run(main())


def test_bad_interval_is_refused_at_submission(tmp_path):
    from jobmanager.dispatcher import JobSubmissionError

    d = Dispatcher(TaskManagerRegistry(), Gateway(), "jm")
    g = keyed_graph(config(tmp_path, **{"execution.checkpointing.interval": "often"}))
    with pytest.raises(JobSubmissionError, match="execution.checkpointing.interval: 'often'"):
        d.submit("j", b"", pickle.dumps(topology(g)))


# ---- completion ----


def test_acks_write_metadata_then_complete_is_sent(tmp_path):
    async def main():
        d, gw, job, storage = make(tmp_path)
        await running(d, job)
        await d._checkpoint_tick(job, Clock()())
        await settle(d)  # checkpoint control calls run in the background
        ts = tasks(job)
        for vid, i in ts[:-1]:
            await d.checkpoint_report(job.execution_id, vid, i, 1, True, snapshot(storage, job, 1, vid, i), "")
            await settle(d)  # checkpoint control calls run in the background
        assert not storage.exists(metadata_path(job.job_id, 1)), "metadata only when every task acknowledged"
        assert ("complete", 1) not in gw.kinds()
        # an ack from another execution does not count
        await d.checkpoint_report("stale", *ts[-1], 1, True, snapshot(storage, job, 1, *ts[-1]), "")
        await settle(d)  # checkpoint control calls run in the background
        assert job.completed == []
        await d.checkpoint_report(job.execution_id, *ts[-1], 1, True, snapshot(storage, job, 1, *ts[-1]), "")
        await settle(d)  # checkpoint control calls run in the background

        md = read_metadata(storage, metadata_path(job.job_id, 1))
        assert md.checkpoint_id == 1 and md.job_id == job.job_id and not md.savepoint
        assert md.storage_uri == job.storage_uri
        src, sink = job.topology.vertices
        for v in (src, sink):
            for uid in uids(job, v.id):
                assert [pickle.loads(s.operator) for s in md.operators[uid]] == [(uid, 0, 1), (uid, 1, 1)]
        assert [m.checkpoint_id for m in job.completed] == [1]
        assert job.checkpoints_completed == 1
        assert gw.kinds() == [("trigger", 1), ("complete", 1)]
        assert {a for a, _, k, _, _ in gw.controls if k == "complete"} == {"tm0:6000", "tm1:6000"}
        info = job.info()
        assert (info.checkpoints_completed, info.last_checkpoint_id) == (1, 1)

    asyncio.run(main())


def test_retained_count_honoured_older_discarded(tmp_path):
    async def main():
        d, gw, job, storage = make(tmp_path, **{"state.checkpoints.num-retained": "2"})
        await running(d, job)
        clock = Clock()
        assert [await checkpoint(d, gw, storage, job, clock) for _ in range(3)] == [1, 2, 3]
        assert [m.checkpoint_id for m in job.completed] == [2, 3]
        assert storage.list(f"{job.job_id}/chk-1") == []
        for cid in (2, 3):
            assert storage.exists(metadata_path(job.job_id, cid))
            assert len(storage.list(f"{job.job_id}/chk-{cid}")) == 1 + 3 * 2  # metadata + 3 uids x 2 subtasks
        assert gw.kinds() == [("trigger", 1), ("complete", 1), ("trigger", 2), ("complete", 2),
                              ("trigger", 3), ("complete", 3)]

    asyncio.run(main())


def test_default_retains_one(tmp_path):
    async def main():
        d, gw, job, storage = make(tmp_path)
        await running(d, job)
        clock = Clock()
        await checkpoint(d, gw, storage, job, clock)
        await checkpoint(d, gw, storage, job, clock)
        assert [m.checkpoint_id for m in job.completed] == [2]
        assert storage.list(f"{job.job_id}/chk-1") == []
        assert storage.exists(metadata_path(job.job_id, 2))

    asyncio.run(main())


def test_decline_aborts_and_beyond_tolerance_restarts(tmp_path):
    async def main():
        d, gw, job, storage = make(tmp_path, **{"execution.checkpointing.tolerable-failed-checkpoints": "1"})
        await running(d, job)
        clock = Clock()
        await d._checkpoint_tick(job, clock())
        await settle(d)  # checkpoint control calls run in the background
        vid, i = tasks(job)[0]
        await d.checkpoint_report(job.execution_id, vid, i, 1, False, b"", "disk full")
        await settle(d)  # checkpoint control calls run in the background
        assert ("abort", 1) in gw.kinds()
        assert job.state == "RUNNING" and job.checkpoints_failed == 1
        await d._checkpoint_tick(job, clock())
        await settle(d)  # checkpoint control calls run in the background
        await d.checkpoint_report(job.execution_id, vid, i, 2, False, b"", "disk full")
        assert job.state == "RESTARTING"
        assert "tolerable number of failed checkpoints" in job.last_failure
        assert job.completed == []

    asyncio.run(main())


def test_task_finishing_aborts_the_pending_checkpoint(tmp_path):
    async def main():
        d, gw, job, storage = make(tmp_path)
        await running(d, job)
        clock = Clock()
        await d._checkpoint_tick(job, clock())
        await settle(d)  # checkpoint control calls run in the background
        src = job.topology.vertices[0]
        await d.task_state(job.execution_id, src.id, 0, "FINISHED", "")
        await settle(d)  # checkpoint control calls run in the background
        assert ("abort", 1) in gw.kinds()
        await ack_all(d, storage, job, 1)
        assert job.completed == [] and not storage.exists(metadata_path(job.job_id, 1))
        await d._checkpoint_tick(job, clock())
        await settle(d)  # checkpoint control calls run in the background
        assert [k for k in gw.kinds() if k[0] == "trigger"] == [("trigger", 1)]

    asyncio.run(main())


# ---- failure, restart, restore ----


def test_task_failure_restarts_from_the_latest_checkpoint(tmp_path):
    async def main():
        d, gw, job, storage = make(tmp_path)
        await running(d, job)
        clock = Clock()
        await checkpoint(d, gw, storage, job, clock)
        await checkpoint(d, gw, storage, job, clock)
        first = job.execution_id
        src, sink = job.topology.vertices

        await d.task_state(first, sink.id, 1, "FAILED", "Traceback\nValueError: boom")
        assert job.state == "RESTARTING"
        assert job.restarts == 1 and "boom" in job.last_failure
        await settle(d)
        assert job.state == "CREATED"
        assert sorted(gw.cancels) == [("tm0:6000", first), ("tm1:6000", first)]

        await d.schedule()
        assert job.state == "RUNNING"
        second = job.execution_id
        assert second != first
        deployed = gw.deployments(second)
        assert sorted((t.vertex_id, t.subtask) for t in deployed) == sorted(tasks(job))
        for t in deployed:
            assert t.restore is not None and t.restore.checkpoint_id == 2
            assert t.restore.storage_uri == job.storage_uri
            v = job.topology.vertex(t.vertex_id)
            mine = key_group_range(v.max_parallelism, v.parallelism, t.subtask)
            assert set(t.restore.operators) == set(uids(job, t.vertex_id))
            for uid, states in t.restore.operators.items():
                # every old subtask's operator state, only the keyed handles of this subtask's key groups
                assert [pickle.loads(s.operator) for s in states] == [(uid, 0, 2), (uid, 1, 2)]
                handles = [h for s in states for h in s.keyed]
                assert [h.key_groups for h in handles] == [(mine.start, mine.stop)]
                assert handles[0].files[0].path == f"{job.job_id}/chk-2/{t.vertex_id}-{t.subtask}/{uid}/state"
            assert t.checkpointing is not None and t.checkpointing.storage_uri == job.storage_uri

        # a late report of the failed execution changes nothing
        await d.task_state(first, src.id, 0, "FAILED", "late")
        await d.checkpoint_report(first, src.id, 0, 3, True, b"", "")
        await settle(d)  # checkpoint control calls run in the background
        assert job.state == "RUNNING" and job.restarts == 1

        # checkpoint ids continue across the restart
        await report_all(d, job, "RUNNING")
        assert await checkpoint(d, gw, storage, job, clock) == 3
        assert gw.kinds(second)[-1] == ("complete", 3)

    asyncio.run(main())


def test_restart_without_checkpoints_deploys_without_restore(tmp_path):
    async def main():
        d, gw, job, _ = make(tmp_path)
        await running(d, job)
        await d.task_state(job.execution_id, *tasks(job)[0], "FAILED", "boom")
        await settle(d)
        await d.schedule()
        assert job.state == "RUNNING" and job.attempt == 2
        assert all(t.restore is None for t in gw.deployments(job.execution_id))

    asyncio.run(main())


def test_restore_falls_back_to_the_previous_checkpoint_when_a_file_is_truncated(tmp_path):
    async def main():
        d, gw, job, storage = make(tmp_path, **{"state.checkpoints.num-retained": "2"})
        await running(d, job)
        clock = Clock()
        await checkpoint(d, gw, storage, job, clock)
        await checkpoint(d, gw, storage, job, clock)
        victim = job.completed[-1].state_files()[3].path
        assert "/chk-2/" in victim
        storage.write(victim, storage.read(victim)[:-2])

        await d.task_state(job.execution_id, *tasks(job)[0], "FAILED", "boom")
        await settle(d)
        await d.schedule()
        assert job.state == "RUNNING"
        assert {t.restore.checkpoint_id for t in gw.deployments(job.execution_id)} == {1}
        assert [m.checkpoint_id for m in job.completed] == [1]

    asyncio.run(main())


def test_restore_fails_naming_the_file_when_no_checkpoint_is_left(tmp_path):
    async def main():
        d, gw, job, storage = make(tmp_path)
        await running(d, job)
        await checkpoint(d, gw, storage, job, Clock())
        victim = job.completed[-1].state_files()[0].path
        storage.write(victim, b"")

        await d.task_state(job.execution_id, *tasks(job)[0], "FAILED", "boom")
        await settle(d)
        deploys = len(gw.deploys)
        await d.schedule()
        assert job.state == "FAILED"
        assert job.done.is_set()
        assert storage.uri(victim) in job.failure_cause
        assert "truncated" in job.failure_cause
        assert len(gw.deploys) == deploys, "nothing deployed"

    asyncio.run(main())


def test_restart_attempts_exhausted_fails_the_job(tmp_path):
    async def main():
        d, gw, job, _ = make(tmp_path, **{"restart-strategy.fixed-delay.attempts": "1"})
        await running(d, job)
        await d.task_state(job.execution_id, *tasks(job)[0], "FAILED", "first")
        await settle(d)
        await running(d, job)
        await d.task_state(job.execution_id, *tasks(job)[0], "FAILED", "second")
        assert job.state == "FAILED"
        await settle(d)
        assert job.done.is_set() and "second" in job.failure_cause

    asyncio.run(main())


def test_default_restart_strategy_with_checkpointing_restarts_without_fails(tmp_path):
    no_strategy = {k: None for k in config(tmp_path) if k.startswith("restart-strategy")}

    async def main():
        d, gw, job, _ = make(tmp_path, **no_strategy)
        other = d.submit("no checkpoints", *submission(keyed_graph({
            **config(tmp_path, **no_strategy), "execution.checkpointing.interval": "0"})))
        await running(d, job)
        await running(d, other)
        job.restart.delay = 0.0  # the default strategy (fixed-delay, unlimited) without its 1 s delay
        await d.task_state(job.execution_id, *tasks(job)[0], "FAILED", "boom")
        assert job.state == "RESTARTING"
        await d.task_state(other.execution_id, *tasks(other)[0], "FAILED", "boom")
        assert other.state == "FAILED"
        await settle(d)
        assert (job.state, other.state) == ("CREATED", "FAILED")

    asyncio.run(main())


# ---- high availability ----


def test_completed_checkpoints_go_to_the_ha_store_and_a_new_dispatcher_resumes(tmp_path):
    async def main():
        d, gw, job, storage = make(tmp_path)
        ha = HAStore(FileSystemCheckpointStorage("file://" + str(tmp_path / "ha")))
        d.ha = ha
        ha.save_submission(job.job_id, job.name, job.graph_bytes, pickle.dumps(job.topology), None, False)
        await running(d, job)
        clock = Clock()
        await checkpoint(d, gw, storage, job, clock)
        (rec,) = ha.recover()
        assert [m.checkpoint_id for m in rec.checkpoints] == [1]

        # a second JobManager on the same HA directory
        reg = TaskManagerRegistry()
        reg.register("tm9", "tm9:6000", [SlotAddress(i, f"tm9:7{i:03d}") for i in range(2)], pid=1, now=0.0)
        gw2 = Gateway()
        d2 = Dispatcher(reg, gw2, "jm2:6123", slot_request_timeout=3600.0)
        d2.recover(ha.recover())
        job2 = d2.jobs[job.job_id]
        await d2.schedule()
        assert job2.state == "RUNNING"
        assert {t.restore.checkpoint_id for t in gw2.deployments(job2.execution_id)} == {1}

        await d.cancel(job.job_id)
        assert ha.recover() == []

    asyncio.run(main())


# ---- commit-final ----


def test_commit_final_sent_once_every_task_is_finished_or_finishing(tmp_path):
    async def main():
        d, gw, job, _ = make(tmp_path)
        await running(d, job)
        src, sink = job.topology.vertices
        await d.task_state(job.execution_id, src.id, 0, "FINISHED", "")
        await d.task_state(job.execution_id, src.id, 1, "FINISHED", "")
        await d.task_state(job.execution_id, sink.id, 0, "FINISHING", "")
        assert ("commit-final", 0) not in gw.kinds(), "sink 1 is still running"
        await d.task_state(job.execution_id, sink.id, 1, "FINISHING", "")
        finals = [c for c in gw.controls if c[2] == "commit-final"]
        assert sorted(a for a, *_ in finals) == ["tm0:6000", "tm1:6000"]
        assert all(eid == job.execution_id for _, eid, *_ in finals)
        await d.task_state(job.execution_id, sink.id, 0, "FINISHED", "")
        assert job.state == "RUNNING"
        await d.task_state(job.execution_id, sink.id, 1, "FINISHED", "")
        assert job.state == "FINISHED"
        assert len([c for c in gw.controls if c[2] == "commit-final"]) == 2, "sent once (to each TaskManager)"

    asyncio.run(main())


def test_commit_final_not_sent_when_a_task_fails_before(tmp_path):
    async def main():
        d, gw, job, _ = make(tmp_path)
        await running(d, job)
        src, sink = job.topology.vertices
        await d.task_state(job.execution_id, sink.id, 0, "FINISHING", "")
        await d.task_state(job.execution_id, sink.id, 1, "FINISHING", "")
        await d.task_state(job.execution_id, src.id, 0, "FINISHED", "")
        await d.task_state(job.execution_id, src.id, 1, "FAILED", "boom")
        assert job.state == "RESTARTING"
        await settle(d)
        assert ("commit-final", 0) not in gw.kinds()

    asyncio.run(main())


# ---- savepoints ----


def test_savepoint_writes_metadata_to_its_target(tmp_path):
    async def main():
        d, gw, job, storage = make(tmp_path)
        await running(d, job)
        target = "file://" + str(tmp_path / "sp")
        fut = asyncio.ensure_future(d.trigger_savepoint(job.job_id, target))
        for _ in range(10):
            await asyncio.sleep(0)
        assert gw.kinds() == [("trigger", 1)]
        assert {c[4] for c in gw.controls} == {target}
        await ack_all(d, storage, job, 1)
        assert await fut == target
        sp = FileSystemCheckpointStorage(target)
        md = read_metadata(sp, "_metadata")
        assert md.savepoint and md.checkpoint_id == 1
        assert job.completed == [], "a savepoint is not a retained checkpoint"

    asyncio.run(main())
