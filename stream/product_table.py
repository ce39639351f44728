"""The products table: the catalog fan-out's product side state, in Faust (``stream.app``).

A Faust table named ``products`` (RocksDB locally, its changelog in Kafka, recovered and
standby-replicated like ``users``) with the raw keys and values of
:mod:`stream.catalog_wire`. The worker writes it only through :class:`ProductTable.write`
— after its changelog has the rows, like the users table — and reads a product's users
with a prefix scan of the partition's RocksDB (a seek, then keys in order).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import faust

from stream.catalog_fanout import CatalogFanout, CatalogTopics, enabled
from stream.catalog_wire import FORGET_ROWS, SEP, partition_of
from stream.settings import Settings
from stream.table_store import write_after_changelog
from triggers.rules import Rules

#: A partition's silent time after an assignment before it counts as unknown (as the
#: users' watermark's start-up rule).
UNKNOWN_GRACE_MS = 10_000


class ProductTable:
    """The table's local store (the catalog side's ``ProductStore``)."""

    def __init__(self, table: faust.Table, partitions: int) -> None:
        self._table = table
        self._partitions = partitions

    def get(self, partition: int, key: bytes) -> bytes | None:
        return self._table.data.get(key)  # type: ignore[no-any-return]

    def scan(self, partition: int, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        data = self._table.data
        db_for = getattr(data, "_db_for_partition", None)  # RocksDB: one database a partition
        if db_for is None:  # the in-memory store (development): a full scan
            yield from sorted((k, v) for k, v in data.items() if k.startswith(prefix))
            return
        for key, value in db_for(partition).items(from_key=prefix):
            if not key.startswith(prefix):
                return
            yield key, value

    def scan_from(self, partition: int, start: bytes) -> Iterator[tuple[bytes, bytes]]:
        data = self._table.data
        db_for = getattr(data, "_db_for_partition", None)
        if db_for is None:  # the in-memory store (development): all partitions, a full sort
            mine = ((k, v) for k, v in data.items() if k >= start and self._of(k) == partition)
            yield from sorted(mine)
            return
        yield from db_for(partition).items(from_key=start)

    def _of(self, key: bytes) -> int:
        """The partition of a row: its product's (``kind<US>product[<US>user]``), or the one
        named in a forgotten user's key (``e<US>partition<US>user``)."""
        second = key.split(SEP.encode())[1]
        if key.startswith(FORGET_ROWS):
            return int(second)
        return partition_of(second, self._partitions)

    def write(self, rows: Sequence[tuple[int, bytes, bytes | None, int]]) -> None:
        write_after_changelog(self._table, rows)


def catalog_fanout(
    app: faust.App,
    settings: Settings,
    rules: Rules,
    partitions: int,
    options: dict[str, Any] | None,
    on_swept: Callable[[int], object] | None = None,
) -> CatalogFanout | None:
    """The catalog fan-out and its table, when ``back_in_stock`` or ``price_drop`` is on."""
    if not enabled(rules):
        return None
    products = app.Table(
        "products",
        partitions=partitions,
        key_type=bytes,
        value_type=bytes,
        options=options,
        help="Catalog fan-out: products, their interested and armed users.",
        # Erasure (contract 8.5): a forgotten user's superseded rows are compacted away
        # within this, as the users table's.
        extra_topic_configs={
            "max.compaction.lag.ms": str(int(settings.changelog_max_compaction_lag_seconds * 1000))
        },
    )
    products.key_serializer = products.value_serializer = "raw"
    return CatalogFanout(
        rules=rules,
        topics=CatalogTopics(
            catalog=settings.topic_catalog,
            interest=settings.topic_interest,
            fanout=settings.topic_fanout,
            changelog=products.changelog_topic.get_topic_name(),
        ),
        partitions=partitions,
        store=ProductTable(products, partitions),
        max_hold=settings.catalog_max_hold_seconds,
        unknown_grace_ms=UNKNOWN_GRACE_MS,
        mark_interval=settings.catalog_mark_interval_seconds,
        monotonic=time.monotonic,
        max_message_bytes=settings.max_message_bytes,
        on_swept=on_swept,
    )
