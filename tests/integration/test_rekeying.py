"""Input as shops have it, on real Kafka (contract section 9): a shopper's events on two
partitions, and input topics of 3, 6 and 12 partitions with random, null and session
keys — the live worker's decisions equal ``nudge replay``'s on the same events."""

from __future__ import annotations

import asyncio
import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from stream.catalog_wire import partition_of
from tests.integration.harness import TOPIC_OF_TYPE, WorkerGroup, read_all, replay_records
from tests.integration.test_parity import RULES, decision_keys, scripted_events

pytestmark = pytest.mark.integration


async def produce_keyed(
    group: WorkerGroup,
    events: list[dict[str, Any]],
    keying: str | dict[str, str],
    *,
    on_time: bool = True,
    partition_of_event: Any = None,
) -> None:
    """Each event when it happened, keyed as a shop's producer might: ``random``,
    ``null``, ``session`` (a key per user session that is not the user id); one way for
    every topic, or per topic key ("browse", ...)."""
    rng = random.Random(5)
    producer = AIOKafkaProducer(bootstrap_servers=group.kafka, acks="all")
    await producer.start()
    try:
        for event in events:
            if on_time:
                wait = (datetime.fromisoformat(event["ts"]) - datetime.now(UTC)).total_seconds()
                if wait > 0:
                    await asyncio.sleep(wait)
            way = keying if isinstance(keying, str) else keying[TOPIC_OF_TYPE[event["type"]]]
            key: bytes | None = {
                "random": rng.randbytes(6).hex().encode(),
                "null": None,
                "session": f"sess-{event['user_id'][::-1]}-{rng.randint(0, 1)}".encode(),
                "user": event["user_id"].encode(),
            }[way]
            partition = None if partition_of_event is None else partition_of_event(event)
            topic = group.topic(TOPIC_OF_TYPE[event["type"]])
            await producer.send(topic, orjson.dumps(event), key=key, partition=partition)
        await producer.flush()
    finally:
        await producer.stop()


def ts(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def test_a_shopper_split_across_partitions_gets_no_cart_reminder_after_buying(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    # The report, on co-partitioned topics (6 partitions each): 40 shoppers add to
    # cart; 20 of them order 1 s later on another partition than their cart add.
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    group = WorkerGroup(kafka_bootstrap, redis_url, rules, tmp_path, partitions=6)
    events = []
    start = datetime.now(UTC) + timedelta(seconds=3)
    for n in range(40):
        user = f"buyer-{n:02d}"
        line = {"product_id": "p-2", "quantity": 1, "unit_price": 5.0}
        events.append(
            {
                "event_id": f"{user}-a",
                "type": "cart_item_added",
                "user_id": user,
                "ts": ts(start + timedelta(milliseconds=20 * n)),
            }
            | line
        )
        if n % 2 == 0:
            events.append(
                {
                    "event_id": f"{user}-o",
                    "type": "order_placed",
                    "user_id": user,
                    "ts": ts(start + timedelta(seconds=1, milliseconds=20 * n)),
                    "order_id": f"{user}-o1",
                    "items": [line],
                }
            )

    def elsewhere(event: dict[str, Any]) -> int:
        own = partition_of(event["user_id"].encode(), 6)
        return own if event["type"] == "order_placed" else (own + 1) % 6

    try:
        worker = group.start()
        await produce_keyed(group, events, "user", partition_of_event=elsewhere)
        await asyncio.sleep(12)  # past both stages (3 s, 6 s)
        audit = await read_all(group, "audit")
        metrics = worker.metrics()
    finally:
        group.stop_all()
    events_file = tmp_path / "events.jsonl"
    events_file.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    until = datetime.fromisoformat(events[-1]["ts"]) + timedelta(seconds=8)
    buyers = {e["user_id"] for e in events if e["type"] == "order_placed"}
    reminded = {
        r["user_id"]
        for r in audit
        if r["kind"] == "decision" and r["status"] == "sent" and r["trigger"] == "cart_abandonment"
    }
    assert reminded and not reminded & buyers
    cart_decisions = {k for k in decision_keys(audit) if k[1] == "cart_abandonment"}
    expected = decision_keys(replay_records(events_file, rules, until))
    assert cart_decisions == {k for k in expected if k[1] == "cart_abandonment"}
    rekeyed = [
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("nudge_input_rekeyed_messages_total{") and ".cart" in line
    ]
    assert rekeyed == [40.0], metrics  # every cart add was misplaced, no order was


#: Each topic keyed its own way, as a shop's producers would (one run covers all three).
KEYING = {"browse": "random", "cart": "null", "order": "session", "prefs": "random"}


async def test_topics_of_3_6_and_12_partitions_with_any_keys_give_replays_decisions(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    keying = KEYING | {"engagement": "session"}
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    group = WorkerGroup(
        kafka_bootstrap,
        redis_url,
        rules,
        tmp_path,
        partitions=6,
        input_counts={"browse": 12, "cart": 6, "order": 3, "prefs": 6},
    )
    try:
        group.start()
        start = datetime.now(UTC) + timedelta(seconds=1)
        events = scripted_events(start, seed=23)
        events_file = tmp_path / "events.jsonl"
        events_file.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
        await produce_keyed(group, events, keying)
        last = datetime.fromisoformat(events[-1]["ts"])
        until = last + timedelta(seconds=12)
        await asyncio.sleep(max(0.0, (until - datetime.now(UTC)).total_seconds()) + 3)
        audit = await read_all(group, "audit")
    finally:
        group.stop_all()
    live = decision_keys(audit)
    oracle = decision_keys(replay_records(events_file, rules, until))
    print(f"rekeying: {len(oracle)} decisions", file=sys.stderr)
    assert len(oracle) >= 40
    assert live - oracle == set(), "live decisions replay did not make"
    assert oracle - live == set(), "replay decisions the live worker did not make"
