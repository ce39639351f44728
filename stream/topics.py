"""Create Nudge's topics if missing and refuse to start on a partition-count mismatch."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from stream.kafka_auth import aiokafka_kwargs
from stream.settings import Settings

TICK_RETENTION_MS = 3_600_000  # ticks are worthless after a few seconds


class TopicLayoutError(RuntimeError):
    """The existing topics cannot be co-partitioned with per-user state."""


async def ensure_topics(settings: Settings) -> dict[str, int]:
    """Create missing topics with ``settings.partitions``; return each topic's partition count.

    The four input topics and the internal tick topic must all have the same
    partition count: a user's events, their state and their deadline ticks
    must land on the same partition number.
    """
    admin = AIOKafkaAdminClient(**aiokafka_kwargs(settings), client_id=f"{settings.app_id}-admin")
    await admin.start()
    try:
        wanted = [
            *settings.input_topics,
            settings.topic_ticks,
            settings.topic_triggers,
            settings.topic_audit,
            settings.topic_dlq,
        ]
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                name,
                num_partitions=settings.partitions,
                replication_factor=settings.replication_factor,
                topic_configs=(
                    {"retention.ms": str(TICK_RETENTION_MS)} if name == settings.topic_ticks else {}
                ),
            )
            for name in wanted
            if name not in existing
        ]
        if missing:
            await admin.create_topics(missing)
        described = await admin.describe_topics(wanted)
    finally:
        await admin.close()
    counts = {t["topic"]: len(t["partitions"]) for t in described}
    co_partitioned = [*settings.input_topics, settings.topic_ticks]
    distinct = {counts[name] for name in co_partitioned}
    if len(distinct) != 1:
        layout = ", ".join(f"{name}={counts[name]}" for name in co_partitioned)
        raise TopicLayoutError(
            "input topics and the tick topic must have the same partition count "
            f"(found {layout}); repartition them or point NUDGE_TOPIC_* at matching topics"
        )
    return counts
