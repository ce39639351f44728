"""Crash: kill -9 the worker again and again while traffic flows; nothing lost, nothing twice.

The shop's topics are shaped as shops have them (contract section 9), so most messages
cross ``nudge.rekeyed`` and the kills land during re-keying: ``shop.browse`` with 6
partitions and random keys, ``shop.order`` with 3 and null keys, ``shop.prefs`` with the
worker's 4 and random keys, ``shop.cart`` with 4 keyed by ``user_id`` (a direct topic, as
before). The first kills fall on an idle machine, the later ones beside a CPU hog keeping
both cores busy. Two channels, delivery feedback (one event in 15; unsubscribes move
later decisions from push to email) and an erasure are in the traffic (contract 8).
"""

from __future__ import annotations

import asyncio
import random
import sys
from pathlib import Path

import pytest

from tests.integration.harness import WorkerGroup, read_all
from tests.reliability.oracle import (
    CHANNEL_RULES,
    KILL9_TOLERANCE,
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


async def test_repeated_kill9_loses_nothing_and_sends_nothing_twice(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(CHANNEL_RULES)
    kills = scale(5, 20)
    events = fixed_events(
        tmp_path / "events.jsonl",
        count=scale(900, 6000),
        users=scale(80, 600),
        rate=25,
        feedback_every=15,  # delivery feedback on the engagement topic, some moving consent
        erase=scale(450, 3000),  # and an erasure mid-stream, between kills
    )
    group = WorkerGroup(
        kafka_bootstrap,
        redis_url,
        rules,
        tmp_path,
        input_counts={"browse": 6, "order": 3},
        input_keys={"browse": "random", "order": "null", "prefs": "random"},
    )
    rng = random.Random(7)
    hog = CpuHog(2)
    try:
        worker = group.start(0)
        traffic = start_traffic(group, events)
        for k in range(1, kills + 1):
            if k == kills // 2 + 1:
                hog.start()  # the later kills (and the settling) on a busy machine
            await asyncio.sleep(rng.uniform(1.0, 4.0))
            worker.kill9()
            # Every other restart on an empty disk: state must come back from the changelog.
            index = k if k % 2 else 0
            worker = group.start(index)
        assert traffic.wait(timeout=300) == 0
        await settle(events, group.workers)
        live = await read_all(group, "triggers")
    finally:
        hog.stop()
        group.stop_all()
    crossed = await crossing(group)
    verdict = compare(live, events, rules)
    print(f"crash: {kills} kills, {crossed}; {verdict}", file=sys.stderr)
    assert_most_crossed(crossed)
    assert_matches_oracle(verdict, tolerance=KILL9_TOLERANCE)
