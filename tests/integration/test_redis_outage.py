"""Redis goes away: nothing is sent unchecked, nothing is lost, consumption goes on."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.integration.harness import ROOT, WorkerGroup, free_port, produce, read_all, wait_for

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
