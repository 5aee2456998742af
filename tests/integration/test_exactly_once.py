"""Exactly-once under SIGKILL: a keyed event-time window job with checkpoints into the transactional FileSink;
TaskManagers are killed at random moments and replaced; the committed output must equal a plain-Python reference,
record for record (no loss, no duplicate). One variant puts a rebalance in front of the window, so that a task with
several inputs (barrier alignment) sends records over the network: what it set aside while aligning must reach its
consumers after the barrier."""

from __future__ import annotations

import collections
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from client.gateway import JobManagerClient
from client.local_cluster import LocalCluster
from tests.integration.procs import wait_for
from tests.integration.s3server import s3  # noqa: F401 - the S3 server fixture
from weir.common import Duration, Time
from weir.common.serialization import Encoder
from weir.common.watermark_strategy import WatermarkStrategy
from weir.datastream import EmbeddedRocksDBStateBackend, HashMapStateBackend, StreamExecutionEnvironment
from weir.datastream.connectors import FileSink, NumberSequenceSource
from weir.datastream.execution import ExecutionContext, set_context
from weir.datastream.window import TumblingEventTimeWindows

pytestmark = pytest.mark.integration

N = 1_500_000
KEYS = 50


def slow_record(x: int) -> tuple[int, int, int]:
    if x % 5_000 == 0:
        time.sleep(0.02)  # stretch the job over ~10 s so the kills land mid-job
    return (x % KEYS, x, x % 1_000)


def reference() -> collections.Counter:
    sums: dict[tuple[int, int], int] = collections.defaultdict(int)
    for x in range(N):
        sums[(x % KEYS, x - x % 1_000)] += x % 1_000
    return collections.Counter(f"{k},{start},{s}" for (k, start), s in sums.items())


def committed_lines(out: Path) -> collections.Counter:
    lines: collections.Counter = collections.Counter()
    for name in os.listdir(out):
        if not name.startswith("."):
            lines.update((out / name).read_text().splitlines())
    return lines


def build(env: StreamExecutionEnvironment, out: Path, rebalance: bool = False) -> None:
    strategy = WatermarkStrategy.for_bounded_out_of_orderness(Duration.of_millis(0)).with_timestamp_assigner(
        lambda r, _: r[1])
    timed = (env.from_source(NumberSequenceSource(0, N - 1), None, "numbers").map(slow_record)
             .assign_timestamps_and_watermarks(strategy))
    if rebalance:  # a task of two inputs between the sources and the windows, its output on the network
        timed = timed.rebalance().map(lambda r: r)
    (timed
     .key_by(lambda r: r[0]).window(TumblingEventTimeWindows.of(Time.seconds(1)))
     .reduce(lambda a, b: (a[0], a[1], a[2] + b[2]), window_function=_Describe())
     .sink_to(FileSink.for_row_format(str(out), Encoder.simple_string_encoder()).build()))


class _Describe:
    def __call__(self, key: Any, window: Any, elements: Any) -> Any:
        (r,) = elements
        return [f"{key},{window.start},{r[2]}"]


@pytest.mark.timeout(240)
@pytest.mark.parametrize("backend,storage,rebalance", [("rocksdb", "s3", False), ("hashmap", "file", False),
                                                       ("hashmap", "file", True)])
def test_taskmanager_killed_three_times_output_is_exactly_once(tmp_path: Path, backend: str, storage: str,
                                                                rebalance: bool,
                                                                request: pytest.FixtureRequest) -> None:
    out = tmp_path / "out"
    cluster = LocalCluster(taskmanagers=2, slots=1, heartbeat_timeout=2, heartbeat_interval=0.3,
                           log_dir=str(tmp_path / "logs"))
    cluster.start()
    set_context(ExecutionContext(jobmanager_address=cluster.address))
    jm = JobManagerClient(cluster.address)
    try:
        env = StreamExecutionEnvironment.get_execution_environment()
        env.set_parallelism(2)
        if storage == "s3":  # RocksDB's incremental checkpoints into a real S3 server on loopback
            s3 = request.getfixturevalue("s3")
            env.enable_checkpointing(500)
            env.get_checkpoint_config().set_checkpoint_storage_dir(f"s3://chaos-{random.randrange(10**9)}/ck")
            for k, v in s3.options(**{"s3.create-bucket": "true"}).items():
                env.get_config().set_string(k, v)
        else:
            env.enable_checkpointing(300)
            env.get_checkpoint_config().set_checkpoint_storage_dir(f"file://{tmp_path}/checkpoints")
        env.set_state_backend(EmbeddedRocksDBStateBackend() if backend == "rocksdb" else HashMapStateBackend())
        build(env, out, rebalance)
        job_id = env.execute_async("exactly once").get_job_id()
        rnd = random.Random(42)
        for kill in range(3):
            done = jm.get_job(job_id).checkpoints_completed
            wait_for(lambda d=done: jm.get_job(job_id).checkpoints_completed >= d + 1, 60,
                     f"a checkpoint before kill {kill + 1}")
            time.sleep(rnd.uniform(0.0, 0.6))  # a random moment between checkpoints
            victim = next(p for p in cluster.taskmanager_procs if p.poll() is None)
            os.kill(victim.pid, signal.SIGKILL)
            victim.wait()
            cluster.add_taskmanager()
            wait_for(lambda k=kill: jm.get_job(job_id).restarts >= k + 1, 30, f"restart {kill + 1}")
        info = wait_for(lambda: (i := jm.get_job(job_id)).is_terminal and i, 180, "the job to finish")
        assert info.state == "FINISHED", info.failure_cause
        assert info.restarts >= 3
        got = committed_lines(out)
        expected = reference()
        missing = expected - got
        extra = got - expected
        assert not missing and not extra, (f"{sum(missing.values())} missing, {sum(extra.values())} extra; "
                                           f"e.g. {list(missing)[:3]} {list(extra)[:3]}")
    finally:
        set_context(None)
        jm.close()
        cluster.stop()


@pytest.mark.timeout(240)
def test_jobmanager_killed_and_restarted_output_is_exactly_once(tmp_path: Path) -> None:
    from client.gateway import JobManagerUnreachableError

    out = tmp_path / "out"
    cluster = LocalCluster(taskmanagers=2, slots=1, heartbeat_timeout=3, heartbeat_interval=0.3,
                           log_dir=str(tmp_path / "logs"), ha_dir=f"file://{tmp_path}/ha")
    cluster.start()
    set_context(ExecutionContext(jobmanager_address=cluster.address))
    jm = JobManagerClient(cluster.address)

    def job_info() -> Any:
        try:
            return jm.get_job(job_id)
        except JobManagerUnreachableError:
            return None

    try:
        env = StreamExecutionEnvironment.get_execution_environment()
        env.set_parallelism(2)
        env.enable_checkpointing(300)
        env.get_checkpoint_config().set_checkpoint_storage_dir(f"file://{tmp_path}/checkpoints")
        build(env, out)
        job_id = env.execute_async("survives its JobManager").get_job_id()
        wait_for(lambda: jm.get_job(job_id).checkpoints_completed >= 2, 60, "two checkpoints")
        assert cluster.jobmanager is not None
        os.kill(cluster.jobmanager.pid, signal.SIGKILL)
        cluster.jobmanager.wait()
        cluster.start_jobmanager()  # same address, same HA directory
        info = wait_for(lambda: (i := job_info()) is not None and i.is_terminal and i, 180, "the job to finish")
        assert info.state == "FINISHED", info.failure_cause
        got, expected = committed_lines(out), reference()
        missing, extra = expected - got, got - expected
        assert not missing and not extra, f"{sum(missing.values())} missing, {sum(extra.values())} extra"
        log = (tmp_path / "logs" / "jobmanager.log").read_text()
        assert "recovered from the HA directory at checkpoint" in log
    finally:
        set_context(None)
        jm.close()
        cluster.stop()
