"""Contract 8 on real Kafka and Redis: channels, delivery feedback on the engagement topic,
and an erasure — the live worker gives replay's records, and afterwards nothing of the
erased user is left but the erasure memory: the last changelog record of the user is the
memory (compaction removes what came before), and Redis has none of the user's keys."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from stream.user_rows import unpack_row
from tests.integration.harness import (
    WorkerGroup,
    changelog_records,
    produce,
    read_all,
    replay_records,
)
from triggers.state import UserState

pytestmark = pytest.mark.integration

RULES = """
version: 3
default_timezone: UTC
channels:
  push: {}
  email: {cost: 0.001}
triggers:
  cart_abandonment: {stages: [2s, 5s], cooldown: 0, channels: [push, email]}
  browse_abandonment: {enabled: false}
  replenishment: {enabled: false}
  first_purchase_followup: {enabled: false}
  lapsing: {enabled: false}
  dormancy: {enabled: false}
contact_policy:
  frequency_cap: {max: 50, per: 1h}
  holdout_percent: 0
"""
USERS = 6


def ts(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def script(start: datetime) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for u in range(USERS):
        events.append(
            {
                "event_id": f"c{u}",
                "type": "cart_item_added",
                "user_id": f"u{u}",
                "ts": ts(start + timedelta(milliseconds=50 * u)),
                "product_id": "p1",
                "quantity": 1,
                "unit_price": 9.5,
            }
        )
    later = ts(start + timedelta(seconds=3, milliseconds=500))
    feedback = {"trigger_id": "t-from-the-provider", "channel": "push", "ts": later}
    events += [
        {"event_id": "f1", "type": "message_delivered", "user_id": "u0", **feedback},
        {"event_id": "f2", "type": "message_unsubscribed", "user_id": "u0", **feedback},
        {"event_id": "x1", "type": "user_erased", "user_id": "u1", "ts": later},
    ]
    return events


def kept(records: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
    out: set[tuple[Any, ...]] = set()
    for r in records:
        if r["kind"] == "decision":
            out.add((r["trigger_id"], r["stage"], r["user_id"], r["status"], r["channel"]))
        elif r["kind"] == "engagement":
            out.add(("engagement", r["type"], r["user_id"], r["channel"], r["at"]))
        elif r["kind"] == "erasure":
            out.add(("erasure", r["user_id"], r["erased_at"]))
    return out


async def changelog_rows(group: WorkerGroup, user: str) -> list[bytes | None]:
    """Every users-changelog record of the user's key, in offset order."""
    key = user.encode()
    return (await changelog_records(group, "users", lambda k: k == key)).get(key, [])


async def compaction_lag(group: WorkerGroup) -> str:
    """The users changelog's ``max.compaction.lag.ms``, as the broker has it."""
    admin = AIOKafkaAdminClient(bootstrap_servers=group.kafka)
    await admin.start()
    try:
        topic = f"nudge-{group.name}-users-changelog"
        (response,) = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, {"max.compaction.lag.ms": None})]
        )
        (resource,) = response.resources
        return next(str(c[1]) for c in resource[4] if c[0] == "max.compaction.lag.ms")
    finally:
        await admin.close()


async def test_feedback_and_erasure_live_equal_replay_and_leave_nothing_of_the_user(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    group = WorkerGroup(kafka_bootstrap, redis_url, rules, tmp_path, partitions=2)
    client = aioredis.Redis.from_url(redis_url)
    try:
        group.start()
        start = datetime.now(UTC) + timedelta(seconds=1)
        events = script(start)
        events_file = tmp_path / "events.jsonl"
        events_file.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
        await asyncio.sleep(max(0.0, (start - datetime.now(UTC)).total_seconds()))
        await produce(group, events[:USERS])
        later = datetime.fromisoformat(events[-1]["ts"])
        await asyncio.sleep(max(0.0, (later - datetime.now(UTC)).total_seconds()))
        await produce(group, events[USERS:])
        until = start + timedelta(seconds=9)
        await asyncio.sleep(max(0.0, (until - datetime.now(UTC)).total_seconds()) + 3)
        audit = await read_all(group, "audit")
        metrics = group.workers[0].metrics()
        rows = await changelog_rows(group, "u1")
        lag = await compaction_lag(group)
        keys = sorted([k.decode() async for k in client.scan_iter(match=f"{group.name}:*")])
    finally:
        group.stop_all()
        await client.aclose()

    expected = replay_records(events_file, rules, until)
    assert kept(audit) == kept(expected)
    decisions = [r for r in expected if r["kind"] == "decision"]
    channels = {(r["user_id"], r["stage"]): r["channel"] for r in decisions}
    assert channels[("u0", 2)] == "email" and channels[("u2", 2)] == "push"
    assert ("u1", 2) not in channels
    # Nothing of u1 but the erasure memory: its last changelog record, and no Redis key.
    assert lag == str(7 * 24 * 3600 * 1000)  # earlier records compacted away within a week
    assert len(rows) >= 2 and rows[-1] is not None
    memory = unpack_row(rows[-1])[0]
    assert memory == UserState("u1", erased_at=datetime.fromisoformat(events[-1]["ts"]))
    assert not [k for k in keys if k.endswith(":u1")], keys
    assert [k for k in keys if k.endswith(":u0")]  # the others' keys are all there
    sent_marks = [k for k in keys if ":sent:" in k]
    assert len(sent_marks) == 2 * USERS - 1 - 1  # u1's stage 1 mark went; it had no stage 2
    unsubscribed = 'nudge_engagement_events_total{channel="push",type="message_unsubscribed"}'
    assert f"{unsubscribed} 1.0" in metrics
    assert 'nudge_erasures_total{cause="user_erased"} 1.0' in metrics
