"""``make bench-peers``: weir, PyFlink and Bytewax side by side on the same workloads and the same data.

For every workload (W1-W4, see ``workloads.py``) and parallelism (2, then 1):

1. the **check run**: all three engines read the same small data set (``--check-records``, sized for PyFlink,
   the slowest); each engine's output digest must equal the others' and the plain-Python reference's. This
   is also PyFlink's measurement.
2. the **main run**: weir and Bytewax read a larger data set (``--records``, per workload by default), so that
   they run long enough to measure; their digests must equal the reference's (and so each other's).

Throughputs are compared as records/s: weir's and Bytewax's from the main run, PyFlink's from the check run.
One line per measurement::

    BENCH name=peers-W2 engine=pyflink parallelism=2 run=check records=N seconds=S rps=R wall_seconds=W match=yes

``seconds`` is the job's own run time: weir: ``env.execute()`` on an already started LocalCluster (submit to
FINISHED); PyFlink: the job's net runtime from its JobManager (``get_net_runtime()``: excludes the JVM and
MiniCluster start, includes deploying the tasks); Bytewax: ``cli_main`` in each process (the dataflow's whole
run), the earliest start to the latest end. ``wall_seconds`` is the whole job process(es) from launch to exit,
as seen by this runner: interpreter and imports, JVM start (PyFlink), cluster start and stop (weir), worker
connections (Bytewax), and the job. Neither includes creating the venvs or generating the data.

Then one ``RATIO`` line per workload and parallelism (weir/PyFlink and weir/Bytewax records/s, with the targets
>= 10x and >= 2x, printed for information), and a Markdown page in ``benchmarks/results/peers.md``. The exit
status is 1 when any job failed or any digest differs (``MISMATCH`` lines say which), else 0. Nothing asserts
on timing.

Usage: ``python -m benchmarks.peers.run [--quick] [--parallelism 2,1] [--only W1,W3] [--engines weir,bytewax]
[--records N] [--check-records N] [--pyflink-conf KEY=VALUE]`` (run from the repository root with the project's
venv; the peers' venvs are ``.venv-pyflink`` and ``.venv-bytewax``, made by ``make bench-peers``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.peers import workloads as wl

ROOT = Path(__file__).resolve().parents[2]
PEERS = Path(__file__).resolve().parent
RESULTS = ROOT / "benchmarks" / "results" / "peers.md"
ENGINES: tuple[str, ...] = ("weir", "pyflink", "bytewax")
VENVS = {"weir": Path(sys.executable).parent.parent, "pyflink": ROOT / ".venv-pyflink",
         "bytewax": ROOT / ".venv-bytewax"}
"""Each engine's venv (weir: the one running this)."""

MAIN_RECORDS = {"W1": 4_000_000, "W2": 2_000_000, "W3": 1_000_000, "W4": 1_000_000}
"""Records of the main run (weir and Bytewax) per workload: several seconds for each engine on 2 cores."""
CHECK_RECORDS = 100_000
"""Records of the check run (all three engines; PyFlink's measurement): 10-30 s of PyFlink per workload."""
QUICK_MAIN, QUICK_CHECK = 200_000, 20_000
PYFLINK_CONF = ("python.execution-mode=thread",)
"""PyFlink's Python functions run in the JVM's threads (pemja), its faster mode: a keyed reduce over 10,000 keys
ran 3-4x faster here than in the default process mode (Python workers fed over gRPC, state fetched per key)."""
TARGETS = {"pyflink": 10.0, "bytewax": 2.0}
"""weir's throughput targets relative to each peer at parallelism 2 (printed, never asserted)."""
JOB_TIMEOUT_S = 1800


@dataclass
class Measurement:
    """One job run: an engine, a workload, a parallelism and a data set."""

    workload: str
    engine: str
    parallelism: int
    run: str  # "check" or "main"
    records: int
    seconds: float = float("nan")
    wall_seconds: float = float("nan")
    summary: dict[str, Any] = field(default_factory=dict)
    match: bool = False
    error: str = ""

    @property
    def rps(self) -> float:
        """Input records per second of job time."""
        return self.records / self.seconds if self.seconds > 0 else float("nan")

    def bench_line(self) -> str:
        """The ``BENCH ...`` line of this measurement."""
        if self.error:
            return (f"BENCH name=peers-{self.workload} engine={self.engine} parallelism={self.parallelism} "
                    f"run={self.run} records={self.records} error={self.error!r}")
        return (f"BENCH name=peers-{self.workload} engine={self.engine} parallelism={self.parallelism} "
                f"run={self.run} records={self.records} seconds={self.seconds:.3f} rps={self.rps:.0f} "
                f"wall_seconds={self.wall_seconds:.3f} match={'yes' if self.match else 'NO'}")


def free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on loopback."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def commands(engine: str, workload: str, data: Path, digests: Path, parallelism: int,
             pyflink_conf: Sequence[str]) -> tuple[list[list[str]], dict[str, str]]:
    """The command line(s) of one job and their environment (Bytewax: one process per parallel worker)."""
    env = dict(os.environ)
    python = str(VENVS[engine] / "bin" / "python")
    args = [workload, str(data), str(digests)]
    if engine == "weir":
        return [[python, str(PEERS / "weir_jobs.py"), *args, "--parallelism", str(parallelism)]], env
    if engine == "pyflink":
        env["PATH"] = f"{VENVS['pyflink'] / 'bin'}{os.pathsep}{env.get('PATH', '')}"  # its Python workers' python
        conf = [a for kv in pyflink_conf for a in ("--conf", kv)]
        return [[python, str(PEERS / "pyflink_jobs.py"), *args, "--parallelism", str(parallelism), *conf]], env
    if parallelism == 1:
        return [[python, str(PEERS / "bytewax_jobs.py"), *args]], env
    addresses = ";".join(f"127.0.0.1:{p}" for p in free_ports(parallelism))
    return [[python, str(PEERS / "bytewax_jobs.py"), *args, "--process-id", str(i), "--addresses", addresses]
            for i in range(parallelism)], env


def run_job(m: Measurement, data: Path, work: Path, pyflink_conf: Sequence[str]) -> None:
    """Runs one job (all its processes), fills in ``m``'s times and its merged digest's summary."""
    digests = work / "digests" / f"{m.workload}-{m.engine}-p{m.parallelism}-{m.run}"
    shutil.rmtree(digests, ignore_errors=True)
    digests.mkdir(parents=True)
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    argvs, env = commands(m.engine, m.workload, data, digests, m.parallelism, pyflink_conf)
    procs = []
    start = time.perf_counter()
    for i, argv in enumerate(argvs):
        log = logs / f"{digests.name}-{i}.log"
        with open(log, "wb") as f:
            procs.append((subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=f), log))
    outputs = []
    try:
        for p, _ in procs:
            out, _ = p.communicate(timeout=JOB_TIMEOUT_S)
            outputs.append(out.decode(errors="replace"))
    except subprocess.TimeoutExpired:
        for p, _ in procs:
            p.kill()
        m.error = f"timed out after {JOB_TIMEOUT_S} s"
        return
    m.wall_seconds = time.perf_counter() - start
    failed = [(p, log) for p, log in procs if p.returncode != 0]
    if failed:
        p, log = failed[0]
        tail = [line for line in log.read_text(errors="replace").splitlines() if line.strip()][-3:]
        m.error = f"exit {p.returncode}: {' | '.join(tail)} (log: {log})"
        return
    jobs = [json.loads(line.split(" ", 1)[1]) for out in outputs for line in out.splitlines()
            if line.startswith("PEERS_JOB ")]
    if len(jobs) != len(procs):
        m.error = f"{len(procs) - len(jobs)} process(es) printed no PEERS_JOB line"
        return
    if m.engine == "pyflink":
        m.seconds = jobs[0]["net_runtime_s"]
    else:
        m.seconds = max(j["end"] for j in jobs) - min(j["start"] for j in jobs)
    digest, partials = wl.merge_partials(m.workload, digests)
    if not partials:
        m.error = "no digest written"
        return
    m.summary = digest.summary()


def machine() -> dict[str, str]:
    """What the figures depend on: cores, Python, Java, the engines' versions."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info = {"cores": f"{os.cpu_count()} (usable: {usable})",
            "python": f"{platform.python_implementation()} {platform.python_version()}",
            "platform": platform.platform()}
    versions = []
    for engine, dist in (("weir", "weir"), ("pyflink", "apache-flink"), ("bytewax", "bytewax")):
        python = VENVS[engine] / "bin" / "python"
        try:
            out = subprocess.run([str(python), "-c", "import importlib.metadata as m, platform, sys; "
                                  f"print(m.version({dist!r}), platform.python_version())"],
                                 capture_output=True, text=True, timeout=60, check=True).stdout.split()
            versions.append(f"{dist} {out[0]} (Python {out[1]})")
        except (OSError, subprocess.SubprocessError, IndexError):
            versions.append(f"{dist}: not installed in {VENVS[engine]}")
    info["engines"] = ", ".join(versions)
    info["load"] = end_load()
    try:
        java = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=60).stderr
        info["java"] = java.splitlines()[0] if java else "?"
    except OSError:
        info["java"] = "not found"
    return info


def end_load() -> str:
    """The 1-minute load average now."""
    return f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "?"


def ratio(a: Measurement | None, b: Measurement | None) -> float | None:
    """a's records/s over b's, when both ran and matched."""
    if a is None or b is None or a.error or b.error or not (a.rps > 0 and b.rps > 0):
        return None
    return a.rps / b.rps


def fmt_ratio(r: float | None) -> str:
    """A ratio as text ('n/a' when it could not be computed)."""
    return "n/a" if r is None else f"{r:.2f}x"


def markdown(results: Sequence[Measurement], ratios: Sequence[tuple[str, int, float | None, float | None]],
             info: dict[str, str], args: argparse.Namespace, ok: bool) -> str:
    """The page written to ``benchmarks/results/peers.md``."""
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    lines = [
        "# weir, PyFlink and Bytewax side by side (`make bench-peers`)",
        "",
        f"- date: {when}",
        *(f"- {k}: {v}" for k, v in info.items() if k != "load"),
        f"- command: `{' '.join(['python -m benchmarks.peers.run', *args.argv])}`",
        "- outputs: " + ("all digests equal (every engine, every run, and the plain-Python reference)" if ok
                         else "**MISMATCH or FAILED JOB: see below**"),
        "- data: newline-delimited CSV generated from a seed (events `key,ts,value` for W1-W3, transactions "
        "`customer,amount,ts` for W4), one file per source reader, partitioned by key; every engine reads the "
        "files itself (weir and PyFlink: `FileSource` text lines; Bytewax: `DirSource`)",
        "- runs: the **check** run gives every engine the same data set (sized for PyFlink, the slowest) and "
        "compares the three output digests with the plain-Python reference's; it is PyFlink's measurement. The "
        "**main** run gives weir and Bytewax a larger data set (their digests are compared with the reference "
        "too). Ratios: weir's main-run records/s over PyFlink's check-run and Bytewax's main-run records/s",
        "- seconds (records/s): the job's own run time. weir: `env.execute()` on a LocalCluster started "
        "beforehand (1 JobManager, p TaskManagers x 1 slot), submit to FINISHED; PyFlink: the job's net "
        "runtime from its JobManager (excludes starting the JVM and the MiniCluster); Bytewax: `cli_main` of "
        "its p processes (1 worker each), earliest start to latest end",
        "- wall s: the job's process(es) from launch to exit: interpreter, imports, JVM (PyFlink), cluster "
        "start and stop (weir), the job, the digest. Not included anywhere: venv creation, data generation",
        f"- PyFlink configuration: {', '.join(args.pyflink_conf) or 'defaults'}"
        + (" (thread mode: the Python functions run inside the JVM through pemja, all subtasks under one GIL; "
           "the default process mode, with Python worker processes fed over gRPC, ran a keyed reduce over "
           "10,000 keys 3-4x slower here)" if "python.execution-mode=thread" in args.pyflink_conf else "")
        + "; started as `python pyflink_jobs.py`, i.e. on a local MiniCluster",
        f"- load average (1 min) at start / end: {info.get('load', '?')} / {end_load()} (others' processes "
        "share the 2 cores: figures from a busy machine are noisy)",
        "- digest: each job ends in a counting sink that folds its output into an order-independent digest "
        "(record count and a 64-bit multiset hash; W2: per key the number of outputs and the final sum)",
        "",
        "| workload | p | engine | run | records | seconds | records/s | wall s | records out | digest | "
        "equal |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for m in results:
        if m.error:
            lines.append(f"| {m.workload} | {m.parallelism} | {m.engine} | {m.run} | {m.records:,} | | | | | "
                         f"FAILED: {m.error} | no |")
            continue
        digest = m.summary.get("hash") or m.summary.get("keys_hash", "")
        lines.append(f"| {m.workload} | {m.parallelism} | {m.engine} | {m.run} | {m.records:,} | {m.seconds:.2f} "
                     f"| {m.rps:,.0f} | {m.wall_seconds:.2f} | {m.summary.get('records_out', 0):,} | `{digest}` "
                     f"| {'yes' if m.match else '**NO**'} |")
    lines += [
        "",
        "## Ratios (weir records/s over the peer's; targets at p=2 for information only)",
        "",
        "| workload | p | weir / PyFlink | target | weir / Bytewax | target |",
        "|---|---:|---:|---|---:|---|",
    ]
    for w, p, rp, rb in ratios:
        lines.append(f"| {w} | {p} | {fmt_ratio(rp)} | >= {TARGETS['pyflink']:g}x | {fmt_ratio(rb)} "
                     f"| >= {TARGETS['bytewax']:g}x |")
    lines += ["", "Workloads (the same functions in every engine, `benchmarks/peers/workloads.py`):", "",
              "- W1: map parse -> filter (value % 3 != 0) -> flat_map (even values split in two) -> sink",
              "- W2: map parse -> key_by (10,000 keys, shuffle) -> rolling reduce sum (one output per input) "
              "-> sink",
              "- W3: map parse -> 2 s bounded-out-of-orderness watermarks -> key_by (10,000 keys) -> 1-minute "
              "tumbling event-time window reduce sum -> sink",
              "- W4: map parse -> 5 s bounded-out-of-orderness watermarks -> key_by customer (10,000) -> fraud "
              "velocity rule (KeyedProcessFunction with MapState and event-time timers; Bytewax: a `stateful` "
              "logic per customer with its own event-time timers) -> sink of the alerts", ""]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.peers.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--parallelism", default="2,1", help="comma-separated parallelisms (default: 2,1)")
    p.add_argument("--only", default="", help="comma-separated workloads, e.g. W2,W4")
    p.add_argument("--engines", default=",".join(ENGINES), help="comma-separated engines (default: all three)")
    p.add_argument("--records", type=int, default=None,
                   help="records of the main run, every workload (default: "
                        + ", ".join(f"{w} {n:,}" for w, n in MAIN_RECORDS.items()) + ")")
    p.add_argument("--check-records", type=int, default=None,
                   help=f"records of the check run (default {CHECK_RECORDS:,})")
    p.add_argument("--quick", action="store_true",
                   help=f"a smoke run: p=2, {QUICK_MAIN:,} and {QUICK_CHECK:,} records")
    p.add_argument("--seed", type=int, default=42, help="the data generator's seed")
    p.add_argument("--work-dir", type=Path, default=Path("/tmp/weir-peers"),
                   help="data sets, digests and job logs (default /tmp/weir-peers)")
    p.add_argument("--pyflink-conf", action="append", default=None, metavar="KEY=VALUE",
                   help=f"PyFlink configuration (default: {', '.join(PYFLINK_CONF)}); '' for PyFlink's defaults")
    p.add_argument("--output", type=Path, default=RESULTS, help="the Markdown file to write")
    args = p.parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]
    if args.pyflink_conf is None:
        args.pyflink_conf = list(PYFLINK_CONF)
    args.pyflink_conf = [kv for kv in args.pyflink_conf if kv]
    if args.quick:
        args.parallelism = "2"
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the selected workloads on the selected engines; 1 on a failed job or a mismatch, else 0."""
    args = parse_args(argv)
    workloads = [w for w in wl.WORKLOADS if not args.only or w in args.only.upper().split(",")]
    engines = [e for e in ENGINES if e in args.engines.lower().split(",")]
    parallelisms = [int(p) for p in args.parallelism.split(",") if p.strip()]
    check_n = args.check_records or (QUICK_CHECK if args.quick else CHECK_RECORDS)
    missing = [e for e in engines if not (VENVS[e] / "bin" / "python").exists()]
    if not workloads or not engines or not parallelisms or missing:
        print(f"nothing to run (workloads {workloads}, engines {engines}, parallelisms {parallelisms}); "
              f"missing venvs: {[str(VENVS[e]) for e in missing]} (make bench-peers creates them)", file=sys.stderr)
        return 2

    info = machine()
    print("  ".join(f"{k}: {v}" for k, v in info.items()), flush=True)
    data_root = args.work_dir / "data"
    results: list[Measurement] = []
    ratios: list[tuple[str, int, float | None, float | None]] = []
    references: dict[tuple[str, int], dict[str, Any]] = {}
    ok = True
    for w in workloads:
        main_n = args.records or (QUICK_MAIN if args.quick else MAIN_RECORDS[w])
        for p in parallelisms:
            by_engine: dict[tuple[str, str], Measurement] = {}
            runs = [("check", check_n, engines)]
            if main_n != check_n and [e for e in engines if e != "pyflink"]:
                runs.append(("main", main_n, [e for e in engines if e != "pyflink"]))
            for run, n, run_engines in runs:
                t = time.perf_counter()
                data = wl.ensure_dataset(data_root, wl.DATASET[w], n, p, args.seed)
                if (w, n) not in references:
                    references[(w, n)] = wl.reference_digest(w, data).summary()
                reference = references[(w, n)]
                print(f"{w} p={p} {run}: {n:,} records, data and reference ready in "
                      f"{time.perf_counter() - t:.1f} s; reference {reference}", flush=True)
                for engine in run_engines:
                    m = Measurement(w, engine, p, run, n)
                    run_job(m, data, args.work_dir, args.pyflink_conf)
                    m.match = not m.error and m.summary == reference
                    results.append(m)
                    by_engine[(engine, run)] = m
                    print(m.bench_line(), flush=True)
                    if m.error:
                        ok = False
                        print(f"FAILED {w} {engine} p={p} {run}: {m.error}", flush=True)
                    elif not m.match:
                        ok = False
                        print(f"MISMATCH {w} {engine} p={p} {run}: digest {m.summary} != reference {reference}",
                              flush=True)
            weir = by_engine.get(("weir", "main")) or by_engine.get(("weir", "check"))
            pyflink = by_engine.get(("pyflink", "check"))
            bytewax = by_engine.get(("bytewax", "main")) or by_engine.get(("bytewax", "check"))
            rp, rb = ratio(weir, pyflink), ratio(weir, bytewax)
            ratios.append((w, p, rp, rb))
            print(f"RATIO name=peers-{w} parallelism={p} weir/pyflink={fmt_ratio(rp)} "
                  f"(target >= {TARGETS['pyflink']:g}x) weir/bytewax={fmt_ratio(rb)} "
                  f"(target >= {TARGETS['bytewax']:g}x)", flush=True)

    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(markdown(results, ratios, info, args, ok))
    print(f"results written to {args.output}", flush=True)
    if not ok:
        print("bench-peers: FAILED -- a job failed or the engines' outputs differ (see FAILED / MISMATCH above)",
              file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
