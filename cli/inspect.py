"""``nudge inspect USER``: one shopper's state as a person reads it.

:func:`describe_state` turns a :class:`~triggers.state.UserState` into a JSON-ready
mapping (segment, preferences and opt-out, cart, orders kept, pending stages with
their due and send times, held decisions, recent contacts, the decision an order
would convert, the user's A/B variants), as of a moment ``now``; :func:`render_text`
prints that mapping for a terminal. Both are pure: the same mapping comes from a
replay (``nudge inspect USER --events FILE``) and from a running worker's admin
endpoint (``GET /admin/users/{user_id}``, :mod:`stream.admin`).

What the state does not keep, this cannot show: contacts older than the
frequency-cap window (or the cooldown), orders beyond the 32 most recent (their
count and total are kept), records already written. A replay adds the user's most
recent output records.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from triggers import dormancy
from triggers.quiet_hours import quiet_until
from triggers.records import Conversion, Decision, record_to_json
from triggers.rules import Rules
from triggers.segments import segment_of
from triggers.state import Pending, UserState
from triggers.timestamps import format_timestamp
from triggers.variants import variant_of, weighted

RECENT_RECORDS = 20  # a replay shows the user's last records, at most this many


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
    from triggers.durations import format_duration

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


def describe_records(records: Iterable[Decision | Conversion]) -> list[dict[str, Any]]:
    """Output records as their wire JSON (decoded), for the ``recent_records`` part."""
    import orjson

    return [orjson.loads(record_to_json(record)) for record in records]


# --- text ------------------------------------------------------------------------------------


def _when(text: str | None, now: datetime | None) -> str:
    """``2026-11-23T03:00:00Z (in 1h)``: a time, and how far it is from ``now``."""
    if text is None:
        return "-"
    if now is None:
        return text
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    seconds = int((moment - now).total_seconds())
    span = _span(abs(seconds))
    if seconds == 0:
        return f"{text} (now)"
    return f"{text} ({'in ' + span if seconds > 0 else span + ' ago'})"


def _span(seconds: int) -> str:
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= size:
            whole, rest = divmod(seconds, size)
            smaller = {"d": (3600, "h"), "h": (60, "m"), "m": (1, "s")}[unit]
            part = rest // smaller[0]
            return f"{whole}{unit}{part}{smaller[1]}" if part and whole < 10 else f"{whole}{unit}"
    return f"{seconds}s"


def render_text(view: Mapping[str, Any]) -> str:
    """The mapping of :func:`describe_state` (plus ``recent_records``) for a terminal."""
    as_of = view.get("as_of")
    if "erased_at" in view:
        return (
            f"user {view['user_id']}, as of {as_of}\n"
            f"  ERASED at {view['erased_at']} (user_erased): nothing else is kept. Events of\n"
            f"  this user up to that time are ignored; the memory of the erasure itself is\n"
            f"  deleted at {view['memory_until']}, and a later event starts a new shopper.\n"
        )
    now = None if as_of is None else datetime.fromisoformat(as_of.replace("Z", "+00:00"))
    prefs = view["preferences"]
    orders = view["orders"]
    cart = view["cart"]
    contacts = view["contacts"]
    opt_in = prefs["marketing_opt_in"]
    marketing = {True: "opted in", False: "OPTED OUT", None: "not stated (may be contacted)"}
    lines = [
        f"user {view['user_id']}, as of {as_of}",
        f"  segment        {view['segment']} "
        f"({_count(orders['count'], 'order')}, {orders['monetary']} total)",
        f"  marketing      {marketing[opt_in]}"
        + (f" since {prefs['opt_in_at']}" if prefs["opt_in_at"] else ""),
        f"  time zone      {view['time_zone_used']}"
        + ("" if prefs["timezone"] else " (not stated: the rules default)"),
        f"  last activity  {_when(view['last_activity'], now)}",
    ]
    if view.get("variants"):
        chosen = ", ".join(f"{name}: {variant}" for name, variant in view["variants"].items())
        lines.append(f"  A/B variants   {chosen}")
    lines.append("")
    if cart["lines"]:
        checkout = ", checkout started" if cart["checkout_started"] else ""
        lines.append(
            f"cart: {_count(len(cart['lines']), 'line')}, value {cart['value']}{checkout}, "
            f"last activity {_when(cart['updated_at'], now)}"
        )
        for line in cart["lines"]:
            price = "-" if line["unit_price"] is None else line["unit_price"]
            lines.append(
                f"  {line['product_id']}  x{line['quantity']}  {price}  {line['category'] or ''}"
            )
    else:
        lines.append("cart: empty")
    view_line = view.get("last_view")
    if view_line:
        lines.append(
            f"last product viewed: {view_line['product_id']} at {_when(view_line['ts'], now)}"
        )
    lines.append(f"orders kept: {len(orders['kept'])} of {orders['count']}")
    for order in orders["kept"][-10:]:
        products = ", ".join(order["products"])
        lines.append(f"  {order['order_id']}  {order['ts']}  {order['total']}  {products}")
    if orders["cancelled"]:
        lines.append(f"  cancelled: {', '.join(orders['cancelled'])}")
    lines.append("")
    lines.append("pending stages:" if view["pending"] else "pending stages: none")
    for item in view["pending"]:
        deferred = (
            f", deferred by quiet hours to {item['send_at']}"
            if item["send_at"] != item["due_at"]
            else ""
        )
        subject = f" ({item['subject']})" if item["subject"] else ""
        lines.append(
            f"  {item['trigger']}{subject} stage {item['stage']} of {item['stages']}: "
            f"due {_when(item['due_at'], now)}{deferred}"
        )
    lines.append("held decisions:" if view["held"] else "held decisions: none")
    for held in view["held"]:
        lines.append(
            f"  {held['trigger']} stage {held['stage']} {held['status']}, reached "
            f"{_when(held['reached_at'], now)} ({held['trigger_id']})"
        )
    cap = contacts["frequency_cap"]
    lines.append(
        f"contacts: {contacts['in_frequency_window']} in the last {cap['per']} "
        f"(frequency cap {cap['max']})"
    )
    for name, moment in contacts["last_by_trigger"].items():
        lines.append(f"  last {name}: {_when(moment, now)}")
    converts = view["converts"]
    if converts:
        variant = f", variant {converts['variant']}" if converts["variant"] else ""
        which = f"{converts['trigger']} ({converts['arm']}{variant}, {converts['trigger_id']})"
        if converts["open"]:
            lines.append(f"an order by {_when(converts['until'], now)} converts {which}")
        else:
            lines.append(
                f"nothing to convert: the last contact, {which}, ended {converts['until']}"
            )
    records = view.get("recent_records")
    if records:
        lines.append("")
        lines.append(f"last {len(records)} records (replay):")
        for record in records:
            lines.append("  " + _record_line(record))
    return "".join(line.rstrip() + "\n" for line in lines)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _record_line(record: Mapping[str, Any]) -> str:
    variant = f" variant {record['variant']}" if record.get("variant") else ""
    if record.get("kind") == "conversion":
        return (
            f"{record['converted_at']}  conversion  {record['trigger']} {record['arm']}{variant}"
            f"  order {record['order_id']} {record['revenue']}"
        )
    if record.get("kind") == "engagement":
        return f"{record['at']}  engagement  {record['type']} {record['channel']}"
    if record.get("kind") == "erasure":
        return f"{record['erased_at']}  erasure"
    reason = f" ({record['reason']})" if record.get("reason") else ""
    offer = f" offer {record['offer']}" if record.get("offer") else ""
    channel = f" on {record['channel']}" if record.get("channel") else ""
    return (
        f"{record['fired_at']}  decision    {record['trigger']} stage {record['stage']} "
        f"{record['status']}{reason}{channel}{variant}{offer}"
    )
