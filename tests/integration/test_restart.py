"""A worker killed with SIGKILL and replaced keeps every deadline and sends nothing twice."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.integration.harness import Worker, WorkerGroup, produce, read_all, wait_for

pytestmark = pytest.mark.integration

RULES = """
default_timezone: UTC
triggers:
  cart_abandonment:        {stages: [5s, 12s], cooldown: 1s}
  browse_abandonment:      {enabled: false}
  replenishment:           {enabled: false}
  first_purchase_followup: {enabled: false}
  lapsing:                 {enabled: false}
  dormancy:                {enabled: false}
contact_policy:
  frequency_cap: {max: 20, per: 1m}
  max_delay: 1h
"""

USERS = 30


def events_processed(worker: Worker) -> float:
    total = 0.0
    for line in worker.metrics().splitlines():
        if line.startswith("nudge_events_total{") and 'outcome="processed"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def worker_group(kafka_bootstrap: str, redis_url: str, tmp_path: Path) -> WorkerGroup:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    return WorkerGroup(kafka_bootstrap, redis_url, rules, tmp_path)


async def wait_processed(worker: Worker, n: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while events_processed(worker) < n:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"worker processed {events_processed(worker)} of {n}:\n{worker.log_tail()}"
            )
        await asyncio.sleep(0.2)


def cart_adds(prefix: str, at: datetime) -> list[dict[str, object]]:
    return [
        {
            "event_id": f"{prefix}-{i}",
            "type": "cart_item_added",
            "user_id": f"{prefix}-user-{i}",
            "ts": at.isoformat().replace("+00:00", "Z"),
            "product_id": "p-1",
            "unit_price": 10.0,
        }
        for i in range(USERS)
    ]


async def test_kill9_and_restart_on_a_fresh_disk(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    group = worker_group(kafka_bootstrap, redis_url, tmp_path)
    try:
        first = group.start(0)
        now = datetime.now(UTC)
        await produce(group, cart_adds("c", now))
        await wait_processed(first, USERS)
        first.kill9()  # before any stage is due: state must come back from the changelog

        # A new worker on an empty data dir: its state is recovered from the changelog.
        second = group.start(1)
        await wait_for(group, "triggers", lambda rs: len(rs) >= USERS, timeout=40)
        # Between stage 1 and stage 2 (the crash suite kills at random times).
        await asyncio.sleep(1.0)
        second.kill9()
        group.start(2)

        sent = await wait_for(group, "triggers", lambda rs: len(rs) >= 2 * USERS, timeout=60)
        await asyncio.sleep(3)  # anything sent twice would show up now
        sent = await read_all(group, "triggers")
    finally:
        group.stop_all()

    ids = Counter(r["trigger_id"] for r in sent)
    assert [tid for tid, n in ids.items() if n > 1] == []
    assert Counter((r["user_id"], r["stage"]) for r in sent) == Counter(
        {(f"c-user-{i}", s): 1 for i in range(USERS) for s in (1, 2)}
    )
    for record in sent:
        # Deadlines come from event time, across the restarts: cart activity + 5 s / + 12 s.
        offset = datetime.fromisoformat(record["due_at"]) - now
        expected = timedelta(seconds=5 if record["stage"] == 1 else 12)
        assert abs(offset - expected) < timedelta(milliseconds=1), record


async def test_events_produced_while_down_are_read_from_the_first_uncommitted_offset(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    """The replacement of a worker killed before its first commits misses no event.

    Faust's seek "to committed offsets" after a rebalance left partitions with nothing
    committed at the position the client had fetched to; records fetched and dropped
    during the restart's recovery were never read (stream.kafka_transport).
    """
    group = worker_group(kafka_bootstrap, redis_url, tmp_path)
    try:
        first = group.start(0)
        await produce(group, cart_adds("before", datetime.now(UTC)))
        await wait_processed(first, USERS)
        first.kill9()  # most likely before any offset commit (every second)
        await produce(group, cart_adds("while-down", datetime.now(UTC)))
        group.start(1)
        await wait_for(
            group, "triggers", lambda rs: sum(r["stage"] == 1 for r in rs) >= 2 * USERS, timeout=40
        )
        sent = await read_all(group, "triggers")
    finally:
        group.stop_all()
    first_stage = sorted(r["user_id"] for r in sent if r["stage"] == 1)
    expected = sorted(f"{p}-user-{i}" for p in ("before", "while-down") for i in range(USERS))
    assert first_stage == expected


async def test_the_local_disk_is_kept_after_sigterm_and_after_kill9(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    """The local store is written only after the changelog has a row (docs/protocol.md), so
    a worker restarted on its disk after kill -9 keeps it and loses nothing."""
    group = worker_group(kafka_bootstrap, redis_url, tmp_path)
    try:
        worker = group.start(0)
        await produce(group, cart_adds("disk", datetime.now(UTC)))
        await wait_processed(worker, USERS)
        worker.stop()  # graceful
        assert worker.proc.returncode == 0, worker.log_tail()
        tables = sorted(p.name for p in (tmp_path / "data-0" / "v1" / "tables").iterdir())

        worker = group.start(0)
        kept = sorted(p.name for p in (tmp_path / "data-0" / "v1" / "tables").iterdir())
        worker.kill9()

        group.start(0)  # the same disk after kill -9
        sent = await wait_for(
            group, "triggers", lambda rs: sum(r["stage"] == 1 for r in rs) >= USERS, timeout=40
        )
        await asyncio.sleep(1)
        sent = await read_all(group, "triggers")
    finally:
        group.stop_all()
    assert "users-0.db" in tables and kept == tables
    assert sorted(r["user_id"] for r in sent if r["stage"] == 1) == sorted(
        f"disk-user-{i}" for i in range(USERS)
    )
