"""weir.config: the YAML file, durations, layering (defaults < file < environment < flags), errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from client.cli import main as cli
from weir import config as wc
from weir.config import ConfigError, format_duration, load, parse_duration


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def problems(excinfo: pytest.ExceptionInfo[ConfigError]) -> str:
    return "\n".join(excinfo.value.problems)


# ---- durations ----
@pytest.mark.parametrize(("text", "seconds"), [
    ("10 s", 10.0), ("10s", 10.0), ("500 ms", 0.5), ("1 min", 60.0), ("2 h", 7200.0), ("1 d", 86400.0),
    ("1.5 s", 1.5), ("250", 0.25), (" 3 seconds ", 3.0), ("100 milliseconds", 0.1), ("1500 us", 0.0015),
    ("2m", 120.0), ("10 S", 10.0),
])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


def test_plain_numbers_are_milliseconds_as_in_flink() -> None:
    assert parse_duration(10_000) == 10.0
    assert parse_duration(500) == 0.5
    assert parse_duration(2.5) == 0.0025


@pytest.mark.parametrize("bad", ["", "s", "ten s", "10 parsecs", "1 s 2 ms", "10 s s"])
def test_parse_duration_rejects(bad: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(bad)


def test_parse_duration_rejects_booleans() -> None:
    with pytest.raises(ValueError):
        parse_duration(True)


@pytest.mark.parametrize(("seconds", "text"), [
    (10.0, "10 s"), (0.5, "500 ms"), (60.0, "1 min"), (3600.0, "1 h"), (86400.0, "1 d"), (0.0, "0 ms"),
    (1.5, "1500 ms"), (90.0, "90 s"), (0.3, "300 ms"), (0.0001, "0.1 ms"),
])
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == pytest.approx(seconds)


# ---- the table ----
def test_every_default_reads_back_through_its_own_parser() -> None:
    for opt in wc.OPTIONS:
        if opt.default is None:
            continue
        cfg = load(environ={opt.env_var: wc.format_value(opt, opt.default)})
        assert cfg.get(opt.key) == opt.default, opt.key
        assert cfg.source(opt.key) == "$" + opt.env_var


def test_flink_key_names_and_defaults() -> None:
    cfg = load(environ={})
    assert cfg.file is None
    assert cfg.get_int("jobmanager.rpc.port") == 6123
    assert cfg.get_int("rest.port") == 8081
    assert cfg.get_int("metrics.port") == 9249
    assert cfg.get_str("jobmanager.bind-host") == "127.0.0.1"
    assert cfg.get_str("taskmanager.bind-host") == "127.0.0.1"
    assert cfg.get_str("jobmanager.rpc.address") is None  # advertise the bind address
    assert cfg.get_str("taskmanager.host") is None
    assert cfg.get_int("taskmanager.rpc.port") == 0
    assert cfg.get_int("taskmanager.numberOfTaskSlots") == (os.cpu_count() or 1)
    assert cfg.get_seconds("heartbeat.timeout") == 10.0
    assert cfg.get_seconds("heartbeat.interval") == 1.0
    assert cfg.get_seconds("slot.request.timeout") == 60.0
    assert cfg.get_str("state.backend.type") == "hashmap"
    assert cfg.get_str("weir.rest.token") is None
    assert cfg.get_list("io.tmp.dirs") == []
    assert all(s.origin == "default" and s.source == "default" for s in cfg.settings())
    for key in ("jobmanager.bind-host", "rest.address", "rest.bind-address", "taskmanager.host",
                "state.checkpoints.dir", "state.savepoints.dir", "high-availability.storageDir",
                "execution.checkpointing.interval", "restart-strategy.type",
                "restart-strategy.exponential-delay.backoff-multiplier", "io.tmp.dirs"):
        assert key in wc.KEYS
    assert all(o.description for o in wc.OPTIONS)


def test_environment_variable_names() -> None:
    assert wc.env_var_for("heartbeat.timeout") == "WEIR_HEARTBEAT_TIMEOUT"
    assert wc.env_var_for("jobmanager.bind-host") == "WEIR_JOBMANAGER_BIND_HOST"
    assert wc.env_var_for("high-availability.storageDir") == "WEIR_HIGH_AVAILABILITY_STORAGEDIR"
    assert wc.env_var_for("weir.rest.token") == "WEIR_REST_TOKEN"  # the variable the JobManager always read
    names = [o.env_var for o in wc.OPTIONS]
    assert len(names) == len(set(names))


def test_unknown_key_in_getters() -> None:
    with pytest.raises(KeyError):
        load(environ={}).get("no.such.key")


# ---- the file ----
def test_flat_and_nested_keys(tmp_path: Path) -> None:
    path = write(tmp_path, """
jobmanager:
  rpc:
    address: jm.example.com
    port: 7000
rest.port: 9000
taskmanager.numberOfTaskSlots: 4
heartbeat:
  timeout: 5 s
  interval: 500 ms
restart-strategy:
  type: fixed-delay
  fixed-delay:
    attempts: 3
    delay: 2 s
io.tmp.dirs: [/data/a, /data/b]
""")
    cfg = load(path, environ={})
    assert cfg.file == path
    assert cfg.get_str("jobmanager.rpc.address") == "jm.example.com"
    assert cfg.get_int("jobmanager.rpc.port") == 7000
    assert cfg.get_int("rest.port") == 9000
    assert cfg.get_int("taskmanager.numberOfTaskSlots") == 4
    assert cfg.get_seconds("heartbeat.timeout") == 5.0
    assert cfg.get_seconds("heartbeat.interval") == 0.5
    assert cfg.get_str("restart-strategy.type") == "fixed-delay"
    assert cfg.get_int("restart-strategy.fixed-delay.attempts") == 3
    assert cfg.get_seconds("restart-strategy.fixed-delay.delay") == 2.0
    assert cfg.get_list("io.tmp.dirs") == ["/data/a", "/data/b"]
    assert cfg.source("rest.port") == path and cfg.setting("rest.port").origin == "file"
    assert cfg.source("metrics.port") == "default"


def test_empty_file_and_null_values_keep_the_defaults(tmp_path: Path) -> None:
    assert load(write(tmp_path, ""), environ={}).get_int("rest.port") == 8081
    cfg = load(write(tmp_path, "rest.port:\nweir.rest.token: ~\n", "b.yaml"), environ={})
    assert cfg.get_int("rest.port") == 8081 and not cfg.is_set("rest.port")
    assert cfg.get_str("weir.rest.token") is None


def test_file_found_through_weir_conf_dir(tmp_path: Path) -> None:
    write(tmp_path, "rest.port: 9100\n")
    cfg = load(environ={"WEIR_CONF_DIR": str(tmp_path)})
    assert cfg.get_int("rest.port") == 9100
    assert cfg.source("rest.port") == str(tmp_path / "config.yaml")


def test_explicit_file_wins_over_weir_conf_dir(tmp_path: Path) -> None:
    write(tmp_path, "rest.port: 9100\n")
    other = write(tmp_path, "rest.port: 9200\n", "other.yaml")
    assert load(other, environ={"WEIR_CONF_DIR": str(tmp_path)}).get_int("rest.port") == 9200


def test_missing_files_are_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load(str(tmp_path / "nope.yaml"), environ={})
    with pytest.raises(ConfigError, match="no config.yaml"):
        load(environ={"WEIR_CONF_DIR": str(tmp_path / "empty")})


@pytest.mark.parametrize(("text", "message"), [
    ("rest.port: 1\nrest.port: 2\n", "line 2: key 'rest.port' is given twice"),
    ("rest.port: 1\nrest:\n  port: 2\n", "'rest.port' is given twice"),
    ("- a\n- b\n", "must hold a mapping"),
    ("rest.port: [1\n", "is not valid YAML"),
])
def test_malformed_files(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(write(tmp_path, text), environ={})


# ---- layering ----
def test_layers_defaults_file_environment_flags(tmp_path: Path) -> None:
    path = write(tmp_path, "heartbeat.timeout: 20 s\nrest.port: 9000\njobmanager.rpc.port: 7000\n"
                           "slot.request.timeout: 2 min\n")
    env = {"WEIR_HEARTBEAT_TIMEOUT": "30 s", "WEIR_REST_PORT": "9001", "WEIR_SLOT_REQUEST_TIMEOUT": "90 s"}
    cfg = load(path, environ=env, dynamic=["rest.port=9002", "jobmanager.rpc.port=7001"],
               flags={"rest.port": ("--rest-port", 9003), "metrics.port": ("--metrics-port", None)})
    assert (cfg.get_seconds("heartbeat.timeout"), cfg.source("heartbeat.timeout")) == (30.0, "$WEIR_HEARTBEAT_TIMEOUT")
    assert (cfg.get_int("rest.port"), cfg.source("rest.port")) == (9003, "--rest-port")
    assert (cfg.get_int("jobmanager.rpc.port"), cfg.source("jobmanager.rpc.port")) == (7001, "-D")
    assert (cfg.get_seconds("slot.request.timeout"), cfg.source("slot.request.timeout")) == (
        90.0, "$WEIR_SLOT_REQUEST_TIMEOUT")
    assert (cfg.get_int("metrics.port"), cfg.source("metrics.port")) == (9249, "default")  # flag not given
    assert [cfg.setting(k).origin for k in ("heartbeat.timeout", "rest.port", "metrics.port")] == [
        "env", "flag", "default"]


def test_file_beats_default_and_environment_beats_file(tmp_path: Path) -> None:
    path = write(tmp_path, "state.backend.type: rocksdb\nmetrics.port: 9300\n")
    cfg = load(path, environ={"WEIR_METRICS_PORT": "9400"})
    assert cfg.get_str("state.backend.type") == "rocksdb" and cfg.source("state.backend.type") == path
    assert cfg.get_int("metrics.port") == 9400 and cfg.source("metrics.port") == "$WEIR_METRICS_PORT"


def test_environment_overrides_every_kind() -> None:
    env = {"WEIR_JOBMANAGER_RPC_ADDRESS": "10.0.0.5", "WEIR_TASKMANAGER_NUMBEROFTASKSLOTS": "8",
           "WEIR_HEARTBEAT_INTERVAL": "250 ms", "WEIR_STATE_BACKEND_TYPE": "rocksdb",
           "WEIR_STATE_CHECKPOINTS_DIR": "s3://bucket/ckpt", "WEIR_IO_TMP_DIRS": "/a,/b",
           "WEIR_RESTART_STRATEGY_EXPONENTIAL_DELAY_BACKOFF_MULTIPLIER": "1.5", "WEIR_REST_TOKEN": "t0k3n",
           "WEIR_HIGH_AVAILABILITY_STORAGEDIR": "/var/weir/ha"}
    cfg = load(environ=env)
    assert cfg.get_str("jobmanager.rpc.address") == "10.0.0.5"
    assert cfg.get_int("taskmanager.numberOfTaskSlots") == 8
    assert cfg.get_seconds("heartbeat.interval") == 0.25
    assert cfg.get_str("state.backend.type") == "rocksdb"
    assert cfg.get_str("state.checkpoints.dir") == "s3://bucket/ckpt"
    assert cfg.get_list("io.tmp.dirs") == ["/a", "/b"]
    assert cfg.get_float("restart-strategy.exponential-delay.backoff-multiplier") == 1.5
    assert cfg.get_str("weir.rest.token") == "t0k3n"
    assert cfg.get_str("high-availability.storageDir") == "/var/weir/ha"
    assert {s.source for s in cfg.settings() if s.origin == "env"} == {"$" + k for k in env}


def test_empty_environment_values_are_unset() -> None:
    cfg = load(environ={"WEIR_REST_PORT": "", "WEIR_REST_TOKEN": ""})
    assert cfg.get_int("rest.port") == 8081 and cfg.get_str("weir.rest.token") is None


def test_other_weir_environment_variables_are_not_keys() -> None:
    load(environ={"WEIR_HOME": "/tmp/x", "WEIR_JOBMANAGER": "h:1", "WEIR_DIE_WITH_PARENT": "1"})


def test_flag_durations_in_seconds() -> None:
    cfg = load(environ={}, flags={"heartbeat.timeout": ("--heartbeat-timeout", "2.5 s")})
    assert cfg.get_seconds("heartbeat.timeout") == 2.5


# ---- errors ----
def test_unknown_key_names_value_source_and_nearest_key(tmp_path: Path) -> None:
    path = write(tmp_path, "heartbeat.timout: 5 s\n")
    with pytest.raises(ConfigError) as e:
        load(path, environ={})
    msg = problems(e)
    assert "unknown key 'heartbeat.timout'" in msg
    assert "'5 s'" in msg and path in msg
    assert "did you mean 'heartbeat.timeout'?" in msg


def test_nearest_key_ignores_case_and_nesting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="did you mean 'taskmanager.numberOfTaskSlots'"):
        load(write(tmp_path, "taskmanager.numberoftaskslots: 4\n"), environ={})
    with pytest.raises(ConfigError, match="unknown key 'rest.prot'.*did you mean 'rest.port'"):
        load(write(tmp_path, "rest:\n  prot: 8082\n", "n.yaml"), environ={})
    with pytest.raises(ConfigError, match="did you mean 'restart-strategy.type'"):
        load(write(tmp_path, "restart-strategy: none\n", "r.yaml"), environ={})


def test_unknown_key_without_a_near_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'weir config show' lists the known keys"):
        load(write(tmp_path, "zzz: 1\n"), environ={})


def test_unknown_dynamic_key() -> None:
    with pytest.raises(ConfigError, match="unknown key 'rest.prt'.*from -D.*did you mean 'rest.port'"):
        load(environ={}, dynamic=["rest.prt=1"])
    with pytest.raises(ConfigError, match="write -D KEY=VALUE"):
        load(environ={}, dynamic=["rest.port"])


@pytest.mark.parametrize(("text", "message"), [
    ('rest.port: "abc"', "rest.port: 'abc' .* is not a whole number"),
    ("rest.port: 70000", "rest.port: 70000 .* must be at most 65535"),
    ("rest.port: 80.5", "is not a whole number"),
    ("rest.port: true", "is a YAML boolean"),
    ("rest.port: [1, 2]", "is a list"),
    ("state.backend.type: mongo", "state.backend.type: 'mongo' .* is not one of hashmap, rocksdb"),
    ("state.backend.type: rocks", "did you mean 'rocksdb'"),
    ("heartbeat.timeout: 5 parsecs", "heartbeat.timeout: '5 parsecs' .* is not a duration: write e.g. '10 s'"),
    ("heartbeat.timeout: 0 s", "must be more than 0"),
    ("restart-strategy.fixed-delay.delay: -1 s", "must be at least 0"),
    ("taskmanager.numberOfTaskSlots: 0", "must be at least 1"),
    ("metrics.port: -2", "must be at least -1"),
    ("jobmanager.rpc.address: jm:6123", "give the port in its own key"),
    ("jobmanager.rpc.address: http://jm", "is not a host name or IP address"),
    ("taskmanager.host: ''", "is empty"),
    ("state.checkpoints.dir: ftp://host/x", "use a path, file:///path or s3://bucket/prefix"),
    ("high-availability.storageDir: s3://", "names no bucket"),
    ("restart-strategy.type: sometimes", "is not one of none, fixed-delay, exponential-delay, failure-rate"),
    ("restart-strategy.exponential-delay.jitter-factor: 2", "must be at most 1"),
    ("execution.checkpointing.mode: twice", "is not one of EXACTLY_ONCE, AT_LEAST_ONCE"),
    ("io.tmp.dirs: ','", "names no directory"),
])
def test_bad_values(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text + "\n")
    with pytest.raises(ConfigError, match=message) as e:
        load(path, environ={})
    assert path in problems(e)


def test_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"rest.port: 'abc' \(from \$WEIR_REST_PORT\) is not a whole number"):
        load(environ={"WEIR_REST_PORT": "abc"})


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, "rest.port: abc\nstate.backend.type: mongo\nheartbeat.timout: 1 s\n")
    with pytest.raises(ConfigError) as e:
        load(path, environ={"WEIR_METRICS_PORT": "x"})
    assert len(e.value.problems) == 4


def test_valid_hosts() -> None:
    for host in ("localhost", "10.1.2.3", "0.0.0.0", "jm.weir.svc.cluster.local", "::1", "[::1]", "fe80::1"):
        assert load(environ={"WEIR_TASKMANAGER_HOST": host}).get_str("taskmanager.host") == host


def test_heartbeat_interval_must_be_shorter_than_the_timeout() -> None:
    with pytest.raises(ConfigError, match=r"heartbeat.interval \(10 s, from \$WEIR_HEARTBEAT_INTERVAL\) must be "
                                          r"shorter than heartbeat.timeout \(5 s, from -D\)"):
        load(environ={"WEIR_HEARTBEAT_INTERVAL": "10 s"}, dynamic=["heartbeat.timeout=5 s"])
    # a TaskManager's flag alone says nothing of the JobManager's timeout
    load(environ={}, flags={"heartbeat.interval": ("--heartbeat-interval", "20 s")})


# ---- normalised choices ----
def test_choices_are_normalised(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, "state.backend.type: RocksDB\nrestart-strategy.type: fixed_delay\n"
                               "execution.checkpointing.mode: at-least-once\n"), environ={})
    assert cfg.get_str("state.backend.type") == "rocksdb"
    assert cfg.get_str("restart-strategy.type") == "fixed-delay"
    assert cfg.get_str("execution.checkpointing.mode") == "AT_LEAST_ONCE"


def test_unquoted_off_is_no_restart(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, "restart-strategy.type: off\n"), environ={})  # YAML 1.1 reads False
    assert cfg.get_str("restart-strategy.type") == "none"


# ---- secrets ----
def test_secrets_never_shown(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, "weir.rest.token: hunter2\n"), environ={})
    assert cfg.get_str("weir.rest.token") == "hunter2"
    assert "hunter2" not in cfg.format_table()
    assert "hunter2" not in json.dumps(cfg.to_json())
    assert cfg.shown("weir.rest.token") == wc.MASK
    with pytest.raises(ConfigError) as e:
        load(write(tmp_path, "weir.rest.tokn: hunter2\n", "typo.yaml"), environ={})
    assert "hunter2" not in str(e.value) and "did you mean 'weir.rest.token'" in str(e.value)


# ---- output ----
def test_to_json_and_table(tmp_path: Path) -> None:
    path = write(tmp_path, "rest.port: 9000\n")
    cfg = load(path, environ={"WEIR_HEARTBEAT_TIMEOUT": "3 s"})
    data = cfg.to_json()
    assert data["file"] == path
    assert data["keys"]["rest.port"] == {"value": 9000, "origin": "file", "source": path, "type": "integer",
                                         "default": 8081, "description": wc.KEYS["rest.port"].description}
    assert data["keys"]["heartbeat.timeout"]["value"] == "3 s"
    assert data["keys"]["heartbeat.timeout"]["source"] == "$WEIR_HEARTBEAT_TIMEOUT"
    assert data["keys"]["jobmanager.rpc.port"]["origin"] == "default"
    assert list(data["keys"]) == [o.key for o in wc.OPTIONS]
    json.dumps(data)
    table = cfg.format_table().splitlines()
    assert table[0] == f"configuration file: {path}"
    row = next(line for line in table if line.startswith("heartbeat.timeout "))
    assert row.split() == ["heartbeat.timeout", "3", "s", "$WEIR_HEARTBEAT_TIMEOUT"]
    assert "(unset: jobmanager.bind-host)" in next(line for line in table if line.startswith("jobmanager.rpc.address"))


def test_raw_values_read_back(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, "io.tmp.dirs: [/a, /b]\nheartbeat.timeout: 1500 ms\nrest.port: 1\n"), environ={})
    env = {wc.KEYS[k].env_var: cfg.raw(k) for k in ("io.tmp.dirs", "heartbeat.timeout", "rest.port")}
    again = load(environ=env)
    for k in ("io.tmp.dirs", "heartbeat.timeout", "rest.port"):
        assert again.get(k) == cfg.get(k)


# ---- job defaults for the Dispatcher ----
def test_job_defaults_only_what_the_operator_set(tmp_path: Path) -> None:
    assert load(environ={}).job_defaults() == {}
    cfg = load(write(tmp_path, """
execution.checkpointing.interval: 5 s
execution.checkpointing.timeout: 1 min
state.checkpoints.num-retained: 3
restart-strategy.type: exponential-delay
restart-strategy.exponential-delay.initial-backoff: 500 ms
restart-strategy.exponential-delay.backoff-multiplier: 3
state.backend.type: rocksdb
rest.port: 9000
"""), environ={})
    defaults = cfg.job_defaults()
    assert defaults == {
        "execution.checkpointing.interval": "5000",
        "execution.checkpointing.timeout": "60000",
        "state.checkpoints.num-retained": "3",
        "restart-strategy.type": "exponential-delay",
        "restart-strategy.exponential-delay.initial-backoff": "500 ms",
        "restart-strategy.exponential-delay.backoff-multiplier": "3",
        "state.backend.type": "rocksdb",
    }
    # in the forms the Dispatcher and the restart strategies read
    from jobmanager.dispatcher import _checkpoint_config
    from jobmanager.failover import ExponentialDelay, restart_strategy_from

    cc = _checkpoint_config(defaults)
    assert (cc.interval_ms, cc.timeout_ms, cc.retained) == (5000, 60_000, 3)
    rs = restart_strategy_from(defaults, cc.enabled)
    assert isinstance(rs, ExponentialDelay) and rs.initial == 0.5 and rs.multiplier == 3.0


# ---- the CLI over it (in process) ----
def test_cli_config_show_sources(tmp_path: Path) -> None:
    path = write(tmp_path, "rest.port: 9000\nheartbeat.timeout: 20 s\n")
    r = CliRunner().invoke(cli, ["config", "show", "--config", path, "-D", "metrics.port=9300"],
                           env={"WEIR_HEARTBEAT_TIMEOUT": "30 s", "WEIR_CONF_DIR": None})
    assert r.exit_code == 0, r.output
    rows = {line.split()[0]: line.split() for line in r.output.splitlines()[2:]}
    assert rows["rest.port"][1:] == ["9000", path]
    assert rows["heartbeat.timeout"][1:] == ["30", "s", "$WEIR_HEARTBEAT_TIMEOUT"]
    assert rows["metrics.port"][1:] == ["9300", "-D"]
    assert rows["jobmanager.rpc.port"][1:] == ["6123", "default"]


def test_cli_invalid_configuration_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "rest.port: abc\n")
    r = CliRunner().invoke(cli, ["config", "show", "--config", path], env={"WEIR_CONF_DIR": None})
    assert r.exit_code == 1
    assert "invalid configuration" in r.output and "rest.port: 'abc'" in r.output


def test_cli_taskmanager_finds_the_jobmanager_in_the_configuration() -> None:
    from client.cli import _taskmanager_jobmanager

    def jm(flag: str | None, env: dict[str, str], dynamic: tuple[str, ...] = ()) -> str:
        with pytest.MonkeyPatch.context() as mp:
            for k in ("WEIR_JOBMANAGER", "WEIR_JOBMANAGER_RPC_ADDRESS", "WEIR_JOBMANAGER_RPC_PORT", "WEIR_CONF_DIR"):
                mp.delenv(k, raising=False)
            for k, v in env.items():
                mp.setenv(k, v)
            return _taskmanager_jobmanager(flag, load(dynamic=dynamic))

    conf = {"WEIR_JOBMANAGER_RPC_ADDRESS": "jm.example", "WEIR_JOBMANAGER_RPC_PORT": "7000"}
    assert jm(None, conf) == "jm.example:7000"
    assert jm("h:1", conf) == "h:1"
    assert jm(None, {**conf, "WEIR_JOBMANAGER": "w:2"}) == "w:2"
    assert jm(None, {"WEIR_JOBMANAGER": "w:2"}, ("jobmanager.rpc.address=d",)) == "d:6123"
    assert jm(None, {"WEIR_JOBMANAGER_RPC_ADDRESS": "::1"}) == "[::1]:6123"
