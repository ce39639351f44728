"""The catalog fan-out's hooks into the micro-batch (``stream.batches``): both of its sides.

:class:`CatalogFanout` exists only when ``back_in_stock`` or ``price_drop`` is enabled. The
worker's one agent also reads ``shop.catalog``, ``nudge.interest`` and
``nudge.catalog-fanout``, all with the input partition count, so partition *p* of every
topic is the same worker's and one batch, one checkpoint covers both sides:

- **user side** (partition *p* of the user topics): every event read that shows interest
  (view, cart add, wishlist; an order removes it) becomes an :class:`Interest` record keyed
  by product, and the partition's *input* watermark is announced to every interest
  partition (:class:`Mark`, at most every ``mark_interval``); fan-out messages keyed by the
  user are merged with the user's own events in event-time order (an external topic of the
  partition's :class:`~stream.watermark.Watermark`, bounded by the product partitions'
  announced fan-out watermarks) and applied through the driver like any event;
- **product side** (partition *p* of ``shop.catalog`` and ``nudge.interest``):
  :class:`~stream.catalog_side.ProductPartition`.

Catalog events as shops have them (contract 9): with re-keying (``stream.rekeying``), the
catalog topic is one more input topic of its sources. A catalog event on the partition of
its product (a topic with the worker's count) is applied there; any other — a misplaced
key, a topic of another count, ``NUDGE_REKEY=all`` — is forwarded, keyed by product, to
its product's partition of ``nudge.rekeyed`` (whose murmur2 partitioning is the products
table's), where it waits in the product partition's watermark as an external topic bounded
by the sources' announced read horizons — the user events' mechanism, not a second one.

Erasure and retention (contract 8.5, ``CatalogBook.forget_user`` in replay): a
``user_erased`` read becomes a :class:`Forget` to every interest partition, like interest
(as read, so the partition's marks vouch for it); a user the user side deletes at a
retention expiry becomes one when deleted (:meth:`CatalogFanout.forget`).

The checkpoint writes this module's Kafka records with the outputs (step 1: interest, marks,
fan-out), its table rows with the users' changelog (step 3) and store (step 4), and its
acknowledgements with the batch's (step 5, each topic partition in offset order).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

from stream.catalog_side import ProductPartition
from stream.catalog_wire import (
    Change,
    Changes,
    Forget,
    Interest,
    Mark,
    decode,
    decode_forget,
    encode,
    forget_prefix,
    interest_of,
    partition_of,
    product_key,
    user_of,
)
from stream.product_rows import FanOut, ProductStore, Rows
from stream.rekeying import Rekeying
from stream.watermark import EndOffset, Gate, Marks, through_gates
from triggers.catalog import CatalogChanged
from triggers.catalog_interest import CatalogBook
from triggers.event_engagement import UserErased
from triggers.events import Event, InvalidEvent, ProductUpdated, parse_catalog_event
from triggers.rules import Rules
from triggers.timestamps import to_millis

log = logging.getLogger("nudge.catalog")

PRODUCT = product_key("")
KafkaRecord = tuple[str, bytes | None, bytes, int | None, list[tuple[str, bytes]] | None]


@dataclass(frozen=True)
class CatalogTopics:
    catalog: str  # shop.catalog (the shop's, keyed by product)
    interest: str  # nudge.interest (internal, keyed by product)
    fanout: str  # nudge.catalog-fanout (internal, keyed by user)
    changelog: str  # the products table's changelog


def enabled(rules: Rules) -> bool:
    triggers = rules.triggers
    return bool(triggers.back_in_stock.enabled or triggers.price_drop.enabled)  # type: ignore[attr-defined]


class CatalogFanout:
    def __init__(
        self,
        *,
        rules: Rules,
        topics: CatalogTopics,
        partitions: int,
        store: ProductStore,
        max_hold: float,
        unknown_grace_ms: int,
        mark_interval: float,
        monotonic: Callable[[], float],
        max_message_bytes: int,
        on_swept: Callable[[int], object] | None = None,
    ) -> None:
        """``on_swept``: told the rows each sweep step deleted (a metric)."""
        self.topics = topics
        self._partitions = partitions
        self._store = store
        self._book = CatalogBook.of(rules)
        self._erasure_memory = rules.erasure_memory
        #: How long a user's event may wait for the fan-out watermark.
        self.max_hold = max_hold
        self._grace_ms = unknown_grace_ms
        self._mark_interval = mark_interval
        self._monotonic = monotonic
        self._max_bytes = max_message_bytes
        self._products: dict[int, ProductPartition] = {}
        self._fanin: dict[int, Marks] = {}  # user partition -> the product partitions' marks
        self._gates: dict[int, Gate] = {}  # user partition -> its fan-out acknowledgements
        #: user partition -> fan-out message (its id) -> its changes not applied yet
        self._pending: dict[int, dict[int, int]] = {}
        self._marked: dict[tuple[str, int], float] = {}  # last mark sent (topic, source)
        self._on_swept = on_swept
        self._rekeying: Rekeying | None = None
        self._direct = True  # partition p of the catalog topic is product partition p
        self._sources = range(0)  # the catalog topic's source ids (re-keying)
        self._batch()

    def use_rekeying(self, rekeying: Rekeying | None) -> None:
        """Catalog events go through re-keying too (the catalog topic one of its inputs)."""
        self._rekeying = rekeying
        catalog = self.topics.catalog
        if rekeying is None or catalog not in rekeying.sources.counts:
            return
        self._direct = catalog in rekeying.direct
        first = rekeying.sources.id(catalog, 0)
        self._sources = range(first, first + rekeying.sources.counts[catalog])

    def _batch(self) -> None:
        self._rows = Rows(self._store)
        self._records: list[KafkaRecord] = []
        self._marks: list[KafkaRecord] = []
        self._acks: list[Any] = []
        self._dead: list[tuple[Any, InvalidEvent]] = []  # read apart, dead-lettered

    # -- assignment ---------------------------------------------------------------------

    def assigned(self, partitions: Iterable[int], starts: dict | None, now_ms: int) -> None:
        self._products, self._fanin, self._gates, self._marked = {}, {}, {}, {}
        self._pending = {}
        rekeying = self._rekeying
        for p in partitions:
            start = None if starts is None else starts.get((self.topics.catalog, p))
            prefix = forget_prefix(p)
            forgotten = {
                user_of(k, prefix): decode_forget(v) for k, v in self._store.scan(p, prefix)
            }
            self._products[p] = ProductPartition(
                p,
                catalog_topic=self.topics.catalog,
                partitions=self._partitions,
                book=self._book,
                starts=None if start is None else {self.topics.catalog: start},
                assigned_ms=now_ms,
                max_hold=self.max_hold,
                unknown_grace_ms=self._grace_ms,
                monotonic=self._monotonic,
                forgotten=forgotten,
                erasure_memory=self._erasure_memory,
                direct=self._direct,
                rekeyed=None if rekeying is None else rekeying.external(p)[rekeying.topic],
                rekeyed_hold=0.0 if rekeying is None else rekeying.max_hold,
            )
            hold_ms = int(self.max_hold * 1000)
            self._fanin[p] = Marks(
                self._partitions, now_ms, hold_ms, self.max_hold, self._monotonic
            )
            self._gates[p] = Gate()
            self._pending[p] = {}
        self._batch()

    def revoked(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            self._products.pop(p, None)
            self._fanin.pop(p, None)
            self._gates.pop(p, None)
            self._pending.pop(p, None)

    def external(self, partition: int) -> dict[str, Callable[[int], int]]:
        """The user partition's external topic: the fan-out, and its bound."""
        return {self.topics.fanout: self._fanin[partition].bound}

    def internal(self) -> tuple[str, str]:
        return (self.topics.interest, self.topics.fanout)

    def end_topics(self) -> tuple[str, ...]:
        return (self.topics.catalog,) if self._direct else ()

    def read_bound(self, partition: int, now_ms: int, end_offset: EndOffset) -> int:
        """How far partition *p* of the catalog topic (a re-keying source) has been read."""
        return self._products[partition].read_bound(now_ms, end_offset)

    # -- reading ------------------------------------------------------------------------

    def takes(self, topic: str) -> bool:
        t = self.topics
        return topic == t.catalog or topic == t.interest or topic == t.fanout

    def read(self, item: Any, now: float) -> list[tuple[int, CatalogChanged]]:
        """A message of one of the fan-out's topics. A fan-out message's users' changes,
        for the partition's user watermark, are returned as ``(ts ms, change)`` (the message
        is acknowledged once each of them is applied); everything else is kept here."""
        message = item.message
        p, topic = message.partition, message.topic
        if topic == self.topics.catalog:
            self._read_catalog(item, self._parse(message.value or b""), now)
            return []
        decoded = self._decode(message)
        if topic == self.topics.interest:
            if type(decoded) is Mark:
                self._products[p].marks.note(decoded.source, decoded.ms)
            kind = type(decoded)
            record = decoded if kind is Interest or kind is Forget else None
            self._products[p].add_interest(item, record, self._rows)
            return []
        gate = self._gates[p]
        gate.read(item)
        kind = type(decoded)
        if kind is Changes and decoded.changes:
            self._pending[p][id(item)] = len(decoded.changes)
            return [(to_millis(c.ts), c) for c in decoded.changes]
        if kind is Change:  # one user: the shape before Changes, still on the topic
            self._pending[p][id(item)] = 1
            return [(to_millis(decoded.change.ts), decoded.change)]
        if kind is Mark:
            self._fanin[p].note(decoded.source, decoded.ms)
        gate.done(item)
        return []

    def _parse(self, raw: bytes) -> ProductUpdated | InvalidEvent:
        try:
            return parse_catalog_event(raw, max_bytes=self._max_bytes)
        except InvalidEvent as exc:
            return exc.with_traceback(None)

    def _read_catalog(self, item: Any, event: ProductUpdated | InvalidEvent, now: float) -> None:
        """A message of the catalog topic: applied on its partition if it is its product's,
        else forwarded to it (an invalid one is dead-lettered by its reader, in its turn)."""
        message, rekeying = item.message, self._rekeying
        p, valid = message.partition, not isinstance(event, InvalidEvent)
        owner = partition_of(event.product_id.encode(), self._partitions) if valid else p  # type: ignore[union-attr]
        if self._direct and (owner == p or rekeying is None):
            self._products[p].add_catalog(message.offset, item, event, now)
            return
        assert rekeying is not None
        if valid:
            rekeying.forward(message, event.product_id, owner)  # type: ignore[union-attr]
        if self._direct:  # passes through, so the topic is acknowledged in offset order
            self._products[p].add_catalog(message.offset, item, event, now, passing=True)
            return
        if not valid:
            self._dead.append((item, event))  # type: ignore[arg-type]
        rekeying.read_apart(item, to_millis(event.ts) if valid else None, now)  # type: ignore[union-attr]

    def read_forwarded(
        self, item: Any, source: int, payload: bytes, offset: int, now: float
    ) -> bool:
        """A forwarded record of ``nudge.rekeyed``: a catalog event (True) waits in its
        product partition's watermark; anything else is the user side's (False)."""
        if source not in self._sources:
            return False
        event = self._parse(payload)
        message = item.message
        if isinstance(event, InvalidEvent):  # dead-lettered by the worker that read it
            self._acks.append(item)
            return True
        self._products[message.partition].add_catalog(
            message.offset, item, event, now, forwarded=True
        )
        return True

    def _decode(self, message: Any) -> Any:
        try:
            return decode(message.value or b"")
        except (msgspec.DecodeError, msgspec.ValidationError):
            log.warning("an unreadable message on %s[%d]", message.topic, message.partition)
            return None

    def note(self, event: Event) -> None:
        """A user event read: its interest, to the product side (test events never count;
        a re-delivered one changes nothing there)."""
        if event.test:
            return
        if type(event) is UserErased:
            self._forget(Forget(event.user_id, event.ts))
            return
        for record in interest_of(event):
            key = record.product_id.encode()
            p = partition_of(key, self._partitions)
            self._records.append((self.topics.interest, key, encode(record), p, None))

    def forget(self, user_id: str, at: datetime) -> None:
        """A user deleted at a retention expiry ``at`` (contract 8.5): their rows go."""
        self._forget(Forget(user_id, at, erased=False))

    def _forget(self, record: Forget) -> None:
        """To every interest partition: the user's rows may be on any of them."""
        key, value = record.user_id.encode(), encode(record)
        self._records += (
            (self.topics.interest, key, value, q, None) for q in range(self._partitions)
        )

    # -- a batch --------------------------------------------------------------------------

    def products(
        self, partitions: Iterable[int], end_offset: EndOffset, now: float, now_ms: int
    ) -> list[tuple[Any, InvalidEvent]]:
        """Run the product side of these partitions; returns the catalog messages to
        dead-letter."""
        invalid, self._dead = self._dead, []
        for p in partitions:
            part = self._products.get(p)
            if part is None:
                continue
            out = FanOut()
            for item, error in part.release(end_offset, now, now_ms, self._rows, out):
                self._acks.append(item)
                if error is not None:
                    invalid.append((item, error))
            if part.swept and self._on_swept is not None:
                self._on_swept(part.swept)
            fanout = self.topics.fanout
            self._records += ((fanout, key, value, q, None) for key, value, q in out.records)
            self._mark(fanout, p, part.horizon(now_ms, end_offset), now)
            self._acks += part.gate.ready()
        return invalid

    def user_mark(self, partition: int, horizon_ms: int, now: float) -> None:
        """Announce a user partition's input watermark: its interest up to it is written."""
        self._mark(self.topics.interest, partition, horizon_ms, now)

    def _mark(self, topic: str, source: int, ms: int, now: float) -> None:
        last = self._marked.get((topic, source))
        if last is not None and now - last < self._mark_interval:
            return
        self._marked[(topic, source)] = now
        value = encode(Mark(source, ms))
        self._marks += ((topic, None, value, q, None) for q in range(self._partitions))

    # -- the checkpoint -------------------------------------------------------------------

    def kafka_records(self) -> list[KafkaRecord]:
        """Interest and fan-out records, then the marks that vouch for them."""
        return [*self._records, *self._marks]

    def rows(self) -> list[tuple[int, bytes, bytes | None]]:
        """The dirty rows, each product's own row (which remembers its catalog event ids)
        after its users' rows: a changelog cut short by a crash never holds the id of an
        event whose armed users it does not hold."""
        rows = [(p, key, value) for key, (p, value) in self._rows.dirty.items()]
        return sorted(rows, key=lambda row: row[1].startswith(PRODUCT))

    async def write_rows(self, broker: Any) -> None:
        """The products table's rows: its changelog (all awaited), then the local store."""
        rows = self.rows()
        if not rows:
            return
        changelog = self.topics.changelog
        pending = [
            (p, key, value, await broker.send(changelog, key, value, p, None))
            for p, key, value in rows
        ]
        self._store.write([(p, key, value, (await d).offset) for p, key, value, d in pending])

    def _last_change(self, item: Any) -> bool:
        """One of a fan-out message's changes is applied: is it the message's last?"""
        pending = self._pending[item.message.partition]
        left = pending.pop(id(item), 1) - 1
        if left > 0:
            pending[id(item)] = left
        return left <= 0

    def acks(self, batch: Sequence[Any]) -> list[Any]:
        """The batch's acknowledgements with the fan-out's, each topic partition in order."""
        out = through_gates(batch, self.topics.fanout, self._gates, self._last_change)
        out += self._acks
        self._batch()
        return out
