"""Checkpoint benchmarks: overhead on throughput, incremental RocksDB checkpoint size, recovery time.

One line per measurement, in the suite's format::

    BENCH name=checkpoint-overhead records=N rps_without=A rps_with=B ratio=B/A ...
    BENCH name=incremental-checkpoint keys=N updated=U chk1_bytes=... chk2_bytes=... chk2_uploaded_bytes=... ratio=...
    BENCH name=recovery trials=3 seconds_1=... seconds_2=... seconds_3=... median_seconds=...

1. **checkpoint-overhead**: W3-rocksdb (``benchmarks.jobs.build_w3_rocksdb``: a 1-minute tumbling event-time window
   aggregation over 10,000 keys, RocksDB state, p=1 on 1 TaskManager x 1 slot) run twice on the same records, each
   on a fresh local cluster: without checkpoints, then with ``env.enable_checkpointing(1000)`` into a ``file://``
   directory. records/s is source records / the client-side time around ``env.execute()``; ratio = with / without
   (target >= 0.85).
2. **incremental-checkpoint**: at the state-backend level, no cluster: a ``RocksDBKeyedStateBackend`` with
   1,000,000 keys of ``ValueState``, checkpoint 1 uploaded to a ``FileSystemCheckpointStorage`` and confirmed, 1% of
   the keys updated, checkpoint 2 uploaded; ratio = bytes checkpoint 2 uploaded / its total size (target <= 0.1).
3. **recovery**: a W2-shaped job (numbers -> (key, 1) -> key_by -> reduce sum -> discard, unbounded source) at p=2
   on 2 TaskManagers x 1 slot plus a third, idle TaskManager, heartbeat timeout 2 s, checkpoints every 500 ms, the
   default restart strategy (fixed delay 1 s). One busy TaskManager is SIGKILLed; the time is from the kill until
   the JobManager shows the job RUNNING again after a restart and the source vertex's records_out growing between
   two polls in that execution (records flow again). Task metrics reach the JobManager every ~0.5 s (worker) +
   0.3 s (heartbeat), so the figure includes up to ~0.8 s of reporting delay. Fresh cluster per trial; target <= 5 s.

Measurements run one after the other; run them on a quiet machine. Nothing here asserts on the figures.

Usage: ``python -m benchmarks.checkpoints [--quick] [--only overhead,incremental,recovery] [--verbose]``
(``--quick``: 100,000 records / keys and one recovery trial). ``run(quick)`` returns the figures as dicts.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cloudpickle

from benchmarks import jobs, procs
from client.gateway import JobManagerClient
from client.local_cluster import LocalCluster
from state.filesystem import FileSystemCheckpointStorage
from state.keygroups import key_group_range
from state.rocksdb import RocksDBKeyedStateBackend
from state.snapshot import KeyedStateHandle
from weir.datastream import StreamExecutionEnvironment
from weir.datastream.connectors import NumberSequenceSource
from weir.datastream.execution import ExecutionContext, get_context, set_context
from weir.datastream.state import ValueStateDescriptor
from weir.rpc.convert import JobInfo

OVERHEAD_RECORDS = 2_000_000
"""W3-rocksdb records per run (the default of ``benchmarks.run``)."""
OVERHEAD_INTERVAL_MS = 1_000
OVERHEAD_TARGET_RATIO = 0.85

INCREMENTAL_KEYS = 1_000_000
INCREMENTAL_UPDATED_FRACTION = 0.01
INCREMENTAL_TARGET_RATIO = 0.1
MAX_PARALLELISM = 128

RECOVERY_TRIALS = 3
RECOVERY_HEARTBEAT_TIMEOUT_S = 2.0
RECOVERY_HEARTBEAT_INTERVAL_S = 0.3
RECOVERY_INTERVAL_MS = 500
RECOVERY_TARGET_S = 5.0
RECOVERY_POLL_S = 0.02
RECOVERY_STABLE_S = 1.5
"""After records flow again, the execution must stay up this long (and past the heartbeat timeout + this) to count:
a restart onto the dead TaskManager before the JobManager noticed it would otherwise look like a recovery."""
RECOVERY_TIMEOUT_S = 90.0

QUICK_RECORDS = 100_000
QUICK_RECOVERY_TRIALS = 1

MEASUREMENTS = ("overhead", "incremental", "recovery")

Figures = dict[str, Any]


# ---- helpers ----

def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def bench_line(figures: Figures) -> str:
    """The ``BENCH key=value ...`` line of one measurement (``name`` first)."""
    return "BENCH " + " ".join(f"{k}={_fmt(v)}" for k, v in figures.items())


def _cluster_pids(cluster: LocalCluster) -> list[int]:
    """The cluster's daemons and their slot workers."""
    pids = list(cluster.pids.values())
    for tm in cluster.taskmanager_procs:
        pids += procs.children(tm.pid)
    return pids


def _reap(pids: Sequence[int], timeout: float = 5.0) -> list[int]:
    """Wait for ``pids`` (processes this benchmark started) to end; SIGKILL those left; return their pids."""
    deadline = time.monotonic() + timeout
    left = [p for p in pids if procs.alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [p for p in left if procs.alive(p)]
    for p in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)
    return left


def _log_dir(tmp: str, verbose: bool) -> str | None:
    """Where the daemons log: the terminal when ``verbose``, else files in ``tmp`` (shown if the run fails)."""
    return None if verbose else os.path.join(tmp, "logs")


def _wait_for(cond: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``cond`` until it returns something truthy; TimeoutError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def _source_records_out(info: JobInfo) -> int:
    """records_out of the job's source vertex (the first vertex of the topology)."""
    return info.vertices[0].records_out if info.vertices else 0


# ---- 1. checkpoint overhead ----

def _run_w3_rocksdb(records: int, checkpoint_dir: str | None, verbose: bool) -> tuple[float, float, int]:
    """W3-rocksdb on a fresh 1 TM x 1 slot cluster, with checkpoints into ``checkpoint_dir`` when given.

    Returns:
        (seconds around ``env.execute()``, net runtime in s from the JobManager, checkpoints completed).
    """
    with tempfile.TemporaryDirectory(prefix="weir-bench-logs-") as tmp:
        log_dir = _log_dir(tmp, verbose)
        try:
            with LocalCluster(taskmanagers=1, slots=1, quiet=not verbose, log_dir=log_dir) as cluster:
                previous = get_context()
                set_context(ExecutionContext(jobmanager_address=cluster.address))
                jm = JobManagerClient(cluster.address)
                try:
                    env = StreamExecutionEnvironment.get_execution_environment()
                    jobs.build_w3_rocksdb(env, records)
                    if checkpoint_dir is not None:
                        env.enable_checkpointing(OVERHEAD_INTERVAL_MS)
                        env.get_checkpoint_config().set_checkpoint_storage_dir(Path(checkpoint_dir).as_uri())
                    start = time.perf_counter()
                    result = env.execute("bench W3-rocksdb" + (" checkpointed" if checkpoint_dir else ""))
                    seconds = time.perf_counter() - start
                    completed = jm.get_job(result.get_job_id()).checkpoints_completed
                finally:
                    set_context(previous)
                    jm.close()
        except Exception:
            procs.show_log_tails(log_dir, 5)
            raise
    return seconds, result.get_net_runtime() / 1000, completed


def measure_overhead(records: int, verbose: bool = False) -> Figures:
    """W3-rocksdb without and with checkpoints every second: records/s of both and their ratio."""
    without_s, without_net, _ = _run_w3_rocksdb(records, None, verbose)
    with tempfile.TemporaryDirectory(prefix="weir-bench-chk-") as tmp:
        with_s, with_net, completed = _run_w3_rocksdb(records, os.path.join(tmp, "checkpoints"), verbose)
    rps_without, rps_with = records / without_s, records / with_s
    return {
        "name": "checkpoint-overhead",
        "records": records,
        "interval_ms": OVERHEAD_INTERVAL_MS,
        "seconds_without": without_s,
        "seconds_with": with_s,
        "net_runtime_s_without": without_net,
        "net_runtime_s_with": with_net,
        "rps_without": rps_without,
        "rps_with": rps_with,
        "ratio": rps_with / rps_without,
        "checkpoints": completed,
        "target_ratio_min": OVERHEAD_TARGET_RATIO,
    }


# ---- 2. incremental checkpoint size ----

def measure_incremental(keys: int) -> Figures:
    """RocksDB backend with ``keys`` keys: checkpoint 1, 1% of keys updated, checkpoint 2; bytes each uploaded."""
    updated_every = round(1 / INCREMENTAL_UPDATED_FRACTION)
    all_groups = key_group_range(MAX_PARALLELISM, 1, 0)
    with tempfile.TemporaryDirectory(prefix="weir-bench-incr-") as tmp:
        storage = FileSystemCheckpointStorage(Path(tmp, "checkpoints").as_uri())
        local = os.path.join(tmp, "local")
        backend = RocksDBKeyedStateBackend(os.path.join(tmp, "db"), MAX_PARALLELISM)
        try:
            state = backend.get_state(ValueStateDescriptor("count"))
            start = time.perf_counter()
            for i in range(keys):
                backend.current_key = i
                state.update(i)
            write_s = time.perf_counter() - start

            def checkpoint(cid: int) -> tuple[KeyedStateHandle, float, float]:
                t0 = time.perf_counter()
                pending = backend.snapshot(cid, all_groups, local)
                t1 = time.perf_counter()
                handle = pending.upload(storage, f"chk-{cid}/op", "shared")
                return handle, t1 - t0, time.perf_counter() - t1

            h1, sync1, upload1 = checkpoint(1)
            backend.notify_checkpoint_complete(1)
            updated = 0
            for i in range(0, keys, updated_every):
                backend.current_key = i
                state.update(-i)
                updated += 1
            h2, sync2, upload2 = checkpoint(2)
            backend.notify_checkpoint_complete(2)
        finally:
            backend.dispose()
    return {
        "name": "incremental-checkpoint",
        "keys": keys,
        "updated": updated,
        "write_s": write_s,
        "chk1_bytes": h1.size,
        "chk1_uploaded_bytes": h1.uploaded_bytes,
        "chk1_sync_s": sync1,
        "chk1_upload_s": upload1,
        "chk2_bytes": h2.size,
        "chk2_uploaded_bytes": h2.uploaded_bytes,
        "chk2_sync_s": sync2,
        "chk2_upload_s": upload2,
        "ratio": h2.uploaded_bytes / h2.size,
        "target_ratio_max": INCREMENTAL_TARGET_RATIO,
    }


# ---- 3. recovery time ----

def _build_recovery_job(env: StreamExecutionEnvironment, checkpoint_dir: str) -> None:
    """W2's pipeline over an effectively unbounded sequence, p=2, checkpointed every 500 ms."""
    env.set_parallelism(2)
    env.enable_checkpointing(RECOVERY_INTERVAL_MS)
    env.get_checkpoint_config().set_checkpoint_storage_dir(Path(checkpoint_dir).as_uri())
    (
        env.from_source(NumberSequenceSource(0, 2**62), source_name="Numbers")
        .map(jobs.to_key_one)
        .key_by(jobs.first_field)
        .reduce(jobs.sum_counts)
        .sink_to(jobs.CountingSink())
        .name("Discard")
    )


def _recovery_trial(verbose: bool) -> dict[str, float]:
    """One kill on a fresh cluster: seconds from the SIGKILL to failure seen, RUNNING again, records flowing."""
    previous = get_context()
    pids: list[int] = []
    jm: JobManagerClient | None = None
    job_id = ""
    with tempfile.TemporaryDirectory(prefix="weir-bench-recovery-") as tmp:
        log_dir = _log_dir(tmp, verbose)
        cluster = LocalCluster(taskmanagers=3, slots=1, heartbeat_timeout=RECOVERY_HEARTBEAT_TIMEOUT_S,
                               heartbeat_interval=RECOVERY_HEARTBEAT_INTERVAL_S, quiet=not verbose, log_dir=log_dir)
        try:
            cluster.start()
            pids = _cluster_pids(cluster)
            jm = JobManagerClient(cluster.address, timeout=5)
            set_context(ExecutionContext(jobmanager_address=cluster.address))
            env = StreamExecutionEnvironment.get_execution_environment()
            _build_recovery_job(env, os.path.join(tmp, "checkpoints"))
            job_id = env.execute_async("bench recovery").get_job_id()
            client = jm

            def ready() -> JobInfo | None:
                i = client.get_job(job_id)
                if i.is_terminal:
                    raise RuntimeError(f"the job ended {i.state} before the kill: {i.failure_cause}")
                return i if i.state == "RUNNING" and i.checkpoints_completed >= 2 and _source_records_out(i) else None

            _wait_for(ready, 60, "the job running with 2 completed checkpoints")
            busy = {t.pid for t in jm.overview().taskmanagers if t.free_slots == 0}
            victim = next(p for p in cluster.taskmanager_procs if p.pid in busy and p.poll() is None)
            pids = sorted(set(pids) | set(_cluster_pids(cluster)))
            restarts_before = jm.get_job(job_id).restarts

            t_kill = time.perf_counter()
            os.kill(victim.pid, signal.SIGKILL)
            victim.wait()
            return _watch_recovery(jm, job_id, restarts_before, t_kill)
        except Exception:
            procs.show_log_tails(log_dir, 5)
            raise
        finally:
            set_context(previous)
            if jm is not None:
                if job_id:
                    with contextlib.suppress(Exception):
                        jm.cancel(job_id)
                jm.close()
            pids = sorted(set(pids) | set(_cluster_pids(cluster)))  # the live daemons' workers, before stopping
            cluster.stop()
            left = _reap(pids)
            if left:
                print(f"  recovery: killed leftover processes {left}", file=sys.stderr, flush=True)


def _watch_recovery(jm: JobManagerClient, job_id: str, restarts_before: int, t_kill: float) -> dict[str, float]:
    """Poll the JobManager after the kill until records have flowed in a restarted execution that stays up."""
    t_failed = t_running = t_flow = 0.0
    restarts = restarts_before
    prev_out = 0
    deadline = t_kill + RECOVERY_TIMEOUT_S
    while True:
        info = jm.get_job(job_id)
        now = time.perf_counter()
        if info.is_terminal:
            raise RuntimeError(f"the job ended {info.state} after the kill: {info.failure_cause}")
        if not t_failed and (info.restarts > restarts_before or info.state != "RUNNING"):
            t_failed = now
        if info.restarts != restarts:  # a (further) restart: measure the flow of the newest execution
            restarts, t_running, t_flow = info.restarts, 0.0, 0.0
        if restarts > restarts_before and info.state == "RUNNING":
            out = _source_records_out(info)
            if not t_running:
                t_running, prev_out = now, out
            elif not t_flow and out > prev_out:
                t_flow = now
            prev_out = out
        elif restarts > restarts_before:  # RESTARTING / CREATED again
            t_running = t_flow = 0.0
        if t_flow and now >= max(t_flow + RECOVERY_STABLE_S,
                                 t_kill + RECOVERY_HEARTBEAT_TIMEOUT_S + RECOVERY_STABLE_S):
            return {
                "seconds": t_flow - t_kill,
                "failed_s": t_failed - t_kill,
                "running_s": t_running - t_kill,
                "restarts": float(restarts - restarts_before),
            }
        if now > deadline:
            raise TimeoutError(f"records did not flow again within {RECOVERY_TIMEOUT_S:g} s of the kill "
                               f"(state {info.state}, restarts {info.restarts - restarts_before})")
        time.sleep(RECOVERY_POLL_S)


def measure_recovery(trials: int, verbose: bool = False) -> Figures:
    """``trials`` kills, each on a fresh cluster; each time to records flowing again and the median."""
    figures: Figures = {"name": "recovery", "trials": trials}
    runs = []
    for n in range(1, trials + 1):
        r = _recovery_trial(verbose)
        runs.append(r)
        print(f"  recovery trial {n}: failure seen after {r['failed_s']:.3f} s, RUNNING after {r['running_s']:.3f} "
              f"s, records flowing after {r['seconds']:.3f} s ({r['restarts']:.0f} restart(s))", flush=True)
    for n, r in enumerate(runs, 1):
        figures[f"seconds_{n}"] = r["seconds"]
    figures["median_seconds"] = statistics.median(r["seconds"] for r in runs)
    figures["median_failed_s"] = statistics.median(r["failed_s"] for r in runs)
    figures["median_running_s"] = statistics.median(r["running_s"] for r in runs)
    figures["max_restarts"] = max(int(r["restarts"]) for r in runs)
    figures["heartbeat_timeout_s"] = RECOVERY_HEARTBEAT_TIMEOUT_S
    figures["target_seconds_max"] = RECOVERY_TARGET_S
    return figures


# ---- entry points ----

def run(quick: bool, only: Sequence[str] = MEASUREMENTS, verbose: bool = False) -> list[Figures]:
    """Run the selected measurements one after the other, printing a ``BENCH`` line for each.

    A measurement that fails gives ``{"name": ..., "error": ...}`` and the others still run.
    """
    # ship the user functions by value: the TaskManagers need not be able to import ``benchmarks``
    cloudpickle.register_pickle_by_value(jobs)
    steps: dict[str, tuple[str, Callable[[], Figures]]] = {
        "overhead": ("checkpoint-overhead",
                     lambda: measure_overhead(QUICK_RECORDS if quick else OVERHEAD_RECORDS, verbose)),
        "incremental": ("incremental-checkpoint",
                        lambda: measure_incremental(QUICK_RECORDS if quick else INCREMENTAL_KEYS)),
        "recovery": ("recovery", lambda: measure_recovery(QUICK_RECOVERY_TRIALS if quick else RECOVERY_TRIALS,
                                                          verbose)),
    }
    results: list[Figures] = []
    for key in MEASUREMENTS:
        if key not in only:
            continue
        name, measure = steps[key]
        try:
            figures = measure()
        except Exception as e:  # noqa: BLE001 - report it and go on with the other measurements
            figures = {"name": name, "error": f"{type(e).__name__}: {e}"}
        results.append(figures)
        print(bench_line(figures), flush=True)
    return results


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.checkpoints", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help=f"a small smoke run ({QUICK_RECORDS:,} records / keys, {QUICK_RECOVERY_TRIALS} recovery trial)")
    p.add_argument("--only", default=",".join(MEASUREMENTS),
                   help=f"comma-separated measurements among {', '.join(MEASUREMENTS)}")
    p.add_argument("--verbose", action="store_true", help="show the daemons' logs")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the measurements; 1 when one failed, 2 on an unknown name, else 0."""
    args = parse_args(argv)
    only = [n.strip().lower() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in only if n not in MEASUREMENTS]
    if unknown:
        print(f"unknown measurement(s) {', '.join(unknown)}: choose from {', '.join(MEASUREMENTS)}", file=sys.stderr)
        return 2
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"cores: {os.cpu_count()} (usable: {usable})  python: {sys.version.split()[0]}  load average: {load}  "
          f"mode: {'quick' if args.quick else 'full'}", flush=True)
    results = run(args.quick, only, args.verbose)
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
