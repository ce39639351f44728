"""Back in stock and price drop (contract 7.3): the user side of catalog triggers.

A ``product_updated`` has no user: whoever reads the catalog (``nudge replay``,
:mod:`triggers.catalog_interest`; the live service's fan-out later) finds the
users concerned and delivers to each a :class:`CatalogChanged` with the catalog
event's id and time, applied to the user's state like any event through the
driver. It is not activity (no dormancy re-arming, no last activity), but it is
remembered as seen, so a re-delivered fan-out message changes nothing.

- ``restocked`` (the user's interest qualifies): ``back_in_stock`` arms; stage *i*
  is due at the catalog event + ``stages[i]``.
- ``old_price`` set (the new price is ``min_drop_percent`` below the lowest price
  the user saw): ``price_drop`` arms the same way.
- ``out_of_stock``: a pending ``back_in_stock`` of the product is cancelled;
  ``new_price`` at or above a pending ``price_drop``'s ``old_price`` cancels it.
- an ``order_placed`` with the product cancels both (event time: only an order
  later than the catalog event).

One episode per (trigger, product) at a time (a new arming replaces it); its key is
the catalog event's ``event_id`` plus the product id. The pending stage's
``subject`` holds the decision context as compact JSON: product, category, and for
price drops the old and new price.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, ClassVar

import msgspec
import orjson
from pydantic import Field, field_validator

from triggers.episodes import open_episode
from triggers.events import OrderPlaced
from triggers.rules_types import Duration, Int, PositiveDuration, TriggerRules, check_increasing
from triggers.state import Amount, Pending, UserState

BACK_IN_STOCK = "back_in_stock"
PRICE_DROP = "price_drop"


class CatalogChanged(msgspec.Struct, frozen=True, gc=False):
    """One catalog event as it concerns one user (core-internal, never on the wire in)."""

    type: ClassVar[str] = "catalog_changed"
    event_id: str  # the product_updated's
    user_id: str
    ts: datetime  # the product_updated's
    product_id: str
    category: str | None = None
    restocked: bool = False  # arms back_in_stock
    out_of_stock: bool = False  # cancels back_in_stock
    new_price: Amount | None = None  # the product's price after the event, if it gave one
    old_price: Amount | None = None  # set: arms price_drop (the lowest price the user saw)
    test: bool = False


def _non_negative(stages: tuple[timedelta, ...]) -> tuple[timedelta, ...]:
    if any(stage < timedelta(0) for stage in stages):
        raise ValueError("a stage delay cannot be negative")
    return check_increasing(stages)


Stages0 = Annotated[tuple[Duration, ...], Field(min_length=1, max_length=10)]


class BackInStockRules(TriggerRules):
    enabled: bool = False
    interest_window: PositiveDuration = timedelta(days=14)
    stages: Stages0 = (timedelta(0),)
    priority: Int = 90
    _stages = field_validator("stages")(_non_negative)


class PriceDropRules(TriggerRules):
    enabled: bool = False
    interest_window: PositiveDuration = timedelta(days=14)
    min_drop_percent: float = Field(default=10.0, gt=0, le=100, allow_inf_nan=False)
    stages: Stages0 = (timedelta(0),)
    priority: Int = 85
    _stages = field_validator("stages")(_non_negative)


def product_of(item: Pending) -> str:
    return item.key.split("\x1f", 1)[1]


def _cancel(
    pending: tuple[Pending, ...], trigger: str, product_id: str, ts: datetime, also: Any = None
) -> tuple[Pending, ...]:
    return tuple(
        p
        for p in pending
        if not (
            p.trigger == trigger
            and product_of(p) == product_id
            and ts > p.anchor
            and (also is None or also(p))
        )
    )


def _arm(
    pending: tuple[Pending, ...], trigger: str, event: CatalogChanged, delay: timedelta, info: list
) -> tuple[Pending, ...]:
    kept = tuple(
        p for p in pending if not (p.trigger == trigger and product_of(p) == event.product_id)
    )
    key = f"{event.event_id}\x1f{event.product_id}"
    subject = orjson.dumps(info).decode()
    return (*kept, open_episode(trigger, key, event.ts, event.ts + delay, subject))


def _after_order(
    pending: tuple[Pending, ...], trigger: str, event: OrderPlaced
) -> tuple[Pending, ...]:
    for line in event.items:
        if any(p.trigger == trigger for p in pending):
            pending = _cancel(pending, trigger, line.product_id, event.ts)
    return pending


def react_back_in_stock(
    before: UserState, after: UserState, event: Any, rules: BackInStockRules, zone: str
) -> tuple[Pending, ...]:
    pending = after.pending
    if type(event) is OrderPlaced:
        return _after_order(pending, BACK_IN_STOCK, event)
    if type(event) is not CatalogChanged:
        return pending
    if event.out_of_stock:
        pending = _cancel(pending, BACK_IN_STOCK, event.product_id, event.ts)
    if event.restocked:
        info = [event.product_id, event.category]
        pending = _arm(pending, BACK_IN_STOCK, event, rules.stages[0], info)
    return pending


def react_price_drop(
    before: UserState, after: UserState, event: Any, rules: PriceDropRules, zone: str
) -> tuple[Pending, ...]:
    pending = after.pending
    if type(event) is OrderPlaced:
        return _after_order(pending, PRICE_DROP, event)
    if type(event) is not CatalogChanged:
        return pending
    price = event.new_price
    if price is not None:
        pending = _cancel(
            pending,
            PRICE_DROP,
            event.product_id,
            event.ts,
            lambda p: price >= orjson.loads(p.subject or "[]")[2],
        )
    if event.old_price is not None:
        info = [event.product_id, event.category, event.old_price, price]
        pending = _arm(pending, PRICE_DROP, event, rules.stages[0], info)
    return pending


def context_back_in_stock(state: UserState, item: Pending, now: datetime, rules: Any) -> dict:
    product_id, category = orjson.loads(item.subject or "[null,null]")
    return {"product_id": product_id, "category": category}


def context_price_drop(state: UserState, item: Pending, now: datetime, rules: Any) -> dict:
    product_id, category, old_price, new_price = orjson.loads(
        item.subject or "[null,null,null,null]"
    )
    return {
        "product_id": product_id,
        "category": category,
        "old_price": old_price,
        "new_price": new_price,
    }
