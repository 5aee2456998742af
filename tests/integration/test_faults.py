"""Faults: a SIGKILLed TaskManager (no orphans, a clear cause) and a slow sink (backpressure, bounded memory)."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest

from client.gateway import JobManagerClient
from client.local_cluster import LocalCluster
from tests.integration.procs import alive, children, rss_bytes, wait_for
from weir.datastream import StreamExecutionEnvironment
from weir.datastream.connectors import NumberSequenceSource, Sink, SinkWriter
from weir.datastream.execution import ExecutionContext, set_context

pytestmark = pytest.mark.integration


@pytest.fixture
def own_cluster(tmp_path: Any) -> Any:
    c = LocalCluster(taskmanagers=2, slots=1, heartbeat_timeout=2, heartbeat_interval=0.3,
                     log_dir=str(tmp_path / "logs"))
    c.start()
    set_context(ExecutionContext(jobmanager_address=c.address))
    try:
        yield c
    finally:
        set_context(None)
        c.stop()


def test_killed_taskmanager_fails_the_job_and_leaves_no_orphans(own_cluster: LocalCluster) -> None:
    jm = JobManagerClient(own_cluster.address)
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(2)
    (env.from_source(NumberSequenceSource(1, 10**10), None, "endless")
     .key_by(lambda x: x % 100).reduce(lambda a, b: a + b).add_sink(lambda x: None))
    job_id = env.execute_async("victim").get_job_id()
    wait_for(lambda: any(v.records_out > 0 for v in jm.get_job(job_id).vertices), 20, "records to flow")

    victim = own_cluster.taskmanager_procs[0]
    workers = children(victim.pid)
    assert workers, "a TaskManager runs its slots as child processes"
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    wait_for(lambda: not any(alive(w) for w in workers), 10, "the killed TaskManager's workers to exit")

    info = wait_for(lambda: (i := jm.get_job(job_id)).is_terminal and i, 30, "the job to fail")
    assert info.state == "FAILED"
    cause = info.failure_cause
    assert "lost" in cause or "exited" in cause, cause
    # the JobManager declares the TaskManager lost on heartbeat timeout
    wait_for(lambda: len(jm.overview().taskmanagers) == 1, 15, "the TaskManager to be declared lost")
    jm.close()


class SlowWriter(SinkWriter):
    def write_batch(self, values: list[Any]) -> None:
        time.sleep(0.01 * len(values) / 1024)  # about 100,000 records/s at most


class SlowSink(Sink):
    def create_writer(self, ctx: Any) -> SinkWriter:
        return SlowWriter()


def test_slow_sink_backpressures_the_source_and_memory_stays_bounded(cluster: LocalCluster, jm: Any,
                                                                      on_cluster: str) -> None:
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(2)
    # 1 KiB records: without backpressure the fast source would queue gigabytes within seconds
    (env.from_source(NumberSequenceSource(1, 10**9), None, "fast")
     .map(lambda x: "x" * 1024).rebalance().sink_to(SlowSink()))
    client = env.execute_async("backpressure")
    job_id = client.get_job_id()
    try:
        def counts() -> tuple[int, int]:
            v = jm.get_job(job_id).vertices
            return v[0].records_out, v[1].records_in

        wait_for(lambda: counts()[1] >= 200_000, 60, "the slow sink to consume 200,000 records")
        produced, consumed = counts()
        # in flight: credits (4 buffers of 1,024 per channel, 4 channels) + pending output + metric lag
        assert produced - consumed < 150_000, (produced, consumed)
        workers = [w for tm in cluster.taskmanager_procs for w in children(tm.pid)]
        rss = {w: rss_bytes(w) for w in workers}
        assert max(rss.values()) < 250 * 2**20, rss
    finally:
        client.cancel()
    assert jm.get_job(job_id).state == "CANCELED"


def test_killed_worker_fails_its_job_and_the_slot_comes_back(own_cluster: LocalCluster) -> None:
    jm = JobManagerClient(own_cluster.address)
    env = StreamExecutionEnvironment.get_execution_environment()
    env.from_source(NumberSequenceSource(1, 10**10), None, "endless").map(lambda x: x).add_sink(lambda x: None)
    job_id = env.execute_async("worker victim").get_job_id()
    wait_for(lambda: any(v.records_out > 0 for v in jm.get_job(job_id).vertices), 20, "records to flow")
    # the job (parallelism 1) runs in one of the two single-slot TaskManagers: find its busy worker
    workers = [w for tm in own_cluster.taskmanager_procs for w in children(tm.pid)]
    busiest = max(workers, key=_cpu_ticks)
    os.kill(busiest, signal.SIGKILL)
    info = wait_for(lambda: (i := jm.get_job(job_id)).is_terminal and i, 20, "the job to fail")
    assert info.state == "FAILED"
    assert "exited with code -9" in info.failure_cause, info.failure_cause
    # the TaskManager replaced the worker: a new job runs at full parallelism on both slots
    env2 = StreamExecutionEnvironment.get_execution_environment()
    env2.set_parallelism(2)
    got = env2.from_source(NumberSequenceSource(1, 1000), None, "n").rebalance().execute_and_collect()
    assert sorted(got) == list(range(1, 1001))
    jm.close()


def _cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(") ", 1)[1].split()
    return int(fields[11]) + int(fields[12])
