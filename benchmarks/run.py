"""``make bench``: each workload at parallelism 1 and 2 on a local cluster -- throughput, latency at half the
maximum rate, peak RSS per process -- against a plain-Python single-process baseline; prints the figures.

Per workload and parallelism p, on a fresh local cluster of p TaskManagers x 1 slot:

1. **throughput**: the job over generated records as fast as it goes; ``seconds`` is the job's run time seen by
   the client (``env.execute()``: submit to FINISHED); records/s = source records / seconds, and per core
   = records/s / min(p, cores).
2. **peak RSS**: ``VmHWM`` of the JobManager, each TaskManager daemon and each slot worker process, read when
   the throughput job has finished (the workers live as long as the cluster, so this is their peak over it).
3. **latency**: the same logic fed by a source that stamps each record with its creation time, into a sink that
   measures now - creation time. This instrumented job carries a timestamp through every function, so its
   maximum rate is lower than the throughput job's: it first runs unthrottled for 3 s to measure that maximum,
   then at half of it, each record stamped with the time it is due (so a source held back by backpressure counts
   the wait);
   the sink histograms now - creation time (0.1 ms buckets), ignoring its first second (tasks still connecting),
   and writes the histogram to a file this runner reads. buffer_timeout 10 ms; the auto-watermark interval is
   10 ms too (at the default 200 ms every window result and timer would wait up to 200 ms for a watermark).
   A window result is measured from the creation of its window's newest record over all keys (the moment the
   window's input was complete), an alert from the creation of the transaction whose timer raised it.
4. **baseline**: one plain loop in this process calling the same user functions on the same records (measured
   once per workload and record count; W3, W3-rocksdb and W5 share it); ratio = records/s / baseline records/s.

One line per measurement::

    BENCH name=W1 p=1 records=N seconds=S rps=R rps_per_core=... baseline_rps=B ratio=R/B p50_ms=... p99_ms=...
          rss_jm_mib=... rss_tm_mib=a/b rss_worker_mib=a/b ...

and a Markdown table in ``benchmarks/results/latest.md`` (cores and Python version in its header; the whole
suite also runs ``benchmarks.checkpoints`` and appends its section). Targets are printed, never asserted.

Usage: ``python -m benchmarks.run [--quick] [--only W1,W3-rocksdb] [--parallelism 1,2] [--records N]
[--latency-seconds S] [--no-latency]`` (``--only W3`` selects W3-hashmap and W3-rocksdb; ``--only V1`` selects V1 and
V1-records, the same job with its buffers crossing the rebalance as columns and as records).
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cloudpickle

from benchmarks import connectors, jobs, procs
from benchmarks.connectors import LatencySink, LatencySource, percentile_ms, read_latencies, read_source_rate
from client.gateway import JobManagerClient
from client.local_cluster import LocalCluster
from weir.datastream import StreamExecutionEnvironment
from weir.datastream.execution import ExecutionContext, get_context, set_context

RESULTS = Path(__file__).resolve().parent / "results" / "latest.md"
PARALLELISMS = (1, 2)
QUICK_RECORDS = 100_000
LATENCY_SECONDS = 10.0
QUICK_LATENCY_SECONDS = 1.5
CALIBRATION_SECONDS = 3.0
"""How long the latency job runs unthrottled to find its maximum rate."""
QUICK_CALIBRATION_SECONDS = 0.5
LATENCY_WARMUP_S = 1.0
QUICK_LATENCY_WARMUP_S = 0.3
BUFFER_TIMEOUT_MS = 10
LATENCY_WATERMARK_INTERVAL_MS = 10
CHECKPOINT_INTERVAL_MS = 1_000
MIN_SECONDS = 10.0
"""A full run's throughput jobs should last at least this long; shorter ones are flagged."""

Build = Callable[[StreamExecutionEnvironment, int, int], None]
BuildLatency = Callable[[StreamExecutionEnvironment, LatencySource, LatencySink, int], None]


@dataclass(frozen=True)
class Workload:
    """A benchmark job, its latency variant and its single-process baseline."""

    name: str
    description: str
    records: dict[int, int]
    """parallelism -> records of a full run (sized for >= 10 s on the 2-core development machine)."""
    build: Build
    latency: BuildLatency
    baseline: Callable[[int], int]
    checkpoint_ms: int = 0


@dataclass
class Result:
    """The figures measured for one workload at one parallelism."""

    workload: Workload
    parallelism: int
    records: int
    seconds: float
    net_runtime_s: float
    rss: dict[str, list[float]]
    cpu_s: float = math.nan
    """CPU time (user + system) the slot workers used during the throughput job, all workers together."""
    baseline_records: int = 0
    baseline_seconds: float = math.nan
    checkpoints: int | None = None
    latency_max_rate: float = math.nan
    """records/s of the latency job (the instrumented pipeline) unthrottled."""
    latency_rate: float = math.nan
    latency_hist: Counter[int] = field(default_factory=Counter)
    latency_skipped: int = 0
    latency_error: str = ""

    @property
    def rps(self) -> float:
        """Records per second through the job (source records / client-side job time)."""
        return self.records / self.seconds

    @property
    def rps_per_core(self) -> float:
        """records/s / min(parallelism, usable cores)."""
        return self.rps / min(self.parallelism, procs.usable_cores())

    @property
    def rps_cpu(self) -> float:
        """Records per CPU-second of the workers: steadier than records/s when other work shares the machine."""
        return self.records / self.cpu_s

    @property
    def baseline_rps(self) -> float:
        """Records per second through the plain loop."""
        return self.baseline_records / self.baseline_seconds

    @property
    def ratio(self) -> float:
        """Job throughput relative to the baseline's."""
        return self.rps / self.baseline_rps

    @property
    def latency_samples(self) -> int:
        return sum(self.latency_hist.values())

    def latency_ms(self, q: float) -> float:
        """The q-quantile of the latency in ms (NaN without samples)."""
        return percentile_ms(self.latency_hist, q)


W3_DESCRIPTION = (
    f"numbers (interleaved over the source subtasks) -> map (key, ts, value) ({jobs.W3_KEYS:,} keys, ts = n x "
    f"{jobs.W3_STEP_MS} ms + 0..{jobs.W3_DISORDER_MS // 1000} s disorder) -> bounded-out-of-orderness watermarks "
    f"({jobs.W3_DISORDER_MS // 1000} s) -> key_by -> 1-minute tumbling event-time window reduce sum -> discard"
)

WORKLOADS: tuple[Workload, ...] = (
    Workload(
        name="W1",
        description="numbers -> map -> filter -> flat_map (1.2 out per in) -> discard; one chain",
        records={1: 40_000_000, 2: 60_000_000},
        build=jobs.build_w1,
        latency=jobs.latency_w1,
        baseline=jobs.baseline_w1,
    ),
    Workload(
        name="W2",
        description=f"numbers -> map (key, 1) -> key_by ({jobs.W2_KEYS:,} keys) -> reduce sum -> discard "
        "(at p=2 a shuffle over the network)",
        records={1: 15_000_000, 2: 16_000_000},
        build=jobs.build_w2,
        latency=jobs.latency_w2,
        baseline=jobs.baseline_w2,
    ),
    Workload(
        name="W3-hashmap",
        description=f"{W3_DESCRIPTION}; hashmap state",
        records={1: 7_500_000, 2: 10_000_000},
        build=jobs.build_w3_hashmap,
        latency=jobs.latency_w3_hashmap,
        baseline=jobs.baseline_w3,
    ),
    Workload(
        name="W3-rocksdb",
        description="W3-hashmap with RocksDB state",
        records={1: 6_500_000, 2: 8_000_000},
        build=jobs.build_w3_rocksdb,
        latency=jobs.latency_w3_rocksdb,
        baseline=jobs.baseline_w3,
    ),
    Workload(
        name="W4",
        description=f"numbers (interleaved) -> map to transactions ({jobs.W4_CUSTOMERS:,} customers, one per "
        f"{jobs.W4_STEP_MS} ms, 0..{jobs.W4_DISORDER_MS // 1000} s disorder) -> bounded-out-of-orderness "
        f"watermarks ({jobs.W4_DISORDER_MS // 1000} s) -> key_by customer -> fraud velocity rule "
        "(KeyedProcessFunction, MapState, event-time timers) -> discard alerts; hashmap state",
        records={1: 1_000_000, 2: 1_500_000},
        build=jobs.build_w4,
        latency=jobs.latency_w4,
        baseline=jobs.baseline_w4,
    ),
    Workload(
        name="W5",
        description=f"W3 with RocksDB state and checkpoints every {CHECKPOINT_INTERVAL_MS // 1000} s to file://",
        records={1: 6_000_000, 2: 7_000_000},
        build=jobs.build_w3_rocksdb,
        latency=jobs.latency_w3_rocksdb,
        baseline=jobs.baseline_w3,
        checkpoint_ms=CHECKPOINT_INTERVAL_MS,
    ),
    Workload(
        name="V1",
        description="numbers -> map_batches (x = 2n, y = n % 7) -> rebalance -> map_batches (x + 3y) -> discard; "
        "the buffers cross the rebalance as columns (Arrow IPC between workers)",
        records={1: 12_000_000, 2: 12_000_000},
        build=jobs.build_v1,
        latency=jobs.latency_v1,
        baseline=jobs.baseline_v1,
    ),
    Workload(
        name="V1-records",
        description="V1 with pipeline.columnar-exchange: false -- the buffers cross the rebalance as pickled "
        "records, converted from and back to columns at its two ends (the path before)",
        records={1: 12_000_000, 2: 12_000_000},
        build=jobs.build_v1_records,
        latency=jobs.latency_v1_records,
        baseline=jobs.baseline_v1,
    ),
)


# ---- targets (printed, never asserted) ----

@dataclass(frozen=True)
class Target:
    what: str
    measured: str
    met: bool


def targets(results: Sequence[Result]) -> list[Target]:
    """The issue's targets, checked against whatever of them this run measured."""
    by = {(r.workload.name, r.parallelism): r for r in results}
    out: list[Target] = []

    def rps(name: str, p: int, minimum: float) -> None:
        r = by.get((name, p))
        if r is not None:
            out.append(Target(f"{name} p={p} >= {minimum:,.0f} records/s", f"{r.rps:,.0f}", r.rps >= minimum))

    rps("W1", 1, 1_500_000)
    rps("W2", 2, 1_000_000)
    for p in PARALLELISMS:
        rps("W3-hashmap", p, 500_000)
    for p in PARALLELISMS:
        w3, w5 = by.get(("W3-hashmap", p)), by.get(("W5", p))
        if w3 is not None and w5 is not None:
            out.append(Target(f"W5 p={p} >= 70% of W3-hashmap p={p}", f"{w5.rps / w3.rps:.0%}",
                              w5.rps >= 0.7 * w3.rps))
    for r in results:
        if r.latency_samples:
            p99 = r.latency_ms(0.99)
            out.append(Target(f"{r.workload.name} p={r.parallelism} p99 latency <= 50 ms at half max rate",
                              f"{p99:,.1f} ms", p99 <= 50))
    return out


# ---- running ----

def _checkpoints_completed(cluster: LocalCluster, job_id: str) -> int:
    jm = JobManagerClient(cluster.address)
    try:
        return jm.get_job(job_id).checkpoints_completed
    finally:
        jm.close()


def _enable_checkpoints(env: StreamExecutionEnvironment, w: Workload, tmp: str, name: str) -> None:
    if w.checkpoint_ms:
        env.enable_checkpointing(w.checkpoint_ms)
        env.get_checkpoint_config().set_checkpoint_storage_dir(Path(tmp, name).as_uri())


def run_workload(w: Workload, p: int, records: int, latency_seconds: float, warmup_s: float,
                 calibration_s: float, verbose: bool) -> Result:
    """Throughput, peak RSS and (unless ``latency_seconds`` is 0) latency of ``w`` at parallelism ``p``."""
    previous = get_context()
    with tempfile.TemporaryDirectory(prefix="weir-bench-") as tmp:
        log_dir = None if verbose else os.path.join(tmp, "logs")
        try:
            with LocalCluster(taskmanagers=p, slots=1, quiet=not verbose, log_dir=log_dir) as cluster:
                set_context(ExecutionContext(jobmanager_address=cluster.address))
                env = StreamExecutionEnvironment.get_execution_environment()
                w.build(env, records, p)
                _enable_checkpoints(env, w, tmp, "checkpoints")
                workers = procs.worker_pids(cluster)
                cpu0 = sum(map(procs.cpu_seconds, workers))
                start = time.perf_counter()
                job = env.execute(f"bench {w.name} p={p}")
                seconds = time.perf_counter() - start
                cpu = sum(map(procs.cpu_seconds, workers)) - cpu0
                r = Result(w, p, records, seconds, job.get_net_runtime() / 1000, procs.cluster_peak_rss(cluster), cpu)
                if w.checkpoint_ms:
                    r.checkpoints = _checkpoints_completed(cluster, job.get_job_id())
                if latency_seconds > 0:
                    try:
                        _measure_latency(r, cluster, tmp, latency_seconds, warmup_s, calibration_s)
                    except Exception as e:  # noqa: BLE001 - the throughput figures still count
                        r.latency_error = f"{type(e).__name__}: {e}"
        except Exception:
            procs.show_log_tails(log_dir, 8)
            raise
        finally:
            set_context(previous)
    return r


def _latency_env(w: Workload, tmp: str, name: str) -> StreamExecutionEnvironment:
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_buffer_timeout(BUFFER_TIMEOUT_MS)
    env.get_config().set_auto_watermark_interval(LATENCY_WATERMARK_INTERVAL_MS)
    _enable_checkpoints(env, w, tmp, name)
    return env


def _measure_latency(r: Result, cluster: LocalCluster, tmp: str, seconds: float, warmup_s: float,
                     calibration_s: float) -> None:
    """The latency job's own maximum rate (unthrottled for ``calibration_s``), then its latency at half of it."""
    w, p = r.workload, r.parallelism
    cal_dir = os.path.join(tmp, "latency-max")
    os.makedirs(cal_dir)
    env = _latency_env(w, tmp, "latency-max-checkpoints")
    w.latency(env, LatencySource(2**62, None, calibration_s, cal_dir), LatencySink(cal_dir, 0.0), p)
    env.execute(f"bench {w.name} p={p} latency job, unthrottled")
    r.latency_max_rate = read_source_rate(cal_dir, expected=p)
    r.latency_rate = rate = r.latency_max_rate / 2
    out_dir = os.path.join(tmp, "latency")
    os.makedirs(out_dir)
    env = _latency_env(w, tmp, "latency-checkpoints")
    w.latency(env, LatencySource(max(p, int(rate * (seconds + warmup_s))), rate), LatencySink(out_dir, warmup_s), p)
    env.execute(f"bench {w.name} p={p} latency")
    r.latency_hist, r.latency_skipped = read_latencies(out_dir, expected=p)


def run_baseline(baseline: Callable[[int], int], records: int) -> float:
    """Time a plain-loop baseline in this process, in seconds."""
    start = time.perf_counter()
    baseline(records)
    return time.perf_counter() - start


# ---- output ----

def _mib(values: list[float]) -> str:
    return "/".join(f"{v:.0f}" for v in values) or "-"


def _fmt_ms(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:.1f}"


def bench_line(r: Result) -> str:
    """The ``BENCH ...`` line of one result."""
    parts = [
        f"name={r.workload.name}", f"p={r.parallelism}", f"records={r.records}", f"seconds={r.seconds:.3f}",
        f"net_runtime_s={r.net_runtime_s:.3f}", f"rps={r.rps:.0f}", f"rps_per_core={r.rps_per_core:.0f}",
        f"baseline_rps={r.baseline_rps:.0f}", f"ratio={r.ratio:.3f}", f"worker_cpu_s={r.cpu_s:.2f}",
        f"rps_per_cpu_s={r.rps_cpu:.0f}",
    ]
    if r.checkpoints is not None:
        parts.append(f"checkpoints={r.checkpoints}")
    if r.latency_samples:
        parts += [f"latency_max_rps={r.latency_max_rate:.0f}", f"latency_rate={r.latency_rate:.0f}",
                  f"latency_samples={r.latency_samples}",
                  f"p50_ms={r.latency_ms(0.5):.1f}", f"p99_ms={r.latency_ms(0.99):.1f}",
                  f"p999_ms={r.latency_ms(0.999):.1f}", f"max_ms={r.latency_ms(1.0):.1f}"]
    elif r.latency_error:
        parts.append(f"latency_error={r.latency_error!r}")
    parts += [f"rss_jm_mib={_mib(r.rss['jobmanager'])}", f"rss_tm_mib={_mib(r.rss['taskmanager'])}",
              f"rss_worker_mib={_mib(r.rss['worker'])}"]
    if r.seconds < MIN_SECONDS:
        parts.append("short=1")
    return "BENCH " + " ".join(parts)


def markdown(results: Sequence[Result], info: dict[str, str], mode: str, loads: tuple[str, str],
             workloads: Sequence[Workload]) -> str:
    """The results as a Markdown page: machine, method, one table, workloads, targets."""
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    lines = [
        "# weir benchmarks: latest run",
        "",
        f"- date: {when}",
        *(f"- {k}: {v}" for k, v in info.items()),
        f"- mode: {mode}",
        f"- load average (1, 5, 15 min) at start: {loads[0]}; at end: {loads[1]}",
        "- cluster: per workload and parallelism p, a fresh local cluster of 1 JobManager + p TaskManagers x 1 "
        "slot (each slot a worker process) on loopback",
        "- records/s: source records / the job's run time seen by the client around `env.execute()` (submit to "
        "FINISHED, cluster already started); per core: / min(p, cores)",
        "- baseline: a plain loop in one process calling the same user functions on the same records (measured "
        "once per workload and record count, in this run); ratio = records/s / baseline records/s",
        f"- latency: creation time (stamped by a rate-limited source) to sink, at half the maximum records/s of "
        "the latency job itself (the same logic carrying a timestamp: measured unthrottled first, column "
        "'latency job max/s'), "
        f"buffer_timeout {BUFFER_TIMEOUT_MS} ms, auto-watermark interval {LATENCY_WATERMARK_INTERVAL_MS} ms, "
        "the sink's first second left out; a window result is measured from the creation of its window's newest "
        "record over all keys (when the window's input was complete), an alert from that of the transaction whose "
        "timer raised it",
        "- peak RSS: VmHWM of each process in MiB after the throughput job (JobManager / each TaskManager daemon / "
        "each slot worker)",
        "- records per worker CPU-s: records / the CPU time (user + system) of all slot workers during the "
        "throughput job; steadier than records/s when other work shares the machine",
        "",
        "| workload | p | records | seconds | records/s | per core | baseline records/s | ratio "
        "| records per worker CPU-s | latency job max/s | latency rate/s | p50 ms | p99 ms | p99.9 ms "
        "| peak RSS MiB JM / TM / workers |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        rate = "-" if math.isnan(r.latency_rate) else f"{r.latency_rate:,.0f}"
        max_rate = "-" if math.isnan(r.latency_max_rate) else f"{r.latency_max_rate:,.0f}"
        chk = f" ({r.checkpoints} checkpoints)" if r.checkpoints is not None else ""
        lines.append(
            f"| {r.workload.name}{chk} | {r.parallelism} | {r.records:,} | {r.seconds:.2f} | {r.rps:,.0f} "
            f"| {r.rps_per_core:,.0f} | {r.baseline_rps:,.0f} | {r.ratio:.2f} | {r.rps_cpu:,.0f} | {max_rate} | {rate} "
            f"| {_fmt_ms(r.latency_ms(0.5))} | {_fmt_ms(r.latency_ms(0.99))} | {_fmt_ms(r.latency_ms(0.999))} "
            f"| {_mib(r.rss['jobmanager'])} / {_mib(r.rss['taskmanager'])} / {_mib(r.rss['worker'])} |"
        )
    errors = [r for r in results if r.latency_error]
    if errors:
        lines += ["", *(f"- {r.workload.name} p={r.parallelism}: latency run failed: {r.latency_error}"
                        for r in errors)]
    lines += ["", "Workloads:", "", *(f"- {w.name}: {w.description}" for w in workloads)]
    ts = targets(results)
    if ts:
        lines += ["", "Targets (information, not assertions):", "",
                  *(f"- {t.what}: {t.measured} ({'met' if t.met else 'NOT met'})" for t in ts)]
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--records", type=int, default=None,
                   help="records per throughput job (default: each workload's own; env WEIR_BENCH_RECORDS)")
    p.add_argument("--quick", action="store_true",
                   help=f"a small smoke run ({QUICK_RECORDS:,} records, {QUICK_LATENCY_SECONDS:g} s of latency)")
    p.add_argument("--only", default="",
                   help="comma-separated workload names, e.g. W1,W3-rocksdb (W3: both W3 variants)")
    p.add_argument("--parallelism", default=",".join(map(str, PARALLELISMS)),
                   help="comma-separated parallelisms (default 1,2)")
    p.add_argument("--latency-seconds", type=float, default=None,
                   help=f"length of each latency run (default {LATENCY_SECONDS:g}; quick {QUICK_LATENCY_SECONDS:g})")
    p.add_argument("--no-latency", action="store_true", help="skip the latency runs")
    p.add_argument("--no-checkpoints", action="store_true",
                   help="skip benchmarks.checkpoints (which runs only with the whole suite anyway)")
    p.add_argument("--output", type=Path, default=RESULTS, help="the Markdown file to write")
    p.add_argument("--verbose", action="store_true", help="show the daemons' logs")
    return p.parse_args(argv)


def select(only: str) -> list[Workload]:
    """The workloads ``--only`` names (all when empty)."""
    wanted = {n.strip().upper() for n in only.split(",") if n.strip()}
    return [w for w in WORKLOADS
            if not wanted or w.name.upper() in wanted or w.name.split("-")[0].upper() in wanted]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected workloads; 1 when a job failed, else 0."""
    args = parse_args(argv)
    env_records = os.environ.get("WEIR_BENCH_RECORDS")
    records_override = args.records or (int(env_records) if env_records else None)
    if args.quick and records_override is None:
        records_override = QUICK_RECORDS
    selected = select(args.only)
    if not selected:
        print(f"no workload named {args.only!r}: choose from {', '.join(w.name for w in WORKLOADS)}",
              file=sys.stderr)
        return 2
    parallelisms = [int(x) for x in args.parallelism.split(",") if x.strip()]
    latency_seconds = 0.0 if args.no_latency else (
        args.latency_seconds if args.latency_seconds is not None
        else QUICK_LATENCY_SECONDS if args.quick else LATENCY_SECONDS)
    warmup_s = QUICK_LATENCY_WARMUP_S if args.quick else LATENCY_WARMUP_S

    # ship the user functions by value: the TaskManagers need not be able to import ``benchmarks``
    cloudpickle.register_pickle_by_value(jobs)
    cloudpickle.register_pickle_by_value(connectors)

    info = procs.machine()
    mode = "quick" if args.quick and not (args.records or env_records) else (
        "custom records" if records_override else "full")
    load_start = procs.load_average()
    print(f"cores: {info['cores']}  python: {info['python']}  platform: {info['platform']}  mode: {mode}  "
          f"load average: {load_start}", flush=True)

    results: list[Result] = []
    baselines: dict[tuple[Callable[[int], int], int], float] = {}
    failed = False
    for w in selected:
        for p in parallelisms:
            records = records_override or w.records.get(p) or max(w.records.values())
            try:
                r = run_workload(w, p, records, latency_seconds, warmup_s,
                                 QUICK_CALIBRATION_SECONDS if args.quick else CALIBRATION_SECONDS, args.verbose)
            except Exception as e:  # noqa: BLE001 - report it and go on with the other workloads
                print(f"BENCH name={w.name} p={p} records={records} error={type(e).__name__}: {e}", flush=True)
                failed = True
                continue
            # one baseline per workload logic and record count: the p=1 job's records
            b_records = records_override or w.records.get(1) or records
            key = (w.baseline, b_records)
            if key not in baselines:
                baselines[key] = run_baseline(w.baseline, b_records)
            r.baseline_records, r.baseline_seconds = b_records, baselines[key]
            results.append(r)
            print(bench_line(r), flush=True)
            failed = failed or bool(r.latency_error)

    print(f"load average at end: {procs.load_average()}", flush=True)
    for t in targets(results):
        print(f"TARGET {t.what}: {t.measured} {'met' if t.met else 'NOT met'}", flush=True)

    text = markdown(results, info, mode, (load_start, procs.load_average()), selected)
    if not args.only and not args.no_checkpoints:  # the whole suite: checkpoint overhead, incremental, recovery
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
