"""What ``marketing.triggers`` received lately: the last guard against sending twice.

A reminder is sent, then the user's state that says so is written to the changelog
(only once the broker has the reminder: ``stream.app._FaustUsers``), then its id is
marked sent in Redis. A worker killed between the first step and the others leaves a
reminder on the topic that its successor does not know of: the state says it is due,
Redis has no mark, and it would be sent again. So after every assignment the worker
reads the trigger ids of the last ``window`` seconds of the output topic, and skips
those when it fires.
"""

from __future__ import annotations

import logging
import time

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from stream.kafka_auth import aiokafka_kwargs
from stream.settings import Settings

log = logging.getLogger("nudge.recent_sends")

READ_TIMEOUT_SECONDS = 60.0


async def recently_sent(settings: Settings, window_seconds: float) -> set[str]:
    """Trigger ids on the output topic with a record time in the last ``window_seconds``."""
    consumer = AIOKafkaConsumer(
        **aiokafka_kwargs(settings), group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        # A consumer without a subscription has no metadata for the topic: ask the admin API
        # (an existing output topic may have any partition count).
        tps = [
            TopicPartition(settings.topic_triggers, p)
            for p in range(await _partition_count(settings))
        ]
        if not tps:
            return set()
        consumer.assign(tps)
        since = int((time.time() - window_seconds) * 1000)
        starts = await consumer.offsets_for_times(dict.fromkeys(tps, since))
        ends = await consumer.end_offsets(tps)
        todo = {}
        for tp in tps:
            start = starts.get(tp)
            if start is not None and start.offset < ends[tp]:
                consumer.seek(tp, start.offset)
                todo[tp] = ends[tp]
        ids: set[str] = set()
        give_up = time.monotonic() + READ_TIMEOUT_SECONDS
        while todo:
            batch = await consumer.getmany(*todo, timeout_ms=1000)
            for records in batch.values():
                for record in records:
                    try:
                        ids.add(orjson.loads(record.value)["trigger_id"])
                    except (orjson.JSONDecodeError, KeyError, TypeError):
                        continue
            for tp, end in list(todo.items()):
                if await consumer.position(tp) >= end:
                    del todo[tp]
            if todo and time.monotonic() > give_up:
                log.warning("recent sends read partly (%d partitions left)", len(todo))
                break
        return ids
    finally:
        await consumer.stop()


async def _partition_count(settings: Settings) -> int:
    admin = AIOKafkaAdminClient(**aiokafka_kwargs(settings))
    await admin.start()
    try:
        (described,) = await admin.describe_topics([settings.topic_triggers])
    finally:
        await admin.close()
    return len(described.get("partitions") or [])
