"""With the broker away, a metadata update fails at once; aiokafka asks again at once
(aiokafka#496), so the worker's fetch loop spun a core at 100 % (issue 23). The worker
paces every client's metadata updates (``stream.kafka_transport``)."""

from __future__ import annotations

import socket
import time

import pytest
from aiokafka.client import AIOKafkaClient

from stream.kafka_transport import METADATA_BACKOFF_SECONDS, pace_metadata_updates

pytestmark = pytest.mark.unit


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def updates_within(seconds: float) -> tuple[int, float]:
    """Failed metadata updates one after the other for ``seconds``: how many, CPU-s."""
    client = AIOKafkaClient(bootstrap_servers=f"127.0.0.1:{closed_port()}")
    count, began, cpu = 0, time.monotonic(), time.process_time()
    try:
        while time.monotonic() - began < seconds:
            assert await client._metadata_update(client.cluster, set()) is False
            count += 1
    finally:
        await client.close()
    return count, time.process_time() - cpu


async def test_failed_metadata_updates_back_off_instead_of_spinning() -> None:
    pace_metadata_updates()
    pace_metadata_updates()  # idempotent: one pacing, not two
    count, cpu = await updates_within(1.5)
    # 0.1 s, 0.2 s, 0.4 s, 0.8 s...: a handful, where unpaced aiokafka makes thousands.
    first, ceiling = METADATA_BACKOFF_SECONDS
    assert 2 <= count <= 5 and first < ceiling
    assert cpu < 0.5
