"""The product side of the catalog fan-out: one product partition, from messages to fan-out.

Partition *r* of ``shop.catalog`` (keyed by product) and of ``nudge.interest`` (interest
records re-keyed by product, and the user partitions' watermarks) meet here with the
products table's partition *r* (``stream.catalog_wire`` has the rows). The decisions are
replay's own: each catalog event is handed to a :class:`~triggers.catalog_interest.CatalogBook`
holding just that product (its row, its interested users from a prefix scan, its armed
users), and so is each interest record — so the live recipients are replay's.

Event time (``docs/protocol.md``, "Catalog fan-out"):

- A catalog event at T waits (in a :class:`~stream.watermark.Watermark` of its own, in
  offset order) until every user partition has announced that all its interest up to T is
  written (:class:`Marks`: the least announced watermark), or ``max_hold`` has passed.
- An interest record is applied when read, unless a catalog event of its product earlier
  than it still waits: then it waits for that event (an interest or order later than a
  catalog event must not change who hears of it). Interest records are acknowledged in
  offset order (:class:`Gate`) whatever order they are applied in.
- The partition's fan-out watermark — no fan-out message earlier than it will follow — is
  the least of that user watermark and the first waiting catalog event; it is announced
  to every user partition after the fan-out messages (``Mark`` on the fan-out topic).
- A :class:`~stream.catalog_wire.Forget` (an erasure, a retention expiry: contract 8.5)
  at T is applied when read unless a catalog event (of any product) earlier than T still
  waits; then it waits for those. Applied, it is an ``e`` row (the partition's forgotten
  users): from then on every row of the user read here loses its entries not later than
  T (written back), interest not later than an erasure that arrives late is dropped, and
  the sweep deletes the user's rows (``stream.catalog_sweep``). A forget and an interest
  record commute, so they need no order between them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from stream.catalog_sweep import SWEEP_EVERY_MS, SWEEP_ROWS, Sweep
from stream.catalog_wire import (
    SEEN_PER_PRODUCT,
    Forget,
    ForgetRow,
    Interest,
    InterestRow,
    ProductRow,
    armed_prefix,
    change_records,
    decode_interest,
    decode_product,
    decode_time,
    encode_row,
    forget_prefix,
    interest_prefix,
    product_key,
    user_of,
)
from stream.product_rows import FanOut, Rows
from stream.watermark import FOREVER, UNORDERED, EndOffset, Gate, Marks, Watermark
from triggers.catalog import CatalogChanged
from triggers.catalog_interest import CatalogBook, Product
from triggers.events import InvalidEvent, ProductUpdated
from triggers.timestamps import to_millis

INTEREST = "interest"  # the Watermark's name for the user partitions' announced bound
REKEYED = "rekeyed"  # and for the catalog events forwarded to the partition (contract 9)


class ProductPartition:
    """Partition *r* of the product side (see the module docstring)."""

    def __init__(
        self,
        partition: int,
        *,
        catalog_topic: str,
        partitions: int,
        book: CatalogBook,
        starts: dict[str, int] | None,
        assigned_ms: int,
        max_hold: float,
        unknown_grace_ms: int,
        monotonic: Callable[[], float],
        sweep_rows: int = SWEEP_ROWS,
        sweep_every_ms: int = SWEEP_EVERY_MS,
        forgotten: dict[str, ForgetRow] | None = None,
        erasure_memory: timedelta = timedelta(0),
        direct: bool = True,
        rekeyed: Callable[[int], int] | None = None,
        rekeyed_hold: float = 0.0,
    ) -> None:
        """``forgotten``: the partition's ``e`` rows, as the store has them. ``direct``:
        partition *r* of the catalog topic is read here (it has the worker's count);
        ``rekeyed``: the bound of the catalog events forwarded to *r* (contract 9: a
        misplaced key, a catalog topic of another count), which wait ``rekeyed_hold`` for
        it at most."""
        self.partition = partition
        self._partitions = partitions
        self._book = book
        # A user partition not heard of holds catalog events as long as one may wait.
        hold_ms = int(max_hold * 1000)
        self.marks = Marks(partitions, assigned_ms, hold_ms, max_hold, monotonic)
        external = {INTEREST: self.marks.bound}
        if rekeyed is not None:
            external[REKEYED] = rekeyed
        self.watermark = Watermark(
            (catalog_topic,) if direct else (),
            partition,
            starts,
            assigned_ms,
            max_hold=max_hold,
            unknown_grace_ms=unknown_grace_ms,
            external=external,
            external_holds={REKEYED: rekeyed_hold},
        )
        self._catalog_topic = catalog_topic
        self.gate = Gate()  # the interest topic partition's acknowledgements
        self._pending: dict[str, list[int]] = {}  # product -> waiting catalog event times
        self._blocked: dict[str, list[tuple[Any, Interest]]] = {}  # product -> interest
        self._forgets: list[tuple[Any, Forget]] = []  # waiting for earlier catalog events
        self._early: list[tuple[Any, Interest]] = []  # ahead of the unread catalog events
        self._direct = direct
        self._rekeyed = rekeyed
        self.forgotten: dict[str, ForgetRow] = {} if forgotten is None else forgotten
        self.sweep = Sweep(
            partition,
            book,
            rows_per_batch=sweep_rows,
            every_ms=sweep_every_ms,
            forgotten=self.forgotten,
            erasure_memory=erasure_memory,
        )
        self.swept = 0  # rows the sweep deleted in the last batch

    # -- input ----------------------------------------------------------------------------

    def add_catalog(
        self,
        offset: int,
        item: Any,
        event: ProductUpdated | InvalidEvent,
        now: float,
        *,
        forwarded: bool = False,
        passing: bool = False,
    ) -> None:
        """A catalog event of partition *r* of the catalog topic, or ``forwarded`` to *r*
        (re-keyed); ``passing``: one of *r*'s own that was forwarded to its product's
        partition (it only counts as read, and is acknowledged in its turn)."""
        ts_ms = UNORDERED if isinstance(event, InvalidEvent) else to_millis(event.ts)
        topic = REKEYED if forwarded else self._catalog_topic
        value = (item, None if passing else event)
        self.watermark.add(topic, offset, ts_ms, value, now, passing=passing)
        if not passing and not isinstance(event, InvalidEvent):
            self._pending.setdefault(event.product_id, []).append(ts_ms)

    def add_interest(self, item: Any, record: Interest | Forget | None, rows: Rows) -> None:
        """An interest record or a forget (None: a watermark or a message not ours, already
        noted)."""
        self.gate.read(item)
        if record is None:
            self.gate.done(item)
            return
        if type(record) is Forget:
            self._forgets.append((item, record))
        else:
            self._early.append((item, record))  # applied in release(), in its turn

    # -- a batch --------------------------------------------------------------------------

    def release(
        self, end_offset: EndOffset, now: float, now_ms: int, rows: Rows, out: FanOut
    ) -> list[tuple[Any, InvalidEvent | None]]:
        """Apply what may be applied; returns the released catalog messages to acknowledge
        (with the InvalidEvent of each one to dead-letter)."""
        done: list[tuple[Any, InvalidEvent | None]] = []
        frontier = FOREVER  # the least time applied in this batch, then more (below)
        unread = self._unread(now_ms, end_offset)  # no catalog event still unread is earlier
        self._admit(unread, rows)
        for item, event in self.watermark.release(end_offset, now, now_ms):
            if event is None or isinstance(event, InvalidEvent):  # passed through, invalid
                done.append((item, event))
                continue
            ts_ms = to_millis(event.ts)
            frontier = min(frontier, ts_ms)
            self._pending[event.product_id].remove(ts_ms)
            self._admit(ts_ms, rows)
            self._unblock(event.product_id, ts_ms, rows)
            if self._forgets:
                self._free_forgets(ts_ms, rows)
            self._apply(event, rows, out)
            done.append((item, None))
        self._admit(unread, rows)
        if self._forgets:
            waiting = [t for times in self._pending.values() for t in times]
            self._free_forgets(min([unread, *waiting]), rows)
        for product_id in list(self._blocked):
            waiting = self._pending.get(product_id)
            self._unblock(product_id, min([unread, *waiting]), rows)
        for product_id in [p for p, times in self._pending.items() if not times]:
            del self._pending[product_id]
        # The sweep's frontier: no catalog event applied from now on that is not late input
        # is earlier than this, nor one applied in this batch (a crash before its
        # checkpoint applies it again): stream.catalog_sweep.
        frontier = min(frontier, self.horizon(now_ms, end_offset))
        for times in self._pending.values():
            frontier = min(frontier, *times)
        self.sweep.advance(frontier)
        self.swept = self.sweep.step(rows, now)  # rows deleted in this batch
        return done

    def _unread(self, now_ms: int, end_offset: EndOffset) -> int:
        """No catalog event of the partition still unread (on the catalog topic, or on its
        way through re-keying) is earlier than this."""
        bound = self.read_bound(now_ms, end_offset) if self._direct else now_ms
        return bound if self._rekeyed is None else min(bound, self._rekeyed(now_ms))

    def _admit(self, until_ms: int, rows: Rows) -> None:
        """The interest records read, in their order, not later than ``until_ms``: applied,
        or blocked behind a waiting catalog event of their product earlier than them."""
        if not self._early:
            return
        later = []
        for item, record in self._early:
            ts_ms = to_millis(record.ts)
            if ts_ms > until_ms:
                later.append((item, record))
                continue
            waiting = self._pending.get(record.product_id)
            if waiting and min(waiting) < ts_ms:
                self._blocked.setdefault(record.product_id, []).append((item, record))
                continue
            self._note(record, rows)
            self.gate.done(item)
        self._early = later

    def read_bound(self, now_ms: int, end_offset: EndOffset) -> int:
        """How far partition *r* of the catalog topic has been read (a re-keying source)."""
        return self.watermark.read_bound(self._catalog_topic, now_ms, end_offset)

    def horizon(self, now_ms: int, end_offset: EndOffset) -> int:
        """No fan-out message earlier than this will follow from this partition."""
        return self.watermark.horizon(now_ms, end_offset)

    def _unblock(self, product_id: str, until_ms: int, rows: Rows) -> None:
        blocked = self._blocked.get(product_id)
        if not blocked:
            return
        free = sorted((b for b in blocked if to_millis(b[1].ts) <= until_ms), key=lambda b: b[1].ts)
        for item, record in free:
            self._note(record, rows)
            self.gate.done(item)
        kept = [b for b in blocked if to_millis(b[1].ts) > until_ms]
        if kept:
            self._blocked[product_id] = kept
        else:
            del self._blocked[product_id]

    def _free_forgets(self, until_ms: int, rows: Rows) -> None:
        """The waiting forgets not later than ``until_ms`` (a catalog event's time: a user
        event at the same millisecond counts as before it), in their order."""
        free = [f for f in self._forgets if to_millis(f[1].ts) <= until_ms]
        if not free:
            return
        self._forgets = [f for f in self._forgets if to_millis(f[1].ts) > until_ms]
        for item, record in free:
            self._forget(record, rows)
            self.gate.done(item)

    # -- the product table, through replay's CatalogBook -----------------------------------

    def _forget(self, record: Forget, rows: Rows) -> None:
        """Contract 8.5 (``CatalogBook.forget_user``): the user's rows up to ``record.ts``
        are as good as gone from now on; the sweep deletes them."""
        known = self.forgotten.get(record.user_id)
        if known is not None and known.ts >= record.ts and (known.erased or not record.erased):
            return  # already (a re-delivery, or an earlier erasure's memory covers it)
        ts = record.ts if known is None else max(record.ts, known.ts)
        row = ForgetRow(ts, record.erased or (known is not None and known.erased))
        self.forgotten[record.user_id] = row
        rows.put(
            self.partition, forget_prefix(self.partition) + record.user_id.encode(), encode_row(row)
        )
        self.sweep.urge()

    def _note(self, record: Interest, rows: Rows) -> None:
        book, pid, user_id = self._book, record.product_id, record.user_id
        forget = self.forgotten.get(user_id) if self.forgotten else None
        if forget is not None and forget.erased and record.ts <= forget.ts:
            return  # read after its erasure: replay ignores the event (before_erasure)
        key = interest_prefix(pid) + user_id.encode()
        stored = rows.get(self.partition, key)
        prices = decode_interest(stored) if stored is not None else {}
        if forget is not None:
            prices = {price: at for price, at in prices.items() if at > forget.ts}
        book.interest = {pid: {user_id: prices}} if prices else {}
        if record.order:
            book.note_order(user_id, [pid], record.ts)
        else:
            book.note_interest(user_id, pid, record.ts, record.price)
        after = book.interest.get(pid, {}).get(user_id)
        value = encode_row(InterestRow(list(after.items()))) if after else None
        if value != stored:
            rows.put(self.partition, key, value)

    def _apply(self, event: ProductUpdated, rows: Rows, out: FanOut) -> None:
        book, pid, p = self._book, event.product_id, self.partition
        stored = rows.get(p, product_key(pid))
        row = decode_product(stored) if stored is not None else ProductRow()
        if event.test or event.event_id in row.seen:
            return
        restocked = event.in_stock is True and row.in_stock is False
        price = event.price
        dropped = price is not None and (row.price is None or price < row.price)
        rose = price is not None and row.price is not None and price > row.price
        scan = (restocked and book.back.enabled) or (dropped and book.drop.enabled)
        tell = event.in_stock is False or rose
        interest = self._load(interest_prefix(pid), decode_interest, rows) if scan else {}
        armed = self._load(armed_prefix(pid), decode_time, rows) if tell else {}
        if self.forgotten:
            self._without_forgotten(pid, interest, armed, rows)
        book.products = {pid: Product(row.price, row.in_stock, row.category)}
        book.interest = {pid: dict(interest)}
        book.armed = {pid: dict(armed)}
        book.seen = set()
        changes = book.apply(event)
        product = book.products[pid]
        row = ProductRow(
            product.price,
            product.in_stock,
            product.category,
            [*row.seen, event.event_id][-SEEN_PER_PRODUCT:],
        )
        rows.put(p, product_key(pid), encode_row(row))
        for user_id in interest.keys() - book.interest[pid].keys():  # expired interest
            rows.put(p, interest_prefix(pid) + user_id.encode(), None)
        after = book.armed[pid]
        for user_id in armed.keys() - after.keys():  # armed episodes over
            rows.put(p, armed_prefix(pid) + user_id.encode(), None)
        for user_id, at in after.items():
            if armed.get(user_id) != at:
                rows.put(p, armed_prefix(pid) + user_id.encode(), encode_row(at))
        self._send(changes, out)

    def _send(self, changes: list[CatalogChanged], out: FanOut) -> None:
        """One catalog event's changes: several users of a partition a message."""
        out.records += change_records(self.partition, changes, self._partitions)

    def _without_forgotten(
        self,
        pid: str,
        interest: dict[str, dict[Any, datetime]],
        armed: dict[str, datetime],
        rows: Rows,
    ) -> None:
        """The forgotten users' entries go from what a catalog event reads (and from the
        rows it read them from, if the sweep has not been there yet)."""
        p = self.partition
        for user_id, forget in self.forgotten.items():
            prices = interest.get(user_id)
            if prices is not None:
                kept = {price: at for price, at in prices.items() if at > forget.ts}
                if len(kept) < len(prices):
                    key = interest_prefix(pid) + user_id.encode()
                    if kept:
                        interest[user_id] = kept
                        rows.put(p, key, encode_row(InterestRow(list(kept.items()))))
                    else:
                        del interest[user_id]
                        rows.put(p, key, None)
            at = armed.get(user_id)
            if at is not None and at <= forget.ts:
                del armed[user_id]
                rows.put(p, armed_prefix(pid) + user_id.encode(), None)

    def _load(self, prefix: bytes, decode: Callable[[bytes], Any], rows: Rows) -> dict[str, Any]:
        return {user_of(k, prefix): decode(v) for k, v in rows.scan(self.partition, prefix)}
