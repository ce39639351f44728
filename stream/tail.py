"""``nudge tail TOPIC``: print a topic's records (e.g. ``marketing.triggers``) as JSON Lines."""

from __future__ import annotations

import asyncio
import contextlib
import sys

from aiokafka import AIOKafkaConsumer

from stream.kafka_auth import aiokafka_kwargs
from stream.settings import Settings


async def tail(settings: Settings, topic: str, *, from_beginning: bool, limit: int) -> int:
    consumer = AIOKafkaConsumer(
        topic,
        **aiokafka_kwargs(settings),
        group_id=None,
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False,
    )
    await consumer.start()
    shown = 0
    try:
        async for message in consumer:
            sys.stdout.buffer.write((message.value or b"") + b"\n")
            sys.stdout.flush()
            shown += 1
            if limit and shown >= limit:
                break
    finally:
        await consumer.stop()
    return shown


def tail_command(topic: str, *, from_beginning: bool, limit: int) -> int:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(tail(Settings(), topic, from_beginning=from_beginning, limit=limit))
    return 0
