"""W1-W4 as weir jobs: weir's side of the peer benchmarks (run with the project's ``.venv``).

This is ``pyflink_jobs.py`` with the import prefix ``pyflink`` changed to ``weir``; the lines that differ
otherwise are marked ``# weir:``. They are: the discarding sink (PyFlink's is a Java class, weir's a Python
``Sink``) and the cluster: the job runs on a ``LocalCluster`` of one
JobManager and ``parallelism`` TaskManagers of one slot each, started before ``env.execute()`` (as
``benchmarks/run.py`` does) and stopped after. Run by ``python -m benchmarks.peers.run``; by hand::

    .venv/bin/python benchmarks/peers/weir_jobs.py W2 DATA_DIR DIGEST_DIR --parallelism 2

Each job reads the part files of a data set directory with ``FileSource`` (one file per source subtask), runs
its workload, and ends in ``DigestSink``, which folds the output into a digest written when the input ends.
The line ``PEERS_JOB {...}`` on standard output gives the times around ``env.execute()``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import workloads as wl

from client.local_cluster import LocalCluster  # weir: the cluster the job runs on
from weir.common import Configuration, Duration, Time, Types, WatermarkStrategy
from weir.common.watermark_strategy import TimestampAssigner
from weir.datastream import StreamExecutionEnvironment
from weir.datastream.connectors import Sink, SinkWriter  # weir: a Python sink
from weir.datastream.connectors.file_system import FileSource, StreamFormat
from weir.datastream.execution import ExecutionContext, set_context  # weir: submit to the LocalCluster
from weir.datastream.functions import FlatMapFunction, KeyedProcessFunction, RuntimeContext
from weir.datastream.state import MapStateDescriptor
from weir.datastream.window import TumblingEventTimeWindows

ENGINE = "weir"


class EventTime(TimestampAssigner):
    """W3's timestamps: the ts of (key, ts, value)."""

    def extract_timestamp(self, value: Any, record_timestamp: int) -> int:
        """The event's ts field."""
        return wl.event_time(value, record_timestamp)


class TransactionTime(TimestampAssigner):
    """W4's timestamps: the ts of (customer, amount, ts)."""

    def extract_timestamp(self, value: Any, record_timestamp: int) -> int:
        """The transaction's ts field."""
        return wl.transaction_time(value, record_timestamp)


class VelocityRule(KeyedProcessFunction):
    """W4: the fraud velocity rule of examples/fraud_detection.py (MapState ts -> amounts, event-time timers).

    Remembers each transaction of the customer and sets a timer at its time; when the watermark passes it,
    alerts if the customer made more than 5 transactions or spent more than 2,000 within the last 5 minutes,
    and drops what is older than that."""

    def open(self, runtime_context: RuntimeContext) -> None:
        """Declares the MapState ts -> amounts of the customer's recent transactions."""
        self.recent = runtime_context.get_map_state(
            MapStateDescriptor("recent", Types.LONG(), Types.LIST(Types.LONG())))

    def process_element(self, value: Any, ctx: Any) -> None:
        """Remembers the transaction and registers an event-time timer at its time."""
        amounts = self.recent.get(value[2]) or []
        self.recent.put(value[2], amounts + [value[1]])
        ctx.timer_service().register_event_time_timer(value[2])

    def on_timer(self, timestamp: int, ctx: Any) -> Iterable[tuple[Any, ...]]:
        """Evaluates the rule at ``timestamp`` and drops the transactions older than the horizon."""
        expired, count, total = wl.velocity(list(self.recent.items()), timestamp)
        for ts in expired:
            self.recent.remove(ts)
        if count > wl.MAX_COUNT or total > wl.MAX_AMOUNT:
            yield ("alert", ctx.get_current_key(), timestamp, total, count)


class DigestSink(FlatMapFunction):
    """The counting sink of every workload: folds each record into a ``workloads.Digest`` and emits nothing;
    when the input ends (``close``) the subtask writes its partial digest into the digest directory."""

    def __init__(self, workload: str, directory: str) -> None:
        self.workload = workload
        self.directory = directory

    def open(self, runtime_context: RuntimeContext) -> None:
        """A fresh digest for this subtask (named by a random id: in PyFlink 2.3's thread mode
        ``runtime_context.get_index_of_this_subtask()`` raises AttributeError)."""
        self.name = f"{ENGINE}-{uuid.uuid4().hex[:12]}"
        self.digest = wl.Digest(self.workload)

    def flat_map(self, value: Any) -> Iterable[Any]:
        """Counts and hashes the record; nothing goes downstream."""
        self.digest.add(value)
        return ()

    def close(self) -> None:
        """Writes the partial digest of this subtask."""
        self.digest.write(self.directory, self.name, engine=ENGINE, finished=time.time())


class _DiscardWriter(SinkWriter):  # weir: PyFlink uses Flink's (Java) DiscardingSink
    """Drops what it gets (nothing: DigestSink emits nothing)."""

    def write_batch(self, values: list[Any]) -> None:
        """Drops the records."""


class _Discard(Sink):  # weir
    """A sink that drops its input, as Flink's DiscardingSink."""

    def create_writer(self, ctx: RuntimeContext) -> SinkWriter:
        """One discarding writer per subtask."""
        return _DiscardWriter()


def discard() -> Sink:
    """A discarding sink (DigestSink emits nothing; a job needs a sink)."""
    return _Discard()  # weir


def build(env: StreamExecutionEnvironment, workload: str, data: str, digests: str) -> None:
    """Adds the workload's pipeline, from the files of ``data`` to a ``DigestSink`` writing into ``digests``:

    - W1: lines -> map parse (key, ts, value) -> filter value % 3 != 0 -> flat_map (key, value), even values
      split in two -> digest;
    - W2: lines -> map parse (key, value) -> key_by key (10,000 keys, hash shuffle) -> reduce running sum ->
      digest;
    - W3: lines -> map parse (key, ts, value) -> timestamps and 2 s bounded-out-of-orderness watermarks ->
      key_by key -> 1-minute tumbling event-time window reduce sum -> digest;
    - W4: lines -> map parse (customer, amount, ts) -> timestamps and 5 s bounded-out-of-orderness watermarks
      -> key_by customer -> VelocityRule (KeyedProcessFunction: MapState, event-time timers) -> digest of the
      alerts.
    """
    source = FileSource.for_record_stream_format(StreamFormat.text_line_format(), data).build()
    lines = env.from_source(source, WatermarkStrategy.no_watermarks(), "lines")
    event = Types.TUPLE([Types.INT(), Types.LONG(), Types.INT()])
    if workload == "W1":
        out = (lines.map(wl.parse_event, output_type=event)
               .filter(wl.not_multiple_of_3)
               .flat_map(wl.split_even, output_type=Types.TUPLE([Types.INT(), Types.INT()])))
    elif workload == "W2":
        out = (lines.map(wl.parse_key_value, output_type=Types.TUPLE([Types.INT(), Types.INT()]))
               .key_by(wl.first_field, key_type=Types.INT())
               .reduce(wl.add_values))
    elif workload == "W3":
        strategy = (WatermarkStrategy.for_bounded_out_of_orderness(Duration.of_millis(wl.EVENT_DISORDER_MS))
                    .with_timestamp_assigner(EventTime()))
        out = (lines.map(wl.parse_event, output_type=event)
               .assign_timestamps_and_watermarks(strategy)
               .key_by(wl.first_field, key_type=Types.INT())
               .window(TumblingEventTimeWindows.of(Time.milliseconds(wl.WINDOW_MS)))
               .reduce(wl.add_window_values))
    elif workload == "W4":
        strategy = (WatermarkStrategy.for_bounded_out_of_orderness(Duration.of_millis(wl.TX_DISORDER_MS))
                    .with_timestamp_assigner(TransactionTime()))
        out = (lines.map(wl.parse_transaction, output_type=Types.TUPLE([Types.INT(), Types.INT(), Types.LONG()]))
               .assign_timestamps_and_watermarks(strategy)
               .key_by(wl.first_field, key_type=Types.INT())
               .process(VelocityRule())
               .name("velocity rule"))
    else:
        raise ValueError(f"unknown workload {workload!r}")
    out.flat_map(DigestSink(workload, digests)).name("digest").sink_to(discard())


def main(argv: list[str] | None = None) -> int:
    """Runs one workload at the given parallelism; prints ``PEERS_JOB {"start": .., "end": ..}``."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("workload", choices=wl.WORKLOADS)
    p.add_argument("data", help="the data set directory (part-*.csv)")
    p.add_argument("digests", help="the directory the partial digests are written into")
    p.add_argument("--parallelism", "-p", type=int, default=2)
    p.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE", help="a Flink configuration option")
    args = p.parse_args(argv)

    conf = Configuration()
    for option in args.conf:
        key, _, value = option.partition("=")
        conf.set_string(key, value)
    with LocalCluster(taskmanagers=args.parallelism, slots=1, quiet=True) as cluster:  # weir
        set_context(ExecutionContext(jobmanager_address=cluster.address))  # weir
        env = StreamExecutionEnvironment.get_execution_environment(conf)
        env.set_parallelism(args.parallelism)
        env.add_python_file(wl.__file__)  # the workers import ``workloads`` too
        build(env, args.workload, str(Path(args.data).resolve()), str(Path(args.digests).resolve()))
        start = time.time()
        result = env.execute(f"peers {args.workload} {ENGINE} p={args.parallelism}")
        end = time.time()
    print("PEERS_JOB " + json.dumps({"start": start, "end": end, "net_runtime_s": result.get_net_runtime() / 1000}),
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
