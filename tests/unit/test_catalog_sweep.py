"""The products table's sweep (stream.catalog_sweep): expired interest and armed rows are
deleted through the batch's rows, a bounded number read a batch, and no decision changes."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream.catalog_side import ProductPartition
from stream.catalog_sweep import Sweep
from stream.catalog_wire import (
    Interest,
    InterestRow,
    armed_prefix,
    decode_interest,
    encode_row,
    interest_prefix,
    product_key,
)
from stream.product_rows import FanOut, Rows
from tests.unit.catalog_harness import CAT, CatalogShell
from tests.unit.timelines import at, iso, make_rules
from triggers.catalog import BackInStockRules, PriceDropRules
from triggers.catalog_interest import CatalogBook
from triggers.events import parse_catalog_event
from triggers.timestamps import to_millis

pytestmark = pytest.mark.unit

CATALOG = "shop.catalog"
WINDOW = timedelta(hours=1)
MS = timedelta(milliseconds=1)
BOTH = {
    "back_in_stock": {"enabled": True, "stages": ["2h"]},
    "price_drop": {"enabled": True, "stages": ["1h"], "min_drop_percent": 10},
}
STAGES = (timedelta(0), timedelta(minutes=30))  # armed users hear of a change for 30 min


class Store:
    """The products table's local store for one partition (a sorted dict)."""

    def __init__(self) -> None:
        self.rows: dict[bytes, bytes] = {}
        self.scans = 0  # sweep reads

    def get(self, partition: int, key: bytes) -> bytes | None:
        return self.rows.get(key)

    def scan(self, partition: int, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        yield from sorted((k, v) for k, v in self.rows.items() if k.startswith(prefix))

    def scan_from(self, partition: int, start: bytes) -> Iterator[tuple[bytes, bytes]]:
        self.scans += 1
        yield from sorted((k, v) for k, v in self.rows.items() if k >= start)

    def write(self, rows: Sequence[tuple[int, bytes, bytes | None, int]]) -> None:
        for _, key, value, _ in rows:
            if value is None:
                self.rows.pop(key, None)
            else:
                self.rows[key] = value


class Side:
    """One product partition with its store, driven batch by batch (marks by hand)."""

    def __init__(self, *, sweep_rows: int, sweep_every_ms: int = 0) -> None:
        self.store = Store()
        book = CatalogBook(
            BackInStockRules(enabled=True, interest_window=WINDOW, stages=STAGES),
            PriceDropRules(enabled=True, interest_window=WINDOW, stages=STAGES[:1]),
        )
        self.part = ProductPartition(
            0,
            catalog_topic=CATALOG,
            partitions=1,
            book=book,
            starts={CATALOG: 0},
            assigned_ms=0,
            max_hold=1e9,
            unknown_grace_ms=0,
            monotonic=lambda: 0.0,
            sweep_rows=sweep_rows,
            sweep_every_ms=sweep_every_ms,
        )
        self.rows = Rows(self.store)
        self.read = 0  # catalog messages read
        self.mono = 0.0  # monotonic seconds
        self.fanout: list[tuple[bytes, bytes, int]] = []
        self.changelog: list[tuple[bytes, bytes | None]] = []
        self._ids = itertools.count()

    def interest(self, user: str, product: str, ts: Any, price: float | None = None) -> None:
        self.part.add_interest(object(), Interest(product, user, ts, price), self.rows)

    def order(self, user: str, product: str, ts: Any) -> None:
        self.part.add_interest(object(), Interest(product, user, ts, None, True), self.rows)

    def catalog(self, ts: Any, product: str = "p1", **fields: Any) -> None:
        body = {"event_id": f"c{next(self._ids)}", "type": "product_updated", "ts": iso(ts)}
        event = parse_catalog_event(orjson.dumps(body | {"product_id": product} | fields))
        self.part.add_catalog(self.read, object(), event, 0.0)
        self.read += 1

    def batch(self, watermark: Any) -> None:
        """All interest up to ``watermark`` is written: a batch, then its checkpoint."""
        self.part.marks.note(0, to_millis(watermark))
        out = FanOut()
        now_ms = to_millis(watermark) + 3_600_000
        self.mono += 1.0  # a second between batches: the sweep steps at every one
        self.part.release(lambda topic, p: self.read, self.mono, now_ms, self.rows, out)
        self.fanout += out.records
        dirty = [(0, key, value, 0) for key, (_, value) in self.rows.dirty.items()]
        self.changelog += [(key, value) for _, key, value, _ in dirty]
        self.store.write(dirty)
        self.rows = Rows(self.store)


def test_expired_interest_goes_and_interest_within_the_window_stays() -> None:
    side = Side(sweep_rows=100)
    side.interest("u1", "p1", at(0), 10)
    side.interest("u2", "p1", at(minutes=30), 10)
    side.interest("u3", "p2", at(0), None)
    side.batch(at(hours=1))  # the frontier: exactly one window after u1's and u3's interest
    assert interest_prefix("p1") + b"u1" in side.store.rows
    side.batch(at(hours=1) + MS)
    assert sorted(side.store.rows) == [interest_prefix("p1") + b"u2"]
    # through the changelog: a tombstone for each, before the store
    assert (interest_prefix("p1") + b"u1", None) in side.changelog
    assert (interest_prefix("p2") + b"u3", None) in side.changelog
    assert side.part.sweep.swept == 2


def test_a_later_view_keeps_the_user_and_a_late_one_does_not_revive_them() -> None:
    side = Side(sweep_rows=100)
    side.interest("u1", "p1", at(0), 10)
    side.interest("u1", "p1", at(minutes=50), 12)
    side.batch(at(hours=1, minutes=30))
    row = side.store.rows[interest_prefix("p1") + b"u1"]
    assert set(decode_interest(row)) == {10, 12}  # its latest time is within the window
    side.interest("u2", "p1", at(minutes=10), 10)  # late: already older than the window
    side.batch(at(hours=1, minutes=31))
    assert interest_prefix("p1") + b"u2" not in side.store.rows


def test_armed_rows_go_once_their_last_stage_is_past() -> None:
    side = Side(sweep_rows=100)
    side.catalog(at(0), in_stock=False, price=100)
    side.interest("u1", "p1", at(minutes=5), 100)
    side.catalog(at(minutes=10), in_stock=True)  # u1 armed at 0:10 for 30 minutes
    side.batch(at(minutes=20))
    assert [v for _, v, _ in side.fanout]  # u1 is told
    assert armed_prefix("p1") + b"u1" in side.store.rows
    side.batch(at(minutes=40))
    assert armed_prefix("p1") + b"u1" in side.store.rows
    side.batch(at(minutes=40) + MS)
    assert armed_prefix("p1") + b"u1" not in side.store.rows
    assert product_key("p1") in side.store.rows  # the product's own row is never swept


def test_the_batch_that_applies_a_catalog_event_sweeps_nothing_it_read() -> None:
    side = Side(sweep_rows=100)
    side.catalog(at(0), in_stock=False)
    side.interest("u1", "p1", at(minutes=1))
    side.batch(at(minutes=2))
    side.catalog(at(minutes=50), in_stock=True)  # waits for the interest watermark
    side.batch(at(minutes=40))
    assert side.fanout == []
    side.batch(at(hours=5))  # the restock is applied; a crash before its checkpoint
    assert len(side.fanout) == 1  # u1 heard of it, as in replay
    # ... re-applies it: what it read is kept until a later batch
    assert interest_prefix("p1") + b"u1" in side.store.rows
    side.batch(at(hours=5))
    assert sorted(side.store.rows) == [product_key("p1")]


def test_work_is_bounded_per_batch_and_a_quiet_table_is_not_reread() -> None:
    side = Side(sweep_rows=3, sweep_every_ms=60_000)
    for i in range(10):
        side.interest(f"u{i}", f"p{i}", at(0), None)
    for _ in range(5):
        side.batch(at(minutes=1))  # one pass: 3 + 3 + 3 + 1 rows read, none expired
    assert side.store.scans == 4
    deleted = []
    for _ in range(5):
        before = len(side.store.rows)
        side.batch(at(hours=2))  # the frontier moved on: another pass
        deleted.append(before - len(side.store.rows))
    assert deleted == [3, 3, 3, 1, 0]
    assert side.store.rows == {}
    assert side.store.scans == 8


def test_the_rows_merge_the_batchs_own_writes_in_key_order() -> None:
    store = Store()
    store.write([(0, b"a", b"1", 0), (0, b"c", b"3", 0), (0, b"e", b"5", 0)])
    rows = Rows(store)
    rows.put(0, b"b", b"2")
    rows.put(0, b"c", None)
    rows.put(0, b"e", b"55")
    rows.put(1, b"d", b"other partition")
    rows.put(0, b"f", b"6")
    assert list(rows.scan_from(0, b"b")) == [(b"b", b"2"), (b"e", b"55"), (b"f", b"6")]


USERS = st.sampled_from(["u1", "u2", "u3"])
PRODUCTS = st.sampled_from(["p1", "p2"])
MINUTES = st.integers(min_value=-90, max_value=30)
INTEREST = st.tuples(
    st.just("i"), USERS, PRODUCTS, MINUTES, st.sampled_from([None, 80, 100, 120]), st.booleans()
)
CATALOG_EVENT = st.tuples(
    st.just("c"),
    PRODUCTS,
    st.integers(min_value=0, max_value=40),
    st.sampled_from([None, True, False]),
    st.sampled_from([None, 70, 90, 100, 130]),
)
STEP = st.tuples(
    st.integers(min_value=0, max_value=50),  # minutes the watermark moves on
    st.lists(st.one_of(INTEREST, CATALOG_EVENT), max_size=6),
)


def run(steps: list[Any], sweep_rows: int) -> Side:
    side = Side(sweep_rows=sweep_rows)
    now = at(hours=2)
    for advance, ops in steps:
        now += timedelta(minutes=advance)
        for op in ops:
            if op[0] == "i":
                _, user, product, minutes, price, order = op
                ts = now + timedelta(minutes=minutes)
                if order:
                    side.order(user, product, ts)
                else:
                    side.interest(user, product, ts, price)
            else:  # a catalog event never earlier than the watermark: not late input
                _, product, minutes, in_stock, price = op
                fields = {"in_stock": in_stock, "price": price}
                side.catalog(now + timedelta(minutes=minutes), product, **fields)
        side.batch(now)
    side.batch(now + timedelta(days=1))
    return side


def drained(side: Side, until: Any) -> None:
    for _ in range(40):
        side.batch(until)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(STEP, min_size=1, max_size=12), st.integers(min_value=1, max_value=4))
def test_the_sweep_changes_no_decision(steps: list[Any], sweep_rows: int) -> None:
    swept, kept = run(steps, sweep_rows), run(steps, 0)
    assert swept.fanout == kept.fanout
    assert kept.part.sweep.swept == 0
    # given time, nothing expired is left
    until = at(hours=2) + timedelta(minutes=sum(a for a, _ in steps), days=2)
    drained(swept, until)
    for key, value in swept.store.rows.items():
        assert key.startswith(product_key("")), (key, value)


async def test_the_worker_sweeps_through_the_changelog_and_counts_it() -> None:
    shell = CatalogShell(make_rules(only=(), triggers=BOTH), at(0), partitions=1)
    shell.user_event("product_viewed", at(0), "u1", product_id="p1", price=10)
    await shell.at(at(minutes=1))
    key = interest_prefix("p1") + b"u1"
    assert shell.pstore is not None and key in shell.pstore.rows
    assert shell.swept == []
    await shell.at(at(days=14, minutes=2))  # the interest is older than the window
    assert key not in shell.pstore.rows
    assert [(r.key, r.value) for r in shell.broker.log(CAT.changelog)][-1] == (key, None)
    assert shell.swept == [1]  # nudge_catalog_rows_swept_total


def test_a_busy_worker_steps_at_most_once_a_step_time() -> None:
    store = Store()
    old = encode_row(InterestRow([(None, at(0))]))
    store.write([(0, interest_prefix(f"p{i}") + b"u", old, 0) for i in range(4)])
    book = CatalogBook(BackInStockRules(enabled=True, interest_window=WINDOW), PriceDropRules())
    sweep = Sweep(0, book, rows_per_batch=1, every_ms=0, step_seconds=1.0)
    sweep.advance(to_millis(at(hours=2)))
    rows = Rows(store)
    assert [sweep.step(rows, now) for now in (10.0, 10.5, 10.99, 11.0, 11.2, 12.5)] == [
        1,
        0,
        0,
        1,
        0,
        1,
    ]
