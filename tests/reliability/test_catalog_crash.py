"""Crash during a catalog fan-out: kill -9 the worker while a restock (then a price drop) of
a product with thousands of interested users is being fanned out; the ``sent`` records are
exactly the replay oracle's — none missing, none twice."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from tests.integration.harness import TOPIC_OF_TYPE, WorkerGroup, read_all, replay_records
from tests.reliability.oracle import (
    KILL9_TOLERANCE,
    RULES,
    EventSet,
    assert_matches_oracle,
    compare,
    cutoff,
    settle,
)

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

CATALOG_RULES = RULES.replace(
    "contact_policy:",
    "  back_in_stock: {enabled: true, stages: [3s], interest_window: 1h}\n"
    "  price_drop: {enabled: true, stages: [2s, 6s], interest_window: 1h}\n"
    "contact_policy:",
)
USERS = 3000
CATALOG_TRIGGERS = ("back_in_stock", "price_drop")


def catalog_stream(start: datetime) -> tuple[list[dict[str, Any]], list[float]]:
    """Interest of USERS users in p1 (and a few orders), a restock, a drop; the kill times
    (seconds after ``start``) right after each catalog event."""

    def ts(seconds: float) -> str:
        return (
            (start + timedelta(seconds=seconds))
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z")
        )

    def product(at: float, event_id: str, **fields: Any) -> dict[str, Any]:
        body = {"event_id": event_id, "type": "product_updated", "ts": ts(at)}
        return body | {"product_id": "p1", "category": "coffee"} | fields

    events = [product(0.0, "c0", in_stock=False, price=100)]
    for u in range(USERS):
        kind = ("product_viewed", "wishlist_added", "cart_item_added")[u % 3]
        price = {"unit_price": 100} if kind == "cart_item_added" else {"price": 100}
        at = 0.5 + u * 4.0 / USERS  # 750 interest events a second
        events.append(
            {"event_id": f"i{u}", "type": kind, "user_id": f"fan-{u:05d}", "ts": ts(at)}
            | {"product_id": "p1"}
            | price
        )
    events.append(product(5.0, "c1", in_stock=True))  # restock: every user
    line = {"product_id": "p1", "quantity": 1, "unit_price": 100}
    for u in range(0, USERS, 50):  # some order after the restock: their stages are cancelled
        items = {"order_id": f"o{u}", "items": [line]}
        events.append(
            {"event_id": f"o{u}", "type": "order_placed", "user_id": f"fan-{u:05d}", "ts": ts(5.6)}
            | items
        )
    events.append(product(6.5, "c2", price=80))  # a drop for those who did not order
    return events, [5.3, 6.8]


async def produce_on_time(group: WorkerGroup, events: list[dict[str, Any]]) -> None:
    """Each event when the clock reaches its time, through one producer (the harness's
    ``produce`` opens one a call: too slow for 750 events a second)."""
    producer = AIOKafkaProducer(bootstrap_servers=group.kafka, acks="all", linger_ms=5)
    await producer.start()
    try:
        for event in events:
            wait = (datetime.fromisoformat(event["ts"]) - datetime.now(UTC)).total_seconds()
            if wait > 0:
                await asyncio.sleep(wait)
            catalog = event["type"] == "product_updated"
            topic = group.topic("catalog" if catalog else TOPIC_OF_TYPE[event["type"]])
            key = (event["product_id"] if catalog else event["user_id"]).encode()
            await producer.send(topic, orjson.dumps(event), key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def test_kill9_during_a_fan_out_loses_nothing_and_sends_nothing_twice(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(CATALOG_RULES)
    group = WorkerGroup(kafka_bootstrap, redis_url, rules, tmp_path, catalog=True)
    try:
        worker = group.start(0)
        start = datetime.now(UTC) + timedelta(seconds=2)
        events, kills = catalog_stream(start)
        path = tmp_path / "events.jsonl"
        path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
        traffic = asyncio.create_task(produce_on_time(group, events))
        for k, moment in enumerate(kills, start=1):
            at = start + timedelta(seconds=moment)
            await asyncio.sleep(max(0.0, (at - datetime.now(UTC)).total_seconds()))
            worker.kill9()
            worker = group.start(k if k % 2 else 0)  # the first restart on an empty disk
        await traffic
        event_set = EventSet(path, events, rate=750)
        await settle(event_set, group.workers, timeout=120)
        live = await read_all(group, "triggers")
    finally:
        group.stop_all()
    verdict = compare(live, event_set, rules)
    oracle = replay_records(path, rules, cutoff(event_set))
    trigger_of = {r["trigger_id"]: r["trigger"] for r in [*oracle, *live] if "trigger" in r}
    differing = [(t, trigger_of.get(t)) for t in [*verdict.missing, *verdict.extra]]
    catalog = [r for r in live if r["trigger"] in CATALOG_TRIGGERS]
    print(
        f"catalog crash: {len(kills)} kills, {len(catalog)} catalog sends; {verdict}; "
        f"differing (id, trigger): {differing}",
        file=sys.stderr,
    )
    assert len(catalog) > USERS  # the fan-outs really happened
    # The catalog triggers exactly; the others within the crash suite's tolerance (the
    # windows a kill -9 may find in the worker's general path, docs/reliability.md).
    assert [d for d in differing if d[1] in CATALOG_TRIGGERS] == []
    assert_matches_oracle(verdict, tolerance=KILL9_TOLERANCE)
