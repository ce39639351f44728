"""Benchmark delivery feedback (contract 8.3) in the live worker (not a test; prints numbers).

What feedback costs the worker: the same shop traffic with and without one feedback event
per sent decision, on real Kafka and Redis, rules with three channels.

1. Synthetic shop events over 30 days (``simulation.synthetic``) are replayed under the
   channel rules; each ``sent`` decision gets one feedback event 30 s after it fired, on
   its channel (delivered 60 %, opened 25 %, clicked 8 %, unsubscribed 3 %, bounced 4 %).
2. Both streams — the events alone, and the events with the feedback merged in time
   order — are stamped to "now" (one microsecond apart, order kept) and pre-loaded, keyed
   by ``user_id``, on topics of their own (the second also on the engagement topic).
3. On each: faust's no-op agent (the floor), then ``nudge worker``; events/s and CPU-s per
   1k messages (utime + stime from ``/proc``) from the first message applied to the last.

With ``--replay``: no services; ``nudge replay``'s engine (``triggers.replay``) on the month
of the same traffic instead, events per CPU-second of (a) the events under the contract's
default rules (today's figure), (b) the events under the channel rules, (c) the events with
the feedback under the channel rules.

Needs Kafka and Redis (not with ``--replay``): ``./dev services`` then ``eval "$(./dev env)"``.
Usage: .venv/bin/python bench/feedback_bench.py [--users 3000] [--events 60000] [--replay]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.worker_bench import (  # noqa: E402
    POLL,
    Drain,
    new_group,
    noop_drain,
    preload,
    processed,
    watch,
)
from simulation.synthetic import generate_events  # noqa: E402
from tests.integration.harness import WorkerGroup, create_topics  # noqa: E402
from triggers.records import record_to_json  # noqa: E402
from triggers.replay import replay_lines  # noqa: E402
from triggers.rules import parse_rules  # noqa: E402

RULES = """
default_timezone: UTC
channels:
  push: {frequency_cap: {max: 2, per: 24h}}
  email: {cost: 0.001}
  sms: {consent: opt_in, cost: 0.05}
"""
FEEDBACK = {
    "message_delivered": 60,
    "message_opened": 25,
    "message_clicked": 8,
    "message_unsubscribed": 3,
    "message_bounced": 4,
}
INPUTS = ("browse", "cart", "order", "prefs", "engagement")


def month(users: int, limit: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The shop's events over 30 days, and the same with one feedback event per sent
    decision merged in time order (their own timestamps)."""
    start = datetime(2026, 11, 1, tzinfo=UTC)
    events = list(generate_events(users=users, seed=5, start=start, days=30))[:limit]
    lines = [orjson.dumps(e) for e in events]
    result = replay_lines(lines, parse_rules(RULES, "rules.yaml"))
    rng = random.Random(3)
    feedback = []
    for record in result.records:
        decision = orjson.loads(record_to_json(record))
        if decision.get("kind") != "decision" or decision["status"] != "sent":
            continue
        kind = rng.choices(list(FEEDBACK), weights=list(FEEDBACK.values()))[0]
        fired = datetime.fromisoformat(decision["fired_at"])
        event = {
            "event_id": f"fb-{len(feedback)}",
            "type": kind,
            "user_id": decision["user_id"],
            "ts": (fired + timedelta(seconds=30)).isoformat(timespec="milliseconds")[:23] + "Z",
            "trigger_id": decision["trigger_id"],
            "channel": decision["channel"],
        }
        if kind == "message_bounced":
            event["bounce"] = rng.choice(["hard", "soft"])
        feedback.append(event)
    both = sorted(events + feedback, key=lambda e: str(e["ts"]))  # RFC 3339 UTC strings
    return events, both


def traffic(users: int, limit: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """:func:`month`, stamped to now."""
    events, both = month(users, limit)
    return _now(events), _now(both)


def replay_rates(users: int, limit: int) -> int:
    """Events per CPU-second of the replay engine on the month, with and without feedback."""
    import time

    events, both = month(users, limit)
    runs = (
        ("events, the contract's default rules", events, parse_rules("default_timezone: UTC\n")),
        ("events, three channels", events, parse_rules(RULES, "rules.yaml")),
        ("events and feedback, three channels", both, parse_rules(RULES, "rules.yaml")),
    )
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    feedback = len(both) - len(events)
    print(f"{len(events):,} events of {users:,} users over 30 days, {feedback:,} feedback events")
    print(f"load average {load}")
    print()
    print("| replay of | lines | CPU-s | events per CPU-second |")
    print("|---|---:|---:|---:|")
    for label, stream, rules in runs:
        lines = [orjson.dumps(e) for e in stream]
        started = time.process_time()
        replay_lines(lines, rules)
        cpu = time.process_time() - started
        print(f"| {label} | {len(lines):,} | {cpu:.1f} | {len(lines) / cpu:,.0f} |")
    return 0


def _now(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events stamped to now, one microsecond apart, in their order."""
    now = datetime.now(UTC)
    return [
        {**e, "ts": (now + timedelta(microseconds=i)).isoformat().replace("+00:00", "Z")}
        for i, e in enumerate(events)
    ]


def worker(group: WorkerGroup, n: int, name: str) -> Drain:
    started = group.start(0)
    try:
        return watch(name, lambda: processed(started.metrics()), [started.proc], n, POLL["worker"])
    finally:
        group.stop_all()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=3_000)
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--replay", action="store_true", help="the replay engine, no services")
    args = parser.parse_args()
    if args.replay:
        return replay_rates(args.users, args.events)
    kafka = os.environ.get("NUDGE_KAFKA_BOOTSTRAP")
    redis_url = os.environ.get("NUDGE_REDIS_URL")
    if not kafka or not redis_url:
        raise SystemExit('start the services first: ./dev services && eval "$(./dev env)"')
    load_before = os.getloadavg()
    workdir = Path(tempfile.mkdtemp(prefix="nudge-feedback-bench-"))
    plain, with_feedback = traffic(args.users, args.events)
    rows = []
    for label, events in (("without feedback", plain), ("with feedback", with_feedback)):
        group = new_group(
            kafka, redis_url, workdir / label.replace(" ", "-"), RULES, args.partitions
        )
        names = [group.topic(k) for k in INPUTS]
        asyncio.run(create_topics(kafka, names, args.partitions))
        asyncio.run(preload(group, events))
        n = len(events)
        floor = noop_drain(group, n, INPUTS)
        drain = worker(group, n, f"nudge worker {label}")
        rows.append((label, n, floor, drain))
    feedback = len(with_feedback) - len(plain)
    print()
    print(
        f"{len(plain):,} shop events of {args.users:,} users and {feedback:,} feedback events "
        f"(one per sent decision); {args.partitions} partitions; load average before "
        f"{' / '.join(f'{x:.2f}' for x in load_before)}, after "
        f"{' / '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print()
    print("| traffic | messages | no-op events/s | no-op CPU-s/1k | worker events/s "
          "| worker CPU-s/1k | worker / no-op |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, n, floor, drain in rows:
        print(
            f"| {label} | {n:,} | {floor.rate:,.0f} | {floor.cpu_per_1k:.3f} | "
            f"{drain.rate:,.0f} | {drain.cpu_per_1k:.3f} | {drain.rate / floor.rate:.2f}x |"
        )
    extra = rows[1][3].cpu_per_1k / rows[0][3].cpu_per_1k - 1
    print()
    print(f"feedback traffic: {extra:+.1%} worker CPU per message (target: at most +10 %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
