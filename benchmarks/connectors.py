"""Benchmark sources and sinks: an interleaved number sequence, a rate-limited source that stamps each record's
creation time, and a sink that turns creation times into a latency histogram written to a file.

``benchmarks.run`` registers this module with cloudpickle to be pickled by value, like ``benchmarks.jobs``.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from weir.datastream.connectors import Sink, SinkWriter
from weir.datastream.connectors.source import Source, SourceReader
from weir.datastream.functions import RuntimeContext

BUCKETS_PER_MS = 10
"""Latency histogram resolution: 0.1 ms buckets."""


# ---- an interleaved number sequence ----

class _StridedReader(SourceReader):
    """Reads its splits ``[next, stop, step]`` one after the other: next, next + step, ... below stop."""

    def __init__(self, splits: Iterable[tuple[int, int, int]]) -> None:
        self._splits = [list(s) for s in splits if s[0] < s[1]]

    def poll(self, max_records: int) -> list[Any] | None:
        while self._splits and self._splits[0][0] >= self._splits[0][1]:
            self._splits.pop(0)
        if not self._splits:
            return None
        split = self._splits[0]
        n, stop, step = split
        batch = list(range(n, min(stop, n + max_records * step), step))
        split[0] = n + len(batch) * step
        return batch

    def snapshot_state(self) -> list[Any]:
        return [tuple(s) for s in self._splits if s[0] < s[1]]


class InterleavedSequenceSource(Source):
    """The integers ``0 .. records - 1``; subtask ``s`` of ``p`` reads ``s, s + p, s + 2p, ...``.

    Unlike ``NumberSequenceSource`` (contiguous ranges), every subtask's numbers -- and so the event times the
    event-time workloads derive from them -- advance together, so the downstream watermark (the minimum over the
    inputs) does not hold one subtask's windows and timers back until the other subtask has read its whole range.
    """

    def __init__(self, records: int) -> None:
        if records < 1:
            raise ValueError(f"records must be >= 1, got {records}")
        self.records = records

    def create_reader(self, subtask: int, parallelism: int) -> SourceReader:
        return _StridedReader([(subtask, self.records, parallelism)])

    def restore_reader(self, subtask: int, parallelism: int, splits: list[Any]) -> SourceReader:
        return _StridedReader(tuple(s) for s in splits)


# ---- latency: a rate-limited source and a histogram sink ----

class _RateLimitedReader(SourceReader):
    """Emits ``(n, created)`` for n = subtask, subtask + p, ...; record i is due at ``t0 + i / rate`` (wall clock, s),
    t0 being the first poll, and ``created`` is that due time, not the time of the poll that emitted it: a source
    held back by backpressure reports the queueing as latency (no coordinated omission).

    Without a rate it emits as fast as it is polled (``created``: the poll's time), for ``seconds`` if given. With a
    ``report`` path it writes ``{"emitted", "first", "last"}`` (count, wall times of the first and last poll that
    emitted) there when it closes: what the runner computes the source's rate from.
    """

    def __init__(self, subtask: int, parallelism: int, records: int, rate: float | None, emitted: int = 0,
                 seconds: float | None = None, report: Path | None = None) -> None:
        self._first = subtask
        self._step = parallelism
        self._count = len(range(subtask, records, parallelism))
        self._rate = rate
        self._inv = 1.0 / rate if rate else 0.0
        self._i = self._start = emitted
        self._t0: float | None = None
        self._seconds = seconds
        self._report = report
        self._first_poll = self._last_poll = 0.0

    def poll(self, max_records: int) -> list[Any] | None:
        i = self._i
        if i >= self._count:
            return None
        now = time.time()
        if self._t0 is None:
            self._t0 = now - i * self._inv
            self._first_poll = now
        elif self._seconds is not None and now - self._t0 >= self._seconds:
            return None
        first, step = self._first, self._step
        if self._rate is None:
            due = min(self._count, i + max_records)
            self._i = due
            self._last_poll = now
            return [(first + j * step, now) for j in range(i, due)]
        due = min(self._count, int((now - self._t0) * self._rate) + 1, i + max_records)
        if due <= i:
            return []
        t0, inv = self._t0, self._inv
        self._i = due
        self._last_poll = now
        return [(first + j * step, t0 + j * inv) for j in range(i, due)]

    def snapshot_state(self) -> list[Any]:
        return [self._i]

    def close(self) -> None:
        if self._report is not None:
            tmp = self._report.with_suffix(".tmp")
            tmp.write_text(json.dumps({"emitted": self._i - self._start, "first": self._first_poll,
                                       "last": self._last_poll}))
            os.replace(tmp, self._report)


class LatencySource(Source):
    """``records`` records ``(n, created)`` at ``rate`` records/s in total (each of p subtasks: rate / p); with
    ``rate`` None as fast as they go, for at most ``seconds``. With ``directory``, each subtask writes
    ``src-<subtask>.json`` there when it ends (see ``read_source_rate``)."""

    def __init__(self, records: int, rate: float | None, seconds: float | None = None,
                 directory: str | None = None) -> None:
        if records < 1 or (rate is not None and rate <= 0):
            raise ValueError(f"records must be >= 1 and rate > 0, got {records} and {rate}")
        self.records = records
        self.rate = rate
        self.seconds = seconds
        self.directory = directory

    def _reader(self, subtask: int, parallelism: int, emitted: int) -> SourceReader:
        report = Path(self.directory, f"src-{subtask}.json") if self.directory else None
        return _RateLimitedReader(subtask, parallelism, self.records,
                                  None if self.rate is None else self.rate / parallelism, emitted, self.seconds, report)

    def create_reader(self, subtask: int, parallelism: int) -> SourceReader:
        return self._reader(subtask, parallelism, 0)

    def restore_reader(self, subtask: int, parallelism: int, splits: list[Any]) -> SourceReader:
        return self._reader(subtask, parallelism, min(splits) if splits else 0)


def read_source_rate(directory: str | os.PathLike[str], expected: int, timeout: float = 10.0) -> float:
    """Records/s the ``expected`` subtasks of a ``LatencySource`` emitted together, from their reports: all records
    over the span from the earliest first poll to the latest last poll.

    Raises:
        TimeoutError: not every report appeared within ``timeout`` s.
    """
    reports = [json.loads(f.read_text()) for f in _wait_for_files(directory, "src-*.json", expected, timeout)]
    span = max(r["last"] for r in reports) - min(r["first"] for r in reports)
    return sum(r["emitted"] for r in reports) / span if span > 0 else float("nan")


def _wait_for_files(directory: str | os.PathLike[str], pattern: str, expected: int, timeout: float) -> list[Path]:
    deadline = time.monotonic() + timeout
    while True:
        files = sorted(Path(directory).glob(pattern))
        if len(files) >= expected:
            return files
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(files)} of {expected} files {pattern} in {directory}")
        time.sleep(0.05)


class _LatencyWriter(SinkWriter):
    """Histogram of ``now - record[-1]`` (the creation time the record carries last), written out at the end.

    With ``group``, a record's latency is measured from the newest creation time among the records of its group
    (``group(record)``, e.g. its window) that reach this sink, so it is known only at the end: arrival times are
    kept per group, as counts per arrival time (a buffer's records share one).
    """

    def __init__(self, path: Path, warmup_s: float, group: Callable[[Any], Any] | None) -> None:
        self.path = path
        self.warmup_s = warmup_s
        self.group = group
        self.hist: Counter[int] = Counter()
        self.newest: dict[Any, float] = {}
        self.arrivals: dict[Any, Counter[float]] = {}
        self.start: float | None = None
        self.skipped = 0

    def write_batch(self, values: list[Any]) -> None:
        now = time.time()
        if self.start is None:
            self.start = now
        if now - self.start < self.warmup_s:  # the first records meet tasks still connecting: not steady state
            self.skipped += len(values)
            return
        if self.group is None:
            scale = 1000 * BUCKETS_PER_MS
            self.hist.update([int((now - v[-1]) * scale) for v in values])
            return
        group, newest, arrivals = self.group, self.newest, self.arrivals
        for v in values:
            g = group(v)
            c = v[-1]
            if c > newest.get(g, 0.0):
                newest[g] = c
            a = arrivals.get(g)
            if a is None:
                a = arrivals[g] = Counter()
            a[now] += 1

    def finish(self) -> None:
        scale = 1000 * BUCKETS_PER_MS
        for g, a in self.arrivals.items():
            ref = self.newest[g]
            for t, n in a.items():
                self.hist[int((t - ref) * scale)] += n
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"skipped": self.skipped, "hist": {str(k): n for k, n in self.hist.items()}}))
        os.replace(tmp, self.path)


class LatencySink(Sink):
    """Each subtask's writer writes ``lat-<subtask>.json`` into ``directory`` at the end of input; records that
    arrive within ``warmup_s`` of the subtask's first record are counted but not measured. ``group`` (a function
    of the record): measure from the newest creation time in the record's group (see ``_LatencyWriter``)."""

    def __init__(self, directory: str, warmup_s: float, group: Callable[[Any], Any] | None = None) -> None:
        self.directory = directory
        self.warmup_s = warmup_s
        self.group = group

    def with_group(self, group: Callable[[Any], Any]) -> LatencySink:
        """The same sink, measuring from the newest creation time of each record's group."""
        return LatencySink(self.directory, self.warmup_s, group)

    def create_writer(self, ctx: RuntimeContext) -> SinkWriter:
        return _LatencyWriter(Path(self.directory, f"lat-{ctx.get_index_of_this_subtask()}.json"), self.warmup_s,
                              self.group)


def read_latencies(directory: str | os.PathLike[str], expected: int, timeout: float = 10.0) -> tuple[Counter[int], int]:
    """The merged histogram of the ``expected`` subtasks' files in ``directory`` and the records skipped as warm-up.

    Raises:
        TimeoutError: not every file appeared within ``timeout`` s.
    """
    hist: Counter[int] = Counter()
    skipped = 0
    for f in _wait_for_files(directory, "lat-*.json", expected, timeout):
        data = json.loads(f.read_text())
        skipped += data["skipped"]
        hist.update({int(k): n for k, n in data["hist"].items()})
    return hist, skipped


def percentile_ms(hist: Counter[int], q: float) -> float:
    """The ``q``-quantile (0..1) of a histogram of 0.1 ms buckets, in ms: the upper edge of its bucket."""
    total = sum(hist.values())
    if not total:
        return float("nan")
    rank = q * total
    seen = 0
    for bucket in sorted(hist):
        seen += hist[bucket]
        if seen >= rank:
            return (max(bucket, 0) + 1) / BUCKETS_PER_MS
    return (max(max(hist), 0) + 1) / BUCKETS_PER_MS
