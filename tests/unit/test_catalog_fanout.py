"""The live catalog fan-out (stream.catalog_fanout, stream.catalog_side) on fakes: the same
records as replay, byte for byte, for a mixed stream of user and catalog events; a crash
after any single effect of the checkpoint loses and repeats nothing."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime
from typing import Any

import pytest

from stream.catalog_wire import interest_prefix
from tests.unit.catalog_harness import CAT, CatalogShell
from tests.unit.shell_fakes import Crash
from tests.unit.shell_harness import project
from tests.unit.timelines import at, make_rules
from triggers.rules import Rules

pytestmark = pytest.mark.unit

RULES = make_rules(
    only=("cart_abandonment",),
    triggers={
        "cart_abandonment": {"stages": ["1h"]},
        "back_in_stock": {"enabled": True, "stages": ["2h"]},
        "price_drop": {"enabled": True, "stages": ["1h"], "min_drop_percent": 10},
    },
    contact_policy={"frequency_cap": {"max": 5, "per": "24h"}},
)
UNTIL = at(hours=14)


def script() -> list[tuple[datetime, str, str, dict[str, Any]]]:
    """(time, kind, user or product, fields): a restock with three interested users, of
    whom one orders after it and one is interested only after it; a price drop, a price
    that rises back, a second drop; other users' carts meanwhile."""
    return [
        (at(), "catalog", "p1", {"in_stock": False, "price": 100, "category": "shoes"}),
        (at(), "catalog", "p2", {"in_stock": True, "price": 50}),
        (at(minutes=30), "cart_item_added", "u9", {"product_id": "p2", "unit_price": 50}),
        (at(hours=1), "product_viewed", "u1", {"product_id": "p1", "price": 100}),
        (at(hours=2), "wishlist_added", "u2", {"product_id": "p1", "price": 100}),
        (at(hours=3), "cart_item_added", "u3", {"product_id": "p1", "unit_price": 100}),
        (at(hours=5), "catalog", "p1", {"in_stock": True}),
        (at(hours=5, minutes=30), "product_viewed", "u4", {"product_id": "p1", "price": 100}),
        (at(hours=6), "order_placed", "u1", _order("o1", "p1")),
        (at(hours=6, minutes=10), "cart_item_added", "u8", {"product_id": "p2"}),
        (at(hours=8), "catalog", "p1", {"price": 80}),
        (at(hours=8, minutes=30), "catalog", "p1", {"price": 100}),
        (at(hours=10), "catalog", "p1", {"price": 85}),
        (at(hours=10), "catalog", "p2", {"price": 40, "event_id": "again"}),
        (at(hours=10, minutes=5), "catalog", "p2", {"price": 40, "event_id": "again"}),
    ]


def _order(order_id: str, product: str) -> dict[str, Any]:
    line = {"product_id": product, "quantity": 1, "unit_price": 100}
    return {"order_id": order_id, "items": [line]}


async def run(
    shell: CatalogShell,
    *,
    crash_after: int | None = None,
    events: list[tuple[datetime, str, str, dict[str, Any]]] | None = None,
    until: datetime = UNTIL,
) -> CatalogShell:
    """Each event (default: ``script()``) when it happens; the clock then steps through
    every time replay fires at."""
    shell.journal.crash_after = crash_after
    events = script() if events is None else events
    replayed = _replayed() if shell.rules is RULES else oracle(shell.rules, events, until)
    dues = sorted({r["fired_at"] for r in replayed})
    moments = sorted({ts for ts, *_ in events} | {_parse(d) for d in dues} | {until})
    for moment in moments:
        for ts, kind, who, fields in events:
            if ts == moment:
                if kind == "catalog":
                    shell.catalog(ts, who, **fields)
                else:
                    shell.user_event(kind, ts, who, **fields)
        while True:
            try:
                await shell.at(moment)
                break
            except Crash:
                shell.restart()
    return shell


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


_ORACLE: list[dict[str, Any]] = []


def _replayed() -> list[dict[str, Any]]:
    if not _ORACLE:
        _ORACLE.extend(oracle(RULES, script(), UNTIL))
    return _ORACLE


def oracle(
    rules: Rules, events: list[tuple[datetime, str, str, dict[str, Any]]], until: datetime
) -> list[dict[str, Any]]:
    """``nudge replay``'s decisions and conversions for the events."""
    shell = CatalogShell(rules, at())
    for ts, kind, who, fields in events:
        if kind == "catalog":
            shell.catalog(ts, who, **fields)
        else:
            shell.user_event(kind, ts, who, **fields)
    return [r for r in shell.replay_json(until) if r["kind"] == "decision" or "arm" in r]


def _key(record: dict[str, Any]) -> tuple[str, str, str]:
    return record["user_id"], record.get("fired_at") or record["converted_at"], record["trigger_id"]


@pytest.fixture(scope="module")
def uncrashed() -> CatalogShell:
    return asyncio.run(run(CatalogShell(RULES, at())))


def test_live_records_equal_replays_byte_for_byte(uncrashed: CatalogShell) -> None:
    live = sorted(uncrashed.audit(), key=_key)
    replayed = sorted(_replayed(), key=_key)
    assert live == replayed
    decided = [(r["trigger"], r["user_id"], r["status"]) for r in live]
    # u1 ordered after the restock (cancelled), u4's interest came after it (no recipient).
    assert sorted(d for d in decided if d[0] == "back_in_stock") == [
        ("back_in_stock", "u2", "sent"),
        ("back_in_stock", "u3", "sent"),
    ]
    # The 80 drop was cancelled by the rise back to 100; the 85 drop reaches u2, u3, u4.
    drops = sorted(
        (r["context"]["product_id"], r["user_id"], r["context"]["new_price"])
        for r in live
        if r["trigger"] == "price_drop"
    )
    # p2's drop reaches u9 once, though its catalog event was sent twice.
    assert drops == [("p1", "u2", 85), ("p1", "u3", 85), ("p1", "u4", 85), ("p2", "u9", 40)]


def test_interest_is_kept_per_product_and_user_and_read_by_prefix(uncrashed: CatalogShell) -> None:
    store = uncrashed.pstore
    assert store is not None
    keys = sorted(k for k in store.rows if k.startswith(interest_prefix("p1")))
    # u1's order removed their interest; each user is one row.
    assert keys == [interest_prefix("p1") + u for u in (b"u2", b"u3", b"u4")]
    assert interest_prefix("p1") in store.scans  # a restock and a drop read the product's users


def test_every_topic_partition_is_acknowledged_in_offset_order(uncrashed: CatalogShell) -> None:
    acks: dict[tuple[str, int], list[int]] = {}
    for entry in uncrashed.journal.entries:
        if entry[0] == "ack":
            acks.setdefault((entry[1], entry[2]), []).append(entry[3])
    for tp, offsets in acks.items():
        assert offsets == list(range(len(offsets))), tp
    assert any(t == CAT.fanout for t, _ in acks) and any(t == CAT.interest for t, _ in acks)


QUIET_RULES = make_rules(
    only=(),
    triggers=RULES.model_dump(include={"triggers"})["triggers"],
    contact_policy={
        "frequency_cap": {"max": 5, "per": "24h"},
        "quiet_hours": {"start": "20:00", "end": "08:00"},  # UTC; at() is 02:00
    },
)


def quiet_script() -> list[tuple[datetime, str, str, dict[str, Any]]]:
    """Restocks and drops of p1 and p2 in the night, whose stages wait for 08:00; p1 goes
    out of stock and its price back up before then, u3 orders p2."""
    events: list[tuple[datetime, str, str, dict[str, Any]]] = []
    for product in ("p1", "p2"):
        events.append((at(), "catalog", product, {"in_stock": False, "price": 100}))
    for user, products in (("u1", ("p1", "p2")), ("u2", ("p2",)), ("u3", ("p1", "p2"))):
        for product in products:
            fields = {"product_id": product, "price": 100}
            events.append((at(minutes=10), "product_viewed", user, fields))
    for product in ("p1", "p2"):  # due at 04:00 (drop) and 05:00 (restock): deferred
        events.append((at(hours=1), "catalog", product, {"in_stock": True, "price": 80}))
    return [
        *events,
        (at(hours=3, minutes=30), "catalog", "p1", {"in_stock": False}),
        (at(hours=4), "catalog", "p1", {"price": 100}),
        (at(hours=4, minutes=30), "order_placed", "u3", _order("o3", "p2")),
    ]


async def test_a_stage_deferred_by_quiet_hours_is_cancelled_meanwhile_live_as_in_replay() -> None:
    until = at(hours=8)
    shell = await run(CatalogShell(QUIET_RULES, at()), events=quiet_script(), until=until)
    live = sorted(shell.audit(), key=_key)
    assert live == sorted(oracle(QUIET_RULES, quiet_script(), until), key=_key)
    decided = sorted((r["trigger"], r["user_id"], r["context"]["product_id"]) for r in live)
    # p1's stages are cancelled by its out-of-stock and its rise, u3's by the order
    assert decided == [
        ("back_in_stock", "u1", "p2"),
        ("back_in_stock", "u2", "p2"),
        ("price_drop", "u1", "p2"),
        ("price_drop", "u2", "p2"),
    ]
    assert {r["fired_at"] for r in live} == {"2026-11-23T08:00:00Z"}


def outcome(shell: CatalogShell) -> tuple[Counter[str], list[tuple[str, str, str]]]:
    """Sent ids with multiplicity; the audit's distinct (user, trigger, id) in order."""
    audit = sorted({(r["user_id"], r["trigger"], r["trigger_id"]) for r in shell.audit()})
    return Counter(shell.sent_ids()), audit


async def test_a_crash_after_any_single_effect_loses_and_repeats_nothing(
    uncrashed: CatalogShell,
) -> None:
    expected = outcome(uncrashed)
    assert set(expected[0].values()) == {1} and len(expected[0]) == 9  # 7 catalog, 2 carts
    entries = uncrashed.journal.entries
    # Every effect of the batches that fan out the restock and the drops, and a sample of
    # the rest (the whole run has thousands of effects, mostly marks).
    fanouts = [i for i, e in enumerate(entries) if e[:2] == ("output", CAT.fanout)]
    points = set(range(1, len(entries) + 1, 97))
    marks = {("output", CAT.fanout, None), ("output", CAT.interest, None)}
    for i in fanouts:
        end = next(j for j in range(i, len(entries)) if entries[j][0] == "ack")
        # Every effect but the watermarks' sends (one per partition pair, all alike): of a
        # run of those, the first.
        points |= {
            j + 1
            for j in range(i, end + 2)
            if entries[j][:3] not in marks or entries[j - 1][:3] not in marks
        }
    for point in sorted(points):
        crashed = await run(CatalogShell(RULES, at()), crash_after=point)
        assert crashed.restarts == 1, point
        assert outcome(crashed) == expected, (point, entries[point - 1])


async def test_a_backlog_drains_in_a_few_batches_with_replays_decisions() -> None:
    """Everything produced at once (a restart's backlog): the two sides' watermarks must
    not wait on each other (a user partition announces what it has *read*, not applied),
    so a few batches apply it all, in event-time order, with replay's decisions."""
    rules = make_rules(
        only=("cart_abandonment",),
        triggers=RULES.model_dump(include={"triggers"})["triggers"] | {},
        contact_policy={"frequency_cap": {"max": 5, "per": "24h"}, "max_delay": "2d"},
    )
    shell = CatalogShell(rules, UNTIL)  # assigned when the backlog is there
    for ts, kind, who, fields in script():
        if kind == "catalog":
            shell.catalog(ts, who, **fields)
        else:
            shell.user_event(kind, ts, who, **fields)
    await shell.pump(rounds=6)
    assert shell.batches.waiting() == 0
    replayed = [project(r) for r in shell.replay_json(UNTIL) if r["kind"] == "decision"]
    assert len(replayed) == 9
    assert sorted(shell.records()) == sorted(replayed)
