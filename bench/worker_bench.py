"""Benchmark the live worker on real Kafka and Redis (not a test; prints numbers).

In one run, side by side on the same pre-loaded input topics (four topics, contract-default
rules, synthetic shop traffic re-stamped to "now"):

1. ceiling: a plain aiokafka consumer draining the four topics, orjson-parsing every value;
2. floor of the framework: a faust-streaming agent that does nothing (``bench/faust_noop.py``,
   subprocess, its own consumer group);
3. ``nudge worker`` (subprocess, RocksDB tables), 1 process; then 2 processes on the same
   data (a fresh consumer group, changelog and Redis keys);
4. lateness: a third worker with delays of seconds, fed synthetic traffic live at half the
   1-process drain rate; lateness = ``fired_at - due_at`` of every decision on the audit
   topic (exact values, not histogram buckets).

Each drain: events/s from the first event processed to the last (start-up excluded), CPU-s
per 1k events over the same span (``/proc/PID/stat`` utime+stime; ``time.process_time``).

Needs Kafka and Redis: ``./dev services`` then ``eval "$(./dev env)"``.
Usage: .venv/bin/python bench/worker_bench.py [--events 100000] [--users 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simulation.synthetic import generate_events  # noqa: E402
from tests.integration.harness import TOPIC_OF_TYPE, WorkerGroup, create_topics  # noqa: E402

INPUTS = ("browse", "cart", "order", "prefs")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
#: Progress polls: a scrape of the worker's /metrics costs it ~3 ms of CPU, so not too often.
POLL = {"noop": 0.1, "worker": 0.5}

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


@dataclass
class Drain:
    """One contender's drain: events counted, wall seconds and CPU seconds between samples."""

    name: str
    events: float
    seconds: float
    cpu: float
    note: str = ""

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_per_1k(self) -> float:
        return 1000 * self.cpu / self.events if self.events > 0 else float("nan")


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


def user_key(event: dict[str, Any]) -> bytes:
    return str(event["user_id"]).encode()


async def preload(
    group: WorkerGroup,
    events: list[dict[str, Any]],
    key: Callable[[dict[str, Any]], bytes] = user_key,
) -> None:
    """The events on the group's topics (each type's), keyed by ``key`` (the user id)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=group.kafka, linger_ms=20, max_batch_size=1 << 20, acks=1
    )
    await producer.start()
    try:
        for event in events:
            topic = group.topic(TOPIC_OF_TYPE[str(event["type"])])
            await producer.send(topic, orjson.dumps(event), key=key(event))
        await producer.flush()
    finally:
        await producer.stop()


async def plain_drain(group: WorkerGroup, n: int) -> Drain:
    consumer = AIOKafkaConsumer(
        *(group.topic(k) for k in INPUTS),
        bootstrap_servers=group.kafka,
        group_id=f"plain-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        enable_auto_commit=True,
        max_poll_records=2000,
    )
    await consumer.start()
    seen = 0
    started = cpu0 = 0.0
    try:
        while seen < n:
            batch = await consumer.getmany(timeout_ms=1000, max_records=2000)
            for records in batch.values():
                if not seen:
                    started, cpu0 = time.perf_counter(), time.process_time()
                for record in records:
                    orjson.loads(record.value)
                seen += len(records)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu0
    finally:
        await consumer.stop()
    return Drain("plain aiokafka consumer + orjson (ceiling)", seen, wall, cpu)


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of processes (all their threads), from ``/proc/PID/stat``."""
    fields = [Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split() for pid in pids]
    return sum(int(f[11]) + int(f[12]) for f in fields) / CLOCK_TICKS


def watch(
    name: str, count: Callable[[], float], procs: list[subprocess.Popen[bytes]], n: int, poll: float
) -> Drain:
    """Poll a contender's progress until it has processed ``n`` events (or is stuck for 120 s);
    events re-processed after a rebalance do not count as throughput."""
    first = last = (time.perf_counter(), -1.0, 0.0)  # time, count, CPU: first and last change
    while True:
        seen = count()
        now, cpu = time.perf_counter(), cpu_seconds([p.pid for p in procs])
        if first[1] <= 0 < seen:
            first = (now, seen, cpu)
        if now - last[0] > 120 and first[1] <= 0:
            raise SystemExit(f"{name}: nothing processed in 120 s")
        stuck = now - last[0] > 120
        if seen >= n or stuck:
            end = last if stuck else (now, float(n), cpu)
            drain = Drain(name, end[1] - first[1], end[0] - first[0], end[2] - first[2])
            drain.note = f"stuck at {seen:,.0f} of {n:,} for 120 s" if stuck else ""
            print(f"{name}: {drain.rate:,.0f} events/s {drain.note}", file=sys.stderr)
            return drain
        if seen != last[1]:
            last = (now, seen, cpu)
        for proc in procs:
            if proc.poll() is not None:
                raise SystemExit(f"{name}: process {proc.pid} exited with {proc.returncode}")
        time.sleep(poll)


def noop_drain(group: WorkerGroup, n: int, inputs: tuple[str, ...] = INPUTS) -> Drain:
    status = group.workdir / "noop.count"
    env = {
        **os.environ,
        "NOOP_BOOTSTRAP": group.kafka,
        "NOOP_APP_ID": f"noop-{uuid.uuid4().hex[:6]}",
        "NOOP_TOPICS": ",".join(group.topic(k) for k in inputs),
        "NOOP_STATUS": str(status),
        "NOOP_DATADIR": str(group.workdir / "noop-data"),
    }
    log = (group.workdir / "noop.log").open("ab")
    command = [
        sys.executable,
        str(ROOT / "bench" / "faust_noop.py"),
        "worker",
        "-lwarn",
        "--without-web",
    ]
    proc = subprocess.Popen(
        command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=group.workdir
    )

    def count() -> float:
        return float(status.read_text() or 0) if status.exists() else 0.0

    try:
        return watch("faust agent that does nothing (floor)", count, [proc], n, POLL["noop"])
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def processed(text: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("nudge_events_total{")
    )


def worker_drain(group: WorkerGroup, processes: int, n: int) -> Drain:
    """``processes`` nudge workers of one fresh group draining the pre-loaded topics."""
    workers = [group.start(i, wait_ready=False) for i in range(processes)]
    for worker in workers:
        worker.wait_ready()

    def count() -> float:
        return sum(processed(w.metrics()) for w in workers)

    name = f"nudge worker, RocksDB, {processes} process{'es' if processes > 1 else ''}"
    drain = watch(name, count, [w.proc for w in workers], n, POLL["worker"])
    if processes > 1 and not drain.note:
        time.sleep(3)  # committed offsets; anything re-processed after a rebalance shows up
        split = [processed(w.metrics()) for w in workers]
        drain.note = f"events per process {' / '.join(f'{c:,.0f}' for c in split)}"
    return drain


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
    return await lateness_from_audit(group)


async def audit_decisions(group: WorkerGroup) -> list[dict[str, Any]]:
    """Every decision on the group's audit topic, read from the beginning to its end."""
    consumer = AIOKafkaConsumer(bootstrap_servers=group.kafka, group_id=None)
    await consumer.start()
    tps = [TopicPartition(group.topic("audit"), p) for p in range(group.partitions)]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    ends = await consumer.end_offsets(tps)
    out: list[dict[str, Any]] = []
    try:
        while any([await consumer.position(tp) < ends[tp] for tp in tps]):
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                out += [orjson.loads(r.value) for r in records]
    finally:
        await consumer.stop()
    return [r for r in out if r["kind"] == "decision"]


async def lateness_from_audit(group: WorkerGroup) -> list[float]:
    return [
        (
            datetime.fromisoformat(d["fired_at"]) - datetime.fromisoformat(d["due_at"])
        ).total_seconds()
        for d in await audit_decisions(group)
        if d["reason"] != "stale"
    ]


def new_group(
    kafka: str, redis_url: str, workdir: Path, rules: str, partitions: int
) -> WorkerGroup:
    workdir.mkdir(parents=True)
    (workdir / "rules.yaml").write_text(rules)
    return WorkerGroup(
        kafka,
        redis_url,
        workdir / "rules.yaml",
        workdir,
        partitions=partitions,
        extra_env={"NUDGE_LOG_LEVEL": "WARNING"},
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--live-seconds", type=float, default=30.0)
    parser.add_argument(
        "--live-only",
        type=float,
        metavar="RATE",
        help="only the lateness phase, at RATE events/s (no drains, no table)",
    )
    args = parser.parse_args()
    kafka = os.environ.get("NUDGE_KAFKA_BOOTSTRAP")
    redis_url = os.environ.get("NUDGE_REDIS_URL")
    if not kafka or not redis_url:
        raise SystemExit('start the services first: ./dev services && eval "$(./dev env)"')
    load_before = os.getloadavg()
    workdir = Path(tempfile.mkdtemp(prefix="nudge-bench-"))
    if args.live_only is not None:
        return live_only(kafka, redis_url, workdir, args)
    group = new_group(kafka, redis_url, workdir / "one", THROUGHPUT_RULES, args.partitions)
    # Same topics (same name), fresh app id: its own consumer group, changelog and Redis keys.
    two = new_group(kafka, redis_url, workdir / "two", THROUGHPUT_RULES, args.partitions)
    two.name = group.name
    fresh = f"{group.name}-two"
    two.extra_env |= {
        "NUDGE_APP_ID": f"nudge-{fresh}",
        "NUDGE_REDIS_KEY_PREFIX": f"{fresh}:",
        "NUDGE_REDIS_SUPPRESSION_KEY": f"{fresh}:suppressed",
    }
    live = new_group(kafka, redis_url, workdir / "live", LATENESS_RULES, args.partitions)

    events = synthetic(args.users, args.events, seed=5)
    users = len({e["user_id"] for e in events})
    n = len(events)
    names = [group.topic(k) for k in (*INPUTS, "ticks", "triggers", "audit", "dlq")]
    asyncio.run(create_topics(kafka, names, args.partitions))
    t0 = time.perf_counter()
    asyncio.run(preload(group, events))
    print(f"preloaded {n} events of {users} users in {time.perf_counter() - t0:.0f} s")

    drains = [asyncio.run(plain_drain(group, n))]
    print(f"{drains[0].name}: {drains[0].rate:,.0f} events/s", file=sys.stderr)
    drains.append(noop_drain(group, n))
    try:
        drains.append(worker_drain(group, 1, n))
        time.sleep(3)  # let RocksDB flush what it holds
        files = (workdir / "one" / "data-0").rglob("*")
        disk = sum(f.stat().st_size for f in files if f.is_file())
    finally:
        group.stop_all()
    try:
        drains.append(worker_drain(two, 2, n))
    finally:
        two.stop_all()
    rate = drains[2].rate
    try:
        live.start(0)
        late = asyncio.run(live_lateness(live, rate / 2, args.live_seconds, args.users))
    finally:
        live.stop_all()
    report(args, drains, late, n, users, disk, (load_before, os.getloadavg()))
    return 0


def live_only(kafka: str, redis_url: str, workdir: Path, args: argparse.Namespace) -> int:
    """A fresh worker, traffic at ``--live-only`` events/s for ``--live-seconds``: lateness."""
    live = new_group(kafka, redis_url, workdir / "live", LATENESS_RULES, args.partitions)
    try:
        live.start(0)
        rate, seconds = args.live_only, args.live_seconds
        late = sorted(asyncio.run(live_lateness(live, rate, seconds, args.users)))
    finally:
        live.stop_all()
    if not late:
        raise SystemExit(f"no decisions: see the worker's log in {workdir / 'live'}")
    p50, p99 = statistics.median(late), late[int(0.99 * (len(late) - 1))]
    print(
        f"lateness at {rate:,.0f} events/s for {seconds:.0f} s, {len(late):,} decisions: "
        f"p50 {p50:.3f} s, p99 {p99:.3f} s, max {late[-1]:.3f} s"
    )
    return 0


def report(args: argparse.Namespace, drains: list[Drain], late: list[float], n: int, users: int,
           disk: int, loads: tuple[tuple[float, float, float], ...]) -> None:  # fmt: skip
    floor, one, two = drains[1:]
    print()
    print(f"{n:,} events of {users:,} users, 4 topics x {args.partitions} partitions; "
          f"load average (1/5/15 min) before {_avg(loads[0])}, after {_avg(loads[1])}")  # fmt: skip
    print()
    print("| contender | events/s | CPU-s per 1k events | cores busy | drain (s) | vs no-op |")
    print("|---|---:|---:|---:|---:|---:|")
    for d in drains:
        name = f"{d.name} ({d.note})" if d.note else d.name
        print(
            f"| {name} | {d.rate:,.0f} | {d.cpu_per_1k:.3f} | {d.cpu / d.seconds:.2f} | "
            f"{d.seconds:.1f} | {d.rate / floor.rate:.2f}x |"
        )
    late.sort()
    p50 = statistics.median(late) if late else float("nan")
    p99 = late[int(0.99 * (len(late) - 1))] if late else float("nan")
    worst = max(late, default=float("nan"))
    print()
    print("| measure | value | target |")
    print("|---|---|---|")
    print(f"| nudge, 1 process | {one.rate:,.0f} events/s | ≥ 2,000 {_met(one.rate >= 2000)} |")
    cpu = one.cpu_per_1k
    print(f"| nudge CPU-s per 1k events | {cpu:.3f} | ≤ 0.5 {_met(cpu <= 0.5)} |")
    ratio = one.rate / floor.rate
    print(f"| nudge / no-op agent | {ratio:.2f}x | ≥ 0.5x {_met(ratio >= 0.5)} |")
    print(f"| 2 processes / 1 | {two.rate / one.rate:.2f}x | |")
    print(f"| live rate for lateness (half of 1 process) | {one.rate / 2:,.0f} events/s "
          f"for {args.live_seconds:.0f} s | |")  # fmt: skip
    print(f"| decisions measured | {len(late):,} | |")
    print(f"| lateness p50 / p99 / max | {p50:.3f} s / {p99:.3f} s / {worst:.3f} s | "
          f"p99 ≤ 1 s {_met(p99 <= 1.0)} |")  # fmt: skip
    print(f"| RocksDB on disk per user | {disk / users:,.0f} bytes ({disk / 2**20:.1f} MiB) | |")


def _avg(loads: tuple[float, float, float]) -> str:
    return " / ".join(f"{x:.2f}" for x in loads)


def _met(ok: bool) -> str:
    return "(met)" if ok else "(**not met**)"


if __name__ == "__main__":
    sys.exit(main())
