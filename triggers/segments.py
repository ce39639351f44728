"""Seed segments (contract section 4) from the order history at decision time.

``prospect`` (no orders); otherwise by the age of the last order: ``churned``
(older than ``churned_after``), ``dormant`` (older than ``dormant_after``);
otherwise (recent) ``core`` (>= ``core_min_orders`` and >= ``core_min_monetary``),
``potential`` (>= 2 orders) or ``new`` (1 order).
"""

from __future__ import annotations

from datetime import datetime

from triggers.rules import SegmentRules
from triggers.state import OrderHistory


def segment_of(history: OrderHistory, now: datetime, rules: SegmentRules) -> str:
    if history.count == 0:
        return "prospect"
    if not history.orders:  # only orders beyond the window are left: long ago
        return "churned"
    age = now - history.orders[-1].ts
    if age > rules.churned_after:
        return "churned"
    if age > rules.dormant_after:
        return "dormant"
    if history.count >= rules.core_min_orders and history.monetary >= rules.core_min_monetary:
        return "core"
    if history.count >= 2:
        return "potential"
    return "new"
