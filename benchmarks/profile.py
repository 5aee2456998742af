"""Profile the slot worker processes of a benchmark workload with py-spy and print the top frames.

Starts a local cluster of p TaskManagers x 1 slot, submits the workload's throughput job (``benchmarks.run``'s
definition), lets it warm up, then samples every worker with ``py-spy record --format raw`` for a few seconds,
and prints per worker the functions with the largest share of samples, by own time ("self": the sampled frame
itself) and by inclusive time ("total": anywhere on the stack). The collapsed stacks are kept for flame graphs.

py-spy is a development tool, not a dependency: ``.venv/bin/pip install py-spy``.

Usage: ``python -m benchmarks.profile W3-rocksdb [-p 1] [--records N] [--seconds 8] [--warmup 2] [--top 25]
[--out DIR] [--idle] [--native]`` (``--idle``: include samples of idle threads, e.g. the event loop waiting;
``--native``: C frames too, e.g. the garbage collector).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import cloudpickle

from benchmarks import connectors, jobs, procs
from benchmarks.run import WORKLOADS, Workload
from client.gateway import JobManagerClient
from client.local_cluster import LocalCluster
from weir.datastream import StreamExecutionEnvironment
from weir.datastream.execution import ExecutionContext, get_context, set_context


def _frame_name(frame: str) -> str:
    """``func (path/to/file.py:123)`` -> ``file.py:func`` (lines of one function merged)."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = Path(path).parts
    short = "/".join(parts[-2:]) if len(parts) >= 2 else path
    return f"{short}:{name}"


def summarize(raw: Path) -> tuple[int, Counter[str], Counter[str]]:
    """(samples, self samples per function, inclusive samples per function) of py-spy's raw (collapsed) output."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    n = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        c = int(count)
        frames = [_frame_name(f) for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        n += c
        own[frames[-1]] += c
        for f in set(frames):
            total[f] += c
    return n, own, total


def _find(name: str) -> Workload:
    for w in WORKLOADS:
        if w.name.upper() == name.upper():
            return w
    raise SystemExit(f"no workload {name!r}: choose from {', '.join(w.name for w in WORKLOADS)}")


def profile(w: Workload, p: int, records: int, seconds: float, warmup: float, rate: int, idle: bool,
            out: Path, top: int, native: bool = False) -> int:
    """Run the job, record every worker, print the summaries; returns 0, or 1 when py-spy failed."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not os.path.exists(py_spy):
        print("py-spy is not installed: .venv/bin/pip install py-spy", file=sys.stderr)
        return 1
    cloudpickle.register_pickle_by_value(jobs)
    cloudpickle.register_pickle_by_value(connectors)
    out.mkdir(parents=True, exist_ok=True)
    previous = get_context()
    status = 0
    with tempfile.TemporaryDirectory(prefix="weir-profile-") as tmp, \
            LocalCluster(taskmanagers=p, slots=1, quiet=True, log_dir=os.path.join(tmp, "logs")) as cluster:
        set_context(ExecutionContext(jobmanager_address=cluster.address))
        jm = JobManagerClient(cluster.address)
        try:
            env = StreamExecutionEnvironment.get_execution_environment()
            w.build(env, records, p)
            if w.checkpoint_ms:
                env.enable_checkpointing(w.checkpoint_ms)
                env.get_checkpoint_config().set_checkpoint_storage_dir(Path(tmp, "checkpoints").as_uri())
            job_id = env.execute_async(f"profile {w.name} p={p}").get_job_id()
            deadline = time.monotonic() + 60
            while jm.get_job(job_id).state != "RUNNING":
                if time.monotonic() > deadline or jm.get_job(job_id).is_terminal:
                    raise RuntimeError(f"the job did not run: {jm.get_job(job_id)}")
                time.sleep(0.05)
            time.sleep(warmup)
            workers = [pid for tm in cluster.taskmanager_procs for pid in procs.descendants(tm.pid)]
            spies = []
            for i, pid in enumerate(workers):
                raw = out / f"{w.name}-p{p}-worker{i}.txt"
                cmd = [py_spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", str(rate),
                       "--format", "raw", "--output", str(raw)]
                cmd.append("--native" if native else "--nonblocking")  # native stacks need the process paused
                if idle:
                    cmd.append("--idle")
                spies.append((pid, raw, subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)))
            for pid, raw, spy in spies:
                _, err = spy.communicate(timeout=seconds + 60)
                if spy.returncode != 0 or not raw.exists():
                    print(f"py-spy failed on worker {pid}: {err.decode(errors='replace')[-500:]}", file=sys.stderr)
                    status = 1
                    continue
                info = jm.get_job(job_id)
                n, own, total = summarize(raw)
                print(f"\n== {w.name} p={p} worker pid {pid}: {n} samples over {seconds:g} s "
                      f"(job {info.state}; raw stacks: {raw})")
                print(f"{'self %':>7} {'total %':>8}  function")
                for f, c in own.most_common(top):
                    print(f"{100 * c / n:7.1f} {100 * total[f] / n:8.1f}  {f}")
                print(f"-- by inclusive time (top {top}):")
                for f, c in total.most_common(top):
                    print(f"{100 * own[f] / n:7.1f} {100 * c / n:8.1f}  {f}")
            if not jm.get_job(job_id).is_terminal:
                jm.cancel(job_id)
        finally:
            jm.close()
            set_context(previous)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: see the module docstring."""
    a = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__.split("\n\n")[0])
    a.add_argument("workload")
    a.add_argument("-p", "--parallelism", type=int, default=1)
    a.add_argument("--records", type=int, default=None, help="default: the workload's full-run records")
    a.add_argument("--seconds", type=float, default=8.0, help="how long py-spy samples")
    a.add_argument("--warmup", type=float, default=2.0, help="seconds after the job runs before sampling")
    a.add_argument("--rate", type=int, default=200, help="samples per second")
    a.add_argument("--top", type=int, default=25)
    a.add_argument("--idle", action="store_true", help="count idle samples too")
    a.add_argument("--native", action="store_true", help="sample C frames too (garbage collection, pickling...)")
    a.add_argument("--out", type=Path, default=Path(tempfile.gettempdir(), "weir-profiles"))
    args = a.parse_args(argv)
    w = _find(args.workload)
    records = args.records or w.records.get(args.parallelism) or max(w.records.values())
    return profile(w, args.parallelism, records, args.seconds, args.warmup, args.rate, args.idle, args.out, args.top,
                   args.native)


if __name__ == "__main__":
    sys.exit(main())
