"""jobmanager: scheduler (pure), registry (pure) and the Dispatcher driven with a fake TaskManagerGateway."""

from __future__ import annotations

import asyncio
import pickle
from collections import Counter

import cloudpickle
import pytest

from jobmanager.dispatcher import Dispatcher, JobSubmissionError
from jobmanager.registry import TaskManagerRegistry
from jobmanager.scheduler import SlotRef, choose_slots, plan_deployments
from weir.datastream import StreamExecutionEnvironment
from weir.datastream.connectors import NumberSequenceSource
from weir.graph.deployment import TaskDeployment
from weir.graph.jobgraph import JobGraph, topology
from weir.rpc.convert import SlotAddress

# ---- helpers ----


def keyed_graph(src_par: int = 2, reduce_par: int = 2) -> JobGraph:
    """source(src_par) -hash-> reduce -> print (reduce_par): two vertices."""
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(src_par)
    (
        env.from_source(NumberSequenceSource(1, 100), source_name="nums")
        .key_by(lambda x: x % 10)
        .reduce(lambda a, b: a + b)
        .set_parallelism(reduce_par)
        .print()
        .set_parallelism(reduce_par)
    )
    return env.get_job_graph("keyed")


def slots_of(tm: str, n: int) -> list[SlotRef]:
    return [SlotRef(tm, f"{tm}:6000", i, f"{tm}:7{i:03d}") for i in range(n)]


def tm_slots(tm: str, n: int) -> list[SlotAddress]:
    return [SlotAddress(i, f"{tm}:7{i:03d}") for i in range(n)]


class FakeGateway:
    def __init__(self, fail_deploy_on: str | None = None) -> None:
        self.deploys: list[tuple[str, str, bytes, list[TaskDeployment]]] = []
        self.cancels: list[tuple[str, str]] = []
        self.fail_deploy_on = fail_deploy_on

    async def deploy(self, address: str, execution_id: str, graph: bytes, deployments: list[TaskDeployment]) -> None:
        self.deploys.append((address, execution_id, graph, list(deployments)))
        if address == self.fail_deploy_on:
            raise ConnectionError(f"TaskManager at {address}: UNAVAILABLE")

    async def cancel(self, address: str, execution_id: str) -> None:
        self.cancels.append((address, execution_id))


def submission(graph: JobGraph) -> tuple[bytes, bytes]:
    return cloudpickle.dumps(graph), pickle.dumps(topology(graph))


def make_dispatcher(tms: dict[str, int], timeout: float = 60.0, gateway: FakeGateway | None = None):
    reg = TaskManagerRegistry()
    for tm, n in tms.items():
        reg.register(tm, f"{tm}:6000", tm_slots(tm, n), pid=1, now=0.0)
    gw = gateway or FakeGateway()
    return Dispatcher(reg, gw, "jm:6123", slot_request_timeout=timeout), reg, gw


async def ended(job) -> None:
    """Wait (on the job's own event, not on a clock) until the job reached its terminal state.

    A failure moves the job to FAILED at once; cancelling the other tasks and releasing the slots may complete
    in a background task."""
    await asyncio.wait_for(job.done.wait(), timeout=5)


def all_tasks(graph: JobGraph) -> list[tuple[str, int]]:
    return [(v.id, i) for v in graph.vertices for i in range(v.parallelism)]


# ---- scheduler ----


def test_choose_slots_spreads_over_taskmanagers():
    free = slots_of("tm0", 3) + slots_of("tm1", 3) + slots_of("tm2", 3)
    got = choose_slots(free, 3)
    assert sorted((s.taskmanager_id, s.index) for s in got) == [("tm0", 0), ("tm1", 0), ("tm2", 0)]
    got = choose_slots(free, 5)
    assert Counter(s.taskmanager_id for s in got) == Counter({"tm0": 2, "tm1": 2, "tm2": 1})
    assert len(set(got)) == 5
    assert choose_slots(free, 9) is not None and len(set(choose_slots(free, 9))) == 9


def test_choose_slots_spreads_with_uneven_free_slots():
    # tm0 has slots 1,2,3 free (0 busy), tm1 only slot 5
    free = [s for s in slots_of("tm0", 4) if s.index != 0] + [SlotRef("tm1", "tm1:6000", 5, "tm1:7005")]
    got = choose_slots(free, 2)
    assert sorted(s.taskmanager_id for s in got) == ["tm0", "tm1"]


def test_choose_slots_none_when_too_few():
    free = slots_of("tm0", 2) + slots_of("tm1", 1)
    assert choose_slots(free, 4) is None
    assert choose_slots([], 1) is None
    assert choose_slots(free, 0) == []


def test_plan_deployments_subtask_i_in_slot_i_and_output_addresses():
    g = keyed_graph(src_par=2, reduce_par=3)
    slots = slots_of("tm0", 2) + slots_of("tm1", 1)
    slots = [slots[0], slots[2], slots[1]]  # slot order as chosen: tm0/0, tm1/0, tm0/1
    plan = plan_deployments(g, "job1", "job1-1", slots, "jm:6123", attempt=4)
    assert set(plan) == {"tm0:6000", "tm1:6000"}
    ds = [d for lst in plan.values() for d in lst]
    assert sorted((d.vertex_id, d.subtask) for d in ds) == sorted(all_tasks(g))
    src, red = g.vertices
    (edge,) = g.edges
    for addr, lst in plan.items():
        for d in lst:
            s = slots[d.subtask]
            assert addr == s.taskmanager_address
            assert d.slot == s.index
            assert (d.job_id, d.execution_id, d.attempt, d.jobmanager_address) == ("job1", "job1-1", 4, "jm:6123")
            if d.vertex_id == src.id:
                assert d.output_addresses == {edge.index: [slots[c].data_address for c in range(3)]}
            else:
                assert d.output_addresses == {}
    assert len(plan["tm0:6000"]) == 3  # src 0 + reduce 0 and 2
    assert len(plan["tm1:6000"]) == 2  # src 1 + reduce 1


def test_plan_deployments_needs_enough_slots():
    g = keyed_graph(2, 3)
    with pytest.raises(ValueError, match="3 slots"):
        plan_deployments(g, "j", "j-1", slots_of("tm0", 2), "jm")


# ---- registry ----


def test_registry_register_heartbeat_expire_remove():
    reg = TaskManagerRegistry()
    reg.register("tm0", "h0:1", tm_slots("tm0", 2), pid=10, now=100.0)
    reg.register("tm1", "h1:1", tm_slots("tm1", 1), pid=11, now=100.0)
    assert reg.total_slots == 3
    assert reg.heartbeat("ghost", [], now=101.0) is False
    assert reg.heartbeat("tm0", [], now=105.0) is True
    assert reg.taskmanagers["tm0"].slots == tm_slots("tm0", 2), "an empty heartbeat keeps the slots"
    assert [tm.id for tm in reg.expired(now=108.0, timeout=5.0)] == ["tm1"]
    assert reg.expired(now=105.0, timeout=5.0) == []  # exactly at the timeout: not yet
    assert reg.heartbeat("tm1", tm_slots("tm1", 4), now=108.0) is True
    assert reg.total_slots == 6
    assert reg.expired(now=108.0, timeout=5.0) == []
    assert reg.remove("tm0").id == "tm0"
    assert reg.remove("tm0") is None
    assert list(reg.taskmanagers) == ["tm1"]


def test_registry_allocate_release_free_slots():
    reg = TaskManagerRegistry()
    reg.register("tm0", "h0:1", tm_slots("tm0", 2), pid=1, now=0)
    reg.register("tm1", "h1:1", tm_slots("tm1", 2) + [SlotAddress(2, "")], pid=2, now=0)
    free = reg.free_slots()
    # a slot without a data address (worker not up yet) is not offered
    assert sorted((s.taskmanager_id, s.index) for s in free) == [("tm0", 0), ("tm0", 1), ("tm1", 0), ("tm1", 1)]
    assert all(s.taskmanager_address == {"tm0": "h0:1", "tm1": "h1:1"}[s.taskmanager_id] for s in free)
    a = [s for s in free if s.index == 0]
    b = [s for s in free if (s.taskmanager_id, s.index) == ("tm1", 1)]
    reg.allocate("jobA", a)
    reg.allocate("jobB", b)
    assert [(s.taskmanager_id, s.index) for s in reg.free_slots()] == [("tm0", 1)]
    reg.release("jobA")
    assert sorted((s.taskmanager_id, s.index) for s in reg.free_slots()) == [("tm0", 0), ("tm0", 1), ("tm1", 0)]
    reg.release("jobB")
    assert len(reg.free_slots()) == 4
    reg.release("unknown")  # no-op
    assert len(reg.free_slots()) == 4


# ---- dispatcher ----


def test_submit_rejects_bad_topology():
    async def main():
        d, _, _ = make_dispatcher({"tm0": 1})
        with pytest.raises(JobSubmissionError):
            d.submit("x", b"g", b"not a pickle")
        with pytest.raises(JobSubmissionError):
            d.submit("x", b"g", pickle.dumps({"not": "a graph"}))
        assert d.jobs == {}

    asyncio.run(main())


def test_submit_schedule_deploy_finish():
    g = keyed_graph(2, 2)
    graph_bytes, topo_bytes = submission(g)

    async def main():
        d, reg, gw = make_dispatcher({"tm0": 2, "tm1": 2})
        job = d.submit("my job", graph_bytes, topo_bytes)
        assert job.state == "CREATED"
        assert job.name == "my job"
        assert d.jobs[job.job_id] is job
        assert gw.deploys == []

        await d.schedule()
        assert job.state == "RUNNING"
        assert len(reg.free_slots()) == 4 - g.slots_needed
        # one slot per TaskManager: subtask 0 and 1 on different TaskManagers
        assert {a for a, *_ in gw.deploys} == {"tm0:6000", "tm1:6000"}
        deployed = [d_ for _, eid, gb, ds in gw.deploys for d_ in ds]
        assert all(eid == job.execution_id for _, eid, _, _ in gw.deploys)
        assert all(gb == graph_bytes for _, _, gb, _ in gw.deploys)
        assert sorted((t.vertex_id, t.subtask) for t in deployed) == sorted(all_tasks(g))
        assert all(t.job_id == job.job_id and t.jobmanager_address == "jm:6123" for t in deployed)

        # a second schedule does not redeploy a RUNNING job
        await d.schedule()
        assert len(gw.deploys) == 2

        tasks = all_tasks(g)
        for vid, i in tasks[:-1]:
            await d.task_state(job.execution_id, vid, i, "FINISHED", "")
            assert job.state == "RUNNING"
        assert not job.done.is_set()
        vid, i = tasks[-1]
        await d.task_state(job.execution_id, vid, i, "FINISHED", "")
        assert job.state == "FINISHED"
        assert job.failure_cause == ""
        assert job.done.is_set()
        assert len(reg.free_slots()) == 4
        assert gw.cancels == []

    asyncio.run(main())


def test_failed_task_fails_job_and_cancels_the_others():
    g = keyed_graph(2, 2)

    async def main():
        d, reg, gw = make_dispatcher({"tm0": 1, "tm1": 1})
        job = d.submit("j", *submission(g))
        await d.schedule()
        assert job.state == "RUNNING"
        src, red = g.vertices
        await d.task_state(job.execution_id, src.id, 0, "RUNNING", "")
        await d.task_state(job.execution_id, red.id, 1, "FAILED", "Traceback ...\nZeroDivisionError: boom")
        assert job.state == "FAILED"
        assert "ZeroDivisionError: boom" in job.failure_cause
        await ended(job)
        assert job.state == "FAILED"
        assert "ZeroDivisionError: boom" in job.failure_cause
        assert sorted(gw.cancels) == [("tm0:6000", job.execution_id), ("tm1:6000", job.execution_id)]
        assert len(reg.free_slots()) == 2
        # late reports of a terminal job change nothing
        for vid, i in all_tasks(g):
            await d.task_state(job.execution_id, vid, i, "FINISHED", "")
        assert job.state == "FAILED"
        assert len(gw.cancels) == 2

    asyncio.run(main())


def test_reports_for_unknown_execution_are_ignored():
    g = keyed_graph(1, 1)

    async def main():
        d, _, _ = make_dispatcher({"tm0": 1})
        job = d.submit("j", *submission(g))
        await d.schedule()
        await d.task_state("stale-execution", g.vertices[0].id, 0, "FAILED", "old")
        assert job.state == "RUNNING"

    asyncio.run(main())


def test_not_enough_slots_waits_then_fails_after_timeout():
    g = keyed_graph(3, 3)

    async def main():
        d, reg, gw = make_dispatcher({"tm0": 1, "tm1": 1}, timeout=3600.0)
        job = d.submit("wide", *submission(g))
        await d.schedule()
        assert job.state == "CREATED"
        assert gw.deploys == []
        assert len(reg.free_slots()) == 2

        # the same situation once the slot request timeout has passed
        d.slot_request_timeout = 0.0
        job.submitted_at -= 1.0
        await d.schedule()
        assert job.state == "FAILED"
        assert job.done.is_set()
        msg = job.failure_cause
        assert "3 slot(s)" in msg
        assert "2 free of 2" in msg
        assert "2 TaskManager(s)" in msg
        assert gw.deploys == [] and gw.cancels == []

    asyncio.run(main())


def test_waiting_job_is_deployed_when_slots_become_free():
    g = keyed_graph(2, 2)

    async def main():
        d, reg, gw = make_dispatcher({"tm0": 3})
        first = d.submit("first", *submission(g))
        second = d.submit("second", *submission(g))
        await d.schedule()
        assert (first.state, second.state) == ("RUNNING", "CREATED")
        assert len(reg.free_slots()) == 1
        for vid, i in all_tasks(g):
            await d.task_state(first.execution_id, vid, i, "FINISHED", "")
        assert first.state == "FINISHED"
        await d.schedule()
        assert second.state == "RUNNING"
        assert second.execution_id != first.execution_id
        assert len(reg.free_slots()) == 1

        # a new TaskManager also unblocks a waiting job
        third = d.submit("third", *submission(g))
        await d.schedule()
        assert third.state == "CREATED"
        reg.register("tm9", "tm9:6000", tm_slots("tm9", 1), pid=9, now=0.0)
        await d.schedule()
        assert third.state == "RUNNING"
        assert {s.taskmanager_id for s in third.slots} == {"tm0", "tm9"}

    asyncio.run(main())


def test_cancel_created_job():
    g = keyed_graph(4, 4)

    async def main():
        d, _, gw = make_dispatcher({"tm0": 1})
        job = d.submit("j", *submission(g))
        await d.schedule()
        assert job.state == "CREATED"
        assert (await d.cancel(job.job_id)) is job
        assert job.state == "CANCELED"
        assert job.done.is_set()
        assert gw.cancels == [] and gw.deploys == []
        await d.schedule()
        assert job.state == "CANCELED"
        with pytest.raises(KeyError):
            await d.cancel("no-such-job")

    asyncio.run(main())


def test_cancel_running_job():
    g = keyed_graph(2, 2)

    async def main():
        d, reg, gw = make_dispatcher({"tm0": 1, "tm1": 1})
        job = d.submit("j", *submission(g))
        await d.schedule()
        await d.cancel(job.job_id)
        assert job.state == "CANCELED"
        assert sorted(gw.cancels) == [("tm0:6000", job.execution_id), ("tm1:6000", job.execution_id)]
        assert len(reg.free_slots()) == 2
        assert job.done.is_set()
        # cancelling a terminal job changes nothing
        await d.cancel(job.job_id)
        assert job.state == "CANCELED" and len(gw.cancels) == 2
        # tasks reporting FINISHED after the cancel do not turn it FINISHED
        for vid, i in all_tasks(g):
            await d.task_state(job.execution_id, vid, i, "FINISHED", "")
        assert job.state == "CANCELED"

    asyncio.run(main())


def test_taskmanager_lost_fails_job_naming_it():
    g = keyed_graph(2, 2)

    async def main():
        d, reg, gw = make_dispatcher({"tm0": 1, "tm1": 1})
        job = d.submit("j", *submission(g))
        await d.schedule()
        assert {s.taskmanager_id for s in job.slots} == {"tm0", "tm1"}
        await d.taskmanager_lost("tm1", "no heartbeat for 10 s")
        assert job.state == "FAILED"
        await ended(job)
        assert job.state == "FAILED"
        assert "tm1" in job.failure_cause and "no heartbeat" in job.failure_cause
        # only the surviving TaskManager is asked to cancel
        assert gw.cancels == [("tm0:6000", job.execution_id)]
        assert list(reg.taskmanagers) == ["tm0"]
        assert len(reg.free_slots()) == 1
        await d.taskmanager_lost("tm1", "again")  # unknown now: no-op
        assert len(gw.cancels) == 1

    asyncio.run(main())


def test_taskmanager_lost_does_not_touch_jobs_elsewhere():
    g = keyed_graph(1, 1)

    async def main():
        d, reg, gw = make_dispatcher({"tm0": 1})
        job = d.submit("j", *submission(g))
        await d.schedule()
        reg.register("tm1", "tm1:6000", tm_slots("tm1", 1), pid=2, now=0.0)
        await d.taskmanager_lost("tm1", "killed")
        assert job.state == "RUNNING"
        assert gw.cancels == []

    asyncio.run(main())


def test_deployment_failure_fails_the_job():
    g = keyed_graph(2, 2)

    async def main():
        d, reg, gw = make_dispatcher({"tm0": 1, "tm1": 1}, gateway=FakeGateway(fail_deploy_on="tm1:6000"))
        job = d.submit("j", *submission(g))
        await d.schedule()
        assert job.state == "FAILED"
        await ended(job)
        assert job.state == "FAILED"
        assert "deployment" in job.failure_cause and "tm1:6000" in job.failure_cause
        # the unreachable TaskManager is declared lost at once; the survivor's slot is free again
        assert [s.taskmanager_address for s in reg.free_slots()] == ["tm0:6000"]
        assert {a for a, _ in gw.cancels} == {"tm0:6000"}

    asyncio.run(main())


def test_job_info_counts_task_states():
    g = keyed_graph(2, 2)

    async def main():
        d, _, _ = make_dispatcher({"tm0": 2})
        job = d.submit("j", *submission(g))
        await d.schedule()
        src, red = g.vertices
        await d.task_state(job.execution_id, src.id, 0, "RUNNING", "")
        await d.task_state(job.execution_id, src.id, 1, "FINISHED", "")
        info = job.info()
        assert info.state == "RUNNING" and info.slots_needed == 2
        vi = {v.vertex_id: v for v in info.vertices}
        assert (vi[src.id].running, vi[src.id].finished) == (1, 1)
        assert (vi[red.id].running, vi[red.id].finished) == (0, 0)

    asyncio.run(main())
