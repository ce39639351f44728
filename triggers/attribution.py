"""Conversion attribution: an order after a contact.

The first ``order_placed`` within ``attribution_window`` after a ``sent`` or
``holdout`` decision yields one conversion for the most recent such decision
(arm ``treatment`` or ``holdout``), with that decision's A/B variant. Each
decision converts at most once; an order older than the decision does not
convert it.
"""

from __future__ import annotations

from datetime import timedelta

from triggers.events import OrderPlaced
from triggers.records import Conversion
from triggers.state import ContactLog


def attribute(
    log: ContactLog, order: OrderPlaced, window: timedelta
) -> tuple[ContactLog, Conversion | None]:
    decision = log.attributable
    if decision is None or not decision.fired_at <= order.ts <= decision.fired_at + window:
        return log, None
    conversion = Conversion(
        trigger_id=decision.trigger_id,
        trigger=decision.trigger,
        user_id=order.user_id,
        arm=decision.arm,
        order_id=order.order_id,
        revenue=order.total,
        converted_at=order.ts,
        variant=decision.variant,
        channel=decision.channel,
    )
    return ContactLog(log.recent, log.last_by_trigger, None), conversion
