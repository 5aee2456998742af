"""The TaskManager's Prometheus metrics: one registry per daemon, covering every subtask of its slot workers.

Workers send a snapshot of each subtask's counters to the TaskManager every half second (never per record); a
custom collector renders the latest snapshots on each scrape. Labels: job, task, operator, subtask (a task is an
operator chain; ``operator`` carries the chain's name, as Flink's task-level metrics do).
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from weir.rpc.tls import TlsConfig

LABELS = ["job", "task", "operator", "subtask"]

_COUNTERS = [
    ("weir_task_records_in", "records_in", "Records received by the subtask"),
    ("weir_task_records_out", "records_out", "Records emitted (or written, for sinks) by the subtask"),
    ("weir_task_bytes_in", "bytes_in", "Bytes of network buffers received"),
    ("weir_task_bytes_out", "bytes_out", "Bytes of network buffers sent"),
    ("weir_task_busy_seconds", "busy_seconds", "Time spent processing records, timers and events"),
    ("weir_task_backpressured_seconds", "backpressured_seconds", "Time spent waiting for credit downstream"),
    ("weir_task_late_records_dropped", "late_records_dropped", "Window elements later than the allowed lateness"),
    ("weir_task_columnar_buffers_in", "columnar_buffers_in", "Buffers received as columns (Arrow), not records"),
    ("weir_task_columnar_buffers_out", "columnar_buffers_out", "Buffers sent as columns (Arrow), not records"),
]
_GAUGES = [
    ("weir_task_output_buffer_usage_ratio", "output_buffer_usage", "Filled share of the output buffers"),
    ("weir_task_timers_pending", "timers_pending", "Event- and processing-time timers registered"),
    ("weir_task_state_entries", "state_entries", "Keyed state entries held in memory (hashmap backend)"),
]


class TaskManagerCollector(Collector):
    def __init__(self, snapshots: Callable[[], dict[Any, dict[str, Any]]], slots: Callable[[], tuple[int, int]]):
        self._snapshots = snapshots
        self._slots = slots

    def collect(self) -> Iterator[Any]:
        snaps = list(self._snapshots().values())
        for name, field, doc in _COUNTERS:
            c = CounterMetricFamily(name, doc, labels=LABELS)
            for s in snaps:
                c.add_metric(_labels(s), float(s.get(field, 0)))
            yield c
        for name, field, doc in _GAUGES:
            g = GaugeMetricFamily(name, doc, labels=LABELS)
            for s in snaps:
                g.add_metric(_labels(s), float(s.get(field, 0)))
            yield g
        now_ms = time.time() * 1000
        for name, field, doc in (("weir_task_input_watermark_milliseconds", "input_watermark", "Current input "
                                  "watermark (event time, ms)"),
                                 ("weir_task_output_watermark_milliseconds", "output_watermark",
                                  "Last watermark forwarded (event time, ms)")):
            g = GaugeMetricFamily(name, doc, labels=LABELS)
            for s in snaps:
                if s.get(field, -(2**63)) > -(2**63):
                    g.add_metric(_labels(s), float(s[field]))
            yield g
        lag = GaugeMetricFamily("weir_task_watermark_lag_seconds", "Wall clock minus the input watermark",
                                labels=LABELS)
        for s in snaps:
            wm = s.get("input_watermark", -(2**63))
            if -(2**63) < wm < 2**63 - 1:
                lag.add_metric(_labels(s), (now_ms - wm) / 1000)
        yield lag
        total, free = self._slots()
        slots = GaugeMetricFamily("weir_taskmanager_slots", "Slots of this TaskManager", labels=["state"])
        slots.add_metric(["total"], total)
        slots.add_metric(["free"], free)
        yield slots


def _labels(s: dict[str, Any]) -> list[str]:
    return [str(s["job"]), str(s["task"]), str(s["task"]), str(s["subtask"])]


def serve(host: str, port: int, collector: TaskManagerCollector, tls: TlsConfig | None = None) -> CollectorRegistry:
    """Serve ``/metrics`` from a registry of this daemon's own (never the global one); over HTTPS with ``tls``
    (requiring a client certificate its CA signed when it has one)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    if tls is None:
        start_http_server(port, addr=host, registry=registry)
    else:
        start_http_server(port, addr=host, registry=registry, certfile=tls.cert_file, keyfile=tls.key_file,
                          client_cafile=tls.ca_file, client_auth_required=tls.mutual,
                          tls_min_version=ssl.TLSVersion.TLSv1_2)
    return registry
