"""A TaskManager removes the local directories of TaskManagers of its host that died without cleaning up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from taskmanager.executor import local_dir_prefix, remove_stale_local_dirs


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_only_dead_taskmanagers_of_this_host_lose_their_directories(tmp_path: Path) -> None:
    host = local_dir_prefix("tm-0").split("@", 1)[1][:-1]
    dead = tmp_path / f"weir-tm-00000001-p{dead_pid()}@{host}-abc"
    alive = tmp_path / f"weir-tm-00000002-p{os.getppid()}@{host}-abc"
    mine = tmp_path / f"{local_dir_prefix('tm-00000003')}abc"
    elsewhere = tmp_path / f"weir-tm-00000004-p{dead_pid()}@otherhost-abc"
    unrelated = tmp_path / "weir-tm-notours"
    for d in (dead, alive, mine, elsewhere, unrelated):
        (d / "slot-0").mkdir(parents=True)
        (d / "slot-0" / "state.sst").write_bytes(b"x")
    remove_stale_local_dirs(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(d.name for d in (alive, mine, elsewhere, unrelated))
