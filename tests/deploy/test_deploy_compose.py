"""docker-compose.yml, checked without a Docker engine: it parses, everything it
references exists, and its services are wired to each other the way they must be
for `docker compose up` to show triggers in Grafana."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any

import pytest

from stream.settings import Settings
from tests.deploy.deploy_support import COMPOSE, ROOT, load_yaml, settings_env_names

pytestmark = pytest.mark.unit

_VARIABLE = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")


def interpolate(value: str) -> str:
    """Compose's ${VAR:-default} with an empty environment: the defaults a newcomer gets."""
    return _VARIABLE.sub(lambda m: m.group(2) or "", value)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = load_yaml(COMPOSE)
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: interpolate(str(value)) for key, value in env.items()}


def bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(host path, container path) of every bind mount (named volumes excluded)."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                mounts.append((volume["source"], volume["target"]))
            continue
        if ":" not in volume:  # an anonymous volume: no host path
            continue
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            mounts.append((source, target))
    return mounts


def mount_target(service: dict[str, Any], host_path: str) -> str:
    for source, target in bind_mounts(service):
        if PurePosixPath(source) == PurePosixPath(host_path):
            return target
    raise AssertionError(f"{host_path} is not mounted")


def test_the_stack_has_every_service(services: dict[str, dict[str, Any]]) -> None:
    assert {
        "kafka", "kafka-init", "redis", "nudge", "simulate", "provider", "prometheus", "grafana"
    } <= set(services)  # fmt: skip
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    for name, service in services.items():
        if "image" in service and "build" not in service:
            assert not service["image"].endswith(":latest") and ":" in service["image"], (
                f"{name}: pin the image version"
            )


def test_every_referenced_file_exists(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        if build := service.get("build"):
            context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
            assert context.is_dir(), f"{name}: build context {context}"
            dockerfile = (
                "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            )
            assert (context / dockerfile).is_file(), f"{name}: {dockerfile}"
        for source, _ in bind_mounts(service):
            assert (ROOT / source).exists(), f"{name}: mounted {source} does not exist"
        for dependency in service.get("depends_on", []):
            assert dependency in services, f"{name} depends on unknown service {dependency}"


def test_named_volumes_are_declared(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            if isinstance(volume, str) and not volume.startswith((".", "/")):
                assert volume.split(":")[0] in declared, f"{name}: volume {volume}"


def test_nudge_services_use_only_real_settings(services: dict[str, dict[str, Any]]) -> None:
    known = settings_env_names()
    for name, service in services.items():
        unknown = {k for k in environment(service) if k.startswith("NUDGE_")} - known
        assert not unknown, f"{name}: {unknown} are not settings (stream/settings.py)"


def test_worker_is_wired_to_kafka_redis_rules_and_data(
    services: dict[str, dict[str, Any]],
) -> None:
    worker = services["nudge"]
    env = environment(worker)
    assert env["NUDGE_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert "kafka:9092" in services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert env["NUDGE_REDIS_URL"].startswith("redis://redis:")
    assert mount_target(worker, "./deploy/rules.demo.yaml") == env["NUDGE_RULES_PATH"]
    assert env.get("NUDGE_DATA_DIR", "/var/lib/nudge") in worker.get("volumes", []), (
        "RocksDB data on the replica's own (anonymous) volume"
    )
    assert worker["depends_on"]["kafka-init"]["condition"] == "service_completed_successfully"
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    # The demo producer is the same image running `nudge simulate`.
    simulate = services["simulate"]
    assert simulate["image"] == worker["image"]
    assert simulate["command"][0] == "simulate"
    assert simulate["healthcheck"] == {"disable": True}, "no web server to probe in simulate"
    assert environment(simulate)["NUDGE_KAFKA_BOOTSTRAP"] == env["NUDGE_KAFKA_BOOTSTRAP"]
    # So is the demo's delivery provider, answering the worker's sent decisions.
    provider = services["provider"]
    assert provider["image"] == worker["image"]
    assert provider["command"] == ["simulate", "--provider"]
    assert provider["depends_on"]["nudge"]["condition"] == "service_healthy"
    assert environment(provider)["NUDGE_KAFKA_BOOTSTRAP"] == env["NUDGE_KAFKA_BOOTSTRAP"]


def test_the_worker_scales_with_its_own_data_and_port_per_replica(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    # `docker compose up --scale nudge=N`: no shared named volume for RocksDB (two workers
    # must never open one data dir), no fixed host port (the second replica could not bind).
    worker = services["nudge"]
    data_dir = environment(worker).get("NUDGE_DATA_DIR", "/var/lib/nudge")
    for volume in worker.get("volumes", []):
        target = volume.split(":")[1] if ":" in volume else volume
        if target == data_dir:
            assert ":" not in volume, f"{volume}: a volume every replica would share"
    (port,) = worker["ports"]
    host, container = str(port).split(":")[-2:]
    first, _, last = host.partition("-")
    assert container == environment(worker)["NUDGE_WEB_PORT"]
    assert last and int(last) - int(first) + 1 >= 4, "a host port range, one per replica"
    assert "container_name" not in worker and "hostname" not in worker
    # More replicas than partitions would idle: the range stays within NUDGE_PARTITIONS.
    partitions = int(environment(worker)["NUDGE_PARTITIONS"])
    assert int(last) - int(first) + 1 <= partitions


def test_topic_creator_makes_the_contract_topics(services: dict[str, dict[str, Any]]) -> None:
    init = services["kafka-init"]
    script = " ".join(init["command"]) if isinstance(init["command"], list) else init["command"]
    defaults = Settings.model_fields
    for field in (
        "topic_browse",
        "topic_cart",
        "topic_order",
        "topic_prefs",
        "topic_catalog",
        "topic_triggers",
        "topic_audit",
        "topic_dlq",
    ):
        assert defaults[field].default in re.split(r"[\s;]+", script), (
            f"{defaults[field].default} not created"
        )
    # Same partition count as the worker expects.
    assert environment(init)["PARTITIONS"] == environment(services["nudge"])["NUDGE_PARTITIONS"]
    assert init.get("restart", "no") == "no"


def test_prometheus_scrapes_the_worker_and_loads_the_alerts(
    services: dict[str, dict[str, Any]],
) -> None:
    prometheus = services["prometheus"]
    config_target = mount_target(prometheus, "./deploy/prometheus/prometheus.yml")
    assert f"--config.file={config_target}" in prometheus["command"]
    config = load_yaml(ROOT / "deploy/prometheus/prometheus.yml")
    config_dir = PurePosixPath(config_target).parent
    for rule_file in config["rule_files"]:
        assert mount_target(prometheus, f"./deploy/prometheus/{rule_file}") == str(
            config_dir / rule_file
        )
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "nudge"]
    port = environment(services["nudge"])["NUDGE_WEB_PORT"]
    # Every replica, found by Docker's DNS (one A record per container of the service).
    assert job["dns_sd_configs"] == [
        {"names": ["nudge"], "type": "A", "port": int(port), "refresh_interval": "15s"}
    ]
    assert "static_configs" not in job


def test_grafana_provisions_the_datasource_and_dashboard(
    services: dict[str, dict[str, Any]],
) -> None:
    grafana = services["grafana"]
    datasources_dir = mount_target(grafana, "./deploy/grafana/provisioning/datasources")
    dashboards_dir = mount_target(grafana, "./deploy/grafana/provisioning/dashboards")
    assert datasources_dir == "/etc/grafana/provisioning/datasources"
    assert dashboards_dir == "/etc/grafana/provisioning/dashboards"
    (datasource,) = load_yaml(ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml")[
        "datasources"
    ]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    (provider,) = load_yaml(ROOT / "deploy/grafana/provisioning/dashboards/nudge.yml")["providers"]
    dashboard = PurePosixPath(mount_target(grafana, "./deploy/grafana/nudge.json"))
    assert str(dashboard.parent) == provider["options"]["path"]
