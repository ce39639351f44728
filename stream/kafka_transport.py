"""Faust's aiokafka transport, with three changes: partitions restart where they must, the
producer is idempotent, and metadata updates are paced.

After each rebalance (and whenever Faust's fetch loop finds flow stopped) Faust seeks
its partitions "to their committed offsets", because it may have fetched records it
then dropped: a batch is cut short when flow stops or the generation changes, and the
client's position has already moved past those records. aiokafka's
``seek_to_committed`` only seeks partitions with a committed offset above 0; one that
has none yet (nothing committed since the topic was created) or whose committed offset
is 0 keeps the client's advanced position. The records dropped there are never read
again, and the next commit of a later offset makes the loss permanent.

That is what lost events after a worker was killed in the first seconds of a
partition's life (reproduced by ``tests/reliability/test_crash.py``): the restarted
worker began those partitions at their end. Here such partitions are sought to their
first offset, which is where ``consumer_auto_offset_reset="earliest"`` says reading
starts when nothing was committed.

The producer is idempotent (as Java clients are by default since Kafka 3.0): when a
broker restarts, a produce request whose acknowledgement was lost is retried, and
without idempotence the retry could write a reminder, or a state change, twice.

And metadata updates are paced (:func:`pace_metadata_updates`): with the broker away,
aiokafka's fetch loop asked for metadata in a busy loop (a core at 100 %, issue 23).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka.client import AIOKafkaClient
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP


class Consumer(faust_aiokafka.Consumer):
    async def seek_to_committed(self) -> Mapping[TP, int]:
        committed = await super().seek_to_committed()
        consumed = self.app.topics.acking_topics  # the agents' sources, not changelogs
        unset = [
            tp
            for tp, offset in committed.items()
            if tp.topic in consumed and (offset is None or offset <= 0)
        ]
        if unset:
            earliest = await self.earliest_offsets(*unset)
            await self.seek_wait({tp: earliest.get(tp) or 0 for tp in unset})
        return committed


class Producer(faust_aiokafka.Producer):
    def _settings_extra(self) -> Mapping[str, Any]:
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}


class Transport(faust_aiokafka.Transport):
    Consumer = Consumer
    Producer = Producer


#: Failed metadata updates are retried after this much, doubling while they fail.
METADATA_BACKOFF_SECONDS = (0.1, 2.0)


@dataclass
class _Pace:
    last: float = 0.0
    delay: float = METADATA_BACKOFF_SECONDS[0]


def pace_metadata_updates() -> None:
    """aiokafka asks for metadata again at once when an update finds no leader or no
    broker (aiokafka#496): with the broker away or shutting down, the consumer's fetch
    loop then spins on a core, and a producer waiting for a topic's metadata does too.
    Here every client's metadata updates are at least 0.1 s apart, and a failed one waits
    0.1 s, doubling to 2 s while they keep failing (back to 0.1 s after a success).
    Idempotent; the worker calls it once (``stream.app``)."""
    original = AIOKafkaClient._metadata_update
    if getattr(original, "paced", False):
        return
    paces: weakref.WeakKeyDictionary[AIOKafkaClient, _Pace] = weakref.WeakKeyDictionary()

    async def paced(self: AIOKafkaClient, cluster_metadata: Any, topics: Any) -> bool:
        pace = paces.setdefault(self, _Pace())
        wait = pace.last + METADATA_BACKOFF_SECONDS[0] - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        updated = bool(await original(self, cluster_metadata, topics))
        if updated:
            pace.delay = METADATA_BACKOFF_SECONDS[0]
        else:
            await asyncio.sleep(pace.delay)
            pace.delay = min(METADATA_BACKOFF_SECONDS[1], pace.delay * 2)
        pace.last = time.monotonic()
        return updated

    paced.paced = True  # type: ignore[attr-defined]
    AIOKafkaClient._metadata_update = paced  # type: ignore[method-assign]
