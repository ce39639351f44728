"""Lapsing: a regular customer is late for their next order.

Armed once the user has at least ``min_orders`` orders; due at the last order
+ ``factor`` x the user's mean gap between orders (over the orders kept in
state). A new order re-arms; a cancelled order recomputes from what remains.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import Field

from triggers.episodes import Target, find_trigger, open_episode, rearm
from triggers.order_history import mean_gap
from triggers.rules_types import MAX_INT, Int, TriggerRules
from triggers.state import OrderHistory, Pending
from triggers.timestamps import format_timestamp, scaled

NAME = "lapsing"


class LapsingRules(TriggerRules):
    factor: float = Field(default=1.5, gt=0, le=100, allow_inf_nan=False)
    min_orders: int = Field(default=3, ge=2, le=MAX_INT)  # a mean gap needs two orders
    priority: Int = 70


def target(history: OrderHistory, rules: LapsingRules) -> Target | None:
    if history.count < rules.min_orders:
        return None
    gap = mean_gap([order.ts for order in history.orders])
    if gap is None or gap <= timedelta(0):
        return None
    anchor = history.orders[-1].ts
    return anchor, anchor + scaled(gap, rules.factor)


def after_history_change(
    pending: tuple[Pending, ...],
    event_id: str,
    event_ts: datetime,
    before: OrderHistory,
    after: OrderHistory,
    rules: LapsingRules,
) -> tuple[Pending, ...]:
    current = find_trigger(pending, NAME)
    if not rules.enabled:
        return pending if current is None else tuple(p for p in pending if p is not current)

    def arm(anchor: datetime, due: datetime) -> Pending:
        return open_episode(NAME, event_id, anchor, due)

    return rearm(pending, current, target(before, rules), target(after, rules), arm, event_ts)


def context(history: OrderHistory) -> dict[str, object]:
    if not history.orders:
        return {"orders": history.count}
    last = history.orders[-1]
    gap = mean_gap([order.ts for order in history.orders])
    return {
        "last_order_id": last.order_id,
        "last_order_at": format_timestamp(last.ts),
        "orders": history.count,
        "mean_gap_days": round(gap / timedelta(days=1), 3) if gap is not None else None,
    }
