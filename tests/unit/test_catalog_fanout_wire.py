"""The fan-out's wire (stream.catalog_wire): one ``Changes`` message carries a catalog
event's users of one partition, is applied user by user in event-time order and is
acknowledged once its last user is applied; records of the one-user shape before it
(``Change``, written by an older worker, still on the topic during an upgrade) are read."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

import pytest

from stream.catalog_side import ProductPartition
from stream.catalog_wire import (
    CHANGES_MAX_BYTES,
    CHANGES_PER_MESSAGE,
    Change,
    Changes,
    change_records,
    decode,
    encode,
    partition_of,
)
from stream.product_rows import FanOut
from tests.unit.catalog_harness import CAT, CatalogShell
from tests.unit.test_catalog_fanout import RULES as FANOUT_RULES
from tests.unit.test_catalog_fanout import _key, oracle, run
from tests.unit.timelines import at
from triggers.catalog import CatalogChanged

pytestmark = pytest.mark.unit

RULES = FANOUT_RULES.model_copy()  # not the module's own: run() replays these events
UNTIL = at(hours=6)
USERS = [f"u{i}" for i in range(12)]


def restock() -> list[tuple[datetime, str, str, dict[str, Any]]]:
    """Twelve users view p1 (out of stock), then it is restocked; one orders after it."""
    views = [
        (at(minutes=10 + i), "product_viewed", user, {"product_id": "p1", "price": 100})
        for i, user in enumerate(USERS)
    ]
    line = {"product_id": "p1", "quantity": 1, "unit_price": 100}
    return [
        (at(), "catalog", "p1", {"in_stock": False, "price": 100}),
        *views,
        (at(hours=1), "catalog", "p1", {"in_stock": True}),
        (at(hours=1, minutes=30), "order_placed", "u3", {"order_id": "o3", "items": [line]}),
    ]


class SlowShell(CatalogShell):
    """At most two messages applied per partition and batch, and more batches a moment."""

    def __init__(self) -> None:
        super().__init__(RULES, at(), max_release=2)

    async def at(self, moment: datetime, rounds: int = 16) -> None:
        await super().at(moment, rounds)


def fanout_acks(shell: CatalogShell) -> dict[int, list[int]]:
    acks: dict[int, list[int]] = {}
    for entry in shell.journal.entries:
        if entry[0] == "ack" and entry[1] == CAT.fanout:
            acks.setdefault(entry[2], []).append(entry[3])
    return acks


async def test_several_users_per_message_applied_over_batches_equal_replay() -> None:
    """At most two fan-out users applied per partition and batch: a message's users span
    several batches; it is acknowledged once, in offset order, after its last user."""
    shell = await run(SlowShell(), events=restock(), until=UNTIL)
    live = sorted(shell.audit(), key=_key)
    assert live == sorted(oracle(RULES, restock(), UNTIL), key=_key)
    assert Counter(r["user_id"] for r in live if r["trigger"] == "back_in_stock") == {
        u: 1 for u in USERS if u != "u3"
    }
    sizes = [
        len(m.changes)
        for s in shell.broker.sends
        if s.topic == CAT.fanout and type(m := decode(s.value)) is Changes
    ]
    assert sum(sizes) == len(USERS) and max(sizes) > 1  # several users a message
    for offsets in fanout_acks(shell).values():
        assert offsets == list(range(len(offsets)))  # each once, in offset order


def _one_user_each(self: ProductPartition, changes: list[CatalogChanged], out: FanOut) -> None:
    """What a worker before ``Changes`` wrote: one message per user, keyed by the user."""
    for change in changes:
        key = change.user_id.encode()
        out.records.append((key, encode(Change(self.partition, change)), partition_of(key, 2)))


async def test_one_user_records_of_the_shape_before_are_still_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ProductPartition, "_send", _one_user_each)
    shell = await run(CatalogShell(RULES, at()), events=restock(), until=UNTIL)
    assert any(
        s.topic == CAT.fanout and type(decode(s.value)) is Change for s in shell.broker.sends
    )
    live = sorted(shell.audit(), key=_key)
    assert live == sorted(oracle(RULES, restock(), UNTIL), key=_key)
    assert len([r for r in live if r["trigger"] == "back_in_stock"]) == len(USERS) - 1


def test_change_records_keep_order_and_bound_users_and_bytes() -> None:
    ts = at(hours=1)
    short = [CatalogChanged("c1", f"u{i}", ts, "p1", restocked=True) for i in range(1201)]
    long = [CatalogChanged("c1", f"{i}-" + "x" * 4000, ts, "p1") for i in range(200)]
    for changes in (short, long):
        records = change_records(3, changes, 4)
        back: dict[int, list[CatalogChanged]] = {}
        for key, value, q in records:
            message = decode(value)
            assert type(message) is Changes and message.source == 3
            assert len(message.changes) <= CHANGES_PER_MESSAGE
            assert len(value) < 2 * CHANGES_MAX_BYTES
            assert key == message.changes[0].user_id.encode()
            assert {partition_of(c.user_id.encode(), 4) for c in message.changes} == {q}
            back.setdefault(q, []).extend(message.changes)
        for q, got in back.items():  # each partition's users, in the order given
            assert got == [c for c in changes if partition_of(c.user_id.encode(), 4) == q]
        assert sum(map(len, back.values())) == len(changes)
    assert len(change_records(3, short, 1)) == 3  # 500 + 500 + 201
