"""W1-W4 as Bytewax dataflows: Bytewax's side of the peer benchmarks (run with ``.venv-bytewax``).

The same workloads as ``pyflink_jobs.py`` and ``weir_jobs.py``, written with Bytewax's operators
(``bytewax.operators`` and ``bytewax.operators.windowing``), calling the same functions of ``workloads``:

- W1: ``map`` parse -> ``filter`` -> ``flat_map`` split;
- W2: ``map`` parse -> ``key_on`` -> ``stateful_map`` running sum (Flink's rolling reduce: one output per input);
- W3: ``map`` parse -> ``key_on`` -> ``reduce_window`` with an ``EventClock`` (2 s wait) and a 1-minute
  ``TumblingWindower``;
- W4: ``map`` parse -> ``key_on`` customer -> ``stateful`` with a ``StatefulLogic`` per customer: Bytewax has no
  event-time timers, so the logic keeps the customer's transactions and its own pending "timers" and fires those
  the customer's watermark (largest ts seen - 5 s - 1) has passed, the rest at end of input (``on_eof``).

The input is the data set directory read with ``DirSource`` (one partition per part file); the output goes to
``DigestSink``, a ``DynamicSink`` whose partitions fold the records into a digest written at ``close``.

Parallelism p runs p processes of one worker each, as ``python -m bytewax.run MOD:FLOW -i I -a ADDRS`` does:
``main`` builds the flow and calls the same ``bytewax.run.cli_main``, timing it. By hand::

    .venv-bytewax/bin/python benchmarks/peers/bytewax_jobs.py W2 DATA_DIR DIGEST_DIR \\
        --process-id 0 --addresses "127.0.0.1:2101;127.0.0.1:2102" &
    .venv-bytewax/bin/python benchmarks/peers/bytewax_jobs.py W2 DATA_DIR DIGEST_DIR \\
        --process-id 1 --addresses "127.0.0.1:2101;127.0.0.1:2102"

Event time: the ``EventClock`` is given a constant ``now_getter`` (and no system-time wake-ups), so its watermark
is the pure event-time bound, as Flink's: with the default system clock the watermark also advances with the
wall-clock time elapsed since a key's latest item, which could make a record late (and the output differ)
depending on how fast the machine runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bytewax.operators as op
import bytewax.operators.windowing as win
import workloads as wl
from bytewax._bytewax import cli_main
from bytewax.connectors.files import DirSource
from bytewax.dataflow import Dataflow, Stream
from bytewax.operators import StatefulLogic
from bytewax.outputs import DynamicSink, StatelessSinkPartition

ENGINE = "bytewax"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
"""Timestamps are milliseconds since the epoch; Bytewax's clocks want aware datetimes."""


# ---- the digest sink ----

class _DigestPartition(StatelessSinkPartition[Any]):
    """One worker's part of ``DigestSink``."""

    def __init__(self, workload: str, directory: str, keyed: bool) -> None:
        self.workload = workload
        self.directory = directory
        self.keyed = keyed
        self.digest = wl.Digest(workload)

    def write_batch(self, items: list[Any]) -> None:
        """Counts and hashes the records (the values of (key, value) items of a keyed stream)."""
        add = self.digest.add
        if self.keyed:
            for _, value in items:
                add(value)
        else:
            for value in items:
                add(value)

    def close(self) -> None:
        """Writes this worker's partial digest."""
        self.digest.write(self.directory, f"{ENGINE}-{uuid.uuid4().hex[:12]}", engine=ENGINE,
                          finished=time.time())


class DigestSink(DynamicSink[Any]):
    """The counting sink of every workload: each worker folds its records into a ``workloads.Digest`` and
    writes it when the dataflow ends."""

    def __init__(self, workload: str, directory: str, keyed: bool) -> None:
        self.workload = workload
        self.directory = directory
        self.keyed = keyed

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _DigestPartition:
        """A partition per worker."""
        return _DigestPartition(self.workload, self.directory, self.keyed)


# ---- per-workload pieces ----

def _key(record: tuple[Any, ...]) -> str:
    """Bytewax's keys are strings: the first field's."""
    return str(record[0])


def _running_sum(state: tuple[int, int] | None, value: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """W2: Flink's rolling reduce with ``workloads.add_values``; emits the running (key, sum)."""
    acc = value if state is None else wl.add_values(state, value)
    return acc, acc


def _event_datetime(event: tuple[int, int, int]) -> datetime:
    """W3: the event's ts as an aware datetime."""
    return EPOCH + timedelta(milliseconds=wl.event_time(event))


def _constant_now() -> datetime:
    """A system clock that stands still: the EventClock's watermark is then pure event time."""
    return EPOCH


def _no_wakeup(_: datetime) -> None:
    """No system-time wake-ups to close windows: items and the end of input close them."""
    return None


@dataclass
class VelocityLogic(StatefulLogic[tuple[int, int, int], tuple[Any, ...], Any]):
    """W4: the fraud velocity rule for one customer, in event time.

    ``recent`` is the customer's transactions (ts -> amounts), ``timers`` the ts not yet evaluated, ``max_ts``
    the largest ts seen. A timer fires when the customer's watermark (``max_ts`` - 5 s - 1, Flink's bounded
    out-of-orderness watermark over this customer's transactions) reaches it; since no transaction is later than
    that bound, the rule sees the same transactions as with Flink's (global) watermark.
    """

    recent: dict[int, list[int]] = field(default_factory=dict)
    timers: list[int] = field(default_factory=list)
    max_ts: int = -(2**63)

    def _fire(self, watermark: int) -> list[tuple[Any, ...]]:
        """Evaluates the rule at each pending timer <= ``watermark``, in time order."""
        due = sorted(t for t in self.timers if t <= watermark)
        if not due:
            return []
        self.timers = [t for t in self.timers if t > watermark]
        alerts = []
        for timestamp in due:
            expired, count, total = wl.velocity(list(self.recent.items()), timestamp)
            for ts in expired:
                del self.recent[ts]
            if count > wl.MAX_COUNT or total > wl.MAX_AMOUNT:
                alerts.append(("alert", self._customer, timestamp, total, count))
        return alerts

    def on_item(self, value: tuple[int, int, int]) -> tuple[Iterable[tuple[Any, ...]], bool]:
        """Remembers the transaction, sets a timer at its ts and fires the timers the watermark passed."""
        self._customer = value[0]
        ts = wl.transaction_time(value)
        amounts = self.recent.get(ts)
        if amounts is None:
            self.recent[ts] = [value[1]]
            self.timers.append(ts)
        else:
            amounts.append(value[1])
        if ts > self.max_ts:
            self.max_ts = ts
        return self._fire(self.max_ts - wl.TX_DISORDER_MS - 1), StatefulLogic.RETAIN

    def on_eof(self) -> tuple[Iterable[tuple[Any, ...]], bool]:
        """End of input: the final watermark fires every timer left."""
        return self._fire(2**63 - 1), StatefulLogic.DISCARD

    def snapshot(self) -> Any:
        """The state for recovery (unused: the benchmarks run without recovery)."""
        return (dict(self.recent), list(self.timers), self.max_ts)


def _velocity_builder(resume: Any) -> VelocityLogic:
    """A fresh VelocityLogic for a new customer (no recovery)."""
    return VelocityLogic()


def build(workload: str, data: str, digests: str) -> Dataflow:
    """The dataflow of ``workload`` from the part files of ``data`` to a ``DigestSink`` writing into ``digests``
    (the steps are listed in the module's docstring)."""
    flow = Dataflow(f"peers_{workload}")
    lines = op.input("lines", flow, DirSource(Path(data), "part-*.csv"))
    out: Stream[Any]
    keyed = True
    if workload == "W1":
        events = op.map("parse", lines, wl.parse_event)
        kept = op.filter("filter", events, wl.not_multiple_of_3)
        out = op.flat_map("split", kept, wl.split_even)
        keyed = False
    elif workload == "W2":
        pairs = op.key_on("key", op.map("parse", lines, wl.parse_key_value), _key)
        out = op.stateful_map("running_sum", pairs, _running_sum)
    elif workload == "W3":
        events = op.key_on("key", op.map("parse", lines, wl.parse_event), _key)
        clock = win.EventClock(_event_datetime, wait_for_system_duration=timedelta(milliseconds=wl.EVENT_DISORDER_MS),
                               now_getter=_constant_now, to_system_utc=_no_wakeup)
        windower = win.TumblingWindower(length=timedelta(milliseconds=wl.WINDOW_MS), align_to=EPOCH)
        windows = win.reduce_window("window_sum", events, clock, windower, wl.add_window_values)
        out = op.map_value("drop_window_id", windows.down, lambda id_value: id_value[1])
        op.output("late_check", windows.late, _LateCheck())
    elif workload == "W4":
        txs = op.key_on("customer", op.map("parse", lines, wl.parse_transaction), _key)
        out = op.stateful("velocity_rule", txs, _velocity_builder)
    else:
        raise ValueError(f"unknown workload {workload!r}")
    op.output("digest", out, DigestSink(workload, digests, keyed))
    return flow


class _LatePartition(StatelessSinkPartition[Any]):
    """Raises on any item."""

    def write_batch(self, items: list[Any]) -> None:
        if items:
            raise RuntimeError(f"W3: late records in Bytewax's window (none are late by construction): {items}")


class _LateCheck(DynamicSink[Any]):
    """W3: fails the dataflow if Bytewax's window operator found any record late."""

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _LatePartition:
        """A partition per worker."""
        return _LatePartition()


def main(argv: list[str] | None = None) -> int:
    """Runs one workload as process ``--process-id`` of ``--addresses`` (or alone); prints ``PEERS_JOB {...}``."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("workload", choices=wl.WORKLOADS)
    p.add_argument("data", help="the data set directory (part-*.csv)")
    p.add_argument("digests", help="the directory the partial digests are written into")
    p.add_argument("--workers-per-process", "-w", type=int, default=1)
    p.add_argument("--process-id", "-i", type=int, default=None)
    p.add_argument("--addresses", "-a", default=None, help="host:port of every process, ';'-separated")
    args = p.parse_args(argv)

    flow = build(args.workload, str(Path(args.data).resolve()), str(Path(args.digests).resolve()))
    addresses = args.addresses.split(";") if args.addresses else None
    start = time.time()
    cli_main(flow, workers_per_process=args.workers_per_process, process_id=args.process_id,
             addresses=addresses, epoch_interval=timedelta(seconds=10), recovery_config=None)
    end = time.time()
    print("PEERS_JOB " + json.dumps({"start": start, "end": end}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
