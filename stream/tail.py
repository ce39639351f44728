"""``nudge tail TOPIC``: print a topic's records (e.g. ``marketing.triggers``) as JSON Lines.

A topic that does not exist is an error naming it (with the closest existing name),
not an endless wait: the topic list is read before subscribing, so nothing is created.
"""

from __future__ import annotations

import asyncio
import difflib
import os
import sys

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from stream.client_start import KafkaUnavailable, start_client, stop_on_signals, unreachable
from stream.kafka_auth import aiokafka_kwargs
from stream.settings import Settings, SettingsError, load_settings

POLL_MS = 500  # how often a quiet topic checks for a stop request


class MissingTopic(LookupError):
    """The topic does not exist; the message names it and the closest existing one."""


def missing_topic(topic: str, existing: set[str], bootstrap: str) -> MissingTopic:
    visible = sorted(name for name in existing if not name.startswith("__"))
    close = difflib.get_close_matches(topic, visible, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return MissingTopic(f"topic {topic!r} does not exist on {bootstrap}{hint}")


async def tail(settings: Settings, topic: str, *, from_beginning: bool, limit: int) -> int:
    """Print records until ``limit``, SIGINT or SIGTERM; the number shown.

    Raises KafkaUnavailable or MissingTopic."""
    stop = stop_on_signals()
    consumer = AIOKafkaConsumer(
        **aiokafka_kwargs(settings),
        group_id=None,
        auto_offset_reset="earliest" if from_beginning else "latest",
        enable_auto_commit=False,
    )
    if not await start_client(consumer, settings, stop):
        return 0
    shown = 0
    try:
        existing = await consumer.topics()
        if topic not in existing:
            raise missing_topic(topic, existing, settings.kafka_bootstrap)
        consumer.subscribe([topic])
        out = sys.stdout.buffer
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=POLL_MS)
            for messages in batches.values():
                for message in messages:
                    out.write((message.value or b"") + b"\n")
                    shown += 1
                    if limit and shown >= limit:
                        stop.set()
                        break
                if stop.is_set():
                    break
            out.flush()
    except KafkaError as exc:
        raise unreachable(settings, exc) from None
    finally:
        await consumer.stop()
    return shown


def tail_command(topic: str, *, from_beginning: bool, limit: int) -> int:
    """Exit status: 0 when done or stopped, 1 when Kafka or the topic cannot be used,
    2 for bad settings."""
    try:
        settings, warnings = load_settings()
    except SettingsError as exc:
        print(f"nudge tail: {exc}", file=sys.stderr)
        return 2
    for warning in warnings:
        print(f"nudge tail: warning: {warning}", file=sys.stderr)
    try:
        asyncio.run(tail(settings, topic, from_beginning=from_beginning, limit=limit))
    except (KafkaUnavailable, MissingTopic) as exc:
        print(f"nudge tail: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # the reader went away (e.g. `| head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except OSError as exc:  # e.g. a TLS certificate file named in the settings is missing
        print(f"nudge tail: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return 0
