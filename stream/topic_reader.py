"""Reading a whole topic once: from the beginning up to the end offsets taken at start.

``nudge report --from-kafka`` reads the audit topic this way. Every partition is read
from its first retained offset up to the end offset listed when the read began; records
written meanwhile are left for the next run, so the read always ends, and an empty
topic (or partition) ends at once. A topic that does not exist is an error that names
it and the variable to fix, never an endless wait or a topic created by asking for it
(the topic list is read before anything is assigned). A broker that stops answering
half-way is an error after ``NUDGE_KAFKA_STARTUP_TIMEOUT_SECONDS`` without progress.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from stream.client_start import start_client, stop_on_signals, unreachable
from stream.kafka_auth import aiokafka_kwargs
from stream.settings import Settings
from stream.tail import MissingTopic, missing_topic
from stream.topics import reported_counts

POLL_MS = 500
# A record's value, and where it was read: "partition P offset O".
RecordSink = Callable[[bytes, str], None]


class ReadStopped(RuntimeError):
    """SIGINT or SIGTERM arrived before every partition reached its end offset."""


class UpToEnd:
    """Which partitions still have records before the end offsets taken at start.

    ``begins`` and ``ends``: partition -> first retained offset, and the offset after
    the last record when the read began. A partition is done once the consumer's
    position reaches its end (positions, not the last record seen: offsets may have
    gaps, e.g. transaction markers or compacted records).
    """

    def __init__(self, begins: Mapping[int, int], ends: Mapping[int, int]) -> None:
        self.ends = dict(ends)
        self.todo = {p for p, end in ends.items() if end > begins.get(p, 0)}

    def wanted(self, partition: int, offset: int) -> bool:
        """A record belongs to the read: it was in the topic when the read began."""
        return offset < self.ends[partition]

    def reached(self, partition: int, position: int) -> bool:
        """Note the consumer's position; True when this completed the partition."""
        if partition in self.todo and position >= self.ends[partition]:
            self.todo.discard(partition)
            return True
        return False

    @property
    def done(self) -> bool:
        return not self.todo


def topic_missing(topic: str, existing: set[str], bootstrap: str, fix: str) -> MissingTopic:
    """The missing-topic error (with the closest existing name) and its fix."""
    return MissingTopic(f"{missing_topic(topic, existing, bootstrap)}. {fix}")


async def read_to_end(settings: Settings, topic: str, sink: RecordSink, *, fix: str) -> int:
    """Hand every record of ``topic`` present at start to ``sink``; the number read.

    Raises KafkaUnavailable, MissingTopic (its message ends with ``fix``) or ReadStopped."""
    stop = stop_on_signals()
    consumer = AIOKafkaConsumer(
        **aiokafka_kwargs(settings),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    if not await start_client(consumer, settings, stop):
        raise ReadStopped("stopped before Kafka answered")
    try:
        return await _read(consumer, settings, topic, sink, stop, fix)
    except KafkaError as exc:
        raise unreachable(settings, exc) from None
    except TimeoutError:
        timeout = settings.kafka_startup_timeout_seconds
        raise unreachable(settings, f"no answer within {timeout:g} s") from None
    finally:
        await consumer.stop()


async def _read(
    consumer: AIOKafkaConsumer,
    settings: Settings,
    topic: str,
    sink: RecordSink,
    stop: asyncio.Event,
    fix: str,
) -> int:
    stall = settings.kafka_startup_timeout_seconds
    counts = await partition_counts(settings, stall)
    if not counts.get(topic):
        raise topic_missing(topic, set(counts), settings.kafka_bootstrap, fix)
    tps = [TopicPartition(topic, p) for p in range(counts[topic])]
    consumer.assign(tps)
    async with asyncio.timeout(stall):
        begins = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
    progress = UpToEnd(
        {tp.partition: o for tp, o in begins.items()}, {tp.partition: o for tp, o in ends.items()}
    )
    await consumer.seek_to_beginning(*tps)
    read = 0
    last_progress = time.monotonic()
    while not progress.done:
        if stop.is_set():
            raise ReadStopped(f"stopped after {read} records, before the end of {topic}")
        todo = [TopicPartition(topic, p) for p in sorted(progress.todo)]
        batches = await consumer.getmany(*todo, timeout_ms=POLL_MS)
        for tp, messages in batches.items():
            for message in messages:
                if message.value is not None and progress.wanted(tp.partition, message.offset):
                    sink(message.value, f"partition {tp.partition} offset {message.offset}")
                    read += 1
        moved = bool(batches)
        for tp in todo:
            moved |= progress.reached(tp.partition, await consumer.position(tp))
        now = time.monotonic()
        if moved:
            last_progress = now
        elif now - last_progress > stall:
            raise unreachable(
                settings,
                f"no progress for {stall:g} s reading {topic} "
                f"({len(progress.todo)} of {len(tps)} partitions unfinished)",
            )
    return read


async def partition_counts(settings: Settings, timeout: float) -> dict[str, int]:
    """Every topic's partition count. The whole list, never named topics: naming a missing
    topic in a metadata request may create it on brokers with auto.create.topics.enable."""
    admin = AIOKafkaAdminClient(**aiokafka_kwargs(settings), client_id=f"{settings.app_id}-reader")
    try:
        async with asyncio.timeout(timeout):
            await admin.start()
            return reported_counts(await admin.describe_topics())
    finally:
        await admin.close()
