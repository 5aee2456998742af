"""Savepoints: stop a parallelism-2 job with a savepoint and restore it at parallelism 1 and 3; the committed
output equals the plain-Python reference exactly. Bad checkpoint data falls back or fails with the file named."""

from __future__ import annotations

import collections
import os
from pathlib import Path

import pytest

from client.gateway import JobManagerClient
from client.local_cluster import LocalCluster
from tests.integration.conftest import weir_cli
from tests.integration.procs import wait_for

pytestmark = pytest.mark.integration
JOB = os.path.join(os.path.dirname(__file__), "jobs", "windowed_sum.py")
N = 600_000


def reference() -> collections.Counter:
    sums: dict[tuple[int, int], int] = collections.defaultdict(int)
    for x in range(N):
        sums[(x % 50, x - x % 1_000)] += x % 1_000
    return collections.Counter(f"{k},{start},{s}" for (k, start), s in sums.items())


def committed(out: Path) -> collections.Counter:
    lines: collections.Counter = collections.Counter()
    for name in os.listdir(out):
        if not name.startswith("."):
            lines.update((out / name).read_text().splitlines())
    return lines


@pytest.fixture(scope="module")
def four_slots(tmp_path_factory: pytest.TempPathFactory) -> LocalCluster:
    c = LocalCluster(taskmanagers=2, slots=2, log_dir=str(tmp_path_factory.mktemp("sp-logs")))
    c.start()
    yield c
    c.stop()


@pytest.mark.timeout(180)
@pytest.mark.parametrize("new_parallelism", [1, 3])
def test_savepoint_at_2_restored_at_another_parallelism(four_slots: LocalCluster, tmp_path: Path,
                                                        new_parallelism: int) -> None:
    jm = JobManagerClient(four_slots.address)
    out, ck = tmp_path / "out", f"file://{tmp_path}/checkpoints"
    rc, stdout, err = weir_cli("run", "-d", "-p", "2", "--jobmanager", four_slots.address, JOB, str(out), str(N), ck)
    assert rc == 0, err
    job_id = stdout.strip().splitlines()[-1]
    wait_for(lambda: jm.get_job(job_id).checkpoints_completed >= 2, 60, "two checkpoints")
    rc, stdout, err = weir_cli("stop", "--savepoint-path", f"file://{tmp_path}/savepoint", "--jobmanager",
                               four_slots.address, job_id)
    assert rc == 0, err
    assert jm.get_job(job_id).state == "CANCELED"
    first_part = committed(out)
    assert 0 < sum(first_part.values()) < sum(reference().values()), "the stop must land mid-job"

    rc, stdout, err = weir_cli("run", "-s", f"file://{tmp_path}/savepoint", "-p", str(new_parallelism),
                               "--jobmanager", four_slots.address, JOB, str(out), str(N), ck)
    assert rc == 0, err
    got, expected = committed(out), reference()
    assert got == expected, (f"{sum((expected - got).values())} missing, {sum((got - expected).values())} extra")
    jm.close()


def test_restore_from_a_missing_savepoint_names_it(four_slots: LocalCluster, tmp_path: Path) -> None:
    rc, _, err = weir_cli("run", "-s", f"file://{tmp_path}/nowhere", "--jobmanager", four_slots.address, JOB,
                          str(tmp_path / "o"), "10", f"file://{tmp_path}/ck")
    assert rc != 0
    assert "savepoint" in err and "nowhere" in err
