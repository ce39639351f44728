"""Dormancy: a user who has gone quiet.

Armed by any activity; stage *i* is due at the last activity + ``stages[i]``.
Newer activity re-arms (a new episode); an event older than the last activity
changes nothing. With ``audience: customers`` only users with at least one
(non-cancelled) order are eligible: the first order arms, cancelling the last
order disarms.

Every event re-arms this trigger, so its episode is kept inline in
``UserState`` (``dormancy_key``, ``dormancy_stage``, ``dormancy_send_at``)
rather than as a :class:`~triggers.state.Pending`: the anchor is always the
user's last activity, and re-arming costs no allocation. :func:`as_pending`
gives the uniform view the firing loop works on.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import field_validator

from triggers.rules_types import Int, Stages, TriggerRules, check_increasing
from triggers.state import OrderHistory, Pending
from triggers.timestamps import format_timestamp

NAME = "dormancy"


class DormancyRules(TriggerRules):
    stages: Stages = (timedelta(days=30), timedelta(days=60), timedelta(days=90))
    audience: Literal["customers", "all"] = "customers"
    priority: Int = 40
    _increasing = field_validator("stages")(check_increasing)


def eligible(history: OrderHistory, rules: DormancyRules) -> bool:
    return rules.enabled and (rules.audience == "all" or history.count > 0)


def as_pending(
    key: str, stage: int, send_at: datetime | None, last_activity: datetime, rules: DormancyRules
) -> Pending:
    due = last_activity + rules.stages[stage - 1]
    return Pending(NAME, stage, key, last_activity, due, send_at or due)


def context(last_activity: datetime | None, now: datetime) -> dict[str, object]:
    if last_activity is None:
        return {"last_activity": None, "days_inactive": None}
    return {
        "last_activity": format_timestamp(last_activity),
        "days_inactive": (now - last_activity) // timedelta(days=1),
    }
