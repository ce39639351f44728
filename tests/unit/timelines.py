"""Scripted timelines for the engine tests.

A :class:`Timeline` feeds wire-format events (real JSON through ``parse_event``)
at explicit times into the replay driver, whose clock is event time: before
an event at T every stage due by T fires, at its due time. ``advance(ts)``
moves the clock without an event. Records are collected in emission order.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from triggers.events import parse_event
from triggers.records import Conversion, Decision
from triggers.registry import TRIGGER_NAMES
from triggers.replay import Replay
from triggers.rules import Rules
from triggers.state import UserState

T0 = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # a Monday; 10:00 in Asia/Shanghai


def at(days: float = 0, hours: float = 0, minutes: float = 0, seconds: float = 0) -> datetime:
    """T0 plus an offset."""
    return T0 + timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


def iso(moment: datetime) -> str:
    """The record form of a time: RFC 3339 UTC with Z (milliseconds only when set)."""
    text = moment.astimezone(UTC).isoformat(timespec="milliseconds")
    text = text.replace("+00:00", "Z")
    return text.replace(".000Z", "Z")


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def make_rules(only: Iterable[str] | None = None, **sections: Any) -> Rules:
    """Rules from keyword sections; ``only`` disables every other trigger."""
    data: dict[str, Any] = {}
    if only is not None:
        enabled = set(only)
        data["triggers"] = {name: {"enabled": name in enabled} for name in TRIGGER_NAMES}
    return Rules.model_validate(_merge(data, sections))


def wire(kind: str, ts: datetime | int | str, user: str, event_id: str, **fields: Any) -> bytes:
    stamp = iso(ts) if isinstance(ts, datetime) else ts
    return orjson.dumps(
        {"event_id": event_id, "type": kind, "user_id": user, "ts": stamp, **fields}
    )


class Timeline:
    def __init__(self, rules: Rules | None = None, *, suppressed: Iterable[str] = ()) -> None:
        self.rules = rules if rules is not None else Rules()
        self.replay = Replay(self.rules, suppressed=frozenset(suppressed))
        self.records: list[Decision | Conversion] = []
        self._ids = itertools.count(1)

    def send(
        self,
        kind: str,
        ts: datetime | int | str,
        user: str = "u1",
        event_id: str | None = None,
        **fields: Any,
    ) -> list[Decision | Conversion]:
        """One event, as the wire would carry it; returns the records it released."""
        event_id = event_id or f"e{next(self._ids)}"
        out = self.replay.feed_event(parse_event(wire(kind, ts, user, event_id, **fields)))
        self.records += out
        return out

    def advance(self, ts: datetime) -> list[Decision | Conversion]:
        out = self.replay.advance(ts)
        self.records += out
        return out

    def decisions(self, trigger: str | None = None, user: str | None = None) -> list[Decision]:
        return [
            r
            for r in self.records
            if isinstance(r, Decision)
            and (trigger is None or r.trigger == trigger)
            and (user is None or r.user_id == user)
        ]

    def conversions(self) -> list[Conversion]:
        return [r for r in self.records if isinstance(r, Conversion)]

    def state(self, user: str = "u1") -> UserState:
        return self.replay.states[user]

    # shorthands for the common events
    def add(self, ts: datetime, product: str = "p1", price: float = 10.0, **kw: Any) -> list:
        return self.send("cart_item_added", ts, product_id=product, unit_price=price, **kw)

    def view(self, ts: datetime, product: str = "p1", **kw: Any) -> list:
        return self.send("product_viewed", ts, product_id=product, **kw)

    def order(
        self,
        ts: datetime,
        order_id: str,
        products: Iterable[str] = ("p1",),
        price: float = 10.0,
        category: str | None = None,
        **kw: Any,
    ) -> list:
        items = [
            {"product_id": p, "quantity": 1, "unit_price": price, "category": category}
            for p in products
        ]
        return self.send("order_placed", ts, order_id=order_id, items=items, **kw)


def brief(decision: Decision) -> tuple[str, int, str, str | None, str]:
    """(trigger, stage, status, reason, fired_at) for compact assertions."""
    return (
        decision.trigger,
        decision.stage,
        decision.status,
        decision.reason,
        iso(decision.fired_at),
    )
