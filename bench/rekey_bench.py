"""Benchmark re-keying (contract 9) on real Kafka and Redis (not a test; prints numbers).

In one run, on the same synthetic events (contract-default rules, stamped to "now"):

A. **Today's shape**: the four input topics with N partitions, every message keyed by
   ``user_id``: faust's no-op agent (the floor), then ``nudge worker`` with
   ``NUDGE_REKEY=misplaced`` (nothing misplaced: only the sources' marks cross
   ``nudge.rekeyed``) and with ``NUDGE_REKEY=all`` (every message crosses it).
B. **A shop's shape**: the same events on topics of 12, 6, 3 and 6 partitions (browse,
   cart, order, prefs) with random keys, the worker's N = 12: the no-op agent, then the
   worker with ``NUDGE_REKEY=misplaced`` and with ``NUDGE_REKEY=all``.

Each drain: a fresh consumer group (own changelog and Redis keys) over the pre-loaded
topics; events/s from the first event applied to the last, CPU-s per 1k events over the
same span (utime + stime from ``/proc``), the share of messages forwarded.

Needs Kafka and Redis: ``./dev services`` then ``eval "$(./dev env)"``.
Usage: .venv/bin/python bench/rekey_bench.py [--events 60000] [--users 6000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.worker_bench import (  # noqa: E402
    POLL,
    THROUGHPUT_RULES,
    Drain,
    new_group,
    noop_drain,
    preload,
    processed,
    synthetic,
    watch,
)
from tests.integration.harness import WorkerGroup, create_topics  # noqa: E402

SHOP_COUNTS = {"browse": 12, "cart": 6, "order": 3, "prefs": 6}


def session_keys() -> Callable[[dict[str, Any]], bytes]:
    """Random keys, as a session id or a mobile SDK's would be (seeded: every run alike)."""
    rng = random.Random(7)
    return lambda event: f"s{rng.getrandbits(40)}".encode()


def rekeyed(text: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("nudge_input_rekeyed_messages_total{")
    )


def fresh(base: WorkerGroup, workdir: Path, label: str, mode: str, partitions: int) -> WorkerGroup:
    """A worker group on ``base``'s topics with its own app id, changelog and Redis keys."""
    group = new_group(base.kafka, base.redis_url, workdir / label, THROUGHPUT_RULES, partitions)
    group.name = base.name
    group.input_counts = dict(base.input_counts)
    own = f"{base.name}-{label}"
    group.extra_env |= {
        "NUDGE_APP_ID": f"nudge-{own}",
        "NUDGE_REDIS_KEY_PREFIX": f"{own}:",
        "NUDGE_REDIS_SUPPRESSION_KEY": f"{own}:suppressed",
        "NUDGE_REKEY": mode,
        # Its own internal topics: the re-keying topic and ticks of one group are not shared.
        "NUDGE_TOPIC_REKEYED": f"{own}.nudge.rekeyed",
        "NUDGE_TOPIC_TICKS": f"{own}.nudge.ticks",
        "NUDGE_TOPIC_ENGAGEMENT": f"{own}.marketing.engagement",
    }
    return group


def worker_drain(group: WorkerGroup, n: int, name: str) -> Drain:
    worker = group.start(0)
    try:
        drain = watch(name, lambda: processed(worker.metrics()), [worker.proc], n, POLL["worker"])
        share = rekeyed(worker.metrics()) / n
        drain.note = (drain.note + "; " if drain.note else "") + f"{share:.0%} forwarded"
        return drain
    finally:
        group.stop_all()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--users", type=int, default=6_000)
    parser.add_argument("--partitions", type=int, default=6, help="N of today's shape")
    args = parser.parse_args()
    kafka = os.environ.get("NUDGE_KAFKA_BOOTSTRAP")
    redis_url = os.environ.get("NUDGE_REDIS_URL")
    if not kafka or not redis_url:
        raise SystemExit('start the services first: ./dev services && eval "$(./dev env)"')
    load_before = os.getloadavg()
    workdir = Path(tempfile.mkdtemp(prefix="nudge-rekey-bench-"))
    events = synthetic(args.users, args.events, seed=5)
    n = len(events)

    today = new_group(kafka, redis_url, workdir / "today", THROUGHPUT_RULES, args.partitions)
    shop = new_group(kafka, redis_url, workdir / "shop", THROUGHPUT_RULES, 12)
    shop.input_counts = dict(SHOP_COUNTS)
    for group, random_keys in ((today, False), (shop, True)):
        group.create_input_topics()
        asyncio.run(
            preload(group, events, session_keys()) if random_keys else preload(group, events)
        )
        outputs = [group.topic(k) for k in ("triggers", "audit", "dlq")]
        asyncio.run(create_topics(kafka, outputs, group.partitions))

    rows: list[tuple[str, Drain, Drain]] = []
    floor = noop_drain(today, n)
    for mode in ("misplaced", "all"):
        group = fresh(today, workdir, f"a-{mode}", mode, args.partitions)
        drain = worker_drain(group, n, f"A worker {mode}")
        label = f"A. 4 topics x {args.partitions}, keyed by user_id, NUDGE_REKEY={mode}"
        rows.append((label, floor, drain))
    floor = noop_drain(shop, n)
    for mode in ("misplaced", "all"):
        drain = worker_drain(fresh(shop, workdir, f"b-{mode}", mode, 12), n, f"B worker {mode}")
        rows.append((f"B. topics of 12/6/3/6, random keys, NUDGE_REKEY={mode}", floor, drain))
    report(args, n, rows, (load_before, os.getloadavg()))
    return 0


def report(args: argparse.Namespace, n: int, rows: list[tuple[str, Drain, Drain]],
           loads: tuple[tuple[float, float, float], ...]) -> None:  # fmt: skip
    print()
    print(f"{n:,} events, {args.users:,} users; load average before "
          f"{' / '.join(f'{x:.2f}' for x in loads[0])}, after "
          f"{' / '.join(f'{x:.2f}' for x in loads[1])}")  # fmt: skip
    print()
    print("| shape | no-op agent events/s | no-op CPU-s/1k | worker events/s | worker CPU-s/1k "
          "| worker / no-op | forwarded |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, floor, drain in rows:
        print(
            f"| {label} | {floor.rate:,.0f} | {floor.cpu_per_1k:.3f} | {drain.rate:,.0f} | "
            f"{drain.cpu_per_1k:.3f} | {drain.rate / floor.rate:.2f}x | {drain.note} |"
        )
    print()
    for shape, (misplaced, everything) in (("today's", rows[0:2]), ("the shop's", rows[2:4])):
        extra = everything[2].cpu_per_1k / misplaced[2].cpu_per_1k - 1
        print(f"NUDGE_REKEY=all: {extra:+.0%} CPU per event against misplaced on {shape} shape")


if __name__ == "__main__":
    started = time.perf_counter()
    code = main()
    print(f"({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    sys.exit(code)
