"""State-backend micro-benchmark: W3's access pattern on a keyed state backend, in this process, no cluster.

Replays what the window operator's fast path does to its ``window-contents`` table for W3 (``benchmarks.jobs``:
10,000 keys, 1-minute tumbling windows, 2 s of disorder): per record one read and one write (or a ``put_new`` for a
new window), every 1,024 records a watermark that pops the windows it passed; with ``--checkpoint-every N``, every
N records the timers are written to the ``_timers`` table as ``KeyedStateMixin._save_timers`` does, and the backend
snapshots and uploads to a ``file://`` storage, then confirms the checkpoint. Figures are CPU seconds of this
process (``time.process_time``: RocksDB's background threads included), so they hold up on a busy machine better
than wall-clock figures.

Usage: ``python -m benchmarks.state_paths [--backend rocksdb|hashmap] [--records N] [--checkpoint-every N]
[--repeat 3]``; prints one ``BENCH name=state-w3 ...`` line per run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import jobs
from state.filesystem import FileSystemCheckpointStorage
from state.keygroups import key_group_range
from state.memory import HashMapKeyedStateBackend
from state.rocksdb import RocksDBKeyedStateBackend

MAX_PARALLELISM = 128


def run_once(backend_name: str, records: int, checkpoint_every: int, tmp: str) -> dict[str, float]:
    """One replay; returns CPU seconds in total, in snapshots (sync part) and in uploads."""
    backend: Any
    if backend_name == "rocksdb":
        backend = RocksDBKeyedStateBackend(os.path.join(tmp, "db"), MAX_PARALLELISM)
    else:
        backend = HashMapKeyedStateBackend(MAX_PARALLELISM)
    storage = FileSystemCheckpointStorage(Path(tmp, "checkpoints").as_uri())
    groups = key_group_range(MAX_PARALLELISM, 1, 0)
    contents = backend.table("window-contents")
    timers_table = backend.table("_timers")
    put_new = getattr(contents, "put_new", contents.__setitem__)
    size, bound = jobs.W3_WINDOW_MS, jobs.W3_DISORDER_MS
    reduce, event, key_of = jobs.sum_values, jobs.w3_event, jobs.first_field
    pending: dict[int, dict[tuple[Any, int], None]] = {}  # window end - 1 -> (key, start): the timers
    timer_keys: set[Any] = set()
    wm = max_ts = -(2**63)
    snap_s = upload_s = 0.0
    checkpoint = 0
    t0 = time.process_time()
    try:
        for n in range(records):
            v = event(n)
            ts = v[1]
            if ts > max_ts:
                max_ts = ts
            start = ts - ts % size
            end1 = start + size - 1
            if end1 <= wm:
                continue
            ck = (key_of(v), start)
            bucket = pending.get(end1)
            if bucket is None:
                bucket = pending[end1] = {}
            if ck not in bucket:
                put_new(ck, v)
                bucket[ck] = None
            else:
                contents[ck] = reduce(contents[ck], v)
            if n & 1023 == 1023:
                wm = max_ts - bound - 1
                for end in sorted(e for e in pending if e <= wm):
                    for fired in pending.pop(end):
                        contents.get(fired)
                        contents.pop(fired, None)
            if checkpoint_every and n % checkpoint_every == checkpoint_every - 1:
                checkpoint += 1
                s0 = time.process_time()
                by_key: dict[Any, list[tuple[int, Any, int]]] = {}
                for end, b in pending.items():
                    for k, ns in b:
                        by_key.setdefault(k, []).append((0, ns, end))
                for k in timer_keys - by_key.keys():
                    timers_table.pop((k, None), None)
                for k, lst in by_key.items():
                    timers_table[(k, None)] = lst
                timer_keys = set(by_key)
                snap = backend.snapshot(checkpoint, groups, os.path.join(tmp, "local"))
                s1 = time.process_time()
                snap.upload(storage, f"chk-{checkpoint}/op", "shared")
                backend.notify_checkpoint_complete(checkpoint)
                snap_s += s1 - s0
                upload_s += time.process_time() - s1
    finally:
        backend.dispose()
    return {"cpu_s": time.process_time() - t0, "snapshot_cpu_s": snap_s, "upload_cpu_s": upload_s,
            "checkpoints": float(checkpoint)}


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: see the module docstring."""
    a = argparse.ArgumentParser(prog="python -m benchmarks.state_paths", description=__doc__.split("\n\n")[0])
    a.add_argument("--backend", choices=["rocksdb", "hashmap"], default="rocksdb")
    a.add_argument("--records", type=int, default=1_000_000)
    a.add_argument("--checkpoint-every", type=int, default=0, help="records between checkpoints (0: none)")
    a.add_argument("--repeat", type=int, default=3)
    args = a.parse_args(argv)
    runs = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="weir-state-paths-") as tmp:
            r = run_once(args.backend, args.records, args.checkpoint_every, tmp)
        runs.append(r)
        print(f"BENCH name=state-w3 backend={args.backend} records={args.records} "
              f"checkpoint_every={args.checkpoint_every} checkpoints={r['checkpoints']:.0f} cpu_s={r['cpu_s']:.3f} "
              f"snapshot_cpu_s={r['snapshot_cpu_s']:.3f} upload_cpu_s={r['upload_cpu_s']:.3f} "
              f"records_per_cpu_s={args.records / r['cpu_s']:.0f}", flush=True)
    med = statistics.median(r["cpu_s"] for r in runs)
    print(f"median records_per_cpu_s={args.records / med:.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
