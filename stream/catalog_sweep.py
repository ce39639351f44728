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

Forgotten users (contract 8.5: an erasure or a retention expiry, ``forgotten``, from the
partition's ``e`` rows): the sweep also deletes their ``a`` rows armed not later than the
forget, and their ``i`` rows' entries not later than it (a row left empty goes). After a
forget (:meth:`Sweep.urge`) the next pass starts as soon as the one in progress ends, so a
forgotten user's rows are gone within two passes of the partition's rows; a pass that
started after the forget and ended deletes its ``e`` row too (an erasure's only once its
erasure memory is over: until then it also drops interest not later than the erasure
that arrives late, ``stream.catalog_side``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Protocol

from stream.catalog_wire import (
    ARMED_ROWS,
    INTEREST_ROWS,
    SEP,
    ForgetRow,
    InterestRow,
    decode_interest,
    decode_time,
    encode_row,
    forget_prefix,
)
from stream.watermark import NEVER
from triggers.catalog_interest import CatalogBook
from triggers.timestamps import EPOCH, MILLISECOND, MIN_MILLIS

SWEEP_ROWS = 2_000  # rows read per product partition and batch, at most
SWEEP_EVERY_MS = 60_000  # event time between the starts of two passes
SWEEP_STEP_SECONDS = 1.0  # wall time between two steps (a busy worker's batches are many)
KEEP = b""  # a row the sweep leaves as it is
_SEP = SEP.encode()


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
        forgotten: dict[str, ForgetRow] | None = None,
        erasure_memory: timedelta = timedelta(0),
    ) -> None:
        """``forgotten``: the partition's forgotten users (shared with its owner, which
        adds to it; the sweep removes those whose ``e`` row it deletes)."""
        self._partition = partition
        self._book = book
        self.forgotten = {} if forgotten is None else forgotten
        self._memory = erasure_memory
        self._urgent = False  # a forget: the next pass starts when the current one ends
        self._pass_forgotten: dict[str, datetime] = {}  # known when the pass started
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

    def urge(self) -> None:
        """A user was forgotten: their rows are to go by the end of the next pass."""
        self._urgent = True

    def step(self, rows: SweptRows, now: float) -> int:
        """Read at most ``rows_per_batch`` rows from the cursor, at most once every
        ``step_seconds`` (``now``: monotonic seconds); returns the rows deleted."""
        if self.frontier <= MIN_MILLIS:
            return 0
        if self._next_step is not None and now < self._next_step:
            return 0
        if self._cursor is None:
            late = self.frontier - self._last_start < self._every_ms
            if self._last_start != NEVER and late and not self._urgent:
                return 0
            self._cursor, self._last_start, self._urgent = b"", self.frontier, False
            self._pass_forgotten = {u: row.ts for u, row in self.forgotten.items()}
        self._next_step = now + self._step_seconds
        bound = EPOCH + self.frontier * MILLISECOND
        interest_before = bound - self._book.window
        armed_before = bound - self._book.armed_for
        deleted = 0
        for read, (key, value) in enumerate(rows.scan_from(self._partition, self._cursor)):
            if read == self._rows_per_batch:
                self._cursor = key
                break
            after = self._row(key, value, interest_before, armed_before)
            if after is not KEEP:
                rows.put(self._partition, key, after)
                deleted += int(after is None)
        else:
            self._cursor = None  # the pass is over
            deleted += self._forgotten_done(rows, bound)
        self.swept += deleted
        return deleted

    def _row(
        self, key: bytes, value: bytes, interest_before: datetime, armed_before: datetime
    ) -> bytes | None:
        """The row's new value: ``KEEP``, None (deleted) or what is left of it."""
        forgotten = self.forgotten
        if key.startswith(INTEREST_ROWS):
            prices = decode_interest(value)
            forget = forgotten.get(_user(key)) if forgotten else None
            if forget is not None:
                kept = {price: at for price, at in prices.items() if at > forget.ts}
                if len(kept) < len(prices):
                    if not kept or max(kept.values()) < interest_before:
                        return None
                    return encode_row(InterestRow(list(kept.items())))
            return None if prices and max(prices.values()) < interest_before else KEEP
        if key.startswith(ARMED_ROWS):
            at = decode_time(value)
            forget = forgotten.get(_user(key)) if forgotten else None
            return None if at < armed_before or (forget is not None and at <= forget.ts) else KEEP
        return KEEP

    def _forgotten_done(self, rows: SweptRows, bound: datetime) -> int:
        """A pass is over: the ``e`` rows of the users forgotten before it started go (an
        erasure's once its memory is over); returns how many."""
        deleted = 0
        for user_id, ts in self._pass_forgotten.items():
            row = self.forgotten.get(user_id)
            if row is None or row.ts != ts or (row.erased and ts + self._memory >= bound):
                continue
            del self.forgotten[user_id]
            rows.put(self._partition, forget_prefix(self._partition) + user_id.encode(), None)
            deleted += 1
        self._pass_forgotten = {}
        return deleted


def _user(key: bytes) -> str:
    """The user of an ``i`` or ``a`` row (``kind<US>product<US>user``)."""
    return key.split(_SEP, 2)[2].decode()
