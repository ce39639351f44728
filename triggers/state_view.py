"""A shopper's state as a person reads it: the JSON-ready view of ``nudge inspect USER``.

:func:`describe_state` turns a :class:`~triggers.state.UserState` into a mapping (segment,
preferences and opt-out, cart, orders kept, pending stages with their due and send times,
held decisions, recent contacts, the decision an order would convert, the user's A/B
variants; an erased user's memory alone), as of a moment ``now``. Pure, and below both of
its readers: the command line (``cli.inspect`` renders it for a terminal) and the worker's
admin endpoint (``stream.admin``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from triggers import dormancy
from triggers.durations import format_duration
from triggers.quiet_hours import quiet_until
from triggers.rules import Rules
from triggers.segments import segment_of
from triggers.state import Pending, UserState
from triggers.timestamps import format_timestamp
from triggers.variants import variant_of, weighted


def _ts(moment: datetime | None) -> str | None:
    return None if moment is None else format_timestamp(moment)


def describe_state(state: UserState, rules: Rules, now: datetime) -> dict[str, Any]:
    """The user's state as of ``now``: a JSON-ready mapping (times as RFC 3339 UTC)."""
    erased_at = state.erased_at
    if erased_at is not None and state == UserState(state.user_id, erased_at=erased_at):
        return {  # the erasure memory alone (contract 8.5): there is nothing else to show
            "user_id": state.user_id,
            "as_of": _ts(now),
            "erased_at": _ts(erased_at),
            "memory_until": _ts(erased_at + rules.erasure_memory),
        }
    prefs = state.prefs
    history = state.history
    cart = state.cart
    policy = rules.contact_policy
    cap = policy.frequency_cap
    in_window = [moment for moment in state.contacts.recent if now - cap.per < moment <= now]
    attributable = state.contacts.attributable
    return {
        "user_id": state.user_id,
        "as_of": _ts(now),
        "segment": segment_of(history, now, rules.segments),
        "opted_out": prefs is not None and prefs.opt_in is False,
        "preferences": {
            "marketing_opt_in": None if prefs is None else prefs.opt_in,
            "opt_in_at": None if prefs is None else _ts(prefs.opt_in_at),
            "timezone": None if prefs is None else prefs.timezone,
        },
        "time_zone_used": (prefs.timezone if prefs is not None else None) or rules.default_timezone,
        "last_activity": _ts(state.last_activity),
        "cart": {
            "lines": [
                {
                    "product_id": line.product_id,
                    "quantity": line.quantity,
                    "unit_price": line.unit_price,
                    "category": line.category,
                }
                for line in cart.lines
            ],
            "value": round(sum(_line_value(line) for line in cart.lines), 2),
            "checkout_started": cart.checkout,
            "updated_at": _ts(cart.updated_at),
        },
        "orders": {
            "count": history.count,
            "monetary": history.monetary,
            "kept": [
                {
                    "order_id": order.order_id,
                    "ts": _ts(order.ts),
                    "total": order.total,
                    "products": list(order.products),
                }
                for order in history.orders
            ],
            "cancelled": list(history.cancelled),
        },
        "last_view": None
        if state.viewed is None
        else {
            "product_id": state.viewed.product_id,
            "category": state.viewed.category,
            "price": state.viewed.price,
            "ts": _ts(state.viewed.ts),
        },
        "pending": [_pending(item, rules, state) for item in _all_pending(state, rules)],
        "held": [
            {
                "trigger_id": decision.trigger_id,
                "trigger": decision.trigger,
                "stage": decision.stage,
                "status": decision.status,
                "reached_at": _ts(decision.fired_at),
                "offer": decision.offer,
                "variant": decision.variant,
            }
            for decision in state.held
        ],
        "contacts": {
            "in_frequency_window": len(in_window),
            "frequency_cap": {"max": cap.max, "per": _duration(cap.per)},
            "recent": [_ts(moment) for moment in state.contacts.recent],
            "last_by_trigger": {name: _ts(at) for name, at in state.contacts.last_by_trigger},
        },
        "converts": None
        if attributable is None
        else {
            "trigger_id": attributable.trigger_id,
            "trigger": attributable.trigger,
            "arm": attributable.arm,
            "variant": attributable.variant,
            "fired_at": _ts(attributable.fired_at),
            "until": _ts(attributable.fired_at + policy.attribution_window),
            "open": now <= attributable.fired_at + policy.attribution_window,
        },
        "variants": {
            name: variant_of(state.user_id, name, policy.holdout_salt, table)
            for name in rules.trigger_names()
            if (table := weighted(rules.trigger(name).variants))
        },
    }


def _line_value(line: Any) -> float:
    return 0.0 if line.unit_price is None else line.unit_price * line.quantity


def _duration(value: timedelta) -> str:
    return format_duration(value)


def _all_pending(state: UserState, rules: Rules) -> list[Pending]:
    items = list(state.pending)
    stages = rules.triggers.dormancy.stages
    stage = state.dormancy_stage
    if stage and stage <= len(stages) and state.last_activity is not None:
        items.append(
            dormancy.as_pending(
                state.dormancy_key or "",
                stage,
                state.dormancy_send_at,
                state.last_activity,
                rules.triggers.dormancy,
            )
        )
    return sorted(items, key=lambda item: (item.send_at, item.trigger, item.stage))


def _send_time(item: Pending, rules: Rules, state: UserState) -> datetime:
    """When the stage will be sent: its send time, moved past quiet hours it falls in."""
    window = rules.contact_policy.quiet_hours
    if window is None:
        return item.send_at
    zone_name = state.prefs.timezone if state.prefs is not None else None
    zone = ZoneInfo(zone_name or rules.default_timezone)
    return quiet_until(item.send_at, zone, window.start, window.end) or item.send_at


def _pending(item: Pending, rules: Rules, state: UserState) -> dict[str, Any]:
    stages = (
        getattr(rules.trigger(item.trigger), "stages", None)
        if item.trigger in rules.trigger_names()
        else None
    )
    return {
        "trigger": item.trigger,
        "stage": item.stage,
        "stages": len(stages) if stages else 1,
        "due_at": _ts(item.due),
        "send_at": _ts(_send_time(item, rules, state)),  # later than due: quiet hours
        "subject": item.subject,
        "episode": item.key,
    }
