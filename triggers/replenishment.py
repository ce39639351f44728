"""Replenishment: remind a customer to buy a consumable again.

One episode per product. Armed by ``order_placed`` with a product whose
interval is known; due at the last purchase of the product +
``fire_at_fraction`` x interval. A new purchase of the product re-arms.

Interval, first match wins: ``products[product_id]``, ``categories[category]``,
then (with ``learn_from_history``) the mean gap between this user's purchases of
the product once there are at least ``min_purchases`` of them (a learned
interval of zero never arms). A cancelled order removes its purchases and the
episode is recomputed from what remains.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from pydantic import Field

from triggers.episodes import Target, find_slot, open_episode, rearm
from triggers.order_history import mean_gap, purchases_of
from triggers.rules_types import Int, IntervalTable, TriggerRules
from triggers.state import OrderHistory, Pending, ProductPurchases
from triggers.timestamps import format_timestamp, scaled

NAME = "replenishment"


class ReplenishmentRules(TriggerRules):
    fire_at_fraction: float = Field(default=0.9, gt=0, le=10, allow_inf_nan=False)
    products: IntervalTable = Field(default_factory=dict)
    categories: IntervalTable = Field(default_factory=dict)
    learn_from_history: bool = True
    min_purchases: int = Field(default=2, ge=2, le=8)  # the state keeps 8 purchases per product
    priority: Int = 80


def interval_of(
    product: ProductPurchases, rules: ReplenishmentRules
) -> tuple[timedelta, str] | None:
    """(interval, source) with source ``product`` | ``category`` | ``learned``; None if unknown."""
    if product.product_id in rules.products:
        return rules.products[product.product_id], "product"
    if product.category is not None and product.category in rules.categories:
        return rules.categories[product.category], "category"
    if rules.learn_from_history and len(product.times) >= rules.min_purchases:
        gap = mean_gap(product.times)
        if gap is not None and gap > timedelta(0):
            return gap, "learned"
    return None


def target(product: ProductPurchases | None, rules: ReplenishmentRules) -> Target | None:
    if product is None:
        return None
    interval = interval_of(product, rules)
    if interval is None:
        return None
    anchor = product.times[-1]
    return anchor, anchor + scaled(interval[0], rules.fire_at_fraction)


def after_history_change(
    pending: tuple[Pending, ...],
    event_id: str,
    event_ts: datetime,
    before: OrderHistory,
    after: OrderHistory,
    product_ids: Iterable[str],
    rules: ReplenishmentRules,
) -> tuple[Pending, ...]:
    """Re-arm the episodes of the products an order (or a cancellation) touched."""
    for product_id in product_ids:
        current = find_slot(pending, NAME, product_id)
        if not rules.enabled:
            if current is not None:
                pending = tuple(p for p in pending if p is not current)
            continue
        key = f"{event_id}\x1f{product_id}"

        def arm(anchor: datetime, due: datetime, key: str = key, pid: str = product_id) -> Pending:
            return open_episode(NAME, key, anchor, due, pid)

        pending = rearm(
            pending,
            current,
            target(purchases_of(before, product_id), rules),
            target(purchases_of(after, product_id), rules),
            arm,
            event_ts,
        )
    return pending


def context(history: OrderHistory, product_id: str | None, rules: ReplenishmentRules) -> dict:
    product = purchases_of(history, product_id) if product_id is not None else None
    if product is None:
        return {"product_id": product_id}
    interval = interval_of(product, rules)
    return {
        "product_id": product.product_id,
        "category": product.category,
        "last_purchase": format_timestamp(product.times[-1]),
        "purchases": len(product.times),
        "interval_days": round(interval[0] / timedelta(days=1), 3) if interval else None,
        "interval_source": interval[1] if interval else None,
    }
