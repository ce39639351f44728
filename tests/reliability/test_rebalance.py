"""Scale-out and scale-in: a second worker joins mid-stream, the first leaves mid-stream.

The shop's topics are shaped as shops have them (contract section 9), so most messages
cross ``nudge.rekeyed`` while partitions move: ``shop.browse`` with the worker's 4
partitions and null keys (three in four misplaced), ``shop.cart`` with 6 and random keys,
``shop.prefs`` with 3 and null keys, ``shop.order`` with 4 keyed by ``user_id`` (a direct
topic). The join falls on an idle machine, the leave beside a CPU hog keeping both cores
busy.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from tests.integration.harness import WorkerGroup, read_all
from tests.reliability.oracle import (
    RULES,
    CpuHog,
    assert_matches_oracle,
    assert_most_crossed,
    compare,
    crossing,
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
    group = WorkerGroup(
        kafka_bootstrap,
        redis_url,
        rules,
        tmp_path,
        input_counts={"cart": 6, "prefs": 3},
        input_keys={"browse": "null", "cart": "random", "prefs": "null"},
    )
    hog = CpuHog(2)
    try:
        first = group.start(0)
        traffic = start_traffic(group, events)
        await asyncio.sleep(6)
        second = group.start(1)  # scale out: partitions (and their deadlines) move over
        await asyncio.sleep(4)
        hog.start()  # from here on, both cores busy
        await asyncio.sleep(4)
        first.stop()  # scale in, gracefully: the second worker takes everything
        assert traffic.wait(timeout=300) == 0
        await settle(events, group.workers)
        assert second.proc.poll() is None
        live = await read_all(group, "triggers")
    finally:
        hog.stop()
        group.stop_all()
    crossed = await crossing(group)
    verdict = compare(live, events, rules)
    print(f"rebalance: {crossed}; {verdict}", file=sys.stderr)
    assert_most_crossed(crossed)
    assert_matches_oracle(verdict)
