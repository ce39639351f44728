"""The worker's whole ``/metrics`` scrape, live: ``promtool check metrics`` accepts it, label
sets exist before their first increment, and no label value is a user id.

Real Kafka and Redis, ``nudge worker`` as a subprocess (tests/integration/harness.py), and
Debian's promtool (``scripts/prometheus.sh install``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.harness import Worker, WorkerGroup, produce, wait_for
from triggers.records import ARMS
from triggers.registry import TRIGGER_NAMES

pytestmark = pytest.mark.integration

RULES = """
version: 3
default_timezone: UTC
triggers:
  cart_abandonment:   {stages: [2s], cooldown: 1s, variants: {short: 1, long: 1}}
  browse_abandonment: {stages: [2s], cooldown: 1s}
contact_policy:
  frequency_cap: {max: 20, per: 1m}
  max_delay: 1h
  attribution_window: 1h
"""

#: Every user id this test produces starts with this (and no metric label may contain it).
USER_PREFIX = "metricsuser"


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not on PATH: run scripts/prometheus.sh install", pytrace=False)
    return path


@pytest.fixture(scope="module")
def group(
    kafka_bootstrap: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerGroup]:
    workdir = tmp_path_factory.mktemp("metrics")
    rules = workdir / "rules.yaml"
    rules.write_text(RULES)
    grp = WorkerGroup(kafka_bootstrap, redis_url, rules, workdir)
    grp.start()
    yield grp
    grp.stop_all()


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


def promtool_check(promtool: str, text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def ts(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def traffic(now: datetime) -> list[dict[str, Any]]:
    item = {"product_id": "mug-9", "quantity": 1, "unit_price": 12.5}
    events: list[dict[str, Any]] = []
    for n in range(6):
        user = f"{USER_PREFIX}-{n}"
        events.append(
            {"event_id": f"{user}-1", "type": "cart_item_added", "user_id": user,
             "ts": ts(now), **item}
        )  # fmt: skip
        events.append(
            {"event_id": f"{user}-2", "type": "product_viewed", "user_id": user,
             "ts": ts(now), "product_id": "lamp-3", "category": "home", "price": 40}
        )  # fmt: skip
    return events


def order(user: str, at: datetime) -> dict[str, Any]:
    """An order placed after the user's reminders went out: a conversion with revenue."""
    item = {"product_id": "mug-9", "quantity": 2, "unit_price": 12.5}
    return {"event_id": f"{user}-order", "type": "order_placed", "user_id": user,
            "ts": ts(at), "order_id": "metrics-o-1", "items": [item]}  # fmt: skip


def wait_metric(worker: Worker, predicate: Any, timeout: float = 45.0) -> str:
    deadline = time.monotonic() + timeout
    text = worker.metrics()
    while time.monotonic() < deadline:
        text = worker.metrics()
        if predicate(samples(text)):
            return text
        time.sleep(0.5)
    raise AssertionError(f"metric condition not met in {timeout} s:\n{text}")


async def test_the_live_scrape_passes_promtool_before_and_after_traffic(
    group: WorkerGroup, promtool: str
) -> None:
    worker = group.workers[0]
    before = worker.metrics()
    check = promtool_check(promtool, before)
    assert check.returncode == 0, check.stdout + check.stderr + before

    # Label sets known in advance exist, at zero, before anything happened.
    start = {
        (name, tuple(sorted(labels.items()))): value for name, labels, value in samples(before)
    }
    for trigger in TRIGGER_NAMES:
        sent = (("channel", "none"), ("reason", "none"), ("status", "sent"), ("trigger", trigger))
        key = ("nudge_decisions_total", sent)
        assert start[key] == 0, key
        variants = ("long", "short") if trigger == "cart_abandonment" else ("none",)
        for arm in ARMS:
            for variant in variants if arm == "treatment" else ("none",):
                for name in (
                    "nudge_conversions_total",
                    "nudge_conversion_revenue_total",
                    "nudge_recipients_total",
                ):
                    labels = (("arm", arm), ("trigger", trigger), ("variant", variant))
                    assert start[(name, labels)] == 0, (name, labels)
    suppressed = [
        labels["reason"]
        for name, labels, _ in samples(before)
        if name == "nudge_decisions_total" and labels["status"] == "suppressed"
    ]
    assert {"cooldown", "frequency_cap", "opted_out", "stale"} <= set(suppressed)
    (build,) = [labels for name, labels, _ in samples(before) if name == "nudge_build_info"]
    assert build["version"] and build["rules_version"]
    owned = {
        labels["partition"]
        for name, labels, _ in samples(before)
        if name == "nudge_pending_deadlines"
    }
    assert owned == {str(p) for p in range(group.partitions)}

    now = datetime.now(UTC)
    events = traffic(now)
    await produce(group, events)
    buyer = f"{USER_PREFIX}-0"
    await wait_for(
        group,
        "triggers",
        lambda rs: any(r["user_id"] == buyer for r in rs),
        timeout=45,
    )
    await produce(group, [order(buyer, datetime.now(UTC))])

    def converted(found: list[tuple[str, dict[str, str], float]]) -> bool:
        return any(
            name == "nudge_conversion_revenue_total" and value > 0 for name, _, value in found
        )

    after = wait_metric(worker, converted)
    check = promtool_check(promtool, after)
    assert check.returncode == 0, check.stdout + check.stderr + after
    found = samples(after)
    sent = sum(
        value
        for name, labels, value in found
        if name == "nudge_decisions_total" and labels["status"] == "sent"
    )
    assert sent >= 6

    def total(metric: str, **match: str) -> float:
        return sum(
            value
            for name, labels, value in found
            if name == metric and all(labels.get(k) == v for k, v in match.items())
        )

    # One-stage rules: every sent decision is the first stage of its episode, a recipient.
    assert total("nudge_recipients_total", arm="treatment") == sent
    # The A/B variants of cart abandonment carry its recipients; browse has none.
    cart = total("nudge_recipients_total", trigger="cart_abandonment", arm="treatment")
    assert cart == 6
    assert total("nudge_recipients_total", trigger="cart_abandonment", variant="none") == 0
    # Each decision's lateness (fired_at - due_at) is observed once.
    decided = total("nudge_decisions_total")
    assert total("nudge_fire_lateness_seconds_count") == decided
    assert total("nudge_conversions_total", arm="treatment") == 1
    assert total("nudge_conversion_revenue_total", arm="treatment") == 25.0
    processed = sum(
        value
        for name, labels, value in found
        if name == "nudge_events_total" and labels["outcome"] == "processed"
    )
    assert processed >= len(events) + 1
    assert any(name == "nudge_batch_duration_seconds_count" and v > 0 for name, _, v in found)
    assert any(name == "nudge_checkpoint_duration_seconds_count" and v > 0 for name, _, v in found)
    assert any(
        name == "nudge_offset_commit_duration_seconds_count" and v > 0 for name, _, v in found
    )
    assert any(name == "nudge_rebalances_total" and v >= 1 for name, _, v in found)

    # No label value ever looks like a user id (or carries an event's or order's id).
    ids = re.compile(rf"{USER_PREFIX}|metrics-o-|-\d+-\d+$")
    for name, labels, _ in found:
        for label, value in labels.items():
            assert not ids.search(value), f"{name}{{{label}={value!r}}}"
    # Every label value is drawn from a small known vocabulary: no unbounded cardinality.
    assert len({v for _, labels, _ in found for v in labels.values()}) < 200


def test_promtool_rejects_a_broken_scrape(promtool: str) -> None:
    """The check above can fail: promtool flags a counter without ``_total``."""
    bad = "# HELP nudge_things Things.\n# TYPE nudge_things counter\nnudge_things 1\n"
    check = promtool_check(promtool, bad)
    assert check.returncode != 0
    assert 'should have "_total" suffix' in check.stdout + check.stderr
