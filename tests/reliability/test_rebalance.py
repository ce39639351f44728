"""Scale-out and scale-in: a second worker joins mid-stream, the first leaves mid-stream."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from tests.integration.harness import WorkerGroup, read_all
from tests.reliability.oracle import (
    RULES,
    assert_matches_oracle,
    compare,
    fixed_events,
    scale,
    settle,
    start_traffic,
)

pytestmark = [pytest.mark.reliability, pytest.mark.integration]


async def test_worker_joins_and_another_leaves_mid_stream(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    events = fixed_events(
        tmp_path / "events.jsonl", count=scale(700, 6000), users=scale(70, 600), rate=25
    )
    group = WorkerGroup(kafka_bootstrap, redis_url, rules, tmp_path)
    try:
        first = group.start(0)
        traffic = start_traffic(group, events)
        await asyncio.sleep(6)
        second = group.start(1)  # scale out: partitions (and their deadlines) move over
        await asyncio.sleep(8)
        first.stop()  # scale in, gracefully: the second worker takes everything
        assert traffic.wait(timeout=300) == 0
        await settle(events, group.workers)
        assert second.proc.poll() is None
        live = await read_all(group, "triggers")
    finally:
        group.stop_all()
    verdict = compare(live, events, rules)
    print(f"rebalance: {len(events.events)} events; {verdict}", file=sys.stderr)
    assert_matches_oracle(verdict)
