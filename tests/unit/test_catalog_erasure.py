"""Erasure and retention on the catalog side (contract 8.5) on fakes: live as replay, whose
``CatalogBook.forget_user`` deletes the user's interest and armed rows at the erasure (or
the expiry); the forgotten rows leave the products table (tombstones on its changelog, then
the store), and no catalog event later than the erasure reaches the user from them."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from stream.catalog_wire import SEP, decode_interest, interest_prefix
from tests.unit.catalog_harness import CAT, CatalogShell
from tests.unit.timelines import at, make_rules
from triggers.rules import Rules

pytestmark = pytest.mark.unit

CATALOG = {
    "back_in_stock": {"enabled": True, "stages": ["1h"]},
    "price_drop": {"enabled": True, "stages": ["1h"], "min_drop_percent": 10},
}
POLICY = {"frequency_cap": {"max": 5, "per": "24h"}}
ERASURE = make_rules(only=(), triggers=CATALOG, contact_policy=POLICY, erasure_memory="6h")
RETENTION = make_rules(only=(), triggers=CATALOG, contact_policy=POLICY, retention="3h")
UNTIL = at(hours=14)

#: (produced at, event time, kind, user or product, fields)
Script = list[tuple[datetime, datetime, str, str, dict[str, Any]]]


def view(user: str, product: str, hours: float, produced: float | None = None) -> Any:
    ts = at(minutes=round(hours * 60))
    when = ts if produced is None else at(minutes=round(produced * 60))
    return (when, ts, "product_viewed", user, {"product_id": product, "price": 100})


def catalog(product: str, hours: float, **fields: Any) -> Any:
    ts = at(minutes=round(hours * 60))
    return (ts, ts, "catalog", product, fields)


def erased(user: str, hours: float) -> Any:
    ts = at(minutes=round(hours * 60))
    return (ts, ts, "user_erased", user, {})


def erasure_script() -> Script:
    """u1 is erased after viewing p1 (and a view older than the erasure is read after it);
    u3 is armed by p1's restock, then erased before its stage is due, then p1 goes out of
    stock (replay tells nobody: u3 was forgotten); u1 comes back as a new shopper and hears
    of the next restock and drop, from the new interest only; u2, armed by it, is erased in
    the millisecond before p1's next out-of-stock, so hears nothing of it."""
    return [
        catalog("p1", 0, in_stock=False, price=100, category="shoes"),
        catalog("p2", 0, in_stock=True, price=100),
        view("u1", "p1", 0.2),
        view("u2", "p1", 0.2),
        view("u3", "p1", 0.2),
        view("u3", "p2", 0.2),
        view("u3", "p3", 0.2),  # a product no catalog event reads: the sweep deletes it
        erased("u1", 1),
        view("u1", "p2", 0.8, produced=1.2),  # not later than the erasure: ignored
        catalog("p1", 1.5, in_stock=True),  # u2 and u3 (due 2:30)
        erased("u3", 2),  # before u3's stage is due
        catalog("p1", 3, in_stock=False),  # tells u2 only
        catalog("p2", 3.2, price=80),  # u3's p2 interest is gone: nobody
        view("u1", "p1", 3.5),  # a new shopper
        catalog("p1", 4, in_stock=True, price=80),  # u1 (new interest) and u2
        # read with p1's out-of-stock a millisecond later, before the sweep can run
        (at(minutes=270), at(minutes=270) - timedelta(milliseconds=1), "user_erased", "u2", {}),
        catalog("p1", 4.5, in_stock=False),  # tells u1 only
    ]


async def run(shell: CatalogShell, events: Script, until: datetime) -> CatalogShell:
    """Each event when produced; the clock then steps through every time replay fires."""
    fires = {_parse(r["fired_at"]) for r in oracle(shell.rules, events, until) if "fired_at" in r}
    moments = sorted({produced for produced, *_ in events} | fires | {until})
    for moment in moments:
        for produced, ts, kind, who, fields in events:
            if produced != moment:
                continue
            if kind == "catalog":
                shell.catalog(ts, who, **fields)
            else:
                shell.user_event(kind, ts, who, **fields)
        await shell.at(moment)
    return shell


def oracle(rules: Rules, events: Script, until: datetime) -> list[dict[str, Any]]:
    shell = CatalogShell(rules, at())
    for _, ts, kind, who, fields in sorted(events, key=lambda e: e[1]):
        if kind == "catalog":
            shell.catalog(ts, who, **fields)
        else:
            shell.user_event(kind, ts, who, **fields)
    return shell.replay_json(until)


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _key(record: dict[str, Any]) -> tuple[str, str, str]:
    return record["kind"], record["user_id"], record.get("trigger_id") or ""


def _user_keys(shell: CatalogShell, user: str) -> list[bytes]:
    store = shell.pstore
    assert store is not None
    return sorted(k for k in store.rows if k.endswith(SEP.encode() + user.encode()))


async def test_an_erased_users_rows_go_live_as_in_replay() -> None:
    shell = await run(CatalogShell(ERASURE, at()), erasure_script(), UNTIL)
    replayed = shell.replay_result(UNTIL)
    expected = sorted(shell.replay_json(UNTIL), key=_key)
    assert sorted(shell.audit(), key=_key) == expected
    decided = sorted(
        (r["trigger"], r["user_id"], r["context"]["product_id"])
        for r in expected
        if r["kind"] == "decision"
    )
    # u1 (erased at 1:00) is no recipient of the 1:30 restock, u3's stage died with it;
    # the 4:00 drop reaches u1 through the interest after the erasure (its restock stage
    # is cancelled by the 4:30 out-of-stock), u2's 4:00 stages die with its erasure.
    assert decided == [("back_in_stock", "u2", "p1"), ("price_drop", "u1", "p1")]
    # u3 heard of nothing after the erasure: still the erasure memory, not a new shopper
    # made by p1's out-of-stock or p2's drop from the rows before it.
    for user in ("u1", "u2", "u3", "u4"):
        assert shell.state(user) == replayed.states.get(user), user
    # Physically gone: u3's rows (and, with the memory over, its erasure row), and u1's
    # entries before the erasure; the changelog ends each of them with a tombstone.
    assert _user_keys(shell, "u3") == [] and _user_keys(shell, "u2") == []
    (u1,) = _user_keys(shell, "u1")
    assert u1 == interest_prefix("p1") + b"u1"
    store = shell.pstore
    assert store is not None
    assert all(t > at(hours=1) for t in decode_interest(store.rows[u1][1]).values())
    last: dict[bytes, bytes | None] = {}
    for r in shell.broker.log(CAT.changelog):
        last[r.key] = r.value  # type: ignore[index]
    u3 = [k for k in last if k.endswith(SEP.encode() + b"u3")]
    assert len(u3) >= 3 and all(last[k] is None for k in u3)


def retention_script() -> Script:
    """u7 viewed p2 and nothing since: deleted at 3:10 (retention 3h); u8 viewed it again
    at 2:30, so is kept; p2's drop at 4:00 reaches u8 only, as in replay."""
    return [
        catalog("p2", 0, in_stock=True, price=100),
        view("u7", "p2", 1 / 6),
        view("u7", "p3", 1 / 6),
        view("u8", "p2", 1 / 6),
        view("u8", "p2", 2.5),
        view("u9", "p9", 3.5),
        catalog("p2", 4, price=80),
    ]


async def test_a_user_deleted_by_retention_is_forgotten_by_the_catalog_side_too() -> None:
    shell = await run(CatalogShell(RETENTION, at()), retention_script(), UNTIL)
    expected = sorted(shell.replay_json(UNTIL), key=_key)
    assert sorted(shell.audit(), key=_key) == expected
    assert [(r["trigger"], r["user_id"]) for r in expected] == [("price_drop", "u8")]
    replayed = shell.replay_result(UNTIL)
    assert replayed.summary.expired >= 1 and "u7" not in replayed.states
    for user in ("u7", "u8"):
        assert shell.state(user) == replayed.states.get(user), user
    # u7's rows (p3's too, which no catalog event reads) and its forget row are gone.
    assert _user_keys(shell, "u7") == []
