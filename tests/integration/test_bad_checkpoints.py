"""Bad checkpoint data: a truncated state file makes recovery fall back to the previous retained checkpoint; with
none to fall back to the job fails with a message naming the file. Never a silent restore of partial state."""

from __future__ import annotations

import glob
import os
import signal
from pathlib import Path

import pytest

from client.gateway import JobManagerClient
from client.local_cluster import LocalCluster
from tests.integration.conftest import weir_cli
from tests.integration.procs import wait_for

pytestmark = pytest.mark.integration
JOB = os.path.join(os.path.dirname(__file__), "jobs", "slow_keyed.py")


def truncate_a_state_file(ck_dir: Path, checkpoint_id: int) -> str:
    files = sorted(f for f in glob.glob(f"{ck_dir}/*/chk-{checkpoint_id}/**/*", recursive=True)
                   if os.path.isfile(f) and not f.endswith("_metadata"))
    assert files, f"checkpoint {checkpoint_id} has no state files"
    with open(files[0], "r+b") as f:
        f.truncate(max(0, os.path.getsize(files[0]) // 2))
    return files[0]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("retained", [2, 1])
def test_truncated_state_file(tmp_path: Path, retained: int) -> None:
    cluster = LocalCluster(taskmanagers=2, slots=1, heartbeat_timeout=2, heartbeat_interval=0.3,
                           log_dir=str(tmp_path / "logs"))
    cluster.start()
    jm = JobManagerClient(cluster.address)
    try:
        ck = tmp_path / "ck"
        rc, out, err = weir_cli("run", "-d", "--jobmanager", cluster.address, JOB, "400000", f"file://{ck}",
                                "1500", str(retained))
        assert rc == 0, err
        job_id = out.strip().splitlines()[-1]
        wait_for(lambda: jm.get_job(job_id).checkpoints_completed >= 2, 60, "two checkpoints")
        victim = cluster.taskmanager_procs[0]
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
        # once the job restarts its checkpoints are frozen: none completes after that, so "latest" is final;
        # the redeployment (and the restore) waits for the replacement TaskManager started after the damage
        info = wait_for(lambda: (i := jm.get_job(job_id)).restarts >= 1 and i, 30, "the restart")
        latest = info.last_checkpoint_id
        bad = truncate_a_state_file(ck, latest)
        cluster.add_taskmanager()
        info = wait_for(lambda: (i := jm.get_job(job_id)).is_terminal and i, 90, "the job to end")
        log = (tmp_path / "logs" / "jobmanager.log").read_text()
        assert f"cannot restore checkpoint {latest}" in log and os.path.basename(bad) in log
        if retained == 2:
            assert info.state == "FINISHED", info.failure_cause
            assert f"restoring checkpoint {latest - 1}" in log
        else:
            assert info.state == "FAILED"
            assert os.path.basename(bad) in info.failure_cause and "truncated" in info.failure_cause
    finally:
        jm.close()
        cluster.stop()
