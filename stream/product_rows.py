"""The products table as one batch of the product side sees it (``stream.catalog_side``).

:class:`ProductStore` is the table's local store (RocksDB in the worker:
``stream.product_table``), written only after its changelog; :class:`Rows` is that store
under the batch's own writes (what the checkpoint then writes: changelog, then store);
:class:`FanOut` collects one product partition's fan-out records of a batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol


class ProductStore(Protocol):
    """The products table's local store; written only after its changelog."""

    def get(self, partition: int, key: bytes) -> bytes | None: ...
    def scan(self, partition: int, prefix: bytes) -> Iterable[tuple[bytes, bytes]]:
        """The rows whose key starts with ``prefix``, in key order."""

    def scan_from(self, partition: int, start: bytes) -> Iterable[tuple[bytes, bytes]]:
        """The partition's rows from ``start`` on, in key order (a seek: the sweep)."""

    def write(self, rows: Sequence[tuple[int, bytes, bytes | None, int]]) -> None:
        """Rows ``(partition, key, value or None to delete, changelog offset)``."""


class Rows:
    """The products table as this batch sees it: the store under the batch's own writes."""

    def __init__(self, store: ProductStore) -> None:
        self._store = store
        self.dirty: dict[bytes, tuple[int, bytes | None]] = {}

    def get(self, partition: int, key: bytes) -> bytes | None:
        if key in self.dirty:
            return self.dirty[key][1]
        return self._store.get(partition, key)

    def put(self, partition: int, key: bytes, value: bytes | None) -> None:
        self.dirty[key] = (partition, value)

    def scan(self, partition: int, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        extra = {k for k in self.dirty if k.startswith(prefix)}
        for key, value in self._store.scan(partition, prefix):
            if key in extra:
                extra.discard(key)
                mine = self.dirty[key][1]
                if mine is not None:
                    yield key, mine
            else:
                yield key, value
        for key in sorted(extra):
            mine = self.dirty[key][1]
            if mine is not None:
                yield key, mine

    def scan_from(self, partition: int, start: bytes) -> Iterator[tuple[bytes, bytes]]:
        """The partition's rows from ``start`` on, in key order, the batch's writes merged."""
        mine = sorted((k, v) for k, (q, v) in self.dirty.items() if q == partition and k >= start)
        i = 0
        for key, value in self._store.scan_from(partition, start):
            while i < len(mine) and mine[i][0] < key:
                if mine[i][1] is not None:
                    yield mine[i]  # type: ignore[misc]
                i += 1
            if i < len(mine) and mine[i][0] == key:
                if mine[i][1] is not None:
                    yield mine[i]  # type: ignore[misc]
                i += 1
            else:
                yield key, value
        for key, value in mine[i:]:
            if value is not None:
                yield key, value


@dataclass(slots=True)
class FanOut:
    """What one product partition's batch writes: fan-out records, in order."""

    records: list[tuple[bytes, bytes, int]] = field(default_factory=list)  # key, value, p


__all__ = ["FanOut", "ProductStore", "Rows"]
