"""The cluster configuration: one YAML file, environment overrides and command-line flags, under Flink's key names.

Layers, each over the one before: the defaults in :data:`OPTIONS` < the YAML file (``--config PATH``, else
``$WEIR_CONF_DIR/config.yaml``) < environment overrides (``WEIR_`` + the key upper-cased with dots and dashes as
underscores: ``heartbeat.timeout`` -> ``WEIR_HEARTBEAT_TIMEOUT``; keys under ``weir.`` drop that prefix:
``weir.rest.token`` -> ``WEIR_REST_TOKEN``) < command-line flags. Every setting remembers where it came from.

The file holds flat keys (``rest.port: 8081``) or nested mappings (``rest: {port: 8081}``), as Flink's
``config.yaml`` does. Durations are Flink's: ``10 s``, ``500 ms``, ``1 min``; a plain number is milliseconds.
An unknown key or a bad value raises :class:`ConfigError` naming the key, the value, where it came from and, for an
unknown key, the nearest valid one. No network code here: the daemons take the typed values.
"""

from __future__ import annotations

import difflib
import enum
import ipaddress
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

CONF_DIR_ENV = "WEIR_CONF_DIR"
CONFIG_FILE_NAME = "config.yaml"
ENV_PREFIX = "WEIR_"
MASK = "******"


class ConfigError(ValueError):
    """An invalid configuration: one line per problem, each naming the key, the value and its source."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class Kind(enum.Enum):
    STRING = "string"
    HOST = "host"  # a host name or an IP address, without a port
    INT = "integer"
    FLOAT = "number"
    DURATION = "duration"  # held as seconds (float)
    CHOICE = "choice"
    URI = "directory URI"  # file:///path, a plain path or s3://bucket/prefix
    PATHS = "list of directories"
    SECRET = "secret"
    BOOL = "boolean"
    FILE = "file"  # a path to an existing, readable file


@dataclass(frozen=True)
class Option:
    """A known key: its type, default and meaning. ``unset`` says what a ``None`` default means."""

    key: str
    kind: Kind
    default: Any
    description: str
    choices: tuple[str, ...] = ()
    aliases: tuple[tuple[str, str], ...] = ()  # (alias, choice) accepted for a CHOICE
    minimum: float | None = None
    maximum: float | None = None
    positive: bool = False  # > 0 (durations)
    unset: str = ""
    job: bool = False  # a default for jobs that do not set it (handed to the Dispatcher)

    @property
    def env_var(self) -> str:
        return env_var_for(self.key)


def env_var_for(key: str) -> str:
    """``heartbeat.timeout`` -> ``WEIR_HEARTBEAT_TIMEOUT``; ``weir.rest.token`` -> ``WEIR_REST_TOKEN``."""
    name = key.removeprefix("weir.")
    return ENV_PREFIX + re.sub(r"[.\-]", "_", name).upper()


_S, _MIN, _H = 1.0, 60.0, 3600.0
_RS = "restart-strategy."
_SSL = "security.ssl.internal."
_SSL_REST = "security.ssl.rest."
_CP = "execution.checkpointing."

OPTIONS: tuple[Option, ...] = (
    # ---- JobManager ----
    Option("jobmanager.rpc.address", Kind.HOST, None,
           "Address TaskManagers and clients use to reach the JobManager (advertised; set it when the JobManager "
           "is behind NAT or in a container). A TaskManager without --jobmanager connects to it.",
           unset="jobmanager.bind-host"),
    Option("jobmanager.rpc.port", Kind.INT, 6123, "The JobManager's RPC port (0: any free port).",
           minimum=0, maximum=65535),
    Option("jobmanager.bind-host", Kind.HOST, "127.0.0.1",
           "Local address the JobManager's RPC server and REST API bind (0.0.0.0: every interface)."),
    Option("rest.port", Kind.INT, 8081, "Port of the JobManager's REST API, dashboard and /metrics (0: any free).",
           minimum=0, maximum=65535),
    Option("rest.address", Kind.HOST, None, "Address clients use to reach the REST API (advertised).",
           unset="jobmanager.rpc.address"),
    Option("rest.bind-address", Kind.HOST, None,
           "Local address the REST API binds. This JobManager serves REST on jobmanager.bind-host: leave it unset "
           "or equal to that.", unset="jobmanager.bind-host"),
    Option("high-availability.storageDir", Kind.URI, None,
           "Where the JobManager keeps jobs and checkpoint pointers, to resume them after a restart.",
           unset="no high availability"),
    Option("slot.request.timeout", Kind.DURATION, 60 * _S,
           "How long a job waits for enough free slots before it fails.", positive=True),
    Option("weir.rest.token", Kind.SECRET, None,
           "Token the REST API requires as 'Authorization: Bearer TOKEN' for its write actions (cancel, savepoint) "
           "and, unless weir.rest.read-without-token is true, for its JSON reads.",
           unset="weir.auth.token"),
    Option("weir.rest.read-without-token", Kind.BOOL, False,
           "Serve the REST API's reads (GET /jobs, /overview, ...) without the token; writes still need it."),
    # ---- security (every daemon and client of a cluster) ----
    Option("weir.auth.token", Kind.SECRET, None,
           "The cluster's shared secret: every RPC call (submit, cancel, savepoint, TaskManager registration, "
           "task deployment) and every data-plane connection must carry it, or it is refused.",
           unset="none: the cluster is open (loopback development)"),
    Option(_SSL + "enabled", Kind.BOOL, False,
           "TLS on every RPC channel (clients, JobManager, TaskManagers) and on the data plane between workers."),
    Option(_SSL + "cert", Kind.FILE, None,
           "PEM certificate (chain) this daemon presents; a client presents it when the servers require one. It "
           "must name the address peers dial (or security.ssl.internal.server-name).",
           unset="none: a daemon cannot start with TLS enabled"),
    Option(_SSL + "key", Kind.FILE, None, "PEM private key of security.ssl.internal.cert.",
           unset="none: a daemon cannot start with TLS enabled"),
    Option(_SSL + "ca", Kind.FILE, None,
           "PEM certificate of the cluster's CA. With it TLS is mutual: peers are verified against this CA only, "
           "and servers refuse clients without a certificate it signed.",
           unset="the system's trust store; no client certificates"),
    Option(_SSL + "server-name", Kind.STRING, None,
           "Name every daemon's certificate carries, checked instead of the dialled address (for containers, "
           "where addresses change).", unset="the dialled host"),
    Option(_SSL_REST + "enabled", Kind.BOOL, False,
           "HTTPS for the JobManager's REST API, dashboard and /metrics, and for the TaskManagers' /metrics."),
    Option(_SSL_REST + "cert", Kind.FILE, None, "PEM certificate of the REST API.",
           unset="security.ssl.internal.cert"),
    Option(_SSL_REST + "key", Kind.FILE, None, "PEM private key of security.ssl.rest.cert.",
           unset="security.ssl.internal.key"),
    Option(_SSL_REST + "ca", Kind.FILE, None,
           "PEM CA certificate; with it HTTPS is mutual: the REST API refuses clients without a certificate it "
           "signed.", unset="no client certificates"),
    # ---- TaskManager ----
    Option("taskmanager.numberOfTaskSlots", Kind.INT, os.cpu_count() or 1,
           "Slots of a TaskManager, one worker process each (default: the number of CPUs).", minimum=1),
    Option("taskmanager.host", Kind.HOST, None,
           "Address the JobManager and other TaskManagers use to reach this TaskManager (advertised; set it "
           "behind NAT or in a container).", unset="taskmanager.bind-host"),
    Option("taskmanager.bind-host", Kind.HOST, "127.0.0.1",
           "Local address the TaskManager's RPC server and data plane bind (0.0.0.0: every interface)."),
    Option("taskmanager.rpc.port", Kind.INT, 0, "The TaskManager's RPC port (0: any free port).",
           minimum=0, maximum=65535),
    Option("metrics.port", Kind.INT, 9249, "Port of the TaskManager's Prometheus /metrics (-1: none).",
           minimum=-1, maximum=65535),
    Option("io.tmp.dirs", Kind.PATHS, None,
           "Local directories for the slots' state, separated by ',' (the TaskManager uses the first).",
           unset="the system's temporary directory"),
    Option("heartbeat.interval", Kind.DURATION, 1 * _S, "How often a TaskManager sends a heartbeat.", positive=True),
    Option("heartbeat.timeout", Kind.DURATION, 10 * _S,
           "Time without a heartbeat after which the JobManager declares a TaskManager lost.", positive=True),
    # ---- state and checkpoints ----
    Option("state.backend.type", Kind.CHOICE, "hashmap", "Keyed state backend of jobs that do not choose one.",
           choices=("hashmap", "rocksdb"), job=True),
    Option("state.checkpoints.dir", Kind.URI, None,
           "Default checkpoint directory of jobs (file:///path or s3://bucket/prefix).",
           unset="file://$WEIR_HOME/checkpoints"),
    Option("state.savepoints.dir", Kind.URI, None, "Default savepoint directory (file:///path or s3://bucket/prefix).",
           unset="file://$WEIR_HOME/savepoints"),
    Option("state.checkpoints.num-retained", Kind.INT, 1, "Completed checkpoints kept per job.", minimum=1, job=True),
    Option(_CP + "interval", Kind.DURATION, 0.0, "Checkpoint interval of jobs that do not set one (0: no checkpoints).",
           job=True),
    Option(_CP + "mode", Kind.CHOICE, "EXACTLY_ONCE", "Checkpointing mode of jobs that do not set one.",
           choices=("EXACTLY_ONCE", "AT_LEAST_ONCE"), job=True),
    Option(_CP + "timeout", Kind.DURATION, 10 * _MIN, "A checkpoint not complete after this long is declared failed.",
           positive=True, job=True),
    Option(_CP + "min-pause", Kind.DURATION, 0.0, "Least time between the end of a checkpoint and the next one.",
           job=True),
    Option(_CP + "tolerable-failed-checkpoints", Kind.INT, 0,
           "Checkpoint failures in a row a job tolerates before it fails over.", minimum=0, job=True),
    # ---- restart strategies (jobs that do not set one) ----
    Option(_RS + "type", Kind.CHOICE, None, "Restart strategy of jobs that do not set one.",
           choices=("none", "fixed-delay", "exponential-delay", "failure-rate"),
           aliases=(("off", "none"), ("disable", "none"), ("fixeddelay", "fixed-delay"),
                    ("exponentialdelay", "exponential-delay"), ("failurerate", "failure-rate")),
           unset="fixed-delay (unlimited attempts) with checkpointing, else none", job=True),
    Option(_RS + "fixed-delay.attempts", Kind.INT, 1, "fixed-delay: restarts before the job fails.", minimum=0,
           job=True),
    Option(_RS + "fixed-delay.delay", Kind.DURATION, 1 * _S, "fixed-delay: wait before each restart.", job=True),
    Option(_RS + "exponential-delay.initial-backoff", Kind.DURATION, 1 * _S, "exponential-delay: first wait.",
           job=True),
    Option(_RS + "exponential-delay.max-backoff", Kind.DURATION, 1 * _MIN, "exponential-delay: longest wait.",
           job=True),
    Option(_RS + "exponential-delay.backoff-multiplier", Kind.FLOAT, 2.0, "exponential-delay: growth of the wait.",
           minimum=1.0, job=True),
    Option(_RS + "exponential-delay.reset-backoff-threshold", Kind.DURATION, 1 * _H,
           "exponential-delay: a run this long without failure resets the wait.", job=True),
    Option(_RS + "exponential-delay.jitter-factor", Kind.FLOAT, 0.1, "exponential-delay: random share of the wait.",
           minimum=0.0, maximum=1.0, job=True),
    Option(_RS + "failure-rate.max-failures-per-interval", Kind.INT, 1,
           "failure-rate: failures within the interval before the job fails.", minimum=1, job=True),
    Option(_RS + "failure-rate.failure-rate-interval", Kind.DURATION, 1 * _MIN, "failure-rate: the interval.",
           positive=True, job=True),
    Option(_RS + "failure-rate.delay", Kind.DURATION, 1 * _S, "failure-rate: wait before each restart.", job=True),
)

KEYS: dict[str, Option] = {o.key: o for o in OPTIONS}
_ENV_VARS: dict[str, str] = {o.env_var: o.key for o in OPTIONS}
assert len(_ENV_VARS) == len(KEYS), "two keys map to one environment variable"


# ---- durations ----
_UNITS: dict[str, float] = {}
for _names, _secs in (
    (("ns", "nano", "nanos", "nanosecond", "nanoseconds"), 1e-9),
    (("us", "µs", "micro", "micros", "microsecond", "microseconds"), 1e-6),
    (("ms", "milli", "millis", "millisecond", "milliseconds"), 1e-3),
    (("s", "sec", "secs", "second", "seconds"), 1.0),
    (("m", "min", "mins", "minute", "minutes"), 60.0),
    (("h", "hour", "hours"), 3600.0),
    (("d", "day", "days"), 86400.0),
):
    for _n in _names:
        _UNITS[_n] = _secs
_DURATION = re.compile(r"\s*(-?[0-9]*\.?[0-9]+)\s*([a-zµ]*)\s*")
DURATION_HINT = "write e.g. '10 s', '500 ms' or '1 min' (a plain number is milliseconds)"


def parse_duration(value: str | int | float) -> float:
    """Seconds of a Flink duration: ``'10 s'``, ``'500 ms'``, ``'1 min'``, or a number of milliseconds.

    Raises:
        ValueError: not a duration.
    """
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, int | float):
        return float(value) / 1000
    m = _DURATION.fullmatch(value.lower())
    if not m or (m.group(2) and m.group(2) not in _UNITS):
        raise ValueError(f"{value!r} is not a duration")
    n = float(m.group(1))
    return n * _UNITS[m.group(2)] if m.group(2) else n / 1000


def format_duration(seconds: float) -> str:
    """The largest whole unit: 10.0 -> ``'10 s'``, 0.5 -> ``'500 ms'``, 60 -> ``'1 min'``."""
    ms = round(seconds * 1000, 6)
    if ms == int(ms):
        whole = int(ms)
        for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("min", 60_000), ("s", 1000)):
            if whole and whole % size == 0:
                return f"{whole // size} {unit}"
        return f"{whole} ms"
    return f"{ms:g} ms"


# ---- values ----
class _Bad(ValueError):
    """A value that does not fit its key; the message says what was expected."""


def _scalar(value: Any, what: str) -> str | int | float:
    if isinstance(value, bool):
        raise _Bad(f"is a YAML boolean (unquoted yes, no, on, off, true or false), not a {what}: quote the word")
    if isinstance(value, str | int | float):
        return value
    raise _Bad(f"is a {type(value).__name__}, not a {what}")


def _parse(opt: Option, value: Any) -> Any:
    kind = opt.kind
    if kind is Kind.INT:
        v = _scalar(value, "whole number")
        if isinstance(v, float) or (isinstance(v, str) and not re.fullmatch(r"\s*-?[0-9]+\s*", v)):
            span = f" ({opt.minimum:g} to {opt.maximum:g})" if opt.minimum is not None and opt.maximum else ""
            raise _Bad(f"is not a whole number{span}")
        n = int(v)
        _check_range(opt, n)
        return n
    if kind is Kind.FLOAT:
        v = _scalar(value, "number")
        try:
            x = float(v)
        except ValueError:
            raise _Bad("is not a number") from None
        _check_range(opt, x)
        return x
    if kind is Kind.DURATION:
        try:
            secs = parse_duration(_scalar(value, "duration"))
        except ValueError:
            raise _Bad(f"is not a duration: {DURATION_HINT}") from None
        if secs < 0 or (opt.positive and secs == 0):
            raise _Bad(f"must be {'more than' if opt.positive else 'at least'} 0")
        return secs
    if kind is Kind.CHOICE:
        if value is False and any(a == "off" for a, _ in opt.aliases):
            value = "off"  # YAML 1.1 reads an unquoted off (no, false) as a boolean
        raw = str(_scalar(value, "choice")).strip()
        norm = raw.upper().replace("-", "_") if opt.choices[0].isupper() else raw.lower().replace("_", "-")
        norm = dict(opt.aliases).get(norm, norm)
        if norm not in opt.choices:
            near = difflib.get_close_matches(norm, opt.choices, n=1, cutoff=0.5)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise _Bad(f"is not one of {', '.join(opt.choices)}{hint}")
        return norm
    if kind is Kind.BOOL:
        if isinstance(value, bool):
            return value
        word = str(_scalar(value, "boolean")).strip().lower()
        if word in ("true", "yes", "on", "1"):
            return True
        if word in ("false", "no", "off", "0"):
            return False
        raise _Bad("is not a boolean: write true or false")
    if kind is Kind.PATHS:
        items = value if isinstance(value, list) else str(_scalar(value, "list of directories")).split(",")
        dirs = [str(_scalar(d, "directory")).strip() for d in items]
        dirs = [d for d in dirs if d]
        if not dirs:
            raise _Bad("names no directory")
        return dirs
    text = str(_scalar(value, kind.value)).strip()
    if not text:
        raise _Bad("is empty")
    if kind is Kind.HOST:
        if any(c.isspace() for c in text) or "/" in text:
            raise _Bad("is not a host name or IP address")
        if ":" in text:
            try:
                ipaddress.IPv6Address(text.strip("[]"))
            except ValueError:
                raise _Bad("is not a host name or IP address: give the port in its own key") from None
    if kind is Kind.FILE:
        path = os.path.expanduser(text)
        if not os.path.isfile(path):
            raise _Bad("names no file: give the path of an existing file")
        if not os.access(path, os.R_OK):
            raise _Bad("is not readable by this user")
        return os.path.abspath(path)
    if kind is Kind.URI:
        scheme = text.split("://", 1)[0] if "://" in text else ""
        if scheme not in ("", "file", "s3"):
            raise _Bad("is not a directory: use a path, file:///path or s3://bucket/prefix")
        if scheme == "s3" and not text[len("s3://"):].strip("/"):
            raise _Bad("names no bucket: use s3://bucket/prefix")
    return text


def _check_range(opt: Option, x: float) -> None:
    if opt.minimum is not None and x < opt.minimum:
        raise _Bad(f"must be at least {opt.minimum:g}")
    if opt.maximum is not None and x > opt.maximum:
        raise _Bad(f"must be at most {opt.maximum:g}")


def format_value(opt: Option, value: Any) -> str:
    """The value as the file would spell it (and as the parser reads it back)."""
    if value is None:
        return ""
    if opt.kind is Kind.DURATION:
        return format_duration(value)
    if opt.kind is Kind.PATHS:
        return ",".join(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def nearest_key(key: str) -> str | None:
    """The known key closest to ``key`` (case does not count), or None."""
    lower = {k.lower(): k for k in KEYS}
    near = difflib.get_close_matches(key.lower(), list(lower), n=1, cutoff=0.6)
    return lower[near[0]] if near else None


def _looks_secret(key: str) -> bool:
    return any(w in key.lower() for w in ("token", "secret", "password", "credential"))


# ---- settings ----
@dataclass(frozen=True)
class Setting:
    """One key's effective value and where it came from.

    ``origin`` is ``default``, ``file``, ``env`` or ``flag``; ``source`` names it: ``default``, the file's path,
    ``$WEIR_...`` or the flag (``--port``, ``-D``).
    """

    key: str
    value: Any
    origin: str
    source: str


class Config:
    """The effective configuration: typed getters and each value's source."""

    def __init__(self, settings: Mapping[str, Setting], file: str | None = None) -> None:
        self._settings = dict(settings)
        self.file = file

    def _get(self, key: str) -> Any:
        if key not in KEYS:
            raise KeyError(f"unknown configuration key {key!r}")
        return self._settings[key].value

    def get(self, key: str) -> Any:
        return self._get(key)

    def get_str(self, key: str) -> str | None:
        v = self._get(key)
        assert v is None or isinstance(v, str), key
        return v

    def get_int(self, key: str) -> int:
        v = self._get(key)
        assert isinstance(v, int), key
        return v

    def get_float(self, key: str) -> float:
        v = self._get(key)
        assert isinstance(v, float), key
        return v

    def get_seconds(self, key: str) -> float:
        """A duration, in seconds."""
        assert KEYS[key].kind is Kind.DURATION, key
        return self.get_float(key)

    def get_list(self, key: str) -> list[str]:
        v = self._get(key)
        return list(v) if v else []

    def setting(self, key: str) -> Setting:
        self._get(key)
        return self._settings[key]

    def source(self, key: str) -> str:
        return self.setting(key).source

    def is_set(self, key: str) -> bool:
        """True when the value did not come from the defaults."""
        return self.setting(key).origin != "default"

    def settings(self) -> list[Setting]:
        return [self._settings[o.key] for o in OPTIONS]

    def raw(self, key: str) -> str:
        """The value as a string the parser reads back (for an environment override)."""
        return format_value(KEYS[key], self._get(key))

    def shown(self, key: str) -> str:
        """The value for people: secrets masked, an unset value says what it means."""
        opt = KEYS[key]
        v = self._get(key)
        if v is None:
            return f"(unset: {opt.unset})" if opt.unset else "(unset)"
        return MASK if opt.kind is Kind.SECRET else format_value(opt, v)

    def job_defaults(self) -> dict[str, str]:
        """Job-level keys the operator set, as the Dispatcher's ``defaults`` read them (its checkpointing
        durations are milliseconds; restart-strategy durations take units)."""
        out: dict[str, str] = {}
        for o in OPTIONS:
            if not o.job or not self.is_set(o.key):
                continue
            v = self._get(o.key)
            if o.kind is Kind.DURATION and o.key.startswith(_CP):
                out[o.key] = str(round(v * 1000))
            elif o.kind is Kind.DURATION:
                out[o.key] = f"{round(v * 1000)} ms"
            else:
                out[o.key] = format_value(o, v)
        return out

    def to_json(self) -> dict[str, Any]:
        keys: dict[str, Any] = {}
        for s in self.settings():
            opt = KEYS[s.key]
            value: Any = s.value
            if opt.kind is Kind.SECRET and value is not None:
                value = MASK
            elif opt.kind is Kind.DURATION:
                value = format_duration(value)
            keys[s.key] = {"value": value, "origin": s.origin, "source": s.source, "type": opt.kind.value,
                           "default": format_duration(opt.default) if opt.kind is Kind.DURATION else opt.default,
                           "description": opt.description}
        return {"file": self.file, "keys": keys}

    def format_table(self) -> str:
        rows = [(s.key, self.shown(s.key), s.source) for s in self.settings()]
        w0 = max(len(r[0]) for r in rows)
        w1 = min(40, max(len(r[1]) for r in rows))
        head = f"configuration file: {self.file or 'none'}"
        lines = [head, f"{'KEY':<{w0}}  {'VALUE':<{w1}}  SOURCE"]
        lines += [f"{k:<{w0}}  {v:<{w1}}  {src}" for k, v, src in rows]
        return "\n".join(lines)


# ---- loading ----
def find_config_file(path: str | None = None, environ: Mapping[str, str] | None = None) -> str | None:
    """The file to read: ``path``, else ``$WEIR_CONF_DIR/config.yaml``, else none.

    Raises:
        ConfigError: the named file, or WEIR_CONF_DIR's config.yaml, does not exist.
    """
    env = os.environ if environ is None else environ
    if path:
        if not os.path.isfile(path):
            raise ConfigError([f"the configuration file {path} does not exist"])
        return os.path.abspath(path)
    conf_dir = env.get(CONF_DIR_ENV)
    if conf_dir:
        p = os.path.join(conf_dir, CONFIG_FILE_NAME)
        if not os.path.isfile(p):
            raise ConfigError([f"${CONF_DIR_ENV} is {conf_dir} but there is no {CONFIG_FILE_NAME} in it"])
        return os.path.abspath(p)
    return None


class _DuplicateKey(Exception):
    def __init__(self, key: Any, line: int) -> None:
        super().__init__(key, line)
        self.key, self.line = key, line


def _yaml_loader() -> Any:
    import yaml

    class Loader(yaml.SafeLoader):  # type: ignore[misc]
        pass

    def mapping(loader: Any, node: Any, deep: bool = False) -> dict[Any, Any]:
        loader.flatten_mapping(node)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if key in out:
                raise _DuplicateKey(key, key_node.start_mark.line + 1)
            out[key] = loader.construct_object(value_node, deep=True)
        return out

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    return Loader


def read_file(path: str) -> dict[str, Any]:
    """The file's keys, flattened (``rest: {port: 1}`` -> ``rest.port``); values as YAML typed them.

    Raises:
        ConfigError: unreadable, not YAML, not a mapping, or a key given twice.
    """
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.load(f, Loader=_yaml_loader())
    except OSError as e:
        raise ConfigError([f"cannot read the configuration file {path}: {e.strerror or e}"]) from None
    except _DuplicateKey as e:
        raise ConfigError([f"{path}, line {e.line}: key {e.key!r} is given twice"]) from None
    except yaml.YAMLError as e:
        raise ConfigError([f"{path} is not valid YAML: {e}"]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([f"{path} must hold a mapping of keys to values, not a {type(data).__name__}"])
    flat: dict[str, Any] = {}
    problems: list[str] = []

    def walk(d: dict[Any, Any], prefix: str) -> None:
        for k, v in d.items():
            key = prefix + str(k)
            if isinstance(v, dict) and key not in KEYS:
                walk(v, key + ".")
            elif key in flat:
                problems.append(f"{path}: key {key!r} is given twice (flat and nested)")
            else:
                flat[key] = v

    walk(data, "")
    if problems:
        raise ConfigError(problems)
    return flat


def _shown_raw(key: str, value: Any) -> str:
    opt = KEYS.get(key)
    near = nearest_key(key)
    secret = (opt is not None and opt.kind is Kind.SECRET) or _looks_secret(key) or (
        near is not None and KEYS[near].kind is Kind.SECRET)
    return MASK if secret else repr(value)


def load(
    config_file: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, tuple[str, Any]] | None = None,
    dynamic: Iterable[str] = (),
) -> Config:
    """The effective configuration: defaults < file < environment < flags.

    Args:
        config_file: the YAML file (``--config``); without one, ``$WEIR_CONF_DIR/config.yaml`` if that is set.
        environ: the environment (default ``os.environ``); ``WEIR_<KEY>`` overrides a key, an empty value is unset.
        flags: ``{key: (flag name, value)}`` from command-line flags; a ``None`` value was not given.
        dynamic: ``KEY=VALUE`` strings (``-D``), between the environment and ``flags``.

    Raises:
        ConfigError: every problem found, each with its key, value and source.
    """
    env = os.environ if environ is None else environ
    path = find_config_file(config_file, env)
    settings = {o.key: Setting(o.key, o.default, "default", "default") for o in OPTIONS}
    problems: list[str] = []

    def put(key: str, value: Any, origin: str, source: str) -> None:
        opt = KEYS.get(key)
        if opt is None:
            near = nearest_key(key)
            hint = f"did you mean {near!r}?" if near else "'weir config show' lists the known keys"
            problems.append(f"unknown key {key!r} (value {_shown_raw(key, value)}, from {source}): {hint}")
            return
        try:
            settings[key] = Setting(key, _parse(opt, value), origin, source)
        except _Bad as e:
            problems.append(f"{key}: {_shown_raw(key, value)} (from {source}) {e}")

    if path is not None:
        for key, value in read_file(path).items():
            if value is None and key in KEYS:
                continue  # "key:" with nothing: the default stands
            put(key, value, "file", path)
    for opt in OPTIONS:
        raw = env.get(opt.env_var)
        if raw:
            put(opt.key, raw, "env", "$" + opt.env_var)
    for item in dynamic:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            problems.append(f"-D {item!r}: write -D KEY=VALUE")
            continue
        put(key.strip(), value.strip(), "flag", "-D")
    for key, (flag, value) in (flags or {}).items():
        if value is not None:
            put(key, value, "flag", flag)
    cfg = Config(settings, path)
    hi, ht = cfg.setting("heartbeat.interval"), cfg.setting("heartbeat.timeout")
    # only when both are set: a daemon's flag may set one while the other daemon's sets the other
    if not problems and cfg.is_set(hi.key) and cfg.is_set(ht.key) and hi.value >= ht.value:
        problems.append(f"heartbeat.interval ({format_duration(hi.value)}, from {hi.source}) must be shorter "
                        f"than heartbeat.timeout ({format_duration(ht.value)}, from {ht.source})")
    if problems:
        raise ConfigError(problems)
    return cfg


# ---- this process's configuration ----
_installed: Config | None = None
_from_env: tuple[tuple[tuple[str, str], ...], Config] | None = None

# keys every client and daemon of a cluster must agree on; daemons hand them to their child processes
SECURITY_KEYS: tuple[str, ...] = tuple(
    o.key for o in OPTIONS if o.key.startswith("security.") or o.key == "weir.auth.token")


def install(cfg: Config) -> None:
    """Make ``cfg`` this process's configuration and hand its security keys to child processes.

    Daemons call it once at start with what their flags, file and environment gave; what creates channels and
    servers later (:func:`current`) reads it. The security keys go into ``os.environ`` so that slot workers and
    local-cluster daemons, started later as child processes, agree with this one.
    """
    global _installed
    _installed = cfg
    for key in SECURITY_KEYS:
        env_var = KEYS[key].env_var
        if cfg.get(key) is None:
            os.environ.pop(env_var, None)
        else:
            os.environ[env_var] = cfg.raw(key)


def current() -> Config:
    """This process's configuration: what :func:`install` set, else the file and environment (cached).

    Library code (``env.execute()`` against a remote JobManager, the CLI's clients) gets the cluster's token and
    TLS settings this way without a flag.

    Raises:
        ConfigError: the file or the environment is invalid.
    """
    global _from_env
    if _installed is not None:
        return _installed
    snapshot = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(ENV_PREFIX)))
    if _from_env is None or _from_env[0] != snapshot:
        _from_env = (snapshot, load())
    return _from_env[1]


def reset() -> None:
    """Forget the installed configuration (tests)."""
    global _installed, _from_env
    _installed = _from_env = None
