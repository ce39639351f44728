"""The scripted shell (``tests.unit.shell_harness``) with the catalog fan-out switched on.

:class:`CatalogShell` owns every partition (default two) of the user topics, ``shop.catalog``
and the two internal topics, whose records the fake broker writes and :meth:`unread` reads
back like any input. A user's events go to the partition the default partitioner gives
their key (as the shop's producers do), a product's catalog events likewise. The products
table's local store is :class:`ProductStore` (a sorted prefix scan); after a crash it is
rebuilt from its changelog (tombstones delete). :meth:`CatalogShell.replay_json` is
``nudge replay`` on the same lines, user events before catalog events of the same time.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

import orjson

from stream.catalog_fanout import CatalogFanout, CatalogTopics
from stream.catalog_wire import partition_of
from stream.rekeying import Rekeying
from tests.unit.shell_fakes import TOPICS, FakeMessage, Journal, Sent
from tests.unit.shell_harness import Shell
from tests.unit.timelines import iso, wire
from triggers.events import INPUT_TOPIC_OF_TYPE
from triggers.records import record_to_json
from triggers.replay import ReplayResult, replay_lines
from triggers.rules import Rules

CAT = CatalogTopics(
    catalog="shop.catalog",
    interest="nudge.interest",
    fanout="nudge.catalog-fanout",
    changelog="nudge-products-changelog",
)
REKEYED = "nudge.rekeyed"
INTERNAL = (CAT.interest, CAT.fanout, REKEYED)


class ProductStore:
    """The products table's local store: key -> (partition, value, changelog offset)."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.rows: dict[bytes, tuple[int, bytes, int]] = {}
        self.scans: list[bytes] = []

    def get(self, partition: int, key: bytes) -> bytes | None:
        row = self.rows.get(key)
        return row[1] if row is not None and row[0] == partition else None

    def scan(self, partition: int, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        self.scans.append(prefix)
        for key in sorted(k for k in self.rows if k.startswith(prefix)):
            if self.rows[key][0] == partition:
                yield key, self.rows[key][1]

    def scan_from(self, partition: int, start: bytes) -> Iterator[tuple[bytes, bytes]]:
        self.scans.append(b"from:" + start)
        for key in sorted(k for k in self.rows if k >= start):
            if self.rows[key][0] == partition:
                yield key, self.rows[key][1]

    def write(self, rows: Sequence[tuple[int, bytes, bytes | None, int]]) -> None:
        for partition, key, value, offset in rows:
            if value is None:
                self.rows.pop(key, None)
            else:
                self.rows[key] = (partition, value, offset)
        self.journal.log("store", tuple(key for _, key, _, _ in rows))

    @classmethod
    def from_changelog(cls, journal: Journal, records: Iterable[Sent]) -> ProductStore:
        store = cls(journal)
        for r in records:
            assert r.key is not None
            if r.value is None:
                store.rows.pop(r.key, None)
            else:
                store.rows[r.key] = (r.partition, r.value, r.offset)
        return store


class CatalogShell(Shell):
    def __init__(self, rules: Rules, start: datetime, *, partitions: int = 2, **kw: Any) -> None:
        self.pstore: ProductStore | None = None
        self.lines: list[tuple[datetime, int, bytes]] = []  # (time, 0 user / 1 catalog, line)
        self._cids = itertools.count(1)
        self.swept: list[int] = []  # rows each sweep step deleted
        super().__init__(rules, start, partitions=range(partitions), **kw)

    # -- the worker ---------------------------------------------------------------------

    def catalog_fanout(self) -> CatalogFanout:
        if self.pstore is None:
            self.pstore = ProductStore(self.journal)
        return CatalogFanout(
            rules=self.rules,
            topics=CAT,
            partitions=len(self.partitions),
            store=self.pstore,
            max_hold=30.0,
            unknown_grace_ms=10_000,
            mark_interval=0.0,
            monotonic=self.clock.monotonic,
            max_message_bytes=65536,
            on_swept=self.swept.append,
        )

    def consumed(self) -> tuple[str, ...]:
        return (*TOPICS.inputs, TOPICS.ticks, CAT.catalog, *INTERNAL)

    def restart(self, *, from_changelog: bool = True) -> None:
        if from_changelog:
            self.pstore = ProductStore.from_changelog(self.journal, self.broker.log(CAT.changelog))
        super().restart(from_changelog=from_changelog)

    # -- input --------------------------------------------------------------------------

    def user_event(self, kind: str, ts: datetime, user: str, **fields: Any) -> None:
        event_id = fields.pop("event_id", None) or f"e{next(self._ids)}"
        value = wire(kind, ts, user, event_id, **fields)
        self.lines.append((ts, 0, value))
        p = partition_of(user.encode(), len(self.partitions))
        self.produce(INPUT_TOPIC_OF_TYPE[kind], value, p, user.encode())

    def catalog(self, ts: datetime, product: str = "p1", **fields: Any) -> None:
        event_id = fields.pop("event_id", None) or f"c{next(self._cids)}"
        body = {"event_id": event_id, "type": "product_updated", "ts": iso(ts)}
        value = orjson.dumps(body | {"product_id": product} | fields)
        self.lines.append((ts, 1, value))
        p = partition_of(product.encode(), len(self.partitions))
        self.produce(CAT.catalog, value, p, product.encode())

    def deliver(self) -> None:
        """The internal topics' records, as the broker holds them, become readable input."""
        for sent in self.broker.sends:
            if sent.topic in INTERNAL:
                log = self.inputs.setdefault((sent.topic, sent.partition), [])
                if sent.offset == len(log):
                    log.append(
                        FakeMessage(sent.topic, sent.partition, sent.offset, sent.key, sent.value)
                    )

    async def list_end_offsets(self, tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        self.deliver()
        return await super().list_end_offsets(tps)

    async def pump(self, rounds: int = 4) -> None:
        """A tick on every partition, then batches until the fan-out's round trip is done
        (interest and marks to the product side, fan-out and marks back)."""
        for p in self.partitions:
            self.produce(TOPICS.ticks, b"", p)
        for _ in range(rounds):
            await self.poll()

    async def at(self, moment: datetime, rounds: int = 4) -> None:
        self.clock.set(max(self.clock.now, moment))
        await self.pump(rounds)

    # -- the oracle ---------------------------------------------------------------------

    def replay_result(self, until: datetime) -> ReplayResult:
        """``nudge replay`` on the lines in event-time order, user lines first at a tie."""
        ordered = [line for _, _, line in sorted(self.lines, key=lambda x: (x[0], x[1]))]
        result = replay_lines(ordered, self.rules, until, suppressed=self.ledger.suppressed)
        assert not result.invalid
        return result

    def replay_json(self, until: datetime) -> list[dict[str, Any]]:
        result = self.replay_result(until)
        return [orjson.loads(record_to_json(r)) for r in result.records]


class RekeyedCatalogShell(CatalogShell):
    """The catalog topic as shops have it (contract 9): ``catalog_partitions`` partitions
    (the user topics have the worker's count), each catalog event on a random partition
    with a random key (``seed``), re-keyed to its product's partition; the worker owns
    every partition of every topic."""

    def __init__(
        self,
        rules: Rules,
        start: datetime,
        *,
        catalog_partitions: int,
        seed: int = 0,
        everything: bool = False,
        **kw: Any,
    ) -> None:
        self.catalog_partitions = catalog_partitions
        self.everything = everything
        self.rng = random.Random(seed)
        self.forwarded: list[str] = []
        super().__init__(rules, start, **kw)

    def rekeying(self) -> Rekeying:
        counts = {t: len(self.partitions) for t in TOPICS.inputs}
        return Rekeying(
            topic=REKEYED,
            inputs=counts | {CAT.catalog: self.catalog_partitions},
            partitions=len(self.partitions),
            everything=self.everything,
            max_hold=30.0,
            unknown_grace_ms=self.unknown_grace_ms,
            mark_interval=0.0,
            monotonic=self.clock.monotonic,
            on_forwarded=self.forwarded.append,
        )

    def sources(self) -> list[tuple[str, int]]:
        users = [(t, p) for t in TOPICS.inputs for p in self.partitions]
        return [*users, *((CAT.catalog, s) for s in range(self.catalog_partitions))]

    def owned_tps(self) -> list[tuple[str, int]]:
        own = [(t, p) for t in (TOPICS.ticks, *INTERNAL) for p in self.partitions]
        return [*self.sources(), *own]

    def catalog(self, ts: datetime, product: str = "p1", **fields: Any) -> None:
        event_id = fields.pop("event_id", None) or f"c{next(self._cids)}"
        body = {"event_id": event_id, "type": "product_updated", "ts": iso(ts)}
        value = orjson.dumps(body | {"product_id": product} | fields)
        self.lines.append((ts, 1, value))
        key = self.rng.choice([None, b"k%d" % self.rng.randrange(100), product.encode()])
        self.produce(CAT.catalog, value, self.rng.randrange(self.catalog_partitions), key)
