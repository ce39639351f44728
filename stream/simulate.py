"""``nudge simulate``: synthetic shop traffic (or a JSON Lines file) produced to Kafka.

Synthetic mode reuses the replay benchmark's generator (``simulation.synthetic``)
and stamps every event with the moment it is sent, so wall-clock deadlines in
the live worker behave as in a real shop, only faster: ``--rate`` sets the pace.
File mode (``--file``) produces the file's events unchanged (timestamps kept),
which is how the integration tests feed the worker the same events they replay.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from simulation.synthetic import TOPIC_FOR_TYPE, generate_events
from stream.kafka_auth import aiokafka_kwargs
from stream.settings import Settings
from triggers.timestamps import TimestampError, parse_timestamp


def _topic_map(settings: Settings) -> dict[str, str]:
    renamed = {
        "shop.browse": settings.topic_browse,
        "shop.cart": settings.topic_cart,
        "shop.order": settings.topic_order,
        "shop.prefs": settings.topic_prefs,
    }
    return {event_type: renamed[topic] for event_type, topic in TOPIC_FOR_TYPE.items()}


def synthetic_stream(users: int, seed: int) -> Iterator[dict[str, Any]]:
    """Endless synthetic traffic: a new generation (seed + n) when one runs out."""
    generation = 0
    while True:
        start = datetime.now(UTC)
        yield from generate_events(users=users, seed=seed + generation, start=start, days=30.0)
        generation += 1


def file_stream(path: str) -> Iterator[bytes]:
    handle = sys.stdin.buffer if path == "-" else Path(path).open("rb")  # noqa: SIM115
    with handle:
        for line in handle:
            if line.strip():
                yield line.rstrip(b"\r\n")


async def produce(
    settings: Settings,
    *,
    rate: float,
    users: int,
    seed: int,
    limit: int,
    file: str | None,
    realtime: bool = False,
) -> int:
    topics = _topic_map(settings)
    producer = AIOKafkaProducer(**aiokafka_kwargs(settings), acks="all", linger_ms=5)
    await producer.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    sent = 0
    started = time.monotonic()
    try:
        source: Iterator[Any] = file_stream(file) if file else synthetic_stream(users, seed)
        for item in source:
            if stop.is_set() or (limit and sent >= limit):
                break
            if isinstance(item, bytes):
                key, topic, value, ts = _route_line(item, topics, settings)
                if realtime and ts is not None:
                    # Never before its own time: a shop cannot report an event in advance.
                    wait = (ts - datetime.now(UTC)).total_seconds()
                    if wait > 0:
                        await asyncio.sleep(wait)
            else:
                item["ts"] = (
                    datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
                )
                key, topic, value = (
                    item["user_id"].encode(),
                    topics[item["type"]],
                    orjson.dumps(item),
                )
            await producer.send(topic, value=value, key=key)
            sent += 1
            if rate > 0 and not realtime:
                ahead = started + sent / rate - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)
            if sent % 1000 == 0:
                print(f"simulate: {sent} events", file=sys.stderr, flush=True)
        await producer.flush()
    finally:
        await producer.stop()
    print(f"simulate: produced {sent} events", file=sys.stderr)
    return sent


def _route_line(
    line: bytes, topics: dict[str, str], settings: Settings
) -> tuple[bytes | None, str, bytes, datetime | None]:
    """Topic, key and event time of a raw line; invalid lines go to the browse topic as-is."""
    try:
        obj = orjson.loads(line)
        key, topic = str(obj["user_id"]).encode(), topics[obj["type"]]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None, settings.topic_browse, line, None
    try:
        ts: datetime | None = parse_timestamp(obj["ts"])
    except (TimestampError, KeyError):
        ts = None
    return key, topic, line, ts


def simulate_command(
    *, rate: float, users: int, seed: int, limit: int, file: str | None, realtime: bool = False
) -> int:
    settings = Settings()
    asyncio.run(
        produce(
            settings, rate=rate, users=users, seed=seed, limit=limit, file=file, realtime=realtime
        )
    )
    return 0
