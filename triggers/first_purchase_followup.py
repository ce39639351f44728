"""First-purchase follow-up: thank and re-engage a customer after their first order.

Armed by the user's first order (no other known, non-cancelled order); stage
*i* is due at that order + ``stages[i]``. Another order cancels what is still
pending; cancelling the first order disarms it. The pending stage's subject is
the first order's id.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import field_validator

from triggers.episodes import find_trigger, open_episode, replace, without
from triggers.events import OrderPlaced
from triggers.order_history import find_order
from triggers.rules_types import Int, Stages, TriggerRules, check_increasing
from triggers.state import OrderHistory, Pending
from triggers.timestamps import format_timestamp

NAME = "first_purchase_followup"


class FirstPurchaseFollowupRules(TriggerRules):
    stages: Stages = (timedelta(days=3),)
    priority: Int = 60
    _increasing = field_validator("stages")(check_increasing)


def after_order_placed(
    pending: tuple[Pending, ...],
    event: OrderPlaced,
    before: OrderHistory,
    rules: FirstPurchaseFollowupRules,
) -> tuple[Pending, ...]:
    current = find_trigger(pending, NAME)
    if before.count > 0 or not rules.enabled:
        return without(pending, current)
    new = open_episode(NAME, event.event_id, event.ts, event.ts + rules.stages[0], event.order_id)
    return replace(pending, current, new)


def after_order_cancelled(pending: tuple[Pending, ...], order_id: str) -> tuple[Pending, ...]:
    current = find_trigger(pending, NAME)
    if current is None or current.subject != order_id:
        return pending
    return without(pending, current)


def context(history: OrderHistory, order_id: str | None) -> dict[str, object]:
    order = find_order(history, order_id) if order_id is not None else None
    if order is None:
        return {"order_id": order_id}
    return {
        "order_id": order.order_id,
        "order_total": order.total,
        "ordered_at": format_timestamp(order.ts),
        "products": list(order.products),
    }
