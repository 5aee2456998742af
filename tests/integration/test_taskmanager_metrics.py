"""The TaskManager's /metrics: per-subtask series of its slot workers, scraped from a running job."""

from __future__ import annotations

import time
import urllib.request
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from client.gateway import JobManagerClient
from client.local_cluster import LocalCluster
from tests.integration.procs import wait_for
from weir.datastream import StreamExecutionEnvironment
from weir.datastream.connectors import NumberSequenceSource, Sink, SinkWriter
from weir.datastream.execution import ExecutionContext, set_context

pytestmark = pytest.mark.integration


class SlowWriter(SinkWriter):
    def write_batch(self, values: list[Any]) -> None:
        time.sleep(0.005)


class SlowSink(Sink):
    def create_writer(self, ctx: Any) -> SinkWriter:
        return SlowWriter()


def scrape(port: int) -> dict[str, list[Any]]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out: dict[str, list[Any]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append(s)
    return out


def test_taskmanager_metrics_show_records_busy_and_backpressure(tmp_path: Any) -> None:
    with LocalCluster(taskmanagers=1, slots=2, log_dir=str(tmp_path)) as c:
        set_context(ExecutionContext(jobmanager_address=c.address))
        jm = JobManagerClient(c.address)
        try:
            env = StreamExecutionEnvironment.get_execution_environment()
            env.set_parallelism(1)
            # sink subtask 1 runs in the other slot's worker: a real network channel whose credits run out
            (env.from_source(NumberSequenceSource(1, 10**10), None, "fast").map(lambda x: x)
             .rebalance().sink_to(SlowSink()).set_parallelism(2))
            job_id = env.execute_async("metrics").get_job_id()
            port = c.metrics_ports[0]

            def sample() -> Any:
                m = scrape(port)

                def values(name: str, task: str) -> list[float]:
                    return [s.value for s in m.get(name, []) if s.labels["task"].startswith(task)]

                src, bp = values("weir_task_records_out_total", "Source"), values(
                    "weir_task_backpressured_seconds_total", "Source")
                sinks = values("weir_task_records_in_total", "Sink")
                ready = src and bp and src[0] > 0 and bp[0] > 0 and len(sinks) == 2 and all(v > 0 for v in sinks)
                return (m, src[0], bp[0]) if ready else None

            m, records, backpressured = wait_for(sample, 30, "records and backpressure in the metrics")
            assert all(s.labels["job"] == job_id for s in m["weir_task_records_in_total"])
            sink = [s.value for s in m["weir_task_records_in_total"] if s.labels["task"].startswith("Sink")]
            # (no ordering between the two: each worker snapshots its subtasks on its own clock)
            assert len(sink) == 2 and sum(sink) > 0 and records > 0
            assert [s.value for s in m["weir_task_bytes_out_total"] if s.labels["task"].startswith("Source")][0] > 0
            busy = [s.value for s in m["weir_task_busy_seconds_total"] if s.labels["task"].startswith("Sink")]
            assert len(busy) == 2 and sum(busy) > 0
            assert [s.value for s in m["weir_taskmanager_slots"] if s.labels["state"] == "total"] == [2.0]
            jm.cancel(job_id)
        finally:
            set_context(None)
            jm.close()


def test_columnar_buffers_are_counted(tmp_path: Any) -> None:
    """map_batches -> rebalance -> map_batches: the buffers cross the edge as columns, and /metrics says so."""
    pytest.importorskip("pyarrow")
    with LocalCluster(taskmanagers=1, slots=2, log_dir=str(tmp_path)) as c:
        set_context(ExecutionContext(jobmanager_address=c.address))
        jm = JobManagerClient(c.address)
        try:
            env = StreamExecutionEnvironment.get_execution_environment()
            env.set_parallelism(2)
            (env.from_source(NumberSequenceSource(1, 10**10), None, "numbers").map_batches(lambda b: b)
             .rebalance().map_batches(lambda b: b).sink_to(SlowSink()))
            job_id = env.execute_async("columnar metrics").get_job_id()
            port = c.metrics_ports[0]

            def counted() -> Any:
                m = scrape(port)
                sent = [s.value for s in m.get("weir_task_columnar_buffers_out_total", [])
                        if s.labels["job"] == job_id and s.value > 0]
                got = [s.value for s in m.get("weir_task_columnar_buffers_in_total", [])
                       if s.labels["job"] == job_id and s.value > 0]
                return sent and got

            wait_for(counted, 30, "columnar buffers in and out in the metrics")
            jm.cancel(job_id)
        finally:
            set_context(None)
            jm.close()
