"""A broker restart while most input crosses ``nudge.rekeyed`` (contract section 9).

The kill -9 and rebalance suites (``test_crash.py``, ``test_rebalance.py``) run on topics
shaped as shops have them already; this is the third fault of issue 21, on a broker of
the test's own: ``shop.browse`` with 12 partitions and random keys, ``shop.order`` with 3
and null keys, ``shop.prefs`` with the worker's 4 and null keys, ``shop.cart`` with 4
keyed by ``user_id`` (a direct topic). The broker is stopped and restarted on an idle
machine (a JVM's start beside a CPU hog takes most of a minute); the worker recovers, and
the rest of the stream flows, beside a hog keeping both cores busy.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.integration.harness import ROOT, WorkerGroup, free_port, read_all
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
    wait_produced,
)

pytestmark = [pytest.mark.reliability, pytest.mark.integration]


class Broker:
    """A Kafka broker of this test's own, to stop and resume (same port, same data)."""

    def __init__(self, workdir: Path) -> None:
        self.script = str(ROOT / "scripts" / "kafka.sh")
        self.port = free_port()
        self.env = {**os.environ, "KAFKA_PORT": str(self.port), "KAFKA_DIR": str(workdir)}

    def run(self, action: str) -> None:
        subprocess.run([self.script, action], env=self.env, check=True, capture_output=True)


@pytest.fixture
def own_broker() -> Iterator[Broker]:
    workdir = Path(tempfile.mkdtemp(prefix="nudge-kafka-"))
    broker = Broker(workdir)
    broker.run("start")
    yield broker
    broker.run("stop")
    shutil.rmtree(workdir, ignore_errors=True)


async def test_broker_restart_while_most_input_is_rekeyed(
    own_broker: Broker, redis_url: str, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    # The outage falls in a quiet spell of the shop, from 6 s in until the broker is back:
    # events the shop's own producer buffered during an outage would arrive late, after
    # deadlines they precede, which replay cannot know (docs/reliability.md).
    quiet_after = 150
    events = fixed_events(
        tmp_path / "events.jsonl", count=scale(500, 6000), users=scale(60, 600), rate=25
    )
    group = WorkerGroup(
        f"127.0.0.1:{own_broker.port}",
        redis_url,
        rules,
        tmp_path,
        input_counts={"browse": 12, "order": 3},
        input_keys={"browse": "random", "order": "null", "prefs": "null"},
    )
    hog = CpuHog(2)
    try:
        worker = group.start(0)
        traffic = start_traffic(group, events, hold_from=quiet_after)
        last_before = events.at(quiet_after - 1)
        await asyncio.sleep(max(0.0, (last_before - datetime.now(UTC)).total_seconds()) + 1)
        # The shop's producers must be up (their start does not wait for a broker that is
        # down), and have sent everything before the quiet spell.
        await wait_produced(group, quiet_after)
        down_at = time.monotonic()
        own_broker.run("stop")  # while deadlines of the events so far come due
        await asyncio.sleep(5)
        own_broker.run("resume")  # same port, same data
        outage = time.monotonic() - down_at
        hog.start()  # the worker recovers, and the rest of the stream flows, on a busy machine
        traffic.release()
        assert traffic.wait(timeout=300) == 0
        await settle(events, group.workers, extra=5)
        assert worker.proc.poll() is None, worker.log_tail()
        live = await read_all(group, "triggers")
    finally:
        hog.stop()
        group.stop_all()
    crossed = await crossing(group)
    verdict = compare(live, events, rules)
    print(f"broker restart ({outage:.0f} s), re-keyed: {crossed}; {verdict}", file=sys.stderr)
    assert_most_crossed(crossed)
    assert_matches_oracle(verdict)
