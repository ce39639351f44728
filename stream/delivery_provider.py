"""``nudge simulate --provider``: a delivery provider for the demo.

Reads the sent decisions of ``marketing.triggers`` (``NUDGE_TOPIC_TRIGGERS``) and answers
each with the feedback a shop's email, push or SMS provider would send
(:mod:`stream.delivery_rates` decides what and when), produced to ``marketing.engagement``
(``NUDGE_TOPIC_ENGAGEMENT``) keyed by ``user_id``, each event when the clock reaches its
``ts``: a provider reports what happened, never in advance.

It reads as the consumer group ``NUDGE_APP_ID`` + ``.delivery-provider`` from the oldest
record the group has not committed. An offset is committed only once every event of its
decision is produced, so a restart answers again what was pending (with the same event
ids, which the engine takes as duplicates) and never leaves a decision unanswered.
Both topics must exist (the worker creates them).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import sys
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from stream.client_start import KafkaUnavailable, start_client, stop_on_signals, unreachable
from stream.delivery_rates import (
    ChannelRates,
    Feedback,
    NotASentDecision,
    parse_rates,
    plan_feedback,
    rates_table,
)
from stream.kafka_auth import aiokafka_kwargs
from stream.settings import Settings, SettingsError, load_settings
from stream.simulate import send_patiently
from stream.tail import MissingTopic
from stream.topic_reader import partition_counts, topic_missing

POLL_MS = 500  # the longest wait for decisions while nothing is due
COMMIT_EVERY_SECONDS = 1.0
REPORT_EVERY_SECONDS = 30.0


def group_id(settings: Settings) -> str:
    return f"{settings.app_id}.delivery-provider"


@dataclass(order=True)
class _Due:
    at: datetime
    seq: int
    partition: int = field(compare=False)
    offset: int = field(compare=False)
    key: bytes = field(compare=False)
    value: bytes = field(compare=False)


@dataclass
class Outstanding:
    """Per partition: offsets whose decisions still have feedback to produce, and the
    offset after the last record read. The committable offset is the lowest of them."""

    pending: dict[int, Counter[int]] = field(default_factory=dict)
    read_to: dict[int, int] = field(default_factory=dict)

    def read(self, partition: int, offset: int, events: int) -> None:
        self.read_to[partition] = offset + 1
        if events:
            self.pending.setdefault(partition, Counter())[offset] += events

    def produced(self, partition: int, offset: int) -> bool:
        """One event of the decision at ``offset`` is out; True when it was the last."""
        counter = self.pending[partition]
        counter[offset] -= 1
        if counter[offset] == 0:
            del counter[offset]
            return True
        return False

    def committable(self) -> dict[int, int]:
        return {
            p: min(self.pending[p]) if self.pending.get(p) else end
            for p, end in self.read_to.items()
        }


@dataclass
class ProviderStats:
    decisions: int = 0  # sent decisions read
    answered: int = 0  # of them, with every feedback event produced
    skipped: int = 0  # records that are not sent decisions
    events: Counter[str] = field(default_factory=Counter)

    def line(self) -> str:
        kinds = ", ".join(
            f"{kind.removeprefix('message_')} {n}" for kind, n in sorted(self.events.items())
        )
        return (
            f"simulate: answered {self.answered} decisions with {sum(self.events.values())} "
            f"feedback events ({kinds or 'none'})"
            + (
                f"; skipped {self.skipped} records that are not sent decisions"
                if self.skipped
                else ""
            )
        )


async def provide(
    settings: Settings,
    rates: Mapping[str, ChannelRates],
    *,
    seed: int,
    delay_scale: float,
    limit: int = 0,
) -> ProviderStats:
    """Answer sent decisions until ``limit`` of them are answered (0 = never) or
    SIGINT/SIGTERM. Raises KafkaUnavailable or MissingTopic."""
    stop = stop_on_signals()
    stats = ProviderStats()
    await _check_topics(settings)
    consumer = AIOKafkaConsumer(
        **aiokafka_kwargs(settings),
        group_id=group_id(settings),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(**aiokafka_kwargs(settings), acks="all", linger_ms=5)
    if not await start_client(consumer, settings, stop):
        return stats
    try:
        if not await start_client(producer, settings, stop):
            return stats
        consumer.subscribe([settings.topic_triggers])
        await _run(consumer, producer, settings, rates, stats, stop, seed, delay_scale, limit)
    except TimeoutError:
        raise unreachable(settings, "the records were not acknowledged in time") from None
    except KafkaError as exc:
        raise unreachable(settings, exc) from None
    finally:
        for client in (producer, consumer):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.stop(), settings.kafka_startup_timeout_seconds)
    return stats


async def _run(
    consumer: AIOKafkaConsumer,
    producer: AIOKafkaProducer,
    settings: Settings,
    rates: Mapping[str, ChannelRates],
    stats: ProviderStats,
    stop: asyncio.Event,
    seed: int,
    delay_scale: float,
    limit: int,
) -> None:
    due: list[_Due] = []
    outstanding = Outstanding()
    topic, seq = settings.topic_triggers, 0
    committed: dict[int, int] = {}
    last_commit = last_report = time.monotonic()
    while not stop.is_set() and not (limit and stats.answered >= limit):
        wait = POLL_MS / 1000
        if due:
            wait = min(wait, max(0.0, (due[0].at - datetime.now(UTC)).total_seconds()))
        reading = not limit or stats.decisions < limit
        batches = await consumer.getmany(timeout_ms=int(wait * 1000)) if reading else {}
        if not reading and wait:
            await asyncio.sleep(wait)
        for tp, messages in batches.items():
            for message in messages:
                if limit and stats.decisions >= limit:  # past the limit: left for next time
                    consumer.seek(tp, message.offset)
                    break
                planned = _plan(message.value, rates, seed, delay_scale, stats)
                outstanding.read(tp.partition, message.offset, len(planned))
                for item in planned:
                    seq += 1
                    heapq.heappush(
                        due,
                        _Due(item.at, seq, tp.partition, message.offset, item.key,
                             orjson.dumps(item.value)),
                    )  # fmt: skip
        now = datetime.now(UTC)
        while due and due[0].at <= now and not stop.is_set():
            item = heapq.heappop(due)
            engagement = settings.topic_engagement
            await send_patiently(producer, engagement, item.key, item.value, settings, stop)
            stats.events[orjson.loads(item.value)["type"]] += 1
            if outstanding.produced(item.partition, item.offset):
                stats.answered += 1
        if time.monotonic() - last_commit >= COMMIT_EVERY_SECONDS or not due:
            committed = await _commit(consumer, producer, topic, outstanding, committed)
            last_commit = time.monotonic()
        if time.monotonic() - last_report >= REPORT_EVERY_SECONDS:
            print(stats.line(), file=sys.stderr, flush=True)
            last_report = time.monotonic()
    await _commit(consumer, producer, topic, outstanding, committed)


def _plan(
    raw: bytes | None,
    rates: Mapping[str, ChannelRates],
    seed: int,
    delay_scale: float,
    stats: ProviderStats,
) -> list[Feedback]:
    try:
        record = orjson.loads(raw or b"")
        if not isinstance(record, dict):
            raise NotASentDecision("not a JSON object")
        planned = plan_feedback(record, rates, seed=seed, delay_scale=delay_scale)
    except (orjson.JSONDecodeError, NotASentDecision):
        stats.skipped += 1
        return []
    stats.decisions += 1
    if not planned:
        stats.answered += 1  # no receipt at all: answered by silence
    return planned


async def _commit(
    consumer: AIOKafkaConsumer,
    producer: AIOKafkaProducer,
    topic: str,
    outstanding: Outstanding,
    committed: dict[int, int],
) -> dict[int, int]:
    """Commit what is fully answered (after the producer has flushed it)."""
    offsets = outstanding.committable()
    moved = {p: o for p, o in offsets.items() if committed.get(p) != o}
    if moved:
        await producer.flush()
        await consumer.commit(
            {TopicPartition(topic, p): OffsetAndMetadata(o, "") for p, o in moved.items()}
        )
    return offsets


async def _check_topics(settings: Settings) -> None:
    counts = await partition_counts(settings, settings.kafka_startup_timeout_seconds)
    for name, variable in (
        (settings.topic_triggers, "NUDGE_TOPIC_TRIGGERS"),
        (settings.topic_engagement, "NUDGE_TOPIC_ENGAGEMENT"),
    ):
        if not counts.get(name):
            raise topic_missing(
                name,
                set(counts),
                settings.kafka_bootstrap,
                f"the worker creates it at start-up: start `nudge worker` first, or set "
                f"{variable} to the topic it uses",
            )


def provider_command(*, rates: str, seed: int, delay_scale: float, limit: int) -> int:
    """Exit status: 0 when done or stopped, 1 when Kafka or a topic cannot be used, 2 for
    bad settings or rates."""
    try:
        settings, warnings = load_settings()
        table = parse_rates(rates)
    except (SettingsError, ValueError) as exc:
        print(f"nudge simulate: {exc}", file=sys.stderr)
        return 2
    for warning in warnings:
        print(f"nudge simulate: warning: {warning}", file=sys.stderr)
    print(
        f"simulate: answering sent decisions of {settings.topic_triggers} on "
        f"{settings.topic_engagement} (delay scale {delay_scale:g}, seed {seed}); rates:\n"
        + rates_table(table),
        file=sys.stderr,
        flush=True,
    )
    try:
        stats = asyncio.run(
            provide(settings, table, seed=seed, delay_scale=delay_scale, limit=limit)
        )
    except (KafkaUnavailable, MissingTopic) as exc:
        print(f"nudge simulate: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # e.g. a TLS certificate file named in the settings is missing
        print(f"nudge simulate: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(stats.line(), file=sys.stderr)
    return 0
