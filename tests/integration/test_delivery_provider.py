"""``nudge simulate --provider`` on a real broker: sent decisions on a scratch triggers
topic are answered on a scratch engagement topic, keyed by user, every event parsing as
contract 8.3 input, after its decision, exactly as the model plans it and at its rates;
what is not a sent decision is skipped; a second run answers only the new decisions (the
group's offsets were committed)."""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from stream.delivery_rates import DELAY_CAP, DELAY_MEANS, parse_rates, plan_feedback
from tests.integration.harness import NUDGE, create_topics
from triggers.event_engagement import EngagementEvent, MessageBounced
from triggers.events import parse_event
from triggers.timestamps import format_timestamp, parse_timestamp

pytestmark = pytest.mark.integration

PARTITIONS = 3
CHANNELS = ("email", "push", "sms")
# High rates, so that a few hundred decisions give every event type many times.
RATES = (
    "hard_bounce=0.1,soft_bounce=0.1,delivered=0.9,opened=0.5,clicked=0.25,"
    "unsubscribed=0.1,complained=0.1,sms.opened=0"
)
SCALE = 0.01  # delays of milliseconds: the test does not wait for the demo's seconds
SEED = 7


def decision(i: int, fired_at: datetime) -> dict[str, Any]:
    return {
        "kind": "decision",
        "trigger_id": f"trig-{i:04d}",
        "trigger": "cart_abandonment",
        "stage": 1,
        "user_id": f"user-{i % 37}",
        "due_at": format_timestamp(fired_at),
        "fired_at": format_timestamp(fired_at),
        "status": "sent",
        "reason": None,
        "segment": "new",
        "offer": None,
        "context": {},
        "rules_version": "1",
        "variant": None,
        "channel": CHANNELS[i % 3],
    }


async def produce(kafka: str, topic: str, values: list[dict[str, Any] | bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all")
    await producer.start()
    try:
        for value in values:
            raw = value if isinstance(value, bytes) else orjson.dumps(value)
            key = value["user_id"].encode() if isinstance(value, dict) else None
            await producer.send(topic, raw, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def read_all(kafka: str, topic: str) -> list[tuple[bytes | None, bytes]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: list[tuple[bytes | None, bytes]] = []
        while any([await consumer.position(tp) < ends[tp] for tp in tps]):
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                out += [(r.key, r.value) for r in records if r.value is not None]
        return out
    finally:
        await consumer.stop()


def provider(kafka: str, env: dict[str, str], limit: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [NUDGE, "simulate", "--provider", "--limit", str(limit), "--seed", str(SEED),
         "--delay-scale", str(SCALE), "--rates", RATES],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "NUDGE_KAFKA_BOOTSTRAP": kafka, **env},
    )  # fmt: skip


def within(observed: int, trials: int, p: float) -> bool:
    """Binomial count within 4.5 standard deviations of its mean (a false alarm ~1e-5)."""
    sd = math.sqrt(trials * p * (1 - p))
    return abs(observed - trials * p) <= 4.5 * sd + 1


async def test_the_provider_answers_each_sent_decision_once_at_its_rates(
    kafka_bootstrap: str,
) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    triggers, engagement = f"{prefix}.marketing.triggers", f"{prefix}.marketing.engagement"
    env = {
        "NUDGE_TOPIC_TRIGGERS": triggers,
        "NUDGE_TOPIC_ENGAGEMENT": engagement,
        "NUDGE_APP_ID": f"nudge-{prefix}",
    }
    missing = await asyncio.to_thread(provider, kafka_bootstrap, env, 1)
    assert missing.returncode == 1
    assert f"topic '{triggers}' does not exist" in missing.stderr
    assert "start `nudge worker` first" in missing.stderr

    # One partition of decisions: the run stops at its 600th decision, so what it skips
    # must come before them to be read at all (in one order, whatever the fetches).
    await create_topics(kafka_bootstrap, [triggers], 1)
    await create_topics(kafka_bootstrap, [engagement], PARTITIONS)
    now = datetime.now(UTC)
    first = [decision(i, now) for i in range(600)]
    holdout = {**decision(9999, now), "status": "holdout"}
    await produce(kafka_bootstrap, triggers, [holdout, b"not json", *first])
    done = await asyncio.to_thread(provider, kafka_bootstrap, env, len(first))
    assert done.returncode == 0, done.stderr
    assert "skipped 2 records that are not sent decisions" in done.stderr
    assert f"answered {len(first)} decisions" in done.stderr

    rates = parse_rates(RATES)
    planned = {
        orjson.dumps(f.value): f.key
        for d in first
        for f in plan_feedback(d, rates, seed=SEED, delay_scale=SCALE)
    }
    got = await read_all(kafka_bootstrap, engagement)
    assert len(got) == len(planned), "each planned event exactly once"
    assert {value: key for key, value in got} == planned

    by_id = {d["trigger_id"]: d for d in first}
    types: Counter[tuple[str, str]] = Counter()
    longest = timedelta(seconds=DELAY_CAP * SCALE * sum(DELAY_MEANS.values()))
    for key, value in got:
        event = parse_event(value)  # raises if the contract's parser refuses it
        assert isinstance(event, EngagementEvent)
        sent = by_id[event.trigger_id]
        assert key == sent["user_id"].encode() == event.user_id.encode()
        assert event.channel == sent["channel"]
        fired_at = parse_timestamp(sent["fired_at"])
        assert fired_at <= event.ts <= fired_at + longest
        kind = f"{event.type}:{event.bounce}" if isinstance(event, MessageBounced) else event.type
        types[event.channel, kind] += 1

    per_channel = len(first) // len(CHANNELS)
    for channel in CHANNELS:
        bounced = types[channel, "message_bounced:hard"] + types[channel, "message_bounced:soft"]
        assert within(types[channel, "message_bounced:hard"], per_channel, 0.1), types
        assert within(bounced, per_channel, 0.2), types
        delivered = types[channel, "message_delivered"]
        assert within(delivered, per_channel - bounced, 0.9), types
        for kind in ("message_unsubscribed", "message_complained"):
            assert within(types[channel, kind], delivered, 0.1), (channel, kind, types)
        if channel == "sms":  # no open receipts: clicks drawn among the delivered
            assert types[channel, "message_opened"] == 0
            assert within(types[channel, "message_clicked"], delivered, 0.25), types
        else:  # clicks only among openers: clicked / opened = 0.25 / 0.5 of them
            opened = types[channel, "message_opened"]
            assert within(opened, delivered, 0.5), types
            assert within(types[channel, "message_clicked"], opened, 0.5), types

    # The group committed what it answered: a second run answers only the new decisions.
    later = [decision(i, datetime.now(UTC)) for i in range(600, 610)]
    await produce(kafka_bootstrap, triggers, later)
    again = await asyncio.to_thread(provider, kafka_bootstrap, env, len(later))
    assert again.returncode == 0, again.stderr
    assert f"answered {len(later)} decisions" in again.stderr
    assert "skipped" not in again.stderr
    more = {
        orjson.dumps(f.value)
        for d in later
        for f in plan_feedback(d, rates, seed=SEED, delay_scale=SCALE)
    }
    assert sorted(v for _, v in await read_all(kafka_bootstrap, engagement)) == sorted(
        [*planned, *more]
    )
