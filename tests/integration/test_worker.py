"""The live worker end to end: real Kafka, real Redis, ``nudge worker`` as a subprocess.

Delays are seconds (rules file below), deadlines run on the wall clock.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from tests.integration.harness import WorkerGroup, produce, read_all, wait_for

pytestmark = pytest.mark.integration

RULES = """
version: 7
default_timezone: UTC
triggers:
  cart_abandonment:        {stages: [3s, 6s], cooldown: 1s}
  browse_abandonment:      {stages: [3s], cooldown: 1s}
  replenishment:           {fire_at_fraction: 0.5, products: {coffee-001: 8s},
                            learn_from_history: false}
  first_purchase_followup: {stages: [4s]}
  lapsing:                 {enabled: false}
  dormancy:                {stages: [7s], audience: all}
contact_policy:
  frequency_cap: {max: 20, per: 1m}
  max_delay: 1h
  attribution_window: 1h
"""


def ts(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ev(kind: str, user: str, at: datetime, n: int, **fields: Any) -> dict[str, Any]:
    return {"event_id": f"{user}-{n}", "type": kind, "user_id": user, "ts": ts(at), **fields}


@pytest.fixture(scope="module")
def group(
    kafka_bootstrap: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WorkerGroup]:
    workdir = tmp_path_factory.mktemp("worker")
    rules = workdir / "rules.yaml"
    rules.write_text(RULES)
    grp = WorkerGroup(kafka_bootstrap, redis_url, rules, workdir)
    grp.start()
    yield grp
    grp.stop_all()


def sent_by_user(records: list[dict[str, Any]]) -> Counter[tuple[str, str, int]]:
    return Counter((r["user_id"], r["trigger"], r["stage"]) for r in records)


async def test_triggers_fire_on_time_and_orders_cancel_them(
    group: WorkerGroup, redis_url: str
) -> None:
    redis.Redis.from_url(redis_url).sadd(group.suppression_key, "optout-redis")
    now = datetime.now(UTC)
    item = {"product_id": "mug-9", "quantity": 1, "unit_price": 12.5}
    events = [
        ev("cart_item_added", "cart-1", now, 1, **item),
        ev("cart_item_added", "cart-2", now, 1, **item),
        ev(
            "order_placed",
            "cart-2",
            now + timedelta(milliseconds=500),
            2,
            order_id="o-2",
            items=[item],
        ),
        ev("product_viewed", "browse-1", now, 1, product_id="lamp-3", category="home", price=40),
        ev(
            "order_placed",
            "replen-1",
            now,
            1,
            order_id="o-r1",
            items=[
                {"product_id": "coffee-001", "quantity": 1, "unit_price": 9.0, "category": "coffee"}
            ],
        ),
        ev("cart_item_added", "optout-redis", now, 1, **item),
        ev("preferences_updated", "optout-prefs", now, 1, marketing_opt_in=False),
        ev("cart_item_added", "optout-prefs", now, 2, **item),
    ]
    started = time.monotonic()
    await produce(group, events)

    def complete(records: list[dict[str, Any]]) -> bool:
        got = sent_by_user(records)
        return {
            ("cart-1", "cart_abandonment", 2),
            ("browse-1", "dormancy", 1),
            ("replen-1", "replenishment", 1),
            ("cart-2", "first_purchase_followup", 1),
        } <= set(got)

    sent = await wait_for(group, "triggers", complete, timeout=45)
    elapsed = time.monotonic() - started
    got = sent_by_user(sent)
    assert got[("cart-1", "cart_abandonment", 1)] == 1
    assert got[("cart-1", "cart_abandonment", 2)] == 1
    assert got[("browse-1", "browse_abandonment", 1)] == 1
    # An order half a second after the cart activity cancelled the cart reminder.
    assert not [k for k in got if k[0] == "cart-2" and k[1] == "cart_abandonment"]
    assert all(r["status"] == "sent" for r in sent)
    # Nobody opted out was contacted; their decisions are audited as suppressed.
    assert not [k for k in got if k[0].startswith("optout")]
    audit = await read_all(group, "audit")
    suppressed = {(r["user_id"], r["reason"]) for r in audit if r.get("status") == "suppressed"}
    assert ("optout-redis", "opted_out") in suppressed
    assert ("optout-prefs", "opted_out") in suppressed
    # The 7 s dormancy stage came within its deadline plus tick and delivery slack.
    assert elapsed < 7 + 20
    for record in sent:
        fired = datetime.fromisoformat(record["fired_at"])
        due = datetime.fromisoformat(record["due_at"])
        assert timedelta(0) <= fired - due < timedelta(seconds=2), record


async def test_garbage_goes_to_the_dead_letter_topic_and_the_worker_keeps_going(
    group: WorkerGroup,
) -> None:
    now = datetime.now(UTC)
    garbage = [
        b"not json at all",
        b'{"type": "search", "user_id": "g-1"}',
        b'{"event_id": "e1", "type": "search", "user_id": "g-1", "ts": "2026-11-23T10:00:00",'
        b' "query": "x"}',
        b'{"event_id": "e2", "type": "teleported", "user_id": "g-1", "ts": "2026-11-23T10:00:00Z"}',
        b"\xff\xfe\x00garbage",
        b'{"event_id": "e3", "type": "search", "user_id": "g-1", "ts": 1, "query": "'
        + b"x" * 70_000
        + b'"}',
    ]
    await produce(group, garbage, topic=group.topic("browse"))
    await produce(group, [ev("product_viewed", "after-garbage", now, 1, product_id="p-1")])
    dlq = await wait_for(group, "dlq", lambda r: len(r) >= len(garbage), timeout=30)
    assert len(dlq) == len(garbage)
    reasons = Counter(r["reason"] for r in dlq)
    assert reasons["not_json"] >= 1
    assert reasons["missing_field"] >= 1
    assert reasons["naive_timestamp"] == 1
    assert reasons["unknown_type"] == 1
    assert reasons["oversize"] == 1
    for record in dlq:
        assert record["topic"] == group.topic("browse")
        assert isinstance(record["partition"], int) and isinstance(record["offset"], int)
        assert ("raw" in record) != ("raw_base64" in record)
    # The valid neighbour was processed: its browse reminder fires.
    await wait_for(
        group,
        "triggers",
        lambda rs: any(r["user_id"] == "after-garbage" for r in rs),
        timeout=30,
    )


async def test_metrics_and_health_endpoints(group: WorkerGroup) -> None:
    worker = group.workers[0]
    assert worker.get("/healthz")[0] == 200
    assert worker.get("/readyz")[0] == 200
    text = worker.metrics()
    sent = 'channel="none",reason="none",status="sent",trigger="cart_abandonment"'
    assert f"nudge_decisions_total{{{sent}}}" in text
    assert "nudge_events_total" in text
    assert "nudge_fire_lateness_seconds_bucket" in text
    assert "nudge_batch_duration_seconds_bucket" in text
    assert 'nudge_build_info{rules_version="' in text
    # Faust's per-message sensor is replaced by Nudge's own per-batch metrics.
    assert "faust_" not in text
    # Faust's table and router views are disabled: nothing beyond metrics and health.
    assert worker.get("/table/users/")[0] == 404


async def test_kafka_records_carry_the_contract_headers(group: WorkerGroup) -> None:
    """Contract 7.4: content-type on every record, trigger id and rules version on decisions."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    now = datetime.now(UTC)
    await produce(group, [ev("cart_item_added", "headers-1", now, 1, product_id="h-1")])
    await produce(group, [b"not json"], topic=group.topic("cart"))
    await wait_for(group, "triggers", lambda rs: any(r["user_id"] == "headers-1" for r in rs))
    await wait_for(group, "dlq", lambda rs: len(rs) >= 1)
    consumer = AIOKafkaConsumer(bootstrap_servers=group.kafka, enable_auto_commit=False)
    await consumer.start()
    try:
        headers: dict[str, list[dict[str, bytes]]] = {}
        for key in ("triggers", "audit", "dlq"):
            tps = [TopicPartition(group.topic(key), p) for p in range(group.partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            batch = await consumer.getmany(*tps, timeout_ms=3000)
            headers[key] = [dict(r.headers) for rs in batch.values() for r in rs]
    finally:
        await consumer.stop()
    for key, seen in headers.items():
        assert seen, key
        assert all(h["content-type"] == b"application/json" for h in seen), key
    decisions = headers["triggers"]
    assert all(
        h["nudge-trigger-id"] and h["nudge-rules-version"].startswith(b"7") for h in decisions
    )
