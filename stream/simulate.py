"""``nudge simulate``: synthetic shop traffic (or a JSON Lines file) produced to Kafka.

Synthetic mode reuses the replay benchmark's generator (``simulation.synthetic``), adds
a yes to SMS to half the shoppers' preferences (the demo rules' ``opt_in`` channel), and
stamps every event with the moment it is sent, so wall-clock deadlines in
the live worker behave as in a real shop, only faster: ``--rate`` sets the pace.
File mode (``--file``) produces the file's events unchanged (timestamps kept),
which is how the integration tests feed the worker the same events they replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from simulation.synthetic import generate_events
from stream.client_start import (
    KafkaUnavailable,
    sleep_or_stop,
    start_client,
    stop_on_signals,
    unreachable,
)
from stream.kafka_auth import aiokafka_kwargs
from stream.settings import Settings, SettingsError, load_settings
from stream.tail import MissingTopic
from stream.topic_reader import partition_counts, topic_missing
from triggers.events import INPUT_TOPIC_OF_TYPE, ProductUpdated
from triggers.timestamps import TimestampError, parse_timestamp


def topic_map(settings: Settings) -> dict[str, str]:
    """Event type -> the topic it goes to: every input type (delivery feedback to the
    engagement topic, ``user_erased`` to the preferences topic, contract 8)."""
    renamed = {
        "shop.browse": settings.topic_browse,
        "shop.cart": settings.topic_cart,
        "shop.order": settings.topic_order,
        "shop.prefs": settings.topic_prefs,
        "marketing.engagement": settings.topic_engagement,
    }
    topics = {event_type: renamed[topic] for event_type, topic in INPUT_TOPIC_OF_TYPE.items()}
    return {**topics, ProductUpdated.type: settings.topic_catalog}


def route(event: dict[str, Any], topics: dict[str, str]) -> tuple[bytes, str]:
    """Key and topic of a generated event: a catalog event is keyed by its product
    (contract 7.1), every other event by its user."""
    kind = event["type"]
    key = event["product_id"] if kind == ProductUpdated.type else event["user_id"]
    return str(key).encode(), topics[kind]


#: Share of shoppers whose preferences also say yes to SMS (contract 8.1: an ``opt_in``
#: channel needs it), so the demo rules' third channel gets traffic.
SMS_YES_SHARE = 0.5


def with_channel_consent(event: dict[str, Any]) -> dict[str, Any]:
    """Synthetic ``preferences_updated`` that do not opt out: ``channels: {sms: true}`` for
    :data:`SMS_YES_SHARE` of the shoppers (the same ones every run)."""
    if event["type"] == "preferences_updated" and event.get("marketing_opt_in", True):
        digest = hashlib.blake2b(str(event["user_id"]).encode(), digest_size=8).digest()
        if int.from_bytes(digest) < SMS_YES_SHARE * 2**64:
            event["channels"] = {"sms": True}
    return event


def synthetic_stream(users: int, seed: int, new_triggers: bool = False) -> Iterator[dict[str, Any]]:
    """Endless synthetic traffic: a new generation (seed + n) when one runs out."""
    generation = 0
    while True:
        start = datetime.now(UTC)
        produced = False
        for event in generate_events(
            users=users,
            seed=seed + generation,
            start=start,
            days=30.0,
            new_triggers=new_triggers,
        ):
            produced = True
            yield with_channel_consent(event)
        if not produced:  # never loop on an empty population
            return
        generation += 1


def open_events_file(path: str) -> BinaryIO:
    """The ``--file`` source, opened before Kafka is contacted (OSError if unreadable)."""
    return sys.stdin.buffer if path == "-" else Path(path).open("rb")


def file_stream(handle: BinaryIO) -> Iterator[bytes]:
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
    file: BinaryIO | None,
    realtime: bool = False,
    new_triggers: bool = False,
    keys: str = "user",
) -> int:
    """Produce until the source ends, ``limit`` is reached or SIGINT/SIGTERM; the count sent.

    Raises KafkaUnavailable when the broker cannot be reached or refuses the records,
    MissingTopic at the first catalog event (``new_triggers``, or a ``product_updated``
    line of the file) when the catalog topic does not exist. ``keys``: how user events are
    keyed, as shops' producers do it: ``user`` (by ``user_id``, what Nudge prefers),
    ``random`` (a random key per message), ``null`` (no key: spread by the client).
    """
    rekey = random.Random(seed)
    topics = topic_map(settings)
    stop = stop_on_signals()
    producer = AIOKafkaProducer(**aiokafka_kwargs(settings), acks="all", linger_ms=5)
    if not await start_client(producer, settings, stop):
        return 0
    sent = 0
    started = time.monotonic()
    try:
        catalog_checked = False
        source: Iterator[Any] = (
            file_stream(file) if file else synthetic_stream(users, seed, new_triggers)
        )
        for item in source:
            if stop.is_set() or (limit and sent >= limit):
                break
            if isinstance(item, bytes):
                key, topic, value, ts = route_line(item, topics, settings)
                if realtime and ts is not None:
                    # Never before its own time: a shop cannot report an event in advance.
                    wait = (ts - datetime.now(UTC)).total_seconds()
                    if wait > 0 and await sleep_or_stop(wait, stop):
                        break
            else:
                item["ts"] = (
                    datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
                )
                key, topic = route(item, topics)
                value = orjson.dumps(item)
            if keys != "user" and topic != settings.topic_catalog:
                key = None if keys == "null" else rekey.randbytes(8).hex().encode()
            if topic == settings.topic_catalog and not catalog_checked:
                await _check_catalog_topic(settings)  # at the first catalog event
                catalog_checked = True
            await send_patiently(producer, topic, key, value, settings, stop)
            sent += 1
            ahead = 0.0 if realtime else started + sent / rate - time.monotonic()
            if ahead > 0:
                if await sleep_or_stop(ahead, stop):
                    break
            elif sent % 256 == 0:
                await asyncio.sleep(0)  # behind the pace: still let the signal handlers run
            if sent % 1000 == 0:
                print(f"simulate: {sent} events", file=sys.stderr, flush=True)
        await asyncio.wait_for(producer.flush(), settings.kafka_startup_timeout_seconds)
    except TimeoutError:
        raise unreachable(settings, "the records were not acknowledged in time") from None
    except KafkaError as exc:
        raise unreachable(settings, exc) from None
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(producer.stop(), settings.kafka_startup_timeout_seconds)
    print(f"simulate: produced {sent} events", file=sys.stderr)
    return sent


MID_RUN_PATIENCE_SECONDS = 120.0


async def _check_catalog_topic(settings: Settings) -> None:
    """The catalog topic must exist: a producer would wait for it, then time out."""
    counts = await partition_counts(settings, settings.kafka_startup_timeout_seconds)
    if not counts.get(settings.topic_catalog):
        name = settings.topic_catalog
        raise topic_missing(
            name,
            set(counts),
            settings.kafka_bootstrap,
            "catalog events (product_updated) go there: create it with the input topics' "
            f"partition count (kafka-topics.sh --create --topic {name} --partitions N), or "
            "set NUDGE_TOPIC_CATALOG to the shop's catalog topic",
        )


async def send_patiently(
    producer: AIOKafkaProducer,
    topic: str,
    key: bytes | None,
    value: bytes,
    settings: Settings,
    stop: asyncio.Event,
) -> None:
    """Send one record; a broker that goes away mid-run (a restart) is waited for, as a
    shop's producer would (Kafka clients' default delivery timeout: 2 minutes)."""
    give_up = time.monotonic() + max(
        MID_RUN_PATIENCE_SECONDS, settings.kafka_startup_timeout_seconds
    )
    while True:
        try:
            await producer.send(topic, value=value, key=key)
            return
        except KafkaError as exc:
            if not exc.retriable or time.monotonic() > give_up or stop.is_set():
                raise
            await asyncio.sleep(0.5)


def route_line(
    line: bytes, topics: dict[str, str], settings: Settings
) -> tuple[bytes | None, str, bytes, datetime | None]:
    """Topic, key and event time of a raw line; invalid lines go to the browse topic as-is."""
    try:
        obj = orjson.loads(line)
        key, topic = route(obj, topics)
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None, settings.topic_browse, line, None
    try:
        ts: datetime | None = parse_timestamp(obj["ts"])
    except (TimestampError, KeyError):
        ts = None
    return key, topic, line, ts


def simulate_command(
    *,
    rate: float,
    users: int,
    seed: int,
    limit: int,
    file: str | None,
    realtime: bool = False,
    new_triggers: bool = False,
    keys: str = "user",
) -> int:
    """Exit status: 0 when done or stopped, 1 when Kafka cannot be used, 2 for bad input."""
    try:
        settings, warnings = load_settings()
    except SettingsError as exc:
        print(f"nudge simulate: {exc}", file=sys.stderr)
        return 2
    for warning in warnings:
        print(f"nudge simulate: warning: {warning}", file=sys.stderr)
    try:
        source = open_events_file(file) if file else None
    except OSError as exc:
        print(f"nudge simulate: cannot read {file}: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        asyncio.run(
            produce(
                settings,
                rate=rate,
                users=users,
                seed=seed,
                limit=limit,
                file=source,
                realtime=realtime,
                new_triggers=new_triggers,
                keys=keys,
            )
        )
    except (KafkaUnavailable, MissingTopic) as exc:
        print(f"nudge simulate: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # e.g. a TLS certificate file named in the settings is missing
        print(f"nudge simulate: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return 0
