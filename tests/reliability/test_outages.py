"""Outages mid-stream: Redis stopped and started; the Kafka broker away (readiness, CPU).

The broker restart with the oracle's comparison is ``test_rekey_faults.py`` (on topics as
shops have them, one of them keyed by ``user_id``, later events held back until the broker
is up again)."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import ROOT, Worker, WorkerGroup, free_port, read_all
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


class Service:
    """A Redis server or Kafka broker of this test's own, to stop and start at will."""

    def __init__(self, script: str, port_var: str, dir_var: str, workdir: Path) -> None:
        self.script = str(ROOT / "scripts" / f"{script}.sh")
        self.port = free_port()
        self.env = {**os.environ, port_var: str(self.port), dir_var: str(workdir)}

    def run(self, action: str) -> None:
        subprocess.run([self.script, action], env=self.env, check=True, capture_output=True)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[Service]:
    redis = Service("redis", "REDIS_PORT", "REDIS_DIR", tmp_path / "redis")
    redis.run("start")
    yield redis
    redis.run("stop")


@pytest.fixture
def own_kafka() -> Iterator[Service]:
    workdir = Path(tempfile.mkdtemp(prefix="nudge-kafka-"))
    kafka = Service("kafka", "KAFKA_PORT", "KAFKA_DIR", workdir)
    kafka.run("start")
    yield kafka
    kafka.run("stop")
    shutil.rmtree(workdir, ignore_errors=True)


def metric(worker_metrics: str, name: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in worker_metrics.splitlines()
        if line.startswith(name) and line[len(name)] in " {"
    )


async def test_redis_outage_holds_sends_and_loses_nothing(
    kafka_bootstrap: str, own_redis: Service, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    events = fixed_events(
        tmp_path / "events.jsonl", count=scale(600, 6000), users=scale(60, 600), rate=25
    )
    url = f"redis://127.0.0.1:{own_redis.port}/0"
    group = WorkerGroup(kafka_bootstrap, url, rules, tmp_path)
    try:
        worker = group.start(0)
        traffic = start_traffic(group, events)
        await asyncio.sleep(6)
        own_redis.run("stop")
        down_at = time.monotonic()
        await asyncio.sleep(1.0)  # in-flight bookkeeping settles
        sent_when_down = len(await read_all(group, "triggers"))
        consumed_when_down = metric(worker.metrics(), "nudge_events_total")
        await asyncio.sleep(8)
        # While Redis is down nothing is sent (it cannot be checked), events keep flowing.
        assert len(await read_all(group, "triggers")) == sent_when_down
        assert metric(worker.metrics(), "nudge_events_total") > consumed_when_down
        assert metric(worker.metrics(), "nudge_redis_up") == 0
        outage = time.monotonic() - down_at
        own_redis.run("start")
        assert traffic.wait(timeout=300) == 0
        await settle(events, group.workers, extra=3)
        assert worker.proc.poll() is None
        live = await read_all(group, "triggers")
    finally:
        group.stop_all()
    verdict = compare(live, events, rules)
    print(f"redis outage {outage:.0f} s: {verdict}", file=sys.stderr)
    assert_matches_oracle(verdict)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/PID/stat, all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_status(worker: Worker, path: str, status: int, timeout: float) -> float:
    """Seconds until ``path`` answers ``status`` (within ``timeout``)."""
    began = time.monotonic()
    while worker.get(path)[0] != status:
        assert time.monotonic() - began < timeout, f"{path} not {status}:\n{worker.log_tail()}"
        time.sleep(0.2)
    return time.monotonic() - began


async def test_broker_away_the_worker_is_not_ready_and_idles(
    own_kafka: Service, redis_url: str, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    group = WorkerGroup(
        f"127.0.0.1:{own_kafka.port}",
        redis_url,
        rules,
        tmp_path,
        extra_env={"NUDGE_KAFKA_PROGRESS_TIMEOUT_SECONDS": "5"},
    )
    try:
        worker = group.start(0)
        while metric(worker.metrics(), "nudge_kafka_silence_seconds") > 2:  # a fresh broker
            await asyncio.sleep(0.5)
        assert worker.get("/readyz")[0] == 200
        log_lines = len(worker.log_path.read_text().splitlines())
        began, cpu_began = time.monotonic(), cpu_seconds(worker.proc.pid)
        own_kafka.run("stop")  # SIGTERM: the broker shuts down in a few seconds
        wait_status(worker, "/readyz", 503, timeout=20)
        unready_after = time.monotonic() - began
        assert worker.get("/healthz")[0] == 200  # alive: not a reason to restart it
        await asyncio.sleep(max(0.0, 9 - (time.monotonic() - began)))
        assert metric(worker.metrics(), "nudge_ready") == 0
        assert metric(worker.metrics(), "nudge_kafka_silence_seconds") > 5
        away = time.monotonic() - began
        cpu = (cpu_seconds(worker.proc.pid) - cpu_began) / away
        logged = worker.log_path.read_text().splitlines()[log_lines:]
        own_kafka.run("resume")
        ready_after = wait_status(worker, "/readyz", 200, timeout=30)
        assert worker.proc.poll() is None
    finally:
        group.stop_all()
    print(
        f"broker away {away:.0f} s: not ready after {unready_after:.1f} s, "
        f"{cpu:.3f} CPU-s/s, {len(logged)} log lines; ready {ready_after:.1f} s after resume",
        file=sys.stderr,
    )
    assert cpu < 0.15  # reconnecting backs off: a few % of a core, not a busy loop
    assert len(logged) < 60  # repeated client errors are rate-limited
    assert any("cannot make progress" in line for line in logged)
