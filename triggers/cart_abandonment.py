"""Cart abandonment: the cart facts and the trigger armed by a non-empty cart.

Armed by cart activity that leaves the cart non-empty (or a started checkout),
with a value of at least ``min_cart_value``; stage *i* is due at the latest
cart activity + ``stages[i]``. Newer cart activity re-arms (a new episode);
``order_placed`` and an emptied cart cancel. A cart keeps at most
``MAX_CART_LINES`` (50) lines: adding a new product to a full cart drops its
oldest line (bounded state; no real cart gets there).

Cart events not later than the user's latest order are history: the engine
does not call :func:`apply_event` for them. An order empties the cart only if
it is not older than the latest cart activity (topics are not ordered).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import Field, field_validator

from triggers.episodes import find_trigger, open_episode, replace, without
from triggers.events import CartCleared, CartItemAdded, CartItemRemoved, CheckoutStarted
from triggers.rules_types import Duration, Int, Stages, TriggerRules, check_increasing
from triggers.state import MAX_CART_LINES, RECENT_ADDS, Cart, CartLine, Pending
from triggers.timestamps import format_timestamp

NAME = "cart_abandonment"


class CartAbandonmentRules(TriggerRules):
    stages: Stages = (timedelta(hours=1), timedelta(hours=24))
    min_cart_value: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    cooldown: Duration = timedelta(hours=24)
    priority: Int = 100
    _increasing = field_validator("stages")(check_increasing)


CartEvent = CartItemAdded | CartItemRemoved | CartCleared | CheckoutStarted


def apply_event(cart: Cart, event: CartEvent) -> Cart:
    """The cart after one cart event (the caller has checked it is not history)."""
    lines = cart.lines
    checkout = cart.checkout
    added = cart.added
    if type(event) is CartItemAdded:
        added = remember_add(added, event.product_id, event.ts)
        for index, line in enumerate(lines):
            if line.product_id == event.product_id:
                merged = CartLine(
                    line.product_id,
                    line.quantity + event.quantity,
                    line.unit_price if event.unit_price is None else event.unit_price,
                    event.category or line.category,
                )
                lines = (*lines[:index], merged, *lines[index + 1 :])
                break
        else:
            line = CartLine(event.product_id, event.quantity, event.unit_price, event.category)
            lines = (*lines, line)[-MAX_CART_LINES:]  # a full cart drops its oldest line
    elif type(event) is CartItemRemoved:
        kept = []
        for line in lines:
            if line.product_id == event.product_id:
                if event.quantity is None or event.quantity >= line.quantity:
                    continue
                line = CartLine(
                    line.product_id, line.quantity - event.quantity, line.unit_price, line.category
                )
            kept.append(line)
        lines = tuple(kept)
    elif type(event) is CartCleared:
        lines = ()
    else:
        checkout = True
    if not lines and type(event) is not CheckoutStarted:
        checkout = False
    updated_at = cart.updated_at
    if updated_at is None or event.ts > updated_at:
        updated_at = event.ts
    return Cart(lines, updated_at, checkout, added, cart.emptied_at)


def remember_add(
    added: tuple[tuple[str, datetime], ...], product_id: str, ts: datetime
) -> tuple[tuple[str, datetime], ...]:
    latest = ts
    kept = []
    for product, at in added:
        if product == product_id:
            latest = max(latest, at)
        else:
            kept.append((product, at))
    kept.append((product_id, latest))
    return tuple(kept[-RECENT_ADDS:])


def cart_value(cart: Cart) -> float:
    return round(sum(line.quantity * (line.unit_price or 0.0) for line in cart.lines), 6)


def armable(cart: Cart, rules: CartAbandonmentRules) -> bool:
    return bool(cart.lines or cart.checkout) and cart_value(cart) >= rules.min_cart_value


def after_cart_event(
    pending: tuple[Pending, ...],
    before: Cart,
    after: Cart,
    event: CartEvent,
    rules: CartAbandonmentRules,
) -> tuple[Pending, ...]:
    """Arm, re-arm, keep or cancel the cart episode after a (non-history) cart event."""
    current = find_trigger(pending, NAME)
    if not rules.enabled or not armable(after, rules):
        return without(pending, current)
    newest = before.updated_at is None or event.ts >= before.updated_at
    if newest or (current is None and not armable(before, rules)):
        anchor = after.updated_at or event.ts
        new = open_episode(NAME, event.event_id, anchor, anchor + rules.stages[0])
        return replace(pending, current, new)
    return pending  # an older event changed the contents; the episode keeps its schedule


def after_order(
    cart: Cart, pending: tuple[Pending, ...], order_ts: datetime
) -> tuple[Cart, tuple[Pending, ...]]:
    """``order_placed`` empties the cart and cancels the episode, unless it predates the cart."""
    emptied_at = order_ts if cart.emptied_at is None else max(cart.emptied_at, order_ts)
    if cart.updated_at is not None and order_ts < cart.updated_at:
        return Cart(cart.lines, cart.updated_at, cart.checkout, cart.added, emptied_at), pending
    cart = Cart((), cart.updated_at, False, cart.added, emptied_at)
    return cart, without(pending, find_trigger(pending, NAME))


def context(cart: Cart) -> dict[str, object]:
    lines = []
    items = 0
    value = 0.0
    for line in cart.lines:
        lines.append(
            {
                "product_id": line.product_id,
                "quantity": line.quantity,
                "unit_price": line.unit_price,
                "category": line.category,
            }
        )
        items += line.quantity
        value += line.quantity * (line.unit_price or 0.0)
    return {
        "lines": lines,
        "items": items,
        "value": round(value, 6),
        "checkout_started": cart.checkout,
        "last_cart_activity": format_timestamp(cart.updated_at) if cart.updated_at else None,
    }
