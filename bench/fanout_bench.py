"""Benchmark the live catalog fan-out on real Kafka and Redis (not a test; prints numbers).

One ``nudge worker`` (subprocess, RocksDB tables) with ``back_in_stock`` (stage ``0s``) and
cart abandonment (stage 5 s) on:

1. ``--interested`` users (default 100,000) each view product ``p1`` (out of stock), produced
   as fast as the producer goes; the worker drains them (events counted on ``/metrics``);
2. live traffic of other users (synthetic shop events stamped "now", ``--rate`` a second,
   ``--live-seconds`` long); ``--restock-after`` seconds into it, one ``product_updated``
   restocks ``p1``.

Reported: the fan-out's time from the catalog event to the first, median and last
``back_in_stock`` decision (their ``fired_at``: when the worker decided), how many there
were; the worker's CPU (``/proc/PID/stat``, sampled every 0.25 s) from the restock to the
last decision, and the same net of the live traffic's own rate (measured from the start of
the live traffic to the restock), per recipient; the worker's peak memory (``VmHWM``) and
its data directory's size on disk (RocksDB); other users' lateness (``fired_at - due_at`` of
their decisions) for deadlines due before the restock and during the fan-out.

Needs Kafka and Redis: ``eval "$(./dev env)"``.
Usage: .venv/bin/python bench/fanout_bench.py [--interested 100000] [--rate 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.worker_bench import audit_decisions, cpu_seconds, processed  # noqa: E402
from simulation.synthetic import generate_events  # noqa: E402
from tests.integration.harness import TOPIC_OF_TYPE, WorkerGroup  # noqa: E402

RULES = """
default_timezone: UTC
triggers:
  cart_abandonment:        {stages: [5s], cooldown: 1m}
  browse_abandonment:      {enabled: false}
  replenishment:           {enabled: false}
  first_purchase_followup: {enabled: false}
  lapsing:                 {enabled: false}
  dormancy:                {enabled: false}
  back_in_stock:           {enabled: true, stages: [0s], interest_window: 1d}
contact_policy:
  frequency_cap: {max: 50, per: 1h}
  max_delay: 1h
"""


def now_ts() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def catalog(event_id: str, **fields: object) -> dict[str, object]:
    return {
        "event_id": event_id,
        "type": "product_updated",
        "ts": now_ts(),
        "product_id": "p1",
    } | fields


async def send(producer: AIOKafkaProducer, group: WorkerGroup, event: dict[str, object]) -> None:
    if event["type"] == "product_updated":
        topic, key = group.topic("catalog"), "p1"
    else:
        topic, key = group.topic(TOPIC_OF_TYPE[str(event["type"])]), str(event["user_id"])
    await producer.send(topic, orjson.dumps(event), key=key.encode())


async def preload(group: WorkerGroup, interested: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=group.kafka, linger_ms=20, max_batch_size=1 << 20)
    await producer.start()
    try:
        await send(producer, group, catalog("c0", in_stock=False, price=100))
        for u in range(interested):
            view = {"event_id": f"v{u}", "type": "product_viewed", "user_id": f"fan-{u:06d}"}
            await send(producer, group, view | {"ts": now_ts(), "product_id": "p1", "price": 100})
        await producer.flush()
    finally:
        await producer.stop()


async def live(group: WorkerGroup, rate: float, seconds: float, restock_after: float) -> float:
    """Other users' traffic; returns the restock's wall time (epoch seconds)."""
    producer = AIOKafkaProducer(bootstrap_servers=group.kafka, linger_ms=5)
    await producer.start()
    start, sent, restocked = time.monotonic(), 0, 0.0
    try:
        for event in generate_events(users=5000, seed=99, start=datetime.now(UTC), days=30):
            if time.monotonic() - start > seconds:
                break
            if not restocked and time.monotonic() - start >= restock_after:
                restock = catalog("c1", in_stock=True)
                restocked = datetime.fromisoformat(str(restock["ts"])).timestamp()
                await send(producer, group, restock)
            event["event_id"], event["ts"] = f"live-{sent}", now_ts()
            await send(producer, group, event)
            sent += 1
            ahead = start + sent / rate - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
        await producer.flush()
    finally:
        await producer.stop()
    return restocked


def decided(metrics: str) -> float:
    """``back_in_stock`` decisions so far (``nudge_decisions_total``)."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("nudge_decisions_total{") and 'trigger="back_in_stock"' in line
    )


class CpuSamples:
    """The worker's CPU seconds every 0.25 s, with the wall time (epoch seconds)."""

    def __init__(self, pid: int) -> None:
        self._pid, self.samples = pid, [(time.time(), cpu_seconds([pid]))]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            try:
                self.samples.append((time.time(), cpu_seconds([self._pid])))
            except OSError:
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def at(self, when: float) -> float:
        """CPU seconds at ``when`` (the last sample not after it)."""
        before = [cpu for t, cpu in self.samples if t <= when]
        return before[-1] if before else self.samples[0][1]


def settle(pid: int, timeout: float = 600.0) -> None:
    """Until the worker is about idle (under 0.3 CPU-s in 2 s): the product side has
    applied the interest records, so the live traffic's own rate is measured alone."""
    deadline = time.monotonic() + timeout
    last = cpu_seconds([pid])
    while time.monotonic() < deadline:
        time.sleep(2)
        now = cpu_seconds([pid])
        if now - last < 0.3:
            return
        last = now


def peak_memory_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def disk_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def metrics_of(worker: Any) -> str:
    """``/metrics``, or nothing while the worker is too busy to answer within 5 s."""
    try:
        return str(worker.metrics())
    except OSError:
        return ""


def seconds(a: object, b: object) -> float:
    return (datetime.fromisoformat(str(a)) - datetime.fromisoformat(str(b))).total_seconds()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--interested", type=int, default=100_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--live-seconds", type=float, default=60.0)
    parser.add_argument("--restock-after", type=float, default=15.0)
    args = parser.parse_args()
    kafka, redis_url = os.environ.get("NUDGE_KAFKA_BOOTSTRAP"), os.environ.get("NUDGE_REDIS_URL")
    if not kafka or not redis_url:
        raise SystemExit('start the services first: eval "$(./dev env)"')
    workdir = Path(tempfile.mkdtemp(prefix="nudge-fanout-"))
    (workdir / "rules.yaml").write_text(RULES)
    group = WorkerGroup(
        kafka, redis_url, workdir / "rules.yaml", workdir, partitions=args.partitions,
        extra_env={"NUDGE_LOG_LEVEL": "WARNING"}, catalog=True,
    )  # fmt: skip
    try:
        worker = group.start(0)
        t0 = time.perf_counter()
        asyncio.run(preload(group, args.interested))
        while processed(worker.metrics()) < args.interested:
            time.sleep(1)
        print(f"{args.interested:,} views produced and applied in {time.perf_counter() - t0:.0f} s")
        settle(worker.proc.pid)  # their interest records reach the product side, applied
        cpu0 = cpu_seconds([worker.proc.pid])
        sampler = CpuSamples(worker.proc.pid)
        live_start = time.time()
        restock = asyncio.run(live(group, args.rate, args.live_seconds, args.restock_after))
        deadline = time.monotonic() + 3600
        while decided(metrics_of(worker)) < args.interested and time.monotonic() < deadline:
            time.sleep(1)
        time.sleep(10)  # the last batch's records reach the topic
        cpu = cpu_seconds([worker.proc.pid]) - cpu0
        sampler.stop()
        memory = peak_memory_mb(worker.proc.pid)
        records = asyncio.run(audit_decisions(group))
    finally:
        group.stop_all()
    print(
        f"worker peak memory (VmHWM) {memory:.0f} MB; data directory (RocksDB) "
        f"{disk_mb(workdir / 'data-0'):.0f} MB"
    )
    restock_ts = datetime.fromtimestamp(restock, UTC).isoformat()
    fan = sorted(
        seconds(r["fired_at"], restock_ts) for r in records if r["trigger"] == "back_in_stock"
    )
    last = fan[-1] if fan else 0.0
    others = [r for r in records if r["trigger"] != "back_in_stock" and r["reason"] != "stale"]
    before = [
        seconds(r["fired_at"], r["due_at"]) for r in others if seconds(r["due_at"], restock_ts) < 0
    ]
    during = [
        seconds(r["fired_at"], r["due_at"])
        for r in others
        if 0 <= seconds(r["due_at"], restock_ts) <= last
    ]
    print(f"back_in_stock decisions: {len(fan):,} of {args.interested:,} interested users")
    if fan:
        print(
            f"restock -> decisions: first {fan[0]:.2f} s, median {statistics.median(fan):.2f} s, "
            f"last {last:.2f} s; worker CPU from the start of the live traffic to 10 s "
            f"after the last decision: {cpu:.1f} s"
        )
        rate = (sampler.at(restock) - sampler.at(live_start)) / max(restock - live_start, 1e-9)
        gross = sampler.at(restock + last + 1.0) - sampler.at(restock)
        net = gross - rate * (last + 1.0)
        n = len(fan)
        print(
            f"worker CPU, restock -> last decision + 1 s: {gross:.1f} s "
            f"({1000 * gross / n:.3f} ms per recipient); the live traffic alone before the "
            f"restock: {rate:.3f} CPU-s/s; net of it: {net:.1f} s "
            f"({1000 * net / n:.3f} ms per recipient)"
        )
    for name, values in (("before the restock", before), ("during the fan-out", during)):
        if values:
            values.sort()
            p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
            print(
                f"other users' lateness, due {name}: n={len(values)}, median "
                f"{statistics.median(values):.2f} s, p99 {p99:.2f} s, max {values[-1]:.2f} s"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
