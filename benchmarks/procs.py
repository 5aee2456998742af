"""Processes of a local cluster (/proc): children, liveness, peak resident set size, their logs' tails; and the
machine's description."""

from __future__ import annotations

import contextlib
import os
import platform
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from client.local_cluster import LocalCluster


def children(pid: int) -> list[int]:
    """The pids whose parent is ``pid``."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(") ", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            out.append(int(d))
    return out


def descendants(pid: int) -> list[int]:
    """Children, grandchildren, ... of ``pid``."""
    out: list[int] = []
    todo = [pid]
    while todo:
        kids = children(todo.pop())
        out += kids
        todo += kids
    return out


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def peak_rss_mib(pid: int) -> float | None:
    """``VmHWM`` of ``pid`` (the peak resident set size over its life) in MiB; None if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cluster_peak_rss(cluster: LocalCluster) -> dict[str, list[float]]:
    """Peak RSS in MiB of the JobManager, of each TaskManager daemon and of each of their worker processes
    (every descendant of a TaskManager), as ``{"jobmanager": [..], "taskmanager": [..], "worker": [..]}``."""
    out: dict[str, list[float]] = {"jobmanager": [], "taskmanager": [], "worker": []}
    if cluster.jobmanager is not None:
        out["jobmanager"] += _peaks([cluster.jobmanager.pid, *descendants(cluster.jobmanager.pid)])
    for tm in cluster.taskmanager_procs:
        out["taskmanager"] += _peaks([tm.pid])
        out["worker"] += _peaks(sorted(descendants(tm.pid)))
    return out


def _peaks(pids: list[int]) -> list[float]:
    return [p for p in (peak_rss_mib(pid) for pid in pids) if p is not None]


_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time ``pid`` has used so far, in seconds (0.0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(") ", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


def worker_pids(cluster: LocalCluster) -> list[int]:
    """The slot worker processes of the cluster's TaskManagers."""
    return [pid for tm in cluster.taskmanager_procs for pid in sorted(descendants(tm.pid))]


def usable_cores() -> int:
    """Cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def machine() -> dict[str, str]:
    """What the figures depend on: cores, Python, platform."""
    return {
        "cores": f"{os.cpu_count()} (usable: {usable_cores()})",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
    }


def load_average() -> str:
    """The 1, 5 and 15-minute load averages."""
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def show_log_tails(log_dir: str | None, lines: int = 8) -> None:
    """Print the last lines of each daemon's log to stderr (after a failure; the logs go with the temp dir)."""
    if log_dir is None or not os.path.isdir(log_dir):
        return
    for name in sorted(os.listdir(log_dir)):
        with contextlib.suppress(OSError):
            tail = Path(log_dir, name).read_text(errors="replace").splitlines()[-lines:]
            print(f"  --- {name} (last {len(tail)} lines)", *(f"  {ln}" for ln in tail), sep="\n", file=sys.stderr)
