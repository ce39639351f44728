"""Alert rules and scrape config: promtool accepts them, each alert fires in the
situation it is written for (promtool's rule unit tests), and every metric they
use is one the worker really exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from stream.metrics import NudgeMetrics
from tests.deploy.deploy_support import (
    ALERTS,
    SCRAPE_CONFIG,
    alert_rules,
    exported_metric_names,
    load_yaml,
    promql_metric_names,
)

pytestmark = pytest.mark.unit

ALERT_TESTS = Path(__file__).with_name("alerts_test.yml")


def run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_promtool_accepts_the_alert_rules(promtool: str) -> None:
    check = run([promtool, "check", "rules", str(ALERTS)])
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"SUCCESS: {len(alert_rules(load_yaml(ALERTS)))} rules found" in check.stdout


def test_promtool_accepts_the_scrape_config(promtool: str, tmp_path: Path) -> None:
    shutil.copy(SCRAPE_CONFIG, tmp_path / "prometheus.yml")
    shutil.copy(ALERTS, tmp_path / "alerts.yml")
    check = run([promtool, "check", "config", str(tmp_path / "prometheus.yml")])
    assert check.returncode == 0, check.stdout + check.stderr
    config = load_yaml(SCRAPE_CONFIG)
    assert [job["job_name"] for job in config["scrape_configs"]] == ["nudge"]


def test_alerts_fire_when_they_should(promtool: str, tmp_path: Path) -> None:
    """promtool's rule unit tests (tests/deploy/alerts_test.yml) on the real rules.

    Descriptions are dropped from the copy under test; summaries are compared.
    """
    alerts = load_yaml(ALERTS)
    for rule in alert_rules(alerts):
        rule["annotations"].pop("description")
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(alerts, sort_keys=False))
    shutil.copy(ALERT_TESTS, tmp_path / "alerts_test.yml")
    result = run([promtool, "test", "rules", "alerts_test.yml"], cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    # Every alert is exercised firing at least once.
    tests = load_yaml(ALERT_TESTS)["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }
    assert fired == {rule["alert"] for rule in alert_rules(alerts)}


def test_the_required_alerts_exist_with_severity_and_text() -> None:
    rules = {rule["alert"]: rule for rule in alert_rules(load_yaml(ALERTS))}
    required = {
        "NudgeConsumerLagGrowing": "nudge_consumer_lag_messages",
        "NudgeFireLatenessOverSLO": "nudge_fire_lateness_seconds_bucket",
        "NudgeDeadLetterRateHigh": "nudge_dead_letters_total",
        "NudgeRedisErrors": "nudge_redis_errors_total",
        "NudgeWorkerNotReady": "nudge_ready",
        "NudgeNoEventsReceived": "nudge_events_total",
        "NudgeRebalancingOften": "nudge_rebalances_total",
        "NudgeCheckpointSlow": "nudge_checkpoint_duration_seconds_bucket",
    }
    for name, metric in required.items():
        assert metric in promql_metric_names(rules[name]["expr"]), name
    assert "histogram_quantile(0.99" in rules["NudgeFireLatenessOverSLO"]["expr"]
    assert rules["NudgeFireLatenessOverSLO"]["expr"].rstrip().endswith("> 1"), "SLO: 1 s"
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name


def test_alerts_use_only_exported_metrics() -> None:
    exported = exported_metric_names()
    for rule in alert_rules(load_yaml(ALERTS)):
        used = promql_metric_names(rule["expr"])
        assert used, rule["alert"]
        assert used <= exported, f"{rule['alert']}: {used - exported} not exported by the worker"


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (topic) (rate(nudge_events_total{topic="a:b"}[5m]))', {"nudge_events_total"}),
        ("histogram_quantile(0.99, sum by (le) (rate(x_bucket[1m]))) > 1e3", {"x_bucket"}),
        (
            "(sum(rate(a_total[15m])) or vector(0)) == 0 and on() sum(up{job='n'}) > 0",
            {"a_total", "up"},
        ),
        ("a / on(instance) group_left(pod) b offset 5m unless c[10m:1m]", {"a", "b", "c"}),
    ],
)
def test_metric_name_extraction(expr: str, names: set[str]) -> None:
    assert promql_metric_names(expr) == names


def test_every_alert_is_documented_in_deploy_readme() -> None:
    readme = (ALERTS.parents[1] / "README.md").read_text()
    for rule in alert_rules(load_yaml(ALERTS)):
        assert f"| `{rule['alert']}` |" in readme, rule["alert"]


def test_every_metric_is_in_the_readme_list() -> None:
    """README's "Observing it" names each family the worker registers, and nothing else."""
    readme = (ALERTS.parents[2] / "README.md").read_text()
    section = readme.split("### Observing it", 1)[1].split("\n## ", 1)[0]
    registry = CollectorRegistry()
    NudgeMetrics.create(registry)
    families = {
        f"{f.name}_total"
        if f.type == "counter"
        else f"{f.name}_info"
        if f.type == "info"
        else f.name
        for f in registry.collect()
    }
    named = set(re.findall(r"`(nudge_[a-z_]+)`", section))
    assert named == {name for name in families if name.startswith("nudge_")}
    assert "process_cpu_seconds_total" in families  # the standard process metrics
    assert "`process_cpu_seconds_total`" in section
