"""``make bench``: run each workload on a local cluster and against a plain-loop baseline, print the figures.

One line per workload::

    BENCH name=W1 records=N seconds=S rps=R baseline_rps=B ratio=R/B

``seconds`` is the job's run time seen by the client (``env.execute()``: submit to FINISHED) on a cluster
started before the clock starts; the baseline is one plain loop in this process calling the same user
functions on the same number of records. The figures are also written as a Markdown table to
``benchmarks/results/latest.md``. Nothing here asserts on timing.

Usage: ``python -m benchmarks.run [--quick] [--records N] [--only W1,W3-rocksdb]`` (``WEIR_BENCH_RECORDS``
sets the record count too; ``--only W3`` selects both W3 variants).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cloudpickle

from benchmarks import jobs
from client.local_cluster import LocalCluster
from weir.datastream import StreamExecutionEnvironment
from weir.datastream.execution import ExecutionContext, get_context, set_context

QUICK_RECORDS = 100_000
RESULTS = Path(__file__).resolve().parent / "results" / "latest.md"


@dataclass(frozen=True)
class Workload:
    """A benchmark job, the cluster it runs on, and its single-process baseline."""

    name: str
    description: str
    default_records: int
    taskmanagers: int
    slots: int
    build: Callable[[StreamExecutionEnvironment, int], None]
    baseline: Callable[[int], int]
    target_rps: float | None = None
    target_ratio: float | None = None

    @property
    def target(self) -> str:
        """The workload's target as text ("" when it has none); for information, nothing asserts on it."""
        parts = []
        if self.target_rps:
            parts.append(f"records/s >= {self.target_rps:,.0f}")
        if self.target_ratio:
            parts.append(f"ratio >= {self.target_ratio:g}")
        return ", ".join(parts)


@dataclass(frozen=True)
class Result:
    """The figures measured for one workload."""

    workload: Workload
    records: int
    seconds: float
    net_runtime_s: float
    baseline_seconds: float

    @property
    def rps(self) -> float:
        """Records per second through the job (source records / client-side job time)."""
        return self.records / self.seconds

    @property
    def baseline_rps(self) -> float:
        """Records per second through the plain loop."""
        return self.records / self.baseline_seconds

    @property
    def ratio(self) -> float:
        """Job throughput relative to the baseline's."""
        return self.rps / self.baseline_rps


WORKLOADS: tuple[Workload, ...] = (
    Workload(
        name="W1",
        description="numbers -> map -> filter -> discard; chained, p=1, 1 TM x 1 slot",
        default_records=20_000_000,
        taskmanagers=1,
        slots=1,
        build=jobs.build_w1,
        baseline=jobs.baseline_w1,
    ),
    Workload(
        name="W2",
        description=f"numbers -> map (key, 1) -> key_by ({jobs.W2_KEYS:,} keys) -> reduce sum -> discard; "
        "p=2, 2 TMs x 1 slot (shuffle over the network)",
        default_records=4_000_000,
        taskmanagers=2,
        slots=1,
        build=jobs.build_w2,
        baseline=jobs.baseline_w2,
        target_rps=1_000_000,
    ),
    Workload(
        name="W3-hashmap",
        description=f"numbers -> map (key, ts, value) ({jobs.W3_KEYS:,} keys, ts = n x {jobs.W3_STEP_MS} ms + "
        f"0..{jobs.W3_DISORDER_MS // 1000} s disorder) -> bounded-out-of-orderness watermarks "
        f"({jobs.W3_DISORDER_MS // 1000} s) -> key_by -> 1-minute tumbling event-time window reduce sum -> "
        "discard; hashmap state backend, p=1, 1 TM x 1 slot",
        default_records=2_000_000,
        taskmanagers=1,
        slots=1,
        build=jobs.build_w3_hashmap,
        baseline=jobs.baseline_w3,
        target_ratio=0.5,
    ),
    Workload(
        name="W3-rocksdb",
        description="W3-hashmap with the RocksDB state backend",
        default_records=2_000_000,
        taskmanagers=1,
        slots=1,
        build=jobs.build_w3_rocksdb,
        baseline=jobs.baseline_w3,
        target_ratio=0.25,
    ),
    Workload(
        name="W4",
        description=f"numbers -> map to transactions ({jobs.W4_CUSTOMERS:,} customers, one per "
        f"{jobs.W4_STEP_MS} ms, 0..{jobs.W4_DISORDER_MS // 1000} s disorder) -> bounded-out-of-orderness "
        f"watermarks ({jobs.W4_DISORDER_MS // 1000} s) -> key_by customer -> fraud velocity rule "
        "(KeyedProcessFunction, MapState, event-time timers) -> discard alerts; p=2, 2 TMs x 1 slot",
        default_records=1_000_000,
        taskmanagers=2,
        slots=1,
        build=jobs.build_w4,
        baseline=jobs.baseline_w4,
    ),
)


def run_job(workload: Workload, records: int, verbose: bool) -> tuple[float, float]:
    """Run ``workload`` once on a fresh local cluster.

    Returns:
        (seconds around ``env.execute()``, the job's net runtime in seconds as reported by the JobManager).
    """
    with LocalCluster(taskmanagers=workload.taskmanagers, slots=workload.slots, quiet=not verbose) as cluster:
        previous = get_context()
        set_context(ExecutionContext(jobmanager_address=cluster.address))
        try:
            env = StreamExecutionEnvironment.get_execution_environment()
            workload.build(env, records)
            start = time.perf_counter()
            result = env.execute(f"bench {workload.name}")
            seconds = time.perf_counter() - start
        finally:
            set_context(previous)
    return seconds, result.get_net_runtime() / 1000


def run_baseline(workload: Workload, records: int) -> float:
    """Time the plain-loop baseline of ``workload`` in this process, in seconds."""
    start = time.perf_counter()
    workload.baseline(records)
    return time.perf_counter() - start


def bench_line(r: Result) -> str:
    """The ``BENCH ...`` line of one result."""
    return (
        f"BENCH name={r.workload.name} records={r.records} seconds={r.seconds:.3f} rps={r.rps:.0f} "
        f"baseline_rps={r.baseline_rps:.0f} ratio={r.ratio:.3f}"
    )


def machine() -> dict[str, str]:
    """What the figures depend on: cores, Python, platform."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cores": f"{os.cpu_count()} (usable: {usable})",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
    }


def markdown(results: Sequence[Result], info: dict[str, str], mode: str) -> str:
    """The results as a Markdown page with one table."""
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    lines = [
        "# weir benchmarks: latest run",
        "",
        f"- date: {when}",
        *(f"- {k}: {v}" for k, v in info.items()),
        f"- mode: {mode}",
        "- seconds: job run time seen by the client around `env.execute()` (submit to FINISHED), cluster "
        "already started; net runtime: the JobManager's `get_net_runtime()`",
        "- baseline: a plain loop in one process calling the same user functions on the same records (W3: "
        "dict-based windows fired by a bounded watermark; W4: the velocity rule on dicts, timers in event-time "
        "order)",
        "",
        "| workload | description | records | seconds | net runtime s | records/s | baseline records/s "
        "| ratio | target |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        w = r.workload
        lines.append(
            f"| {w.name} | {w.description} | {r.records:,} | {r.seconds:.3f} | {r.net_runtime_s:.3f} "
            f"| {r.rps:,.0f} | {r.baseline_rps:,.0f} | {r.ratio:.3f} | {w.target} |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--records", type=int, default=None,
                   help="records per workload (default: each workload's own; env WEIR_BENCH_RECORDS)")
    p.add_argument("--quick", action="store_true", help=f"a small smoke run ({QUICK_RECORDS:,} records)")
    p.add_argument("--only", default="",
                   help="comma-separated workload names, e.g. W1,W3-rocksdb (W3: both W3 variants)")
    p.add_argument("--output", type=Path, default=RESULTS, help="the Markdown file to write")
    p.add_argument("--verbose", action="store_true", help="show the daemons' logs")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected workloads; 1 when a job failed, else 0."""
    args = parse_args(argv)
    env_records = os.environ.get("WEIR_BENCH_RECORDS")
    records_override = args.records or (int(env_records) if env_records else None)
    if args.quick and records_override is None:
        records_override = QUICK_RECORDS
    wanted = {n.strip().upper() for n in args.only.split(",") if n.strip()}
    selected = [w for w in WORKLOADS
                if not wanted or w.name.upper() in wanted or w.name.split("-")[0].upper() in wanted]
    if not selected:
        print(f"no workload named {args.only!r}: choose from {', '.join(w.name for w in WORKLOADS)}",
              file=sys.stderr)
        return 2

    # ship the user functions by value: the TaskManagers need not be able to import ``benchmarks``
    cloudpickle.register_pickle_by_value(jobs)

    info = machine()
    mode = "quick" if args.quick and not (args.records or env_records) else (
        "custom records" if records_override else "full")
    print(f"cores: {info['cores']}  python: {info['python']}  platform: {info['platform']}  mode: {mode}",
          flush=True)

    results: list[Result] = []
    failed = False
    for w in selected:
        records = records_override or w.default_records
        try:
            seconds, net = run_job(w, records, args.verbose)
        except Exception as e:  # noqa: BLE001 - report it and go on with the other workloads
            print(f"BENCH name={w.name} records={records} error={type(e).__name__}: {e}", flush=True)
            failed = True
            continue
        r = Result(w, records, seconds, net, run_baseline(w, records))
        results.append(r)
        print(bench_line(r), flush=True)
        target = f", target {w.target}" if w.target else ""
        print(f"  {w.name}: {w.description}; net runtime {r.net_runtime_s:.3f} s, "
              f"baseline {r.baseline_seconds:.3f} s{target}", flush=True)

    text = markdown(results, info, mode)
    if not wanted:  # the whole suite: checkpoint overhead, incremental size and recovery time too
        from benchmarks import checkpoints

        figures = checkpoints.run(args.quick, verbose=args.verbose)
        failed = failed or any("error" in f for f in figures)
        text += "\n## Checkpoints and recovery (`python -m benchmarks.checkpoints`)\n\n"
        text += "".join(f"- {' '.join(f'{k}={v}' for k, v in f.items())}\n" for f in figures)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"results written to {args.output}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
