"""The checkpoint: the one place where a batch's effects leave the process, in order.

``docs/protocol.md`` has the order and what a crash right after each step leaves:

1. the output records (decisions, conversions, dead letters; with the catalog fan-out,
   its interest, fan-out and mark records; with re-keying, the forwarded input and the
   sources' marks), leaving out decisions already delivered;
2. the Redis ledger: erased users' keys deleted, then contacts and sent marks, once the
   broker has the records;
3. one changelog record per dirty user, then the local store (never ahead of the
   changelog); the products table the same way;
4. the messages are acknowledged, so that Faust commits their offsets (in offset order).

Any failure raises: the worker stops, and its partitions start again from their committed
offsets and their changelog.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from stream.catalog_fanout import CatalogFanout
from stream.metrics import NudgeMetrics
from stream.outputs import Outputs
from stream.redis_facts import RedisFacts
from stream.rekeying import Rekeying


class Broker(Protocol):
    """The Kafka producer: ``send`` queues a record and returns its delivery future."""

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        partition: int | None,
        headers: list[tuple[str, bytes]] | None,
    ) -> Awaitable[Any]: ...


class LocalStore(Protocol):
    """The users table's local store (RocksDB)."""

    def get(self, key: bytes) -> bytes | None: ...
    def write(self, rows: Sequence[tuple[int, bytes, bytes | None, int]]) -> None:
        """Rows ``(partition, key, value or None to delete, changelog offset)``, once the
        changelog has them."""


class Checkpoint:
    def __init__(
        self,
        *,
        changelog: str,
        store: LocalStore,
        broker: Broker,
        facts: RedisFacts,
        metrics: NudgeMetrics,
        ack: Callable[[list[Any]], Awaitable[None]],
        monotonic: Callable[[], float],
        catalog: CatalogFanout | None,
        rekeying: Rekeying | None = None,
    ) -> None:
        self._changelog = changelog
        self._store = store
        self._broker = broker
        self._facts = facts
        self._metrics = metrics
        self._ack = ack
        self._monotonic = monotonic
        self._catalog = catalog
        self._rekeying = rekeying
        #: Trigger ids found on the output topic at the last assignment (stream.recent_sends).
        self.recently_sent: set[str] = set()

    async def write(self, out: Outputs, acks: list[Any]) -> None:
        started = self._monotonic()
        # 1. Output records (idempotency: a decision already delivered is never sent twice).
        sent_ids = out.sent_ids()
        already = self.recently_sent.intersection(sent_ids)
        already |= await self._facts.already_sent(sent_ids)
        records = list(out.kafka_records(already))
        if self._rekeying is not None:  # forwarded input, then the marks that vouch for it
            records += self._rekeying.kafka_records()
        if self._catalog is not None:  # interest, fan-out and their marks
            records += self._catalog.kafka_records()
        deliveries = [await self._broker.send(*record) for record in records]
        for delivery in deliveries:
            await delivery
        self._metrics.decided(out.decisions(), out.conversions(), already)
        # 2. The ledger, once the broker has the records: erased users' keys go, then the
        # contacts and sent marks (if Redis fails now, the records are out; only the marks
        # are lost; erasures are retried).
        await self._facts.erase(out.erased())
        contacts = out.contacts()
        kept = {t for _, t, _ in contacts}
        await self._facts.record(contacts, [t for t in sent_ids if t not in already and t in kept])
        # 3. One changelog record per dirty user, then the local store.
        rows = out.rows()
        if rows:
            pending = [
                (p, key, value, await self._broker.send(self._changelog, key, value, p, None))
                for p, key, value in rows
            ]
            written = [(p, key, value, (await d).offset) for p, key, value, d in pending]
            self._store.write(written)
        if self._catalog is not None:  # the products table the same way; its acks in order
            await self._catalog.write_rows(self._broker)
            acks = self._catalog.acks(acks)
        if self._rekeying is not None:  # the re-keyed topic in order, the apart sources
            acks = self._rekeying.acks(acks)
        # 4. Offsets: acknowledged messages are committed by Faust (in offset order).
        await self._ack(acks)
        self._metrics.checkpoint.observe(self._monotonic() - started)
