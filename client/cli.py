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
from weir import config as wconfig
from weir.datastream.execution import ExecutionContext, JobExecutionException, set_context
from weir.rpc import tls
from weir.rpc.convert import JobInfo

JM_HELP = "JobManager address HOST:PORT (default: $WEIR_JOBMANAGER)"
CONFIG_HELP = "the YAML configuration file (default: $WEIR_CONF_DIR/config.yaml, if WEIR_CONF_DIR is set)"


def _jm(address: str | None) -> str:
    address = address or os.environ.get("WEIR_JOBMANAGER")
    if not address:
        raise click.UsageError("no JobManager named: pass --jobmanager HOST:PORT or set WEIR_JOBMANAGER")
    return address


def _client(address: str | None) -> JobManagerClient:
    """A client of the JobManager, with the cluster's token and TLS settings ($WEIR_CONF_DIR, WEIR_* overrides);
    an invalid configuration is a CLI error here rather than inside the channel."""
    _load_config(None, starting=False)
    return JobManagerClient(_jm(address))


def config_options(f: Any) -> Any:
    """--config PATH and -D KEY=VALUE, on every command that starts something."""
    f = click.option("-D", "dynamic", multiple=True, metavar="KEY=VALUE",
                     help="set a configuration key, over the file and the environment (repeatable)")(f)
    return click.option("--config", "config_file", default=None, metavar="PATH", help=CONFIG_HELP)(f)


def _load_config(config_file: str | None, dynamic: tuple[str, ...] = (),
                 flags: dict[str, tuple[str, Any]] | None = None, starting: bool = True) -> wconfig.Config:
    """The effective configuration; an invalid one is a CLI error (exit code 1) before anything starts."""
    try:
        return wconfig.load(config_file, flags=flags, dynamic=dynamic)
    except wconfig.ConfigError as e:
        lines = "\n".join(f"  {p}" for p in e.problems)
        raise click.ClickException(f"invalid configuration{', nothing started' if starting else ''}:\n{lines}") \
            from None


def _secs(seconds: float | None) -> str | None:
    """A seconds flag (--heartbeat-timeout 2.5) as a duration the configuration reads."""
    return None if seconds is None else f"{seconds!r} s"


def _str(cfg: wconfig.Config, key: str) -> str:
    v = cfg.get_str(key)
    assert v is not None, key
    return v


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def _announce(cfg: wconfig.Config, daemon: str) -> None:
    """Print the settings that are not defaults, and where they came from (secrets masked)."""
    click.echo(f"weir {daemon}: configuration file: {cfg.file or 'none'}", err=True)
    for s in cfg.settings():
        if s.origin != "default":
            click.echo(f"  {s.key} = {cfg.shown(s.key)}  ({s.source})", err=True)


def _install_security(cfg: wconfig.Config) -> None:
    """Check a daemon's TLS files (a bad one: exit 1, nothing started) and make ``cfg`` the process's own, so its
    channels, servers and slot workers use its token and TLS settings."""
    problems = tls.check_daemon(cfg)
    if problems:
        lines = "\n".join(f"  {p}" for p in problems)
        raise click.ClickException(f"invalid configuration, nothing started:\n{lines}")
    wconfig.install(cfg)


def _warn(message: str) -> None:
    click.echo(f"weir: warning: {message}", err=True)


def _check_advertised(cfg: wconfig.Config, bind_key: str, advertised_key: str) -> None:
    if cfg.get_str(advertised_key) is None and _str(cfg, bind_key) in ("0.0.0.0", "::", "[::]"):
        _warn(f"{bind_key} is {cfg.get_str(bind_key)} and {advertised_key} is unset: other hosts are told to "
              f"connect to {cfg.get_str(bind_key)}; set {advertised_key} to an address they can reach")


# Keys a local cluster (loopback, free ports picked per daemon) does not take from the configuration.
_LOCAL_CLUSTER_IGNORES = ("jobmanager.rpc.address", "jobmanager.bind-host", "rest.address", "rest.bind-address",
                          "taskmanager.host", "taskmanager.bind-host", "taskmanager.rpc.port", "metrics.port",
                          "jobmanager.rpc.port", "rest.port")


def _export_for_local_cluster(cfg: wconfig.Config, applied: tuple[str, ...] = ()) -> None:
    """Hand the configuration to a local cluster's daemons (child processes) as environment overrides."""
    ignored = []
    for s in cfg.settings():
        env_var = wconfig.KEYS[s.key].env_var
        if s.key in _LOCAL_CLUSTER_IGNORES:
            os.environ.pop(env_var, None)
            if s.origin != "default" and s.key not in applied:
                ignored.append(f"{s.key} ({s.source})")
        elif s.origin in ("file", "flag"):
            os.environ[env_var] = cfg.raw(s.key)
    os.environ.pop(wconfig.CONF_DIR_ENV, None)  # the file's keys are in the environment now
    if ignored:
        _warn("a local cluster runs on loopback with ports of its own; ignored: " + ", ".join(ignored))


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
    """Run JOB_FILE, a Python file that builds a job and calls env.execute().

    Without a JobManager, a local cluster runs the job, configured by $WEIR_CONF_DIR/config.yaml and WEIR_*
    environment overrides (no --config here: options after JOB_FILE are read too, and a job's own --config is
    common).
    """
    if parallelism is not None and parallelism < 1:
        raise click.BadParameter(f"must be >= 1, got {parallelism}", param_hint="-p")
    if not (jobmanager or os.environ.get("WEIR_JOBMANAGER")):  # a local cluster will run the job
        _export_for_local_cluster(_load_config(None))
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
    except (JobManagerUnreachableError, JobManagerError) as e:
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
@click.option("--slots", "-s", type=int, default=None,
              help="slots per TaskManager (taskmanager.numberOfTaskSlots when configured, else 2)")
@click.option("--port", type=int, default=None, help="JobManager RPC port (jobmanager.rpc.port, default 6123; 0: any)")
@click.option("--log-dir", default=None, help="daemon logs (default: $WEIR_HOME/log)")
@config_options
def cluster_start(taskmanagers: int, slots: int | None, port: int | None, log_dir: str | None,
                  config_file: str | None, dynamic: tuple[str, ...]) -> None:
    from client.local_cluster import LocalCluster, state_file

    slots_key = "taskmanager.numberOfTaskSlots"
    cfg = _load_config(config_file, dynamic, {slots_key: ("--slots", slots), "jobmanager.rpc.port": ("--port", port)})
    if state_file().exists():
        raise click.ClickException(f"a local cluster is already recorded in {state_file()}: 'weir cluster stop' first")
    c = LocalCluster(taskmanagers=taskmanagers, slots=cfg.get_int(slots_key) if cfg.is_set(slots_key) else 2,
                     port=cfg.get_int("jobmanager.rpc.port"), detached=True,
                     log_dir=log_dir or str(state_file().parent / "log"),
                     heartbeat_timeout=cfg.get_seconds("heartbeat.timeout"),
                     heartbeat_interval=cfg.get_seconds("heartbeat.interval"),
                     slot_request_timeout=cfg.get_seconds("slot.request.timeout"),
                     ha_dir=cfg.get_str("high-availability.storageDir"),
                     checkpoints_dir=cfg.get_str("state.checkpoints.dir"))
    if cfg.is_set("rest.port"):
        c.rest_port = cfg.get_int("rest.port")
    _export_for_local_cluster(cfg, applied=("jobmanager.rpc.port", "rest.port"))
    _install_security(cfg)
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
@click.option("--host", default=None, help="address to bind (jobmanager.bind-host, default 127.0.0.1)")
@click.option("--port", type=int, default=None, help="RPC port (jobmanager.rpc.port, default 6123)")
@click.option("--advertised-host", default=None,
              help="address others use to reach this daemon (jobmanager.rpc.address, default: the bind address)")
@click.option("--heartbeat-timeout", type=float, default=None,
              help="seconds without a heartbeat before a TaskManager is declared lost (heartbeat.timeout, default 10)")
@click.option("--slot-request-timeout", type=float, default=None,
              help="seconds a job waits for enough slots before it fails (slot.request.timeout, default 60)")
@click.option("--checkpoints-dir", default=None,
              help="state.checkpoints.dir (file:///path or s3://bucket/prefix; default $WEIR_HOME/checkpoints)")
@click.option("--savepoints-dir", default=None, help="state.savepoints.dir (default $WEIR_HOME/savepoints)")
@click.option("--ha-dir", default=None,
              help="high-availability.storageDir: keep jobs and checkpoint pointers there and resume them on restart")
@click.option("--rest-port", type=int, default=None,
              help="port of the REST API and Prometheus /metrics, on the bind address (rest.port, default 8081; "
                   "0: any free)")
@click.option("--rest-token", default=None,
              help="weir.rest.token: token the REST API's cancel and savepoint requests must send as "
                   "'Authorization: Bearer TOKEN' (prefer $WEIR_REST_TOKEN: arguments are visible to other users)")
@config_options
def jobmanager(host: str | None, port: int | None, advertised_host: str | None, heartbeat_timeout: float | None,
               slot_request_timeout: float | None, checkpoints_dir: str | None, savepoints_dir: str | None,
               ha_dir: str | None, rest_port: int | None, rest_token: str | None, config_file: str | None,
               dynamic: tuple[str, ...]) -> None:
    """Run the JobManager daemon (configured by --config or $WEIR_CONF_DIR/config.yaml; flags win)."""
    cfg = _load_config(config_file, dynamic, {
        "jobmanager.bind-host": ("--host", host),
        "jobmanager.rpc.port": ("--port", port),
        "jobmanager.rpc.address": ("--advertised-host", advertised_host),
        "heartbeat.timeout": ("--heartbeat-timeout", _secs(heartbeat_timeout)),
        "slot.request.timeout": ("--slot-request-timeout", _secs(slot_request_timeout)),
        "state.checkpoints.dir": ("--checkpoints-dir", checkpoints_dir),
        "state.savepoints.dir": ("--savepoints-dir", savepoints_dir),
        "high-availability.storageDir": ("--ha-dir", ha_dir),
        "rest.port": ("--rest-port", rest_port),
        "weir.rest.token": ("--rest-token", rest_token),
    })
    bind = _str(cfg, "jobmanager.bind-host")
    rest_bind = cfg.get_str("rest.bind-address")
    if rest_bind is not None and rest_bind != bind:
        raise click.ClickException(
            f"invalid configuration, nothing started:\n  rest.bind-address {rest_bind!r} (from "
            f"{cfg.source('rest.bind-address')}) differs from jobmanager.bind-host {bind!r} (from "
            f"{cfg.source('jobmanager.bind-host')}): this JobManager serves REST on jobmanager.bind-host; "
            "leave rest.bind-address unset or make the two equal")
    _check_advertised(cfg, "jobmanager.bind-host", "jobmanager.rpc.address")
    _install_security(cfg)
    # cluster-level job settings (restart strategy, checkpointing); a job's own settings win
    job_defaults = {k: v for k, v in cfg.job_defaults().items() if k != "state.backend.type"}  # TaskManagers apply it
    _announce(cfg, "jobmanager")
    from jobmanager.daemon import run as run_jm

    try:
        run_jm(bind, cfg.get_int("jobmanager.rpc.port"), cfg.get_str("jobmanager.rpc.address"),
               cfg.get_seconds("heartbeat.timeout"), cfg.get_seconds("slot.request.timeout"),
               cfg.get_str("state.checkpoints.dir"), cfg.get_str("state.savepoints.dir"),
               cfg.get_str("high-availability.storageDir"), cfg.get_int("rest.port"),
               cfg.get_str("weir.rest.token") or cfg.get_str("weir.auth.token"), job_defaults,
               rest_read_without_token=bool(cfg.get("weir.rest.read-without-token")),
               rest_ssl=rest_tls.server_context() if (rest_tls := tls.rest(cfg)) is not None else None)
    except OSError as e:
        raise click.ClickException(str(e)) from None


def _taskmanager_jobmanager(jm: str | None, cfg: wconfig.Config) -> str:
    """--jobmanager, else -D jobmanager.rpc.address, else $WEIR_JOBMANAGER, else the configured address."""
    host = cfg.get_str("jobmanager.rpc.address")
    configured = _host_port(host, cfg.get_int("jobmanager.rpc.port")) if host else None
    if jm:
        return jm
    if configured and cfg.setting("jobmanager.rpc.address").origin == "flag":
        return configured
    address = os.environ.get("WEIR_JOBMANAGER") or configured
    if not address:
        raise click.UsageError("no JobManager named: pass --jobmanager HOST:PORT, set WEIR_JOBMANAGER or set "
                               "jobmanager.rpc.address in the configuration")
    return address


@main.command()
@click.option("--jobmanager", "-m", "jm", default=None,
              help=JM_HELP + ", else jobmanager.rpc.address:jobmanager.rpc.port from the configuration")
@click.option("--slots", type=int, default=None,
              help="taskmanager.numberOfTaskSlots (default: the number of CPUs)")
@click.option("--host", default=None, help="address to bind, RPC and data plane (taskmanager.bind-host, default "
                                            "127.0.0.1)")
@click.option("--port", type=int, default=None, help="RPC port (taskmanager.rpc.port, default 0: any free)")
@click.option("--advertised-host", default=None,
              help="address others use to reach this daemon (taskmanager.host, default: the bind address)")
@click.option("--heartbeat-interval", type=float, default=None, help="seconds (heartbeat.interval, default 1)")
@click.option("--state-backend", type=click.Choice(["hashmap", "rocksdb"]), default=None,
              help="default keyed state backend (state.backend.type, default hashmap) for jobs that do not set one")
@click.option("--tmp-dir", default=None,
              help="local directory for the slots' state (io.tmp.dirs, default: the system's temp)")
@click.option("--metrics-port", type=int, default=None,
              help="port of this TaskManager's Prometheus /metrics (metrics.port, default 9249; -1: none)")
@config_options
def taskmanager(jm: str | None, slots: int | None, host: str | None, port: int | None, advertised_host: str | None,
                heartbeat_interval: float | None, state_backend: str | None, tmp_dir: str | None,
                metrics_port: int | None, config_file: str | None, dynamic: tuple[str, ...]) -> None:
    """Run a TaskManager daemon: one worker process per slot (configured like the JobManager; flags win)."""
    cfg = _load_config(config_file, dynamic, {
        "taskmanager.numberOfTaskSlots": ("--slots", slots),
        "taskmanager.bind-host": ("--host", host),
        "taskmanager.rpc.port": ("--port", port),
        "taskmanager.host": ("--advertised-host", advertised_host),
        "heartbeat.interval": ("--heartbeat-interval", _secs(heartbeat_interval)),
        "state.backend.type": ("--state-backend", state_backend),
        "io.tmp.dirs": ("--tmp-dir", None if tmp_dir is None else [tmp_dir]),
        "metrics.port": ("--metrics-port", metrics_port),
    })
    address = _taskmanager_jobmanager(jm, cfg)
    _check_advertised(cfg, "taskmanager.bind-host", "taskmanager.host")
    _install_security(cfg)
    _announce(cfg, "taskmanager")
    from taskmanager.executor import run as run_tm

    tmp_dirs = cfg.get_list("io.tmp.dirs")
    metrics = cfg.get_int("metrics.port")
    try:
        run_tm(address, cfg.get_int("taskmanager.numberOfTaskSlots"), _str(cfg, "taskmanager.bind-host"),
               cfg.get_int("taskmanager.rpc.port"), cfg.get_str("taskmanager.host"),
               cfg.get_seconds("heartbeat.interval"), _str(cfg, "state.backend.type"),
               tmp_dirs[0] if tmp_dirs else None, None if metrics < 0 else metrics)
    except OSError as e:
        raise click.ClickException(str(e)) from None


@main.group("config")
def config_group() -> None:
    """The cluster configuration (a YAML file with Flink's key names, environment overrides, flags)."""


@config_group.command("show")
@config_options
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def config_show(config_file: str | None, dynamic: tuple[str, ...], as_json: bool) -> None:
    """Print the effective configuration and where each value came from.

    Layers, each over the one before: defaults, the file (--config PATH, else $WEIR_CONF_DIR/config.yaml),
    environment overrides (WEIR_ + the key upper-cased, dots and dashes as underscores, e.g.
    WEIR_HEARTBEAT_TIMEOUT), flags (-D KEY=VALUE here; the daemons' own flags too).
    """
    cfg = _load_config(config_file, dynamic, starting=False)
    if as_json:
        click.echo(json.dumps(cfg.to_json(), indent=2))
    else:
        click.echo(cfg.format_table())


if __name__ == "__main__":
    main()
