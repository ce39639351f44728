"""The products table's sweep: expired interest and armed rows go, a few thousand a batch.

``CatalogBook`` (replay's) drops a product's interest older than ``interest_window`` only
when a restock or a drop of that product scans it, so without a sweep the interest in a
product never restocked nor discounted stays in the table for good. :class:`Sweep` walks
one product partition's rows in key order from a cursor, at most ``rows_per_batch`` of
them a batch, and deletes (through the batch's :class:`~stream.catalog_side.Rows`, so
the changelog has the tombstone before the store) every

- ``i`` row whose latest time is before ``F - interest_window``,
- ``a`` row armed before ``F - armed_for`` (its last stage's offset, plus the longest
  quiet-hours deferral),

where ``F`` (:attr:`Sweep.frontier`) is the highest *event-time frontier* the partition has
had: after each batch, the least of its fan-out horizon (the user partitions' interest
watermark, the catalog topic's bound), the catalog events still waiting and those applied
in the batch. Every catalog event applied later that is not late input (not earlier than
the frontier when read) has ``ts >= F``, and for it such a row is exactly as if absent:
its interest is older than ``ts - interest_window`` (``CatalogBook._recent`` would drop it
unread), its armed time older than ``ts - armed_for`` (``CatalogBook._armed`` would).
Later interest records may rebuild a row: it then differs only in entries older than the
bound, which no such event reads (``docs/protocol.md``, "Catalog fan-out", "Sweep").

A pass starts once the frontier has moved ``every_ms`` past the previous pass's start
(a quiet table is not re-read every batch), and takes a step at most every
``step_seconds`` of wall time (a busy worker runs many batches a second); a pass in
progress uses the current frontier.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Protocol

from stream.catalog_wire import ARMED_ROWS, INTEREST_ROWS, decode_interest, decode_time
from stream.watermark import NEVER
from triggers.catalog_interest import CatalogBook
from triggers.timestamps import EPOCH, MILLISECOND, MIN_MILLIS

SWEEP_ROWS = 2_000  # rows read per product partition and batch, at most
SWEEP_EVERY_MS = 60_000  # event time between the starts of two passes
SWEEP_STEP_SECONDS = 1.0  # wall time between two steps (a busy worker's batches are many)


class SweptRows(Protocol):
    def scan_from(self, partition: int, start: bytes) -> Iterator[tuple[bytes, bytes]]: ...
    def put(self, partition: int, key: bytes, value: bytes | None) -> None: ...


class Sweep:
    """One product partition's sweep (see the module docstring)."""

    def __init__(
        self,
        partition: int,
        book: CatalogBook,
        *,
        rows_per_batch: int = SWEEP_ROWS,
        every_ms: int = SWEEP_EVERY_MS,
        step_seconds: float = SWEEP_STEP_SECONDS,
    ) -> None:
        self._partition = partition
        self._book = book
        self._rows_per_batch = rows_per_batch
        self._every_ms = every_ms
        self._step_seconds = step_seconds
        self._next_step: float | None = None  # monotonic seconds
        self.frontier = NEVER  # the highest event-time frontier seen
        self._cursor: bytes | None = None  # the next key of the pass in progress
        self._last_start = NEVER  # the frontier when the last pass started
        self.swept = 0  # rows deleted, since the assignment

    def advance(self, frontier_ms: int) -> None:
        if frontier_ms > self.frontier:
            self.frontier = frontier_ms

    def step(self, rows: SweptRows, now: float) -> int:
        """Read at most ``rows_per_batch`` rows from the cursor, at most once every
        ``step_seconds`` (``now``: monotonic seconds); returns the rows deleted."""
        if self.frontier <= MIN_MILLIS:
            return 0
        if self._next_step is not None and now < self._next_step:
            return 0
        if self._cursor is None:
            if self._last_start != NEVER and self.frontier - self._last_start < self._every_ms:
                return 0
            self._cursor, self._last_start = b"", self.frontier
        self._next_step = now + self._step_seconds
        bound = EPOCH + self.frontier * MILLISECOND
        interest_before = bound - self._book.window
        armed_before = bound - self._book.armed_for
        deleted = 0
        for read, (key, value) in enumerate(rows.scan_from(self._partition, self._cursor)):
            if read == self._rows_per_batch:
                self._cursor = key
                break
            if _expired(key, value, interest_before, armed_before):
                rows.put(self._partition, key, None)
                deleted += 1
        else:
            self._cursor = None  # the pass is over
        self.swept += deleted
        return deleted


def _expired(key: bytes, value: bytes, interest_before: datetime, armed_before: datetime) -> bool:
    if key.startswith(INTEREST_ROWS):
        prices = decode_interest(value)
        return bool(prices) and max(prices.values()) < interest_before
    if key.startswith(ARMED_ROWS):
        return decode_time(value) < armed_before
    return False
