"""The Grafana dashboard: every query is valid PromQL (promtool parses it), uses only
metric names the worker exports, and the panels a user needs are there."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from stream.metrics import ENGAGEMENT_TYPES, ERASED_BY_EVENT, ERASED_BY_RETENTION, NudgeMetrics
from tests.deploy.deploy_support import (
    DASHBOARD,
    PROMETHEUS_SERIES,
    dashboard_exprs,
    dashboard_panels,
    exported_metric_names,
    grafana_to_promql,
    nudge_metric_names,
    promql_metric_names,
)
from triggers.records import ARMS, STATUSES, SUPPRESSION_REASONS

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def test_dashboard_structure(dashboard: dict[str, Any]) -> None:
    panels = dashboard_panels(dashboard)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    titles = [p["title"] for p in panels if p["type"] != "row"]
    assert len(titles) == len(set(titles)), "panel titles are unique"
    assert dashboard["uid"] and dashboard["title"] == "Nudge"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]


def test_every_query_is_valid_promql(
    dashboard: dict[str, Any], promtool: str, tmp_path: Path
) -> None:
    """promtool parses each query (as a recording rule), after Grafana's variables are set."""
    exprs = dashboard_exprs(dashboard)
    rules = [
        {"record": f"dashboard:query_{i}", "expr": grafana_to_promql(expr)}
        for i, (_, expr) in enumerate(exprs)
    ]
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    check = subprocess.run(
        [promtool, "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in check.stdout


def test_queries_use_only_exported_metrics(dashboard: dict[str, Any]) -> None:
    exported = exported_metric_names()
    for title, expr in dashboard_exprs(dashboard):
        used = promql_metric_names(grafana_to_promql(expr))
        assert used, f"{title}: no metric in {expr}"
        assert used <= exported, f"{title}: {used - exported} not exported by the worker"


def test_exported_names_come_from_the_worker_registry() -> None:
    """The reference set is the worker's own registry, not a list kept by hand."""
    nudge = nudge_metric_names()
    assert {
        "nudge_decisions_total",
        "nudge_fire_lateness_seconds_bucket",
        "nudge_ready",
        "nudge_consumer_lag_messages",
    } <= nudge
    assert "nudge_decisions" not in nudge  # counters are exposed with _total
    assert "nudge_build_info" in nudge  # an Info is exposed with _info
    assert not {name for name in nudge if name.endswith("_created")}  # disabled by the worker
    assert all(name.startswith(("nudge_", "process_")) for name in nudge)  # and the standard


def test_no_query_uses_faust_sensor_metrics(dashboard: dict[str, Any]) -> None:
    """The worker serves Nudge's registry only; Faust's sensor families are gone."""
    for title, expr in dashboard_exprs(dashboard):
        assert "faust_" not in expr, title


def _metrics_of(dashboard: dict[str, Any]) -> dict[str, str]:
    """metric name -> all queries using it, concatenated."""
    used: dict[str, str] = {}
    for _, expr in dashboard_exprs(dashboard):
        for name in promql_metric_names(grafana_to_promql(expr)):
            used[name] = used.get(name, "") + "\n" + expr
    return used


def test_dashboard_shows_what_an_operator_needs(dashboard: dict[str, Any]) -> None:
    used = _metrics_of(dashboard)
    # Throughput by topic, decisions by trigger/status, lag, DLQ, Redis errors.
    assert "sum by (topic)" in used["nudge_events_total"]
    assert "sum by (trigger, status)" in used["nudge_decisions_total"]
    assert "nudge_consumer_lag_messages" in used
    assert "nudge_dead_letters_total" in used
    assert "nudge_redis_errors_total" in used
    # Lateness quantiles.
    lateness = used["nudge_fire_lateness_seconds_bucket"]
    for quantile in ("0.5", "0.9", "0.99"):
        assert f"histogram_quantile({quantile}," in lateness
    # The worker's own loop: rebalances, batch, checkpoint and offset-commit latency.
    assert "nudge_rebalances_total" in used
    for name in (
        "nudge_batch_duration_seconds_bucket",
        "nudge_checkpoint_duration_seconds_bucket",
        "nudge_offset_commit_duration_seconds_bucket",
    ):
        assert "histogram_quantile(0.99," in used[name], name
    assert "nudge_held_decisions" in used
    # Conversions, treatment vs holdout, per recipient; revenue per arm and per recipient.
    conversions = used["nudge_conversions_total"]
    assert 'arm="treatment"' in conversions and 'arm="holdout"' in conversions
    assert "nudge_recipients_total" in used
    revenue = used["nudge_conversion_revenue_total"]
    assert "sum by (trigger, arm, variant)" in revenue
    assert "/ sum by (trigger, arm, variant) (increase(nudge_recipients_total" in revenue


def test_per_recipient_panels_divide_by_recipients_of_the_same_group(
    dashboard: dict[str, Any],
) -> None:
    """Conversions and revenue per recipient: numerator and denominator grouped alike, by
    trigger, arm and A/B variant."""
    panels = {p["title"]: p for p in dashboard_panels(dashboard)}
    for title in (
        "Conversions per recipient by arm and variant",
        "Revenue per recipient by arm and variant",
    ):
        (target,) = panels[title]["targets"]
        numerator, denominator = target["expr"].split(" / ")
        by = "sum by (trigger, arm, variant) (increase("
        assert numerator.startswith(by), title
        assert denominator.startswith(by + "nudge_recipients_total"), title


def test_provisioned_dashboard_is_the_file_grafana_loads() -> None:
    provider_file = DASHBOARD.parent / "provisioning" / "dashboards" / "nudge.yml"
    (provider,) = yaml.safe_load(provider_file.read_text())["providers"]
    assert provider["type"] == "file"
    datasource_file = DASHBOARD.parent / "provisioning" / "datasources" / "prometheus.yml"
    (datasource,) = yaml.safe_load(datasource_file.read_text())["datasources"]
    assert datasource["isDefault"] is True, "the dashboard's datasource variable picks it"


# -- engagement funnel and erasures; labels and label values ----------------------------------

#: Labels Prometheus attaches to every scraped series.
TARGET_LABELS = frozenset({"instance", "job"})
_SELECTOR = re.compile(r"\b(nudge_\w+)\s*\{([^{}]*)\}")
_MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"')
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^()]*)\)")
#: (series, label) -> every value the worker gives that label.
KNOWN_VALUES: dict[tuple[str, str], frozenset[str]] = {
    ("nudge_engagement_events_total", "type"): frozenset(ENGAGEMENT_TYPES),
    ("nudge_decisions_total", "status"): frozenset(STATUSES),
    ("nudge_decisions_total", "reason"): frozenset(SUPPRESSION_REASONS) | {"none"},
    ("nudge_conversions_total", "arm"): frozenset(ARMS),
    ("nudge_erasures_total", "cause"): frozenset({ERASED_BY_EVENT, ERASED_BY_RETENTION}),
}


def series_labels() -> dict[str, frozenset[str]]:
    """Series name (as a scrape shows it) -> its label names, from the worker's registry."""
    metrics = NudgeMetrics.create(CollectorRegistry())
    out: dict[str, frozenset[str]] = {}
    for f in dataclasses.fields(metrics):
        metric = getattr(metrics, f.name)
        if not isinstance(metric, MetricWrapperBase):
            continue
        labels = frozenset(metric._labelnames)
        suffixes = {"counter": ("_total",), "histogram": ("_sum", "_count"), "info": ("_info",)}
        for suffix in suffixes.get(metric._type, ("",)):
            out[metric._name + suffix] = labels
        if metric._type == "histogram":
            out[metric._name + "_bucket"] = labels | {"le"}
    return out


def test_every_label_a_query_names_is_one_of_its_metrics() -> None:
    """A ``by (channel)`` on a metric without ``channel`` would draw one flat line."""
    dashboard = json.loads(DASHBOARD.read_text())
    labels = series_labels()
    assert labels["nudge_engagement_events_total"] == {"type", "channel"}
    for title, expr in dashboard_exprs(dashboard):
        promql = grafana_to_promql(expr)
        used = promql_metric_names(promql) - PROMETHEUS_SERIES
        known = frozenset().union(*(labels[name] for name in used)) | TARGET_LABELS
        for group in _GROUPING.findall(promql):
            names = {name.strip() for name in group.split(",") if name.strip()}
            assert names <= known, f"{title}: by ({group}) but {sorted(used)} have {sorted(known)}"
        for metric, matchers in _SELECTOR.findall(promql):
            for label, _, _ in _MATCHER.findall(matchers):
                assert label in labels[metric], f"{title}: {metric} has no label {label}"


def test_every_label_value_a_query_names_is_one_the_worker_gives() -> None:
    """``type="message_open"`` would match nothing and show an empty funnel, silently."""
    dashboard = json.loads(DASHBOARD.read_text())
    checked = set()
    for title, expr in dashboard_exprs(dashboard):
        for metric, matchers in _SELECTOR.findall(grafana_to_promql(expr)):
            for label, op, value in _MATCHER.findall(matchers):
                values = KNOWN_VALUES.get((metric, label))
                if values is None or op not in ("=", "=~"):
                    continue
                named = set(value.split("|")) if op == "=~" else {value}
                assert named <= values, f"{title}: {metric}{{{label}}}: {named - values}"
                checked.add((metric, label))
    assert ("nudge_engagement_events_total", "type") in checked


def test_the_funnel_per_channel_and_per_trigger_and_the_erasures_are_shown() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = {p["title"]: p for p in dashboard_panels(dashboard)}
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert "Engagement and erasure" in rows

    def exprs(title: str) -> list[str]:
        return [target["expr"] for target in panels[title]["targets"]]

    # Per channel: sent -> delivered -> opened -> clicked, over the dashboard's range.
    sent_by_channel, *by_channel = exprs("Funnel by channel")
    assert sent_by_channel.startswith("sum by (channel) (increase(nudge_decisions_total{")
    assert 'status="sent"' in sent_by_channel and "[$__range]" in sent_by_channel
    assert [re.search(r'type="(\w+)"', e).group(1) for e in by_channel] == [  # type: ignore[union-attr]
        "message_delivered",
        "message_opened",
        "message_clicked",
    ]
    # Per trigger and channel: what was sent (feedback names no trigger: `nudge report`).
    (by_both,) = exprs("Sent by trigger and channel")
    assert by_both.startswith("sum by (trigger, channel) (increase(nudge_decisions_total{")
    assert 'status="sent"' in by_both
    for expr in by_channel:
        assert expr.startswith("sum by (channel) (increase(nudge_engagement_events_total{")
        assert "[$__range]" in expr
    # Rates: numerator and denominator of the same channel.
    for expr in exprs("Engagement rates by channel"):
        numerator, denominator = expr.split(" / ")
        assert numerator.startswith("sum by (channel) (increase(nudge_engagement_events_total")
        assert "sum by (channel) (increase(nudge_engagement_events_total" in denominator
        assert 'type="message_delivered"' in denominator or "message_bounced" in denominator
    assert panels["Engagement rates by channel"]["fieldConfig"]["defaults"]["unit"] == "percentunit"
    # Per trigger: decided -> sent -> converted.
    decided, sent, converted = exprs("Funnel by trigger")
    assert decided.startswith("sum by (trigger) (increase(nudge_decisions_total[")
    assert sent.startswith('sum by (trigger) (increase(nudge_decisions_total{status="sent"}')
    assert converted.startswith("sum by (trigger) (increase(nudge_conversions_total")
    assert 'arm="treatment"' in converted
    # Feedback over time, consent withdrawn, erasures by cause.
    (feedback,) = exprs("Feedback by channel and type")
    assert "sum by (channel, type)" in feedback
    (withdrawn,) = exprs("Consent withdrawn by channel")
    assert "message_unsubscribed|message_complained" in withdrawn
    (erasures,) = exprs("Erasures by cause")
    assert erasures.startswith("sum by (cause) (rate(nudge_erasures_total[")
    # Below the row, above the next one.
    row_y = next(
        p["gridPos"]["y"] for p in dashboard["panels"] if p["title"] == "Engagement and erasure"
    )
    next_row = min(
        p["gridPos"]["y"]
        for p in dashboard["panels"]
        if p["type"] == "row" and p["gridPos"]["y"] > row_y
    )
    for title in ("Funnel by channel", "Funnel by trigger", "Erasures by cause"):
        assert row_y < panels[title]["gridPos"]["y"] < next_row, title


def test_panels_do_not_overlap() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        for y in range(grid["y"], grid["y"] + grid["h"]):
            for x in range(grid["x"], grid["x"] + grid["w"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[x, y]}"
                cells[x, y] = panel["title"]
