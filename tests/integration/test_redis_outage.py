"""Redis goes away: nothing is sent unchecked, nothing is lost, consumption goes on."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from tests.integration.harness import (
    ROOT,
    WorkerGroup,
    free_port,
    produce,
    read_all,
    replay_records,
    wait_for,
)

pytestmark = pytest.mark.integration

RULES = """
default_timezone: UTC
triggers:
  cart_abandonment:        {stages: [3s], cooldown: 1s}
  browse_abandonment:      {enabled: false}
  replenishment:           {enabled: false}
  first_purchase_followup: {enabled: false}
  lapsing:                 {enabled: false}
  dormancy:                {enabled: false}
contact_policy:
  frequency_cap: {max: 20, per: 1m}
  max_delay: 1h
"""


class OwnRedis:
    """A Redis server of this test's own, on a fixed port, that the test can stop and restart."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.env = {**os.environ, "REDIS_PORT": str(self.port), "REDIS_DIR": str(workdir)}
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        subprocess.run(
            [str(ROOT / "scripts/redis.sh"), "start"], env=self.env, check=True, capture_output=True
        )

    def stop(self) -> None:
        subprocess.run([str(ROOT / "scripts/redis.sh"), "stop"], env=self.env, check=True)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


def metric(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name)] in " {"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def carts(prefix: str, n: int) -> list[dict[str, object]]:
    at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return [
        {
            "event_id": f"{prefix}-{i}",
            "type": "cart_item_added",
            "user_id": f"{prefix}-{i}",
            "ts": at,
            "product_id": "p-1",
            "unit_price": 5.0,
        }
        for i in range(n)
    ]


async def test_due_decisions_wait_for_redis_and_then_all_go(
    kafka_bootstrap: str, own_redis: OwnRedis, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    group = WorkerGroup(kafka_bootstrap, own_redis.url, rules, tmp_path)
    try:
        worker = group.start()
        await produce(group, carts("before", 10))
        await asyncio.sleep(1.0)
        own_redis.stop()

        # Past the 3 s deadline with Redis down: nothing may be sent unchecked.
        await asyncio.sleep(5)
        await produce(group, carts("during", 10))  # the worker keeps consuming meanwhile
        await asyncio.sleep(4)
        assert await read_all(group, "triggers") == []
        text = worker.metrics()
        assert metric(text, "nudge_redis_up") == 0
        assert metric(text, "nudge_redis_errors_total") >= 1
        assert metric(text, "nudge_events_total") == 20

        own_redis.start()
        sent = await wait_for(group, "triggers", lambda rs: len(rs) >= 20, timeout=60)
        await asyncio.sleep(2)
        sent = await read_all(group, "triggers")
        assert worker.proc.poll() is None
        assert metric(worker.metrics(), "nudge_redis_up") == 1
    finally:
        group.stop_all()
    assert sorted(r["user_id"] for r in sent) == sorted(
        [f"before-{i}" for i in range(10)] + [f"during-{i}" for i in range(10)]
    )
    assert {r["status"] for r in sent} == {"sent"}


async def test_a_stage_deferred_by_quiet_hours_and_released_after_an_outage_matches_replay(
    kafka_bootstrap: str, own_redis: OwnRedis, tmp_path: Path
) -> None:
    """The issue's example: a cart stage deferred by quiet hours to their end, Redis down at
    that moment. Staleness counts from the send time (the end of the night), so the held
    decision goes out when Redis is back — as replay sends it — and the later order converts
    it (never a decision that was not delivered)."""
    now = datetime.now(UTC)
    end = (now + timedelta(seconds=40)).replace(second=0, microsecond=0) + timedelta(minutes=1)
    start = now.replace(second=0, microsecond=0) - timedelta(minutes=1)
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        RULES.replace("max_delay: 1h", "max_delay: 20s")
        + f'  quiet_hours: {{start: "{start:%H:%M}", end: "{end:%H:%M}"}}\n'
        + "  attribution_window: 1h\n"
    )
    group = WorkerGroup(kafka_bootstrap, own_redis.url, rules, tmp_path)
    add = carts("night", 1)[0]
    try:
        group.start()
        await produce(group, [add])
        await asyncio.sleep(max(0.0, (end - datetime.now(UTC)).total_seconds() - 5))
        own_redis.stop()  # from 5 s before the end of quiet hours ...
        await asyncio.sleep(15)
        assert await read_all(group, "triggers") == []
        own_redis.start()  # ... to 10 s after it
        await wait_for(group, "triggers", lambda rs: len(rs) >= 1, timeout=60)
        order = {
            "event_id": "night-order",
            "type": "order_placed",
            "user_id": add["user_id"],
            "ts": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "order_id": "o-night",
            "items": [{"product_id": "p-1", "quantity": 1, "unit_price": 5.0}],
        }
        await produce(group, [order])
        audit = await wait_for(
            group, "audit", lambda rs: any(r["kind"] == "conversion" for r in rs), timeout=60
        )
    finally:
        group.stop_all()
    events = tmp_path / "events.jsonl"
    events.write_bytes(orjson.dumps(add) + b"\n" + orjson.dumps(order) + b"\n")
    replayed = replay_records(events, rules, datetime.fromisoformat(order["ts"]))

    def verdicts(records: list[dict[str, object]]) -> list[tuple[object, ...]]:
        return sorted(
            (r["kind"], r["trigger_id"], r.get("status"), r.get("reason"), r.get("arm"))
            for r in records
        )

    assert verdicts(audit) == verdicts(replayed)
    decision = next(r for r in audit if r["kind"] == "decision")
    assert (decision["status"], decision["reason"]) == ("sent", None)
    assert datetime.fromisoformat(decision["due_at"]) < end  # deferred to the end, not stale
    conversion = next(r for r in audit if r["kind"] == "conversion")
    assert (conversion["trigger_id"], conversion["arm"]) == (decision["trigger_id"], "treatment")
