"""``nudge inspect USER``: one shopper's state as a person reads it.

:func:`~triggers.state_view.describe_state` (in the core, below the command line and the
worker's admin endpoint that both read it) turns a state into a JSON-ready mapping;
:func:`render_text` prints that mapping for a terminal. Both are pure: the same mapping
comes from a replay (``nudge inspect USER --events FILE``) and from a running worker's
admin endpoint (``GET /admin/users/{user_id}``, :mod:`stream.admin`).

What the state does not keep, this cannot show: contacts older than the
frequency-cap window (or the cooldown), orders beyond the 32 most recent (their
count and total are kept), records already written. A replay adds the user's most
recent output records.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from triggers.records import Conversion, Decision, record_to_json
from triggers.state_view import describe_state
from triggers.timestamps import format_timestamp

__all__ = ["RECENT_RECORDS", "describe_records", "describe_state", "render_text"]

RECENT_RECORDS = 20  # a replay shows the user's last records, at most this many


def _ts(moment: datetime | None) -> str | None:
    return None if moment is None else format_timestamp(moment)


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
