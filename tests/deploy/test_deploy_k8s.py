"""Kubernetes manifests: validated against the Kubernetes schemas (kubernetes-validate,
strict: unknown fields are errors), wired to each other (selectors, ports, ConfigMaps,
Secrets), and the Prometheus Operator objects checked against what they must match:
the ServiceMonitor against the Service, the PrometheusRule against alerts.yml and
promtool."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import kubernetes_validate.utils
import pytest
import yaml
from packaging.version import Version

from tests.deploy.deploy_support import (
    ALERTS,
    K8S,
    ROOT,
    load_yaml,
    load_yaml_all,
    settings_env_names,
)

pytestmark = pytest.mark.unit

#: The oldest Kubernetes the manifests support (or the oldest schema the validator still
#: ships, if newer) and the newest the validator knows.
OLDEST_SUPPORTED = "1.28"
K8S_VERSIONS = (
    max(OLDEST_SUPPORTED, kubernetes_validate.utils.all_versions()[0], key=Version),
    kubernetes_validate.latest_version(),
)
#: The Prometheus Operator CRDs' pattern for durations.
DURATION = (
    r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?"
    r"(([0-9]+)ms)?)$"
)


def kustomization_resources(directory: Path) -> list[dict[str, Any]]:
    kustomization = load_yaml(directory / "kustomization.yaml")
    docs: list[dict[str, Any]] = []
    for resource in kustomization["resources"]:
        docs.extend(load_yaml_all(directory / resource))
    return docs


@pytest.fixture(scope="module")
def base() -> list[dict[str, Any]]:
    return kustomization_resources(K8S)


@pytest.fixture(scope="module")
def monitoring() -> list[dict[str, Any]]:
    return kustomization_resources(K8S / "monitoring")


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (main,) = one(docs, "StatefulSet")["spec"]["template"]["spec"]["containers"]
    return main


@pytest.mark.parametrize("directory", [K8S, K8S / "monitoring"], ids=["base", "monitoring"])
def test_kustomization_lists_every_manifest(directory: Path) -> None:
    kustomization = load_yaml(directory / "kustomization.yaml")
    listed = set(kustomization["resources"])
    present = {p.name for p in directory.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present, "every manifest in the directory, and only those, is applied"
    assert kustomization["namespace"] == "nudge"


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_validate_against_the_kubernetes_schemas(
    base: list[dict[str, Any]], version: str
) -> None:
    kinds = set()
    for doc in base:
        kubernetes_validate.validate(doc, version, strict=True)
        kinds.add(doc["kind"])
    assert {"StatefulSet", "Service", "ConfigMap", "PodDisruptionBudget"} <= kinds


def test_validator_rejects_a_broken_manifest(base: list[dict[str, Any]]) -> None:
    """The schema check is real: a typo'd field and a wrong type are both refused."""
    statefulset = one(base, "StatefulSet")
    typo = copy.deepcopy(statefulset)
    typo["spec"]["template"]["spec"]["containers"][0]["readinesProbes"] = {}
    wrong_type = copy.deepcopy(statefulset)
    wrong_type["spec"]["replicas"] = "3"
    for broken in (typo, wrong_type):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, K8S_VERSIONS[-1], strict=True)


def test_statefulset_is_wired_to_its_service_and_budget(base: list[dict[str, Any]]) -> None:
    statefulset = one(base, "StatefulSet")
    service = one(base, "Service")
    pdb = one(base, "PodDisruptionBudget")
    pod_labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert statefulset["spec"]["serviceName"] == service["metadata"]["name"]
    assert service["spec"]["clusterIP"] == "None", "headless"
    assert service["spec"]["publishNotReadyAddresses"] is True, "scrape recovering workers too"
    for selector in (
        service["spec"]["selector"],
        pdb["spec"]["selector"]["matchLabels"],
        statefulset["spec"]["selector"]["matchLabels"],
    ):
        assert selector.items() <= pod_labels.items()
    assert pdb["spec"].get("maxUnavailable") == 1 or pdb["spec"].get("minAvailable")
    port_names = {p["name"]: p["containerPort"] for p in container(base)["ports"]}
    for port in service["spec"]["ports"]:
        assert port["targetPort"] in port_names
        assert port["port"] == port_names[port["targetPort"]]


def test_probes_resources_and_data_volume(base: list[dict[str, Any]]) -> None:
    statefulset = one(base, "StatefulSet")
    main = container(base)
    port_names = {p["name"] for p in main["ports"]}
    assert main["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert main["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert main[probe]["httpGet"]["port"] in port_names
    assert {"cpu", "memory"} <= main["resources"]["requests"].keys()
    assert {"cpu", "memory"} <= main["resources"]["limits"].keys()
    env = {e["name"]: e.get("value") for e in main["env"]}
    mounts = {m["name"]: m["mountPath"] for m in main["volumeMounts"]}
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert mounts[claim["metadata"]["name"]] == env["NUDGE_DATA_DIR"], "RocksDB on the PVC"
    assert main["args"] == ["worker"]


def test_pod_runs_unprivileged(base: list[dict[str, Any]]) -> None:
    pod = one(base, "StatefulSet")["spec"]["template"]["spec"]
    main = container(base)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert main["securityContext"]["allowPrivilegeEscalation"] is False
    assert main["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert pod["automountServiceAccountToken"] is False


def test_settings_come_from_configmaps_and_secrets(base: list[dict[str, Any]]) -> None:
    main = container(base)
    pod = one(base, "StatefulSet")["spec"]["template"]["spec"]
    known = settings_env_names()
    configmaps = {d["metadata"]["name"]: d for d in base if d["kind"] == "ConfigMap"}
    # envFrom ConfigMaps exist and hold only real settings.
    for source in main["envFrom"]:
        data = configmaps[source["configMapRef"]["name"]]["data"]
        assert set(data) <= known, set(data) - known
    assert {e["name"] for e in main["env"]} <= known
    # Credentials only by Secret reference, never as literal values anywhere.
    secret_env = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in main["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert {
        "NUDGE_KAFKA_SASL_USERNAME",
        "NUDGE_KAFKA_SASL_PASSWORD",
        "NUDGE_REDIS_PASSWORD",
    } <= set(secret_env)
    assert not [d for d in base if d["kind"] == "Secret"], "no Secret with values is shipped"
    for data in (cm["data"] for cm in configmaps.values()):
        assert not {"NUDGE_KAFKA_SASL_PASSWORD", "NUDGE_REDIS_PASSWORD"} & set(data)
    assert not [e for e in main["env"] if "PASSWORD" in e["name"] and "value" in e]
    # TLS material is mounted from Secrets where the ConfigMap says it is.
    env_config = configmaps["nudge-env"]["data"]
    mounts = {m["name"]: m["mountPath"] for m in main["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    cafile = env_config["NUDGE_KAFKA_SSL_CAFILE"]
    (tls_mount,) = [n for n, path in mounts.items() if cafile.startswith(path + "/")]
    assert "secret" in volumes[tls_mount]
    assert env_config["NUDGE_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert env_config["NUDGE_REDIS_URL"].startswith("rediss://")
    # The rules file is the ConfigMap mounted where NUDGE_RULES_PATH points.
    rules_path = Path(env_config["NUDGE_RULES_PATH"])
    (rules_mount,) = [n for n, path in mounts.items() if rules_path.parent == Path(path)]
    rules_cm = configmaps[volumes[rules_mount]["configMap"]["name"]]
    assert rules_path.name in rules_cm["data"]


def test_secrets_are_documented(base: list[dict[str, Any]]) -> None:
    """Every Secret the pod needs is named in deploy/README.md with how to create it."""
    readme = (ROOT / "deploy" / "README.md").read_text()
    pod = one(base, "StatefulSet")["spec"]["template"]["spec"]
    names = {
        e["valueFrom"]["secretKeyRef"]["name"]
        for e in container(base)["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    names |= {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    for name in names:
        assert f"create secret generic {name}" in readme, name


def test_rules_configmap_is_a_valid_rules_file(base: list[dict[str, Any]], tmp_path: Path) -> None:
    rules = one(base, "ConfigMap", "nudge-rules")["data"]["rules.yaml"]
    path = tmp_path / "rules.yaml"
    path.write_text(rules)
    check = subprocess.run(
        [str(Path(sys.executable).parent / "nudge"), "rules", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_servicemonitor_selects_the_service_and_its_port(
    base: list[dict[str, Any]], monitoring: list[dict[str, Any]]
) -> None:
    monitor = one(monitoring, "ServiceMonitor")
    service = one(base, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    # With no jobLabel, the job is the Service name: what the alert rules select on.
    assert "jobLabel" not in monitor["spec"]
    assert 'job="nudge"' in ALERTS.read_text() and service["metadata"]["name"] == "nudge"
    service_ports = {p["name"] for p in service["spec"]["ports"]}
    assert monitor["spec"]["endpoints"]
    for endpoint in monitor["spec"]["endpoints"]:
        assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "scheme"}
        assert endpoint["port"] in service_ports
        assert endpoint["path"] == "/metrics"
        for key in ("interval", "scrapeTimeout"):
            assert key not in endpoint or re.match(DURATION, endpoint[key])


def test_prometheusrule_is_alerts_yml_and_passes_promtool(
    monitoring: list[dict[str, Any]], promtool: str, tmp_path: Path
) -> None:
    rule = one(monitoring, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(rule["spec"]) == {"groups"}
    assert rule["spec"]["groups"] == load_yaml(ALERTS)["groups"], (
        "deploy/k8s/monitoring/prometheusrule.yaml spec.groups must equal "
        "deploy/prometheus/alerts.yml groups"
    )
    # The operator's CRD: labels and annotations are string maps, `for` a duration.
    for group in rule["spec"]["groups"]:
        for item in group["rules"]:
            for key in ("labels", "annotations"):
                assert all(isinstance(v, str) for v in item.get(key, {}).values()), item
            assert re.match(DURATION, item.get("for", "0"))
    extracted = tmp_path / "prometheusrule-groups.yml"
    extracted.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    check = subprocess.run(
        [promtool, "check", "rules", str(extracted)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
