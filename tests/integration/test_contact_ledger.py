"""The Redis adapter against a real Redis server."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis

from stream.contact_ledger import ContactLedger, RedisUnavailable
from tests.integration.harness import free_port

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@pytest.fixture
async def ledger(redis_url: str):
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    ledger = ContactLedger.from_url(redis_url, suppression_key=f"{prefix}suppressed", prefix=prefix)
    yield ledger, prefix
    await ledger.close()


async def test_suppression_set_and_other_senders_contacts(ledger, redis_url: str) -> None:
    led, prefix = ledger
    client = aioredis.Redis.from_url(redis_url)
    await client.sadd(f"{prefix}suppressed", "u-blocked")
    # Another sender (an email tool) recorded a contact an hour ago.
    await client.zadd(
        f"{prefix}contacts:u-1", {"crm:mail-77": (NOW - timedelta(hours=1)).timestamp()}
    )
    await client.aclose()

    facts = await led.lookup(["u-blocked", "u-1", "u-new"], NOW)
    assert facts == {
        "u-blocked": (True, ()),
        "u-1": (False, (NOW - timedelta(hours=1),)),
        "u-new": (False, ()),
    }

    # Nudge's own contacts are written to the shared ledger but not returned as "others".
    await led.record([("u-1", "trig-a", NOW), ("u-3", "trig-b", NOW)], ["trig-a"])
    assert (await led.lookup(["u-1"], NOW))["u-1"][1] == (NOW - timedelta(hours=1),)
    client = aioredis.Redis.from_url(redis_url)
    assert await client.zcard(f"{prefix}contacts:u-3") == 1
    await client.aclose()


async def test_idempotency_records_survive_reconnect(ledger, redis_url: str) -> None:
    led, prefix = ledger
    assert await led.already_sent(["trig-x", "trig-y"]) == set()
    await led.record([("u-2", "trig-x", NOW)], ["trig-x"])
    again = ContactLedger.from_url(redis_url, prefix=prefix)
    assert await again.already_sent(["trig-x", "trig-y"]) == {"trig-x"}
    await again.close()


async def test_unreachable_redis_raises_redis_unavailable() -> None:
    dead = ContactLedger.from_url(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(RedisUnavailable) as info:
        await dead.lookup(["u-1"], NOW)
    assert info.value.operation == "lookup"
    await dead.close()
