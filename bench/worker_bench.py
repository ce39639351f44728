"""Benchmark the live worker on real Kafka and Redis (not a test; prints numbers).

In one run, side by side on the same pre-loaded topics:
1. ceiling: a plain aiokafka consumer draining the four input topics (and, to be
   fair, orjson-parsing every value);
2. the worker: ``nudge worker`` (subprocess, RocksDB tables) draining the same events,
   timed from its first processed event to the last (start-up excluded);
3. lateness: synthetic traffic produced live at about half the worker's measured
   throughput, with deadlines of a few seconds; lateness = fired_at - due_at of every
   decision on the audit topic (exact, not histogram buckets);
4. state on disk: the worker's RocksDB directory size per user.

Needs Kafka and Redis: ``./dev services`` then ``eval "$(./dev env)"``.
Usage: .venv/bin/python bench/worker_bench.py [--events 200000] [--users 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simulation.synthetic import generate_events  # noqa: E402
from tests.integration.harness import TOPIC_OF_TYPE, WorkerGroup  # noqa: E402

#: Throughput: the contract's default rules (delays of hours and days), so the drain
#: measures the event path, as in a shop where most events fire nothing at once.
THROUGHPUT_RULES = "default_timezone: UTC\n"

#: Lateness: delays of seconds, so decisions come due all through the live window.
LATENESS_RULES = """
default_timezone: UTC
triggers:
  cart_abandonment:        {stages: [5s, 20s], cooldown: 1m}
  browse_abandonment:      {stages: [8s], cooldown: 1m}
  replenishment:           {fire_at_fraction: 0.9, categories: {coffee: 15s, tea: 20s}}
  first_purchase_followup: {stages: [10s]}
  lapsing:                 {factor: 1.5, min_orders: 3}
  dormancy:                {stages: [30s], audience: all}
contact_policy:
  frequency_cap: {max: 3, per: 1m}
  max_delay: 1h
  holdout_percent: 10
"""


def synthetic(users: int, limit: int, seed: int) -> list[dict[str, object]]:
    """Synthetic events restamped to "now" (one microsecond apart), so deadlines lie ahead."""
    now = datetime.now(UTC)
    out = []
    for i, event in enumerate(generate_events(users=users, seed=seed, start=now, days=30)):
        if i >= limit:
            break
        event["ts"] = (now + timedelta(microseconds=i)).isoformat().replace("+00:00", "Z")
        out.append(event)
    return out


async def preload(group: WorkerGroup, events: list[dict[str, object]]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=group.kafka, linger_ms=20, max_batch_size=1 << 20, acks=1
    )
    await producer.start()
    try:
        for event in events:
            topic = group.topic(TOPIC_OF_TYPE[str(event["type"])])
            await producer.send(topic, orjson.dumps(event), key=str(event["user_id"]).encode())
        await producer.flush()
    finally:
        await producer.stop()


async def create_topics(group: WorkerGroup) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=group.kafka)
    await admin.start()
    try:
        names = [
            group.topic(k)
            for k in ("browse", "cart", "order", "prefs", "ticks", "triggers", "audit", "dlq")
        ]
        await admin.create_topics([NewTopic(n, group.partitions, 1) for n in names])
    finally:
        await admin.close()


async def plain_drain(group: WorkerGroup, n: int) -> float:
    consumer = AIOKafkaConsumer(
        *(group.topic(k) for k in ("browse", "cart", "order", "prefs")),
        bootstrap_servers=group.kafka,
        group_id=f"plain-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        enable_auto_commit=True,
        max_poll_records=2000,
    )
    await consumer.start()
    seen = 0
    started = None
    try:
        while seen < n:
            batch = await consumer.getmany(timeout_ms=1000, max_records=2000)
            for records in batch.values():
                if started is None:
                    started = time.perf_counter()
                for record in records:
                    orjson.loads(record.value)
                seen += len(records)
        elapsed = time.perf_counter() - (started or time.perf_counter())
    finally:
        await consumer.stop()
    return seen / elapsed


def processed(text: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("nudge_events_total{")
    )


def worker_drain(group: WorkerGroup, n: int) -> tuple[float, float]:
    worker = group.start(0)
    first_at = None
    last = 0.0
    while last < n:
        now = time.perf_counter()
        last = processed(worker.metrics())
        if first_at is None and last > 0:
            first_at, first_count = now, last
        time.sleep(0.2)
        if worker.proc.poll() is not None:
            raise SystemExit(worker.log_tail())
    elapsed = time.perf_counter() - first_at
    return (last - first_count) / elapsed, elapsed


async def live_lateness(group: WorkerGroup, rate: float, seconds: float, users: int) -> list[float]:
    producer = AIOKafkaProducer(bootstrap_servers=group.kafka, linger_ms=5)
    await producer.start()
    start = time.monotonic()
    sent = 0
    try:
        for event in generate_events(users=users, seed=99, start=datetime.now(UTC), days=30):
            if time.monotonic() - start > seconds:
                break
            event["event_id"] = f"live-{sent}"
            event["ts"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
            topic = group.topic(TOPIC_OF_TYPE[str(event["type"])])
            await producer.send(topic, orjson.dumps(event), key=str(event["user_id"]).encode())
            sent += 1
            ahead = start + sent / rate - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
        await producer.flush()
    finally:
        await producer.stop()
    await asyncio.sleep(25)  # let the last deadlines of the live window come due
    return await lateness_from_audit(group, since=start)


async def lateness_from_audit(group: WorkerGroup, since: float) -> list[float]:
    consumer = AIOKafkaConsumer(bootstrap_servers=group.kafka, group_id=None)
    await consumer.start()
    tps = [TopicPartition(group.topic("audit"), p) for p in range(group.partitions)]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    ends = await consumer.end_offsets(tps)
    values = []
    try:
        while True:
            positions = [await consumer.position(tp) for tp in tps]
            if all(pos >= ends[tp] for pos, tp in zip(positions, tps, strict=True)):
                break
            batch = await consumer.getmany(timeout_ms=1000)
            for records in batch.values():
                for record in records:
                    value = orjson.loads(record.value)
                    if value["kind"] != "decision" or value["reason"] == "stale":
                        continue
                    fired = datetime.fromisoformat(value["fired_at"])
                    due = datetime.fromisoformat(value["due_at"])
                    values.append((fired - due).total_seconds())
    finally:
        await consumer.stop()
    return values


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--live-seconds", type=float, default=60.0)
    args = parser.parse_args()
    kafka = os.environ.get("NUDGE_KAFKA_BOOTSTRAP")
    redis_url = os.environ.get("NUDGE_REDIS_URL")
    if not kafka or not redis_url:
        raise SystemExit('start the services first: ./dev services && eval "$(./dev env)"')

    workdir = Path(tempfile.mkdtemp(prefix="nudge-bench-"))
    groups = []
    for name, text in (("throughput", THROUGHPUT_RULES), ("lateness", LATENESS_RULES)):
        (workdir / name).mkdir()
        rules = workdir / name / "rules.yaml"
        rules.write_text(text)
        groups.append(
            WorkerGroup(
                kafka,
                redis_url,
                rules,
                workdir / name,
                partitions=args.partitions,
                extra_env={"NUDGE_LOG_LEVEL": "WARNING"},
            )
        )
    group, live_group = groups
    events = synthetic(args.users, args.events, seed=5)
    users = len({e["user_id"] for e in events})
    asyncio.run(create_topics(group))
    t0 = time.perf_counter()
    asyncio.run(preload(group, events))
    print(
        f"preloaded {len(events)} events of {users} users in {time.perf_counter() - t0:.1f} s",
        file=sys.stderr,
    )

    ceiling = asyncio.run(plain_drain(group, len(events)))
    print(f"plain consumer: {ceiling:,.0f} events/s", file=sys.stderr)
    try:
        rate, elapsed = worker_drain(group, len(events))
        print(f"worker: {rate:,.0f} events/s ({elapsed:.1f} s)", file=sys.stderr)
        time.sleep(3)  # let RocksDB flush what it holds
        disk = du(group.workdir / "data-0")
    finally:
        group.stop_all()
    try:
        live_group.start(0)
        late = asyncio.run(live_lateness(live_group, rate / 2, args.live_seconds, args.users))
    finally:
        live_group.stop_all()
    late.sort()
    p50 = statistics.median(late) if late else float("nan")
    p99 = late[int(0.99 * (len(late) - 1))] if late else float("nan")
    print()
    print("| measure | value |")
    print("|---|---|")
    loaded = f"{len(events):,} ({users:,}, {args.partitions})"
    print(f"| events pre-loaded (users, partitions) | {loaded} |")
    print(f"| plain aiokafka consumer + orjson (ceiling) | {ceiling:,.0f} events/s |")
    print(f"| nudge worker (RocksDB, 1 process) | {rate:,.0f} events/s |")
    print(f"| worker / ceiling | {rate / ceiling:.3f}x |")
    print(
        f"| live rate for lateness (≈ half of worker) | {rate / 2:,.0f} events/s "
        f"for {args.live_seconds:.0f} s |"
    )
    print(f"| decisions measured | {len(late):,} |")
    print(
        f"| lateness p50 / p99 / max | {p50:.3f} s / {p99:.3f} s / {max(late, default=0):.3f} s |"
    )
    print(f"| RocksDB on disk per user | {disk / users:,.0f} bytes ({disk / 2**20:.1f} MiB) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
