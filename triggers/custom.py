"""Custom triggers (contract 7.3): a shop's own scenario from the rules file.

``triggers.custom.NAME`` holds ``when`` (the arming event: a type and optional
filters), ``unless`` (events that cancel), ``stages`` and the keys every trigger
has (``enabled``, ``priority``, ``cooldown``, ``variants``), plus its ``offers``
and ``audience``. Like every trigger added by contract section 7 it is off unless
it says ``enabled: true``; its ``cooldown`` defaults to 24h, as cart and browse
abandonment's (``cooldown: 0s`` to reach a shopper on every new episode).

A filter names a field the event type has; anything else is refused at load
with its key path (``triggers.custom.socks.unless[0].min_total: order_placed has
it, search has not``). ``product_id`` and ``category`` are lists that match any
element; ``min_price`` compares a view's or wishlist's ``price`` or a cart add's
``unit_price``; for an order, ``product_id``, ``category`` and ``min_price`` match
when one line matches all three, and ``min_total`` compares its total.

Episodes: a matching event arms (its ``event_id`` is the key; a new match re-arms,
one older than the pending episode's arming event is history), stage *i* is due at
the arming event + ``stages[i]``. An event matching any ``unless`` cancels the
pending episode if it is later than the arming event. ``audience: customers``
arms only users with an order. A re-sent ``order_placed`` (an order id already
known) does not arm again.

The pending stage's ``subject`` keeps what the decision's ``context`` shows (the
arming event's ``type``, ``product_id``, ``category``, ``price`` where present),
as compact JSON.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import orjson
from pydantic import AfterValidator, Field, field_validator, model_validator

from triggers.episodes import find_trigger, open_episode, replace, without
from triggers.events import TOPIC_OF_TYPE, OrderPlaced
from triggers.order_history import knows_order
from triggers.rules_types import (
    Duration,
    Int,
    OfferTable,
    Stages,
    Strict,
    TriggerRules,
    check_increasing,
)
from triggers.state import Pending, UserState

#: The filters each event type can be matched on.
FILTERS: dict[str, frozenset[str]] = {
    "product_viewed": frozenset({"product_id", "category", "min_price"}),
    "category_viewed": frozenset({"category"}),
    "search": frozenset(),
    "wishlist_added": frozenset({"product_id", "category", "min_price"}),
    "cart_item_added": frozenset({"product_id", "category", "min_price"}),
    "cart_item_removed": frozenset({"product_id"}),
    "cart_cleared": frozenset(),
    "checkout_started": frozenset(),
    "order_placed": frozenset({"product_id", "category", "min_price", "min_total"}),
    "order_cancelled": frozenset(),
    "preferences_updated": frozenset(),
}
assert FILTERS.keys() == TOPIC_OF_TYPE.keys()

_NAME = re.compile(r"[a-z0-9_]{1,64}")
Values = Annotated[list[Annotated[str, Field(min_length=1, max_length=128)]], Field(min_length=1)]
Amount = Annotated[float, Field(ge=0, allow_inf_nan=False)]


def _known_type(value: str) -> str:
    if value not in FILTERS:
        raise ValueError(f"unknown event type {value!r} (known: {', '.join(FILTERS)})")
    return value


class Match(Strict):
    """One event pattern: ``type`` and optional filters (all must hold)."""

    type: Annotated[str, AfterValidator(_known_type)]
    product_id: Values | None = None
    category: Values | None = None
    min_price: Amount | None = None
    min_total: Amount | None = None

    @model_validator(mode="after")
    def _fields_of_type(self) -> Match:
        allowed = FILTERS[self.type]
        for name in ("product_id", "category", "min_price", "min_total"):
            if getattr(self, name) is not None and name not in allowed:
                having = [kind for kind, fields in FILTERS.items() if name in fields]
                raise ValueError(
                    f"{name}: {self.type} events have no such field "
                    f"(it filters {', '.join(having)})"
                )
        return self


class CustomRules(TriggerRules):
    enabled: bool = False
    # The built-in triggers' 24h (cart and browse abandonment): a trigger that re-arms on
    # every match must not reach the same shopper again and again (issue 23).
    cooldown: Duration = timedelta(hours=24)
    when: Match
    unless: list[Match] = Field(default_factory=list, max_length=20)
    stages: Stages = (timedelta(hours=1),)
    priority: Int = 50
    offers: OfferTable = Field(default_factory=dict)
    audience: Literal["all", "customers"] = "all"
    _increasing = field_validator("stages")(check_increasing)


def check_name(name: str, builtin: tuple[str, ...]) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(f"custom trigger name {name[:70]!r}: use 1..64 of a-z, 0-9 and _")
    if name in builtin:
        raise ValueError(f"custom trigger name {name!r} is a built-in trigger's")
    return name


def _line_hit(match: Match, event: OrderPlaced) -> tuple[str | None, str | None, Any] | None:
    if match.min_total is not None and event.total < match.min_total:
        return None
    for line in event.items:
        if match.product_id is not None and line.product_id not in match.product_id:
            continue
        if match.category is not None and line.category not in match.category:
            continue
        if match.min_price is not None and line.unit_price < match.min_price:
            continue
        return line.product_id, line.category, line.unit_price
    return None


def matches(match: Match, event: Any) -> tuple[str | None, str | None, Any] | None:
    """(product_id, category, price) of a matching event (each None if it has none), or None."""
    if event.type != match.type:
        return None
    if type(event) is OrderPlaced:
        return _line_hit(match, event)
    product_id = getattr(event, "product_id", None)
    category = getattr(event, "category", None)
    price = getattr(event, "price", None)
    if price is None:
        price = getattr(event, "unit_price", None)
    if match.product_id is not None and product_id not in match.product_id:
        return None
    if match.category is not None and category not in match.category:
        return None
    if match.min_price is not None and (price is None or price < match.min_price):
        return None
    return product_id, category, price


def react(
    name: str,
    before: UserState,
    after: UserState,
    event: Any,
    rules: CustomRules,
    default_zone: str,
) -> tuple[Pending, ...]:
    pending = after.pending
    current = find_trigger(pending, name)
    if type(event) is OrderPlaced and knows_order(before.history, event.order_id):
        return pending  # a re-sent order: nothing new
    if current is not None and event.ts > current.anchor:
        for match in rules.unless:
            if matches(match, event) is not None:
                pending, current = without(pending, current), None
                break
    hit = matches(rules.when, event)
    if hit is None or (current is not None and event.ts < current.anchor):
        return pending
    if rules.audience == "customers" and after.history.count == 0:
        return pending
    subject = orjson.dumps([event.type, *hit]).decode()
    new = open_episode(name, event.event_id, event.ts, event.ts + rules.stages[0], subject)
    return replace(pending, current, new)


def context(state: UserState, item: Pending, now: datetime, rules: CustomRules) -> dict:
    kind, product_id, category, price = orjson.loads(item.subject or "[null,null,null,null]")
    out: dict[str, object] = {"type": kind}
    if product_id is not None:
        out["product_id"] = product_id
    if category is not None:
        out["category"] = category
    if price is not None:
        out["price"] = price
    return out
