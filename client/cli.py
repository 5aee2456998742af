"""The ``weir`` command line, modelled on Flink's ``flink`` CLI."""

from __future__ import annotations

import datetime
import json
import os
import runpy
import sys
import traceback
from typing import Any

import click

from client.gateway import JobManagerClient, JobManagerError, JobManagerUnreachableError
from weir.datastream.execution import ExecutionContext, JobExecutionException, set_context
from weir.rpc.convert import JobInfo

JM_HELP = "JobManager address HOST:PORT (default: $WEIR_JOBMANAGER)"


def _jm(address: str | None) -> str:
    address = address or os.environ.get("WEIR_JOBMANAGER")
    if not address:
        raise click.UsageError("no JobManager named: pass --jobmanager HOST:PORT or set WEIR_JOBMANAGER")
    return address


def _client(address: str | None) -> JobManagerClient:
    return JobManagerClient(_jm(address))


def _fmt_time(t: float) -> str:
    return datetime.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S") if t else "-"


def _progress_printer(stream: Any) -> Any:
    last: dict[str, str] = {}

    def show(info: JobInfo) -> None:
        ops = "  ".join(f"[{v.name}] in={v.records_in:,} out={v.records_out:,}" for v in info.vertices)
        line = f"{info.state} {info.job_id[:8]}  {ops}"
        if stream.isatty() or last.get("state") != info.state or info.is_terminal:
            print(line, file=stream, flush=True)
        last["state"] = info.state

    return show


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """weir: distributed, stateful stream processing with PyFlink's API."""


@main.command(context_settings={"ignore_unknown_options": True})
@click.option("--jobmanager", "-m", default=None, help=JM_HELP + "; without one, a local cluster runs the job")
@click.option("--parallelism", "-p", type=int, default=None, help="default parallelism of the job")
@click.option("--detached", "-d", is_flag=True, help="submit, print the job id and return")
@click.option("--fromSavepoint", "-s", "savepoint", default=None,
              help="restore the job from this savepoint (its directory URI)")
@click.option("--allowNonRestoredState", "--allow-non-restored-state", "-n", "allow_non_restored", is_flag=True,
              help="drop savepoint state of operators the job no longer has")
@click.argument("job_file", type=click.Path(exists=True, dir_okay=False))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def run(jobmanager: str | None, parallelism: int | None, detached: bool, savepoint: str | None,
        allow_non_restored: bool, job_file: str, args: tuple[str, ...]) -> None:
    """Run JOB_FILE, a Python file that builds a job and calls env.execute()."""
    if parallelism is not None and parallelism < 1:
        raise click.BadParameter(f"must be >= 1, got {parallelism}", param_hint="-p")
    ctx = ExecutionContext(
        jobmanager_address=jobmanager or os.environ.get("WEIR_JOBMANAGER"),
        parallelism=parallelism,
        detached=detached,
        job_ids=[],
        progress=None if detached else _progress_printer(sys.stderr),
        savepoint_path=savepoint,
        allow_non_restored_state=allow_non_restored,
    )
    set_context(ctx)
    old_argv = sys.argv
    sys.argv = [job_file, *args]
    sys.path.insert(0, os.path.dirname(os.path.abspath(job_file)))
    try:
        runpy.run_path(job_file, run_name="__main__")
    except JobExecutionException as e:
        click.echo(f"weir: job {e.job_id} {e.state}\n{e.cause}", err=True)
        sys.exit(1)
    except (JobManagerUnreachableError, JobManagerError) as e:
        click.echo(f"weir: {e}", err=True)
        sys.exit(1)
    except SystemExit:
        raise
    except BaseException:
        click.echo(f"weir: the job file {job_file} raised while building or running its job:", err=True)
        click.echo(traceback.format_exc(), err=True)
        sys.exit(1)
    finally:
        sys.argv = old_argv
        set_context(None)
    if not ctx.job_ids:
        click.echo(f"weir: {job_file} defined no job: it must call env.execute() (or execute_and_collect())",
                   err=True)
        sys.exit(1)
    if detached:
        for j in ctx.job_ids:
            click.echo(j)


@main.command("list")
@click.option("--jobmanager", "-m", default=None, help=JM_HELP)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def list_jobs(jobmanager: str | None, as_json: bool) -> None:
    """List jobs: id, name, state, start time and failure cause."""
    try:
        jobs = _client(jobmanager).list_jobs()
    except JobManagerUnreachableError as e:
        raise click.ClickException(str(e)) from None
    if as_json:
        click.echo(json.dumps([
            {"id": j.job_id, "name": j.name, "state": j.state, "start_time": j.start_time,
             "end_time": j.end_time or None, "failure_cause": j.failure_cause or None,
             "restarts": j.restarts, "last_failure": j.last_failure or None,
             "checkpoints_completed": j.checkpoints_completed, "checkpoints_failed": j.checkpoints_failed,
             "last_checkpoint_id": j.last_checkpoint_id or None,
             "vertices": [{"id": v.vertex_id, "name": v.name, "parallelism": v.parallelism,
                           "records_in": v.records_in, "records_out": v.records_out} for v in j.vertices]}
            for j in jobs
        ], indent=2))
        return
    if not jobs:
        click.echo("no jobs")
        return
    for j in sorted(jobs, key=lambda j: j.start_time):
        extra = f"  restarts={j.restarts}" if j.restarts else ""
        if j.checkpoints_completed:
            extra += f"  checkpoints={j.checkpoints_completed} (last {j.last_checkpoint_id})"
        click.echo(f"{_fmt_time(j.start_time)}  {j.job_id}  {j.state:<10}  {j.name}{extra}")
        cause = j.failure_cause or (j.last_failure if j.restarts else "")
        if cause:
            last = [ln for ln in cause.strip().splitlines() if ln.strip()]
            label = "cause" if j.failure_cause else "last restart cause"
            click.echo(f"    {label}: {last[-1] if last else ''}")


@main.command()
@click.option("--jobmanager", "-m", default=None, help=JM_HELP)
@click.argument("job_id")
def cancel(jobmanager: str | None, job_id: str) -> None:
    """Cancel a job."""
    try:
        info = _client(jobmanager).cancel(job_id)
    except (JobManagerUnreachableError, JobManagerError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"job {info.job_id} {info.state}")


@main.command()
@click.option("--jobmanager", "-m", default=None, help=JM_HELP)
@click.argument("job_id")
@click.argument("target", required=False)
def savepoint(jobmanager: str | None, job_id: str, target: str | None) -> None:
    """Take a savepoint of a running job (into TARGET, a directory URI, or the JobManager's default)."""
    try:
        path = _client(jobmanager).savepoint(job_id, target)
    except (JobManagerUnreachableError, JobManagerError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"savepoint completed: {path}")


@main.command()
@click.option("--jobmanager", "-m", default=None, help=JM_HELP)
@click.option("--savepointPath", "--savepoint-path", "-p", "target", default=None,
              help="where the savepoint goes (default: the JobManager's savepoint directory)")
@click.argument("job_id")
def stop(jobmanager: str | None, target: str | None, job_id: str) -> None:
    """Stop a job with a savepoint: take it, then cancel the job."""
    try:
        path = _client(jobmanager).savepoint(job_id, target, stop=True)
    except (JobManagerUnreachableError, JobManagerError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"job {job_id} stopped with savepoint {path}")


@main.group()
def cluster() -> None:
    """Start or stop a local cluster (JobManager + TaskManagers as background processes)."""


@cluster.command("start")
@click.option("--taskmanagers", "-n", type=int, default=2, show_default=True)
@click.option("--slots", "-s", type=int, default=2, show_default=True, help="slots per TaskManager")
@click.option("--port", type=int, default=6123, show_default=True, help="JobManager RPC port (0: any free)")
@click.option("--log-dir", default=None, help="daemon logs (default: $WEIR_HOME/log)")
def cluster_start(taskmanagers: int, slots: int, port: int, log_dir: str | None) -> None:
    from client.local_cluster import LocalCluster, state_file

    if state_file().exists():
        raise click.ClickException(f"a local cluster is already recorded in {state_file()}: 'weir cluster stop' first")
    c = LocalCluster(taskmanagers=taskmanagers, slots=slots, port=port, detached=True,
                     log_dir=log_dir or str(state_file().parent / "log"))
    try:
        c.start()
    except Exception as e:  # noqa: BLE001 - report any start failure as a CLI error
        raise click.ClickException(f"the local cluster did not start: {e}") from None
    c.save_state()
    click.echo(f"JobManager at {c.address}")
    click.echo(f"  REST API and /metrics: http://{c.rest_address}")
    for name, pid in c.pids.items():
        click.echo(f"  {name}: pid {pid}")
    for i, port in enumerate(c.metrics_ports):
        click.echo(f"  taskmanager-{i} metrics: http://{c.host}:{port}/metrics")
    click.echo(f"export WEIR_JOBMANAGER={c.address}")


@cluster.command("stop")
def cluster_stop() -> None:
    from client.local_cluster import stop_saved_cluster

    try:
        pids = stop_saved_cluster()
    except FileNotFoundError as e:
        raise click.ClickException(str(e)) from None
    click.echo("stopped " + ", ".join(f"{n} (pid {p})" for n, p in pids.items()))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="address to bind")
@click.option("--port", type=int, default=6123, show_default=True)
@click.option("--advertised-host", default=None, help="address others use to reach this daemon (default: --host)")
@click.option("--heartbeat-timeout", type=float, default=10.0, show_default=True,
              help="seconds without a heartbeat before a TaskManager is declared lost")
@click.option("--slot-request-timeout", type=float, default=60.0, show_default=True,
              help="seconds a job waits for enough slots before it fails")
@click.option("--checkpoints-dir", default=None,
              help="default state.checkpoints.dir (file:///path or s3://bucket/prefix; default $WEIR_HOME/checkpoints)")
@click.option("--savepoints-dir", default=None, help="default savepoint directory (default $WEIR_HOME/savepoints)")
@click.option("--ha-dir", default=None,
              help="high-availability.storageDir: keep jobs and checkpoint pointers there and resume them on restart")
@click.option("--rest-port", type=int, default=8081, show_default=True,
              help="port of the REST API and Prometheus /metrics, on --host (0: any free)")
@click.option("--rest-token", envvar="WEIR_REST_TOKEN", default=None, show_envvar=True,
              help="token the REST API's cancel and savepoint requests must send as 'Authorization: Bearer TOKEN' "
                   "(prefer the environment variable: arguments are visible to other users)")
def jobmanager(host: str, port: int, advertised_host: str | None, heartbeat_timeout: float,
               slot_request_timeout: float, checkpoints_dir: str | None, savepoints_dir: str | None,
               ha_dir: str | None, rest_port: int, rest_token: str | None) -> None:
    """Run the JobManager daemon."""
    from jobmanager.daemon import run as run_jm

    try:
        run_jm(host, port, advertised_host, heartbeat_timeout, slot_request_timeout, checkpoints_dir, savepoints_dir,
               ha_dir, rest_port, rest_token)
    except OSError as e:
        raise click.ClickException(str(e)) from None


@main.command()
@click.option("--jobmanager", "-m", "jm", default=None, help=JM_HELP)
@click.option("--slots", type=int, default=os.cpu_count() or 1, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="address to bind (RPC and data plane)")
@click.option("--port", type=int, default=0, show_default=True, help="RPC port (0: any free)")
@click.option("--advertised-host", default=None, help="address others use to reach this daemon (default: --host)")
@click.option("--heartbeat-interval", type=float, default=1.0, show_default=True)
@click.option("--state-backend", type=click.Choice(["hashmap", "rocksdb"]), default="hashmap", show_default=True,
              help="default keyed state backend (state.backend.type) for jobs that do not set one")
@click.option("--tmp-dir", default=None, help="local directory for the slots' state (default: the system's temp)")
@click.option("--metrics-port", type=int, default=9249, show_default=True,
              help="port of this TaskManager's Prometheus /metrics (-1: none)")
def taskmanager(jm: str | None, slots: int, host: str, port: int, advertised_host: str | None,
                heartbeat_interval: float, state_backend: str, tmp_dir: str | None, metrics_port: int) -> None:
    """Run a TaskManager daemon: one worker process per slot."""
    from taskmanager.executor import run as run_tm

    if slots < 1:
        raise click.BadParameter(f"must be >= 1, got {slots}", param_hint="--slots")
    try:
        run_tm(_jm(jm), slots, host, port, advertised_host, heartbeat_interval, state_backend, tmp_dir,
               None if metrics_port < 0 else metrics_port)
    except OSError as e:
        raise click.ClickException(str(e)) from None


if __name__ == "__main__":
    main()
