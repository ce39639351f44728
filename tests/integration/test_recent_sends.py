"""The read-back of recent sends against a real broker: the last guard against sending twice."""

from __future__ import annotations

import uuid

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from stream.recent_sends import recently_sent
from stream.settings import Settings
from tests.integration.harness import create_topics

pytestmark = pytest.mark.integration


async def test_trigger_ids_on_every_partition_of_the_output_topic_are_found(
    kafka_bootstrap: str,
) -> None:
    topic = f"t{uuid.uuid4().hex[:8]}.marketing.triggers"
    await create_topics(kafka_bootstrap, [topic], 3)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for partition in range(3):
            value = orjson.dumps({"trigger_id": f"id-{partition}"})
            await producer.send_and_wait(topic, value=value, partition=partition)
        await producer.send_and_wait(topic, value=b"not json", partition=0)
    finally:
        await producer.stop()
    settings = Settings(kafka_bootstrap=kafka_bootstrap, topic_triggers=topic)
    assert await recently_sent(settings, 600) == {"id-0", "id-1", "id-2"}
