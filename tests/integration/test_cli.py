"""`weir run`, `weir list`, `weir cancel` against a real cluster, and the errors a user meets."""

from __future__ import annotations

import json
import os

import pytest

from tests.integration.conftest import weir_cli
from tests.integration.procs import alive, wait_for
from weir.datastream import StreamExecutionEnvironment
from weir.datastream.connectors import NumberSequenceSource

pytestmark = pytest.mark.integration
JOBS = os.path.join(os.path.dirname(__file__), "jobs")


def test_weir_run_job_written_against_the_api_names(cluster) -> None:  # type: ignore[no-untyped-def]
    rc, out, err = weir_cli("run", "--jobmanager", cluster.address, os.path.join(JOBS, "only_api_names.py"), "3000")
    assert rc == 0, err
    expected = sum(2 * v for v in range(11, 3001))
    assert f"OK {expected}" in out


def test_raising_udf_fails_the_job_with_its_traceback(cluster) -> None:  # type: ignore[no-untyped-def]
    rc, out, err = weir_cli("run", "--jobmanager", cluster.address, os.path.join(JOBS, "raising_udf.py"))
    assert rc != 0
    assert "FAILED" in err
    assert "ValueError: bad amount in record 777" in err
    assert "in parse_amount" in err  # the user's own frame is in the traceback
    rc, out, _ = weir_cli("list", "--json", "--jobmanager", cluster.address)
    jobs = [j for j in json.loads(out) if j["name"] == "raising udf"]
    assert jobs and jobs[-1]["state"] == "FAILED"
    assert "ValueError: bad amount in record 777" in jobs[-1]["failure_cause"]


def test_job_file_that_raises_while_building(cluster, jm) -> None:  # type: ignore[no-untyped-def]
    before = len(jm.list_jobs())
    rc, out, err = weir_cli("run", "--jobmanager", cluster.address, os.path.join(JOBS, "build_error.py"))
    assert rc != 0
    assert "RuntimeError: configuration file missing: /nonexistent/rates.csv" in err
    assert "build_error.py" in err
    assert len(jm.list_jobs()) == before  # nothing was submitted


def test_weir_run_without_a_cluster_starts_and_stops_a_local_one(tmp_path) -> None:  # type: ignore[no-untyped-def]
    before = set(os.listdir("/proc"))
    rc, out, err = weir_cli("run", os.path.join(JOBS, "only_api_names.py"), "500", env={"WEIR_JOBMANAGER": ""})
    assert rc == 0, err
    assert "OK" in out
    leftover = []
    for d in set(os.listdir("/proc")) - before:
        try:
            with open(f"/proc/{d}/cmdline") as f:
                cmd = f.read()
        except OSError:
            continue
        if "client" in cmd and ("jobmanager" in cmd or "taskmanager" in cmd):
            leftover.append(cmd)
    assert not leftover


def test_cancel_a_running_job(cluster, jm, on_cluster) -> None:  # type: ignore[no-untyped-def]
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(2)
    env.from_source(NumberSequenceSource(1, 10**10), None, "endless").map(lambda x: x).add_sink(lambda x: None)
    client = env.execute_async("endless")
    job_id = client.get_job_id()
    wait_for(lambda: jm.get_job(job_id).state == "RUNNING", 20, "the job to run")
    wait_for(lambda: any(v.records_out > 0 for v in jm.get_job(job_id).vertices), 20, "records to flow")
    rc, out, err = weir_cli("cancel", "--jobmanager", cluster.address, job_id)
    assert rc == 0, err
    assert "CANCELED" in out
    assert jm.get_job(job_id).state == "CANCELED"
    # its slots are free again: the whole cluster is available
    wait_for(lambda: jm.overview().slots_free == jm.overview().slots_total, 10, "slots to be released")


def test_large_graph_submits_past_grpcs_4mb_default(on_cluster: str) -> None:
    data = [(i, "x" * 20) for i in range(1_000_000)]  # ~30 MB pickled
    env = StreamExecutionEnvironment.get_execution_environment()
    got = env.from_collection(data).map(lambda t: t[0]).execute_and_collect()
    assert sum(got) == sum(range(1_000_000))


def test_unreachable_jobmanager_names_the_address() -> None:
    rc, out, err = weir_cli("list", "--jobmanager", "127.0.0.1:1")
    assert rc != 0
    assert "127.0.0.1:1" in err and "cannot reach the JobManager" in err


def test_not_enough_slots_fails_after_the_timeout(cluster, jm, on_cluster) -> None:  # type: ignore[no-untyped-def]
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(5)  # the cluster has 4 slots
    env.from_collection([1, 2, 3]).rebalance().map(lambda x: x).add_sink(lambda x: None)
    client = env.execute_async("too wide")
    assert jm.get_job(client.get_job_id()).state == "CREATED"
    info = wait_for(lambda: (i := jm.get_job(client.get_job_id())).is_terminal and i, 30, "the job to fail")
    assert info.state == "FAILED"
    assert "could not get 5 slot(s)" in info.failure_cause and "of 4 slot(s)" in info.failure_cause


def test_detached_run_prints_the_job_id(cluster, jm) -> None:  # type: ignore[no-untyped-def]
    rc, out, err = weir_cli("run", "-d", "--jobmanager", cluster.address, os.path.join(JOBS, "only_api_names.py"),
                            "100")
    assert rc == 0, err
    job_id = out.strip().splitlines()[-1]
    info = wait_for(lambda: (i := jm.get_job(job_id)).is_terminal and i, 30, "the detached job to end")
    assert info.state == "FINISHED", info.failure_cause


def test_cluster_start_and_stop(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {"WEIR_HOME": str(tmp_path)}
    rc, out, err = weir_cli("cluster", "start", "--taskmanagers", "2", "--slots", "1", "--port", "0", env=env)
    assert rc == 0, err
    address = out.split("JobManager at ")[1].split()[0]
    pids = [int(line.rsplit("pid ", 1)[1]) for line in out.splitlines() if "pid " in line]
    assert len(pids) == 3 and all(alive(p) for p in pids)
    try:
        rc, out2, err2 = weir_cli("run", "--jobmanager", address, "-p", "2", os.path.join(JOBS, "only_api_names.py"),
                                  "200")
        assert rc == 0, err2
    finally:
        rc, out, err = weir_cli("cluster", "stop", env=env)
    assert rc == 0, err
    assert not any(alive(p) for p in pids)
    rc, out, err = weir_cli("cluster", "stop", env=env)
    assert rc != 0 and "no local cluster" in err
