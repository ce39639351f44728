"""Browse abandonment: a product viewed and then left.

Armed by ``product_viewed``; stage *i* is due at the view + ``stages[i]``. A
newer view re-arms (a new episode about the newer product); adding the viewed
product to the cart, or any ``order_placed`` not older than the view, cancels.
A view not later than the user's latest order is history, and a view of a
product already in the cart does not arm (cart abandonment covers it).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import field_validator

from triggers.episodes import find_trigger, open_episode, replace, without
from triggers.events import ProductViewed
from triggers.rules_types import Duration, Int, Stages, TriggerRules, check_increasing
from triggers.state import Cart, Pending, View
from triggers.timestamps import format_timestamp

NAME = "browse_abandonment"


class BrowseAbandonmentRules(TriggerRules):
    stages: Stages = (timedelta(hours=2),)
    cooldown: Duration = timedelta(hours=24)
    priority: Int = 50
    _increasing = field_validator("stages")(check_increasing)


def after_view(
    viewed: View | None,
    pending: tuple[Pending, ...],
    event: ProductViewed,
    cart: Cart,
    last_order_at: datetime | None,
    rules: BrowseAbandonmentRules,
) -> tuple[View | None, tuple[Pending, ...]]:
    if last_order_at is not None and event.ts <= last_order_at:
        return viewed, pending
    if viewed is not None and event.ts < viewed.ts:
        return viewed, pending
    ts, product_id = event.ts, event.product_id
    view = View(product_id, event.category, event.price, ts)
    current = find_trigger(pending, NAME) if pending else None
    if not rules.enabled or _in_cart(cart, product_id, ts):
        return view, without(pending, current)
    new = open_episode(NAME, event.event_id, ts, ts + rules.stages[0])
    if current is None:
        return view, (*pending, new)
    return view, replace(pending, current, new)


def _in_cart(cart: Cart, product_id: str, ts: datetime) -> bool:
    """A view of a product in the cart, or one added at or after the view (a view arriving
    late, after the add that cancels it), arms nothing."""
    for line in cart.lines:
        if line.product_id == product_id:
            return True
    added = cart.added
    return bool(added) and any(product == product_id and at >= ts for product, at in added)


def after_cart_add(
    viewed: View | None, pending: tuple[Pending, ...], product_id: str
) -> tuple[Pending, ...]:
    if viewed is None or viewed.product_id != product_id:
        return pending
    return without(pending, find_trigger(pending, NAME))


def after_order(
    viewed: View | None, pending: tuple[Pending, ...], order_ts: datetime
) -> tuple[Pending, ...]:
    if viewed is None or order_ts < viewed.ts:
        return pending
    return without(pending, find_trigger(pending, NAME))


def context(viewed: View | None) -> dict[str, object]:
    if viewed is None:
        return {}
    return {
        "product_id": viewed.product_id,
        "category": viewed.category,
        "price": viewed.price,
        "viewed_at": format_timestamp(viewed.ts),
    }
