"""Faust's aiokafka transport, with two changes: partitions restart where they must, and
the producer is idempotent.

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
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
