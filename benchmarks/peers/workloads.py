"""What the peer benchmarks run, shared by the three engines: the data, the user functions, the output digest.

Standard library only: this module is imported by weir's job (the project's venv), by PyFlink's job and its
Python workers (``.venv-pyflink``; shipped to the workers with ``env.add_python_file``), by Bytewax's flows
(``.venv-bytewax``) and by the runner, so every engine calls the very same parsing, filtering, reducing and
digesting code, and the runner's plain-Python reference does too.

Data: two kinds of newline-delimited CSV, generated once, deterministically from a seed, and partitioned by
key into one file per source subtask (a record of key k goes to part k % p, in record order), so that at
parallelism p each of the p source readers reads exactly one file from start to end, as from a Kafka topic
partitioned by key:

- ``events`` (W1, W2, W3): ``key,ts,value`` -- key 0..9,999, ts = n x 2 ms plus 0..2 s of disorder, value 0..999;
- ``transactions`` (W4): ``customer,amount,ts`` -- 10,000 customers, one transaction every 10 ms plus 0..5 s of
  disorder, and now and then a burst of one customer (as ``benchmarks/jobs.py``'s W4).

The disorder never exceeds the watermarks' bound, in any part, so no record is ever late and the windows and
the velocity rule give the same results whatever the interleaving of the parts. Partitioning by key also keeps
each key's records in order on their way to its keyed operator: Bytewax's event clocks are per key (there is no
minimum over the inputs as in Flink), so with parts of interleaved keys a key's records could arrive from two
readers far apart in event time and be late.

Digest: the jobs end in a digest step (a counting sink that also hashes): each subtask or worker folds its
output records into a ``Digest`` and writes it as a JSON file when its input ends; the runner merges the
partial digests of a run and compares them with the other engines' and with ``reference_digest``.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

WORKLOADS: tuple[str, ...] = ("W1", "W2", "W3", "W4")
"""The workloads, in the order they run."""

DATASET: dict[str, str] = {"W1": "events", "W2": "events", "W3": "events", "W4": "transactions"}
"""The kind of data each workload reads."""

KEYS = 10_000
"""Distinct keys of the events (W1-W3)."""
EVENT_STEP_MS = 2
"""Event time between consecutive events: a 1-minute window holds 30,000 events, 3 per key."""
EVENT_DISORDER_MS = 2_000
"""An event's ts is n x ``EVENT_STEP_MS`` plus 0..this: the W3 watermark's bound."""
WINDOW_MS = 60_000
"""W3's tumbling window size (1 minute)."""

CUSTOMERS = 10_000
"""Distinct customers of the transactions (W4)."""
TX_STEP_MS = 10
"""Event time between consecutive transactions: 30,000 per 5 minutes, about 3 per customer."""
TX_DISORDER_MS = 5_000
"""A transaction's ts is n x ``TX_STEP_MS`` plus 0..this: the W4 watermark's bound."""
VELOCITY_MS = 5 * 60_000
"""The velocity rule's horizon: the customer's transactions of the last 5 minutes."""
MAX_COUNT = 5
"""The velocity rule alerts above this many transactions within the horizon..."""
MAX_AMOUNT = 2_000
"""...or above this total amount."""

MASK64 = 2**64 - 1
_K1 = 0x9E3779B97F4A7C15
_K2 = 0xBF58476D1CE4E5B9
_K3 = 0x94D049BB133111EB
_K4 = 0xD6E8FEB86659FD93


# ---- data ----

def _events(records: int, seed: int) -> Iterator[tuple[int, str]]:
    """(key, line) of the ``events`` data set, in record order."""
    bits = random.Random(seed).getrandbits
    for n in range(records):
        h = bits(64)
        k = h % KEYS
        yield k, f"{k},{n * EVENT_STEP_MS + (h >> 40) % (EVENT_DISORDER_MS + 1)},{(h >> 20) % 1000}\n"


def _transactions(records: int, seed: int) -> Iterator[tuple[int, str]]:
    """(customer, line) of the ``transactions`` data set, in record order (``benchmarks/jobs.py``'s W4 generator)."""
    bits = random.Random(seed).getrandbits
    for n in range(records):
        h = bits(64)
        customer = h % CUSTOMERS
        amount = 1 + (h >> 16) % 399
        if n % 997 < 8:  # a burst: the same customer, 8 transactions of 200..699 close together
            customer = (n // 997) % CUSTOMERS
            amount = 200 + (h >> 16) % 500
        yield customer, f"{customer},{amount},{n * TX_STEP_MS + (h >> 32) % (TX_DISORDER_MS + 1)}\n"


def dataset_dir(root: Path, kind: str, records: int, shards: int, seed: int) -> Path:
    """Where the data set of these parameters lives under ``root``."""
    return root / f"{kind}-n{records}-s{seed}-p{shards}-bykey"


def ensure_dataset(root: Path, kind: str, records: int, shards: int, seed: int) -> Path:
    """Generate the data set unless a complete one is already there; returns its directory.

    The directory holds ``part-0.csv`` .. ``part-{shards-1}.csv`` and nothing else (weir's and PyFlink's
    FileSource read every file of the directory they are given); the manifest, written last, lives beside it
    as ``<directory>.json``.
    """
    directory = dataset_dir(root, kind, records, shards, seed)
    manifest = directory.with_suffix(".json")
    if manifest.exists() and json.loads(manifest.read_text()).get("records") == records:
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    lines = _events(records, seed) if kind == "events" else _transactions(records, seed)
    files = [open(directory / f"part-{i}.csv", "w", buffering=1 << 20) for i in range(shards)]  # noqa: SIM115
    try:
        chunk: list[list[str]] = [[] for _ in range(shards)]
        for n, (key, line) in enumerate(lines):
            chunk[key % shards].append(line)
            if n % 65_536 == 65_535:
                for f, c in zip(files, chunk, strict=True):
                    f.write("".join(c))
                    c.clear()
        for f, c in zip(files, chunk, strict=True):
            f.write("".join(c))
    finally:
        for f in files:
            f.close()
    manifest.write_text(json.dumps({"kind": kind, "records": records, "shards": shards, "seed": seed}))
    return directory


def part_files(directory: str | os.PathLike[str]) -> list[str]:
    """The data files of a data set directory, sorted."""
    return sorted(str(p) for p in Path(directory).glob("part-*.csv"))


# ---- user functions: the same in every engine ----

def parse_event(line: str) -> tuple[int, int, int]:
    """Map of W1 and W3: a ``key,ts,value`` line -> (key, ts, value)."""
    k, t, v = line.split(",")
    return (int(k), int(t), int(v))


def not_multiple_of_3(event: tuple[int, int, int]) -> bool:
    """Filter of W1: keep events whose value is not a multiple of 3."""
    return event[2] % 3 != 0


def split_even(event: tuple[int, int, int]) -> Iterator[tuple[int, int]]:
    """Flat map of W1: (key, ts, value) -> (key, value), an even value split into two halves."""
    v = event[2]
    if v % 2 == 0:
        yield (event[0], v // 2)
        yield (event[0], v // 2)
    else:
        yield (event[0], v)


def parse_key_value(line: str) -> tuple[int, int]:
    """Map of W2: a ``key,ts,value`` line -> (key, value)."""
    k, _, v = line.split(",")
    return (int(k), int(v))


def first_field(record: tuple[Any, ...]) -> Any:
    """Key selector of W2, W3 and W4: the key of (key, ...) or the customer of a transaction."""
    return record[0]


def add_values(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    """Reduce of W2: running sum of the values of one key."""
    return (a[0], a[1] + b[1])


def event_time(event: tuple[int, int, int], record_timestamp: int = 0) -> int:
    """Timestamp assigner of W3: the ts of (key, ts, value)."""
    return event[1]


def add_window_values(a: tuple[int, int, int], b: tuple[int, int, int]) -> tuple[int, int, int]:
    """Window reduce of W3: sum the values; key and ts (some ts of the window) are the first record's."""
    return (a[0], a[1], a[2] + b[2])


def parse_transaction(line: str) -> tuple[int, int, int]:
    """Map of W4: a ``customer,amount,ts`` line -> (customer, amount, ts)."""
    c, a, t = line.split(",")
    return (int(c), int(a), int(t))


def transaction_time(tx: tuple[int, int, int], record_timestamp: int = 0) -> int:
    """Timestamp assigner of W4: the ts of (customer, amount, ts)."""
    return tx[2]


def velocity(recent: Iterable[tuple[int, list[int]]], timestamp: int) -> tuple[list[int], int, int]:
    """The velocity rule at ``timestamp`` over a customer's recent transactions (ts, amounts at that ts).

    Returns (the ts older than the horizon, to drop from the state; the count and the total amount within
    (timestamp - 5 minutes, timestamp]). An alert is due when count > ``MAX_COUNT`` or total > ``MAX_AMOUNT``.
    """
    horizon = timestamp - VELOCITY_MS
    expired: list[int] = []
    count = total = 0
    for ts, amounts in recent:
        if ts <= horizon:
            expired.append(ts)
        elif ts <= timestamp:
            count += len(amounts)
            total += sum(amounts)
    return expired, count, total


# ---- output digest ----

def _h2(a: int, b: int) -> int:
    x = (a * _K1 + b * _K2) & MASK64
    return x ^ (x >> 31)


def _h3(a: int, b: int, c: int) -> int:
    x = (a * _K1 + b * _K2 + c * _K3) & MASK64
    return x ^ (x >> 31)


def _h4(a: int, b: int, c: int, d: int) -> int:
    x = (a * _K1 + b * _K2 + c * _K3 + d * _K4) & MASK64
    return x ^ (x >> 31)


class Digest:
    """An order-independent summary of a job's output records, mergeable across subtasks and workers.

    - W1 (key, value), W3 (key, ts, sum) and W4 (customer, ts, total, count) alerts: the number of records and
      the sum of a 64-bit hash of each (a multiset hash: any lost, extra or different record changes it).
      W3's ts is reduced to its window's start.
    - W2 (key, running sum): the arrival order of a key's values at the reducer differs between engines and
      runs (two source readers), and so do the intermediate running sums; the summary is the number of records
      and, per key, the number of outputs and the final (largest: values are >= 0) running sum.
    """

    def __init__(self, workload: str) -> None:
        if workload not in WORKLOADS:
            raise ValueError(f"unknown workload {workload!r}")
        self.workload = workload
        self.count = 0
        self.hash = 0
        self.keys: dict[int, list[int]] = {}  # W2: key -> [outputs, final running sum]

    def add(self, record: tuple[Any, ...]) -> None:
        """Fold one output record of the workload into the digest."""
        self.count += 1
        w = self.workload
        if w == "W1":
            self.hash += _h2(record[0], record[1])
        elif w == "W2":
            entry = self.keys.get(record[0])
            if entry is None:
                self.keys[record[0]] = [1, record[1]]
            else:
                entry[0] += 1
                if record[1] > entry[1]:
                    entry[1] = record[1]
        elif w == "W3":
            ts = record[1]
            self.hash += _h3(record[0], ts - ts % WINDOW_MS, record[2])
        else:  # W4: ("alert", customer, ts, total, count)
            self.hash += _h4(record[1], record[2], record[3], record[4])

    def to_json(self, **extra: Any) -> str:
        """This (partial) digest as JSON, with ``extra`` fields (engine, subtask, times)."""
        return json.dumps({"workload": self.workload, "count": self.count, "hash": self.hash & MASK64,
                           "keys": {str(k): v for k, v in self.keys.items()}, **extra})

    def write(self, directory: str | os.PathLike[str], name: str, **extra: Any) -> None:
        """Write this partial digest as ``directory/name.json`` (via a temporary file, then renamed)."""
        path = Path(directory) / f"{name}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.to_json(**extra))
        tmp.rename(path)

    def merge(self, other: dict[str, Any]) -> None:
        """Add a partial digest (as read from JSON) of another subtask or worker of the same run."""
        self.count += other["count"]
        self.hash += other["hash"]
        for k, (outputs, final) in other["keys"].items():
            entry = self.keys.setdefault(int(k), [0, final])
            entry[0] += outputs
            entry[1] = max(entry[1], final)

    def summary(self) -> dict[str, Any]:
        """What two runs must agree on: record count and hashes (W2: per-key outputs and final sums)."""
        out: dict[str, Any] = {"records_out": self.count}
        if self.workload == "W2":
            out["keys"] = len(self.keys)
            out["keys_hash"] = f"{sum(_h3(k, n, s) for k, (n, s) in self.keys.items()) & MASK64:016x}"
            out["total"] = sum(s for _, s in self.keys.values())
        else:
            out["hash"] = f"{self.hash & MASK64:016x}"
        return out


def merge_partials(workload: str, directory: str | os.PathLike[str]) -> tuple[Digest, list[dict[str, Any]]]:
    """Merge the partial digests a run wrote into ``directory``; returns the digest and the partials read."""
    digest = Digest(workload)
    partials = []
    for path in sorted(Path(directory).glob("*.json")):
        part = json.loads(path.read_text())
        if part["workload"] != workload:
            raise ValueError(f"{path}: a digest of {part['workload']}, not {workload}")
        digest.merge(part)
        partials.append(part)
    return digest, partials


# ---- the reference: the workloads in plain Python, in event time ----

def _lines(directory: str | os.PathLike[str]) -> Iterator[str]:
    for path in part_files(directory):
        with open(path) as f:
            for line in f:
                yield line.rstrip("\n")


def reference_digest(workload: str, directory: str | os.PathLike[str]) -> Digest:
    """The digest of the workload's output computed without any engine: plain loops, dicts, sorted lists."""
    d = Digest(workload)
    if workload == "W1":
        for line in _lines(directory):
            e = parse_event(line)
            if not_multiple_of_3(e):
                for r in split_even(e):
                    d.add(r)
    elif workload == "W2":
        totals: dict[int, int] = {}
        for line in _lines(directory):
            k, v = parse_key_value(line)
            totals[k] = totals.get(k, 0) + v
            d.add((k, totals[k]))
    elif workload == "W3":
        windows: dict[tuple[int, int], int] = {}
        for line in _lines(directory):
            k, ts, v = parse_event(line)
            start = ts - ts % WINDOW_MS
            windows[(k, start)] = windows.get((k, start), 0) + v
        for (k, start), total in windows.items():
            d.add((k, start, total))
    else:
        per_customer: dict[int, dict[int, list[int]]] = {}
        for line in _lines(directory):
            c, amount, ts = parse_transaction(line)
            per_customer.setdefault(c, {}).setdefault(ts, []).append(amount)
        for c, by_ts in per_customer.items():
            times = sorted(by_ts)
            lo = 0
            count = total = 0
            for t in times:  # a sliding window (t - 5 min, t] over the customer's distinct times
                count += len(by_ts[t])
                total += sum(by_ts[t])
                while times[lo] <= t - VELOCITY_MS:
                    count -= len(by_ts[times[lo]])
                    total -= sum(by_ts[times[lo]])
                    lo += 1
                if count > MAX_COUNT or total > MAX_AMOUNT:
                    d.add(("alert", c, t, total, count))
    return d
