"""Window-operator micro-benchmark: W3's records through a ``WindowOperator`` on a keyed state backend, in this
process, no cluster.

Drives the real operator (``taskmanager/operators/window.py``) as a task would: W3's records (``benchmarks.jobs``:
10,000 keys, 1-minute tumbling event-time windows, a sum reduce, 2 s of disorder) in buffers of 1,024 with their
timestamps, after each buffer the bounded-out-of-orderness watermark (``max - 2 s - 1``), which fires the windows it
passed. With ``--checkpoint-every N``, every N records the operator snapshots as at a barrier
(``snapshot_state``: its timers as raw keyed state, then the backend's synchronous part), the upload runs in a
thread while records flow on (as ``asyncio.to_thread`` in the task), and it is confirmed before the next checkpoint
(the coordinator's one concurrent checkpoint).

Figures: CPU seconds of the process (``time.process_time``: upload threads and RocksDB's background threads
included), so they hold up on a busy machine better than wall-clock figures; per checkpoint the synchronous
part's wall-clock and mailbox-thread CPU time (median and maximum); and the wall time of each buffer with its
watermark (99th percentile and maximum over the run), which an upload thread holding the GIL stretches.

Usage: ``python -m benchmarks.state_paths [--backend rocksdb|hashmap] [--records N] [--checkpoint-every N]
[--repeat 3]``; prints one ``BENCH name=window-w3 ...`` line per run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import jobs
from state.filesystem import FileSystemCheckpointStorage
from state.keygroups import key_group_range
from state.memory import HashMapKeyedStateBackend
from state.rocksdb import RocksDBKeyedStateBackend
from taskmanager.operators.base import OperatorRuntime
from taskmanager.operators.window import WindowOperator
from taskmanager.timers import ProcessingTimeService
from weir.datastream.functions import RuntimeContext
from weir.datastream.window import TumblingEventTimeWindows

MAX_PARALLELISM = 128
BUFFER = 1024


def make_operator(backend: Any, tmp: str) -> tuple[WindowOperator, list[int]]:
    """W3's window operator over ``backend``; the second value counts the results it emitted."""
    emitted = [0]

    def out(values: list[Any], timestamps: list[int] | None) -> None:
        emitted[0] += len(values)

    params = {"assigner": TumblingEventTimeWindows.of(jobs.W3_WINDOW_MS), "mode": "reduce",
              "reduce_fn": jobs.sum_values}
    op = WindowOperator(out, jobs.first_field, params)
    op.runtime = OperatorRuntime(ProcessingTimeService(lambda: 0), lambda name: backend, lambda idle: None)
    op.uid = "w"
    op.key_groups = key_group_range(MAX_PARALLELISM, 1, 0)
    op.local_dir = os.path.join(tmp, "local")
    op.emit_watermark = lambda wm: None  # type: ignore[method-assign]
    op.open(RuntimeContext("window-w3", 0, 1, MAX_PARALLELISM))
    return op, emitted


def run_once(backend_name: str, records: int, checkpoint_every: int, tmp: str) -> dict[str, Any]:
    """One run; returns CPU seconds in total and per-checkpoint synchronous-part timings."""
    backend: Any
    if backend_name == "rocksdb":
        backend = RocksDBKeyedStateBackend(os.path.join(tmp, "db"), MAX_PARALLELISM)
    else:
        backend = HashMapKeyedStateBackend(MAX_PARALLELISM)
    storage = FileSystemCheckpointStorage(Path(tmp, "checkpoints").as_uri())
    op, emitted = make_operator(backend, tmp)
    event, bound = jobs.w3_event, jobs.W3_DISORDER_MS
    sync_wall: list[float] = []
    step_ms: list[float] = []  # wall time per buffer and its watermark: slowed down by an upload thread's GIL use
    sync_cpu: list[float] = []
    upload: threading.Thread | None = None
    errors: list[BaseException] = []
    checkpoint = 0
    max_ts = -(2**63)

    def do_upload(pending: Any, cid: int) -> None:
        try:
            pending.upload(storage, f"chk-{cid}/w", "shared")
        except BaseException as e:  # noqa: BLE001 - reported after the run
            errors.append(e)

    buffers = []  # made before the clock starts: the operator's cost alone
    for s in range(0, records, BUFFER):
        values = [event(i) for i in range(s, min(s + BUFFER, records))]
        buffers.append((values, [v[1] for v in values]))
    t0 = time.process_time()
    try:
        n = 0
        for values, timestamps in buffers:
            b0 = time.perf_counter()
            op.process_batch(values, timestamps)
            n += len(values)
            m = max(timestamps)
            if m > max_ts:
                max_ts = m
            op.process_watermark(max_ts - bound - 1)
            step_ms.append((time.perf_counter() - b0) * 1e3)
            if checkpoint_every and n // checkpoint_every > checkpoint:
                if upload is not None:
                    upload.join()
                    backend.notify_checkpoint_complete(checkpoint)
                checkpoint += 1
                w0, c0 = time.perf_counter(), time.thread_time()
                pending, _ = op.snapshot_state(checkpoint, False)
                sync_cpu.append(time.thread_time() - c0)
                sync_wall.append(time.perf_counter() - w0)
                upload = threading.Thread(target=do_upload, args=(pending, checkpoint))
                upload.start()
        if upload is not None:
            upload.join()
        op.process_watermark(2**63 - 1)
    finally:
        op.close()
        backend.dispose()
    if errors:
        raise errors[0]
    return {"cpu_s": time.process_time() - t0, "checkpoints": checkpoint, "emitted": emitted[0],
            "sync_wall_ms": [s * 1e3 for s in sync_wall], "sync_cpu_ms": [s * 1e3 for s in sync_cpu],
            "step_p99_ms": statistics.quantiles(step_ms, n=100)[98], "step_max_ms": max(step_ms)}


def _ms(xs: list[float]) -> str:
    return f"{statistics.median(xs):.1f}/{max(xs):.1f}" if xs else "-"


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
        print(f"BENCH name=window-w3 backend={args.backend} records={args.records} "
              f"checkpoint_every={args.checkpoint_every} checkpoints={r['checkpoints']} emitted={r['emitted']} "
              f"cpu_s={r['cpu_s']:.3f} records_per_cpu_s={args.records / r['cpu_s']:.0f} "
              f"sync_wall_ms_median/max={_ms(r['sync_wall_ms'])} sync_cpu_ms_median/max={_ms(r['sync_cpu_ms'])} "
              f"buffer_ms_p99/max={r['step_p99_ms']:.1f}/{r['step_max_ms']:.1f}",
              flush=True)
    med = statistics.median(r["cpu_s"] for r in runs)
    print(f"median records_per_cpu_s={args.records / med:.0f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
