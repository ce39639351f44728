"""Reader of user states stored in format 1 (before format 2, see :mod:`triggers.state`).

Format 1 is an orjson array ``[1, user_id, seen (base64), last_activity, prefs,
cart, history, viewed, pending, contacts, dormancy]`` with times as epoch
milliseconds and triggers as indexes into the trigger names as they were then,
which are the first entries of :data:`triggers.state.TRIGGER_CODES`. Nothing
writes it any more; states in it are rewritten in format 2 the next time their
user changes.
"""

from __future__ import annotations

import base64
from datetime import datetime

import orjson

from triggers.state_records import (
    EMPTY_CART,
    EMPTY_HISTORY,
    NO_CONTACTS,
    TRIGGER_BY_CODE,
    Attributable,
    Cart,
    CartLine,
    ContactLog,
    Order,
    OrderHistory,
    Pending,
    Preferences,
    ProductPurchases,
    UserState,
    View,
)
from triggers.timestamps import from_millis

FORMAT = 1


def _dt(millis: int | None) -> datetime | None:
    return None if millis is None else from_millis(millis)


def decode_format1(data: bytes) -> UserState:
    """A format-1 state; raises ``ValueError`` on anything else."""
    try:
        fields = orjson.loads(data)
        if not isinstance(fields, list) or not fields or fields[0] != FORMAT:
            raise ValueError("unknown state format")
        (
            _,
            user_id,
            seen,
            last_activity,
            prefs,
            cart,
            history,
            viewed,
            pending,
            contacts,
            dormancy,
        ) = fields
        dormancy_key, dormancy_stage, dormancy_send_at = dormancy or (None, 0, None)
        return UserState(
            user_id=user_id,
            seen=base64.b64decode(seen),
            last_activity=_dt(last_activity),
            prefs=None if prefs is None else _decode_prefs(prefs),
            cart=EMPTY_CART if cart is None else _decode_cart(cart),
            history=EMPTY_HISTORY if history is None else _decode_history(history),
            viewed=None
            if viewed is None
            else View(viewed[0], viewed[1], viewed[2], from_millis(viewed[3])),
            pending=tuple(_decode_pending(item) for item in pending),
            contacts=NO_CONTACTS if contacts is None else _decode_contacts(contacts),
            dormancy_key=dormancy_key,
            dormancy_stage=dormancy_stage,
            dormancy_send_at=_dt(dormancy_send_at),
        )
    except ValueError:
        raise
    except Exception as exc:
        raise ValueError(f"corrupt user state: {exc!r}") from None


def _decode_prefs(item: list) -> Preferences:
    opt_in, opt_in_at, zone, zone_at = item
    return Preferences(opt_in, _dt(opt_in_at), zone, _dt(zone_at))


def _decode_cart(item: list) -> Cart:
    lines, updated_at, checkout, *rest = item  # older states have fewer fields
    added = tuple((product, from_millis(at)) for product, at in rest[0]) if rest else ()
    emptied_at = _dt(rest[1]) if len(rest) > 1 else None
    return Cart(
        tuple(CartLine(*line) for line in lines), _dt(updated_at), checkout, added, emptied_at
    )


def _decode_history(item: list) -> OrderHistory:
    orders, count, monetary, products, cancelled = item
    return OrderHistory(
        tuple(Order(o[0], from_millis(o[1]), o[2], tuple(o[3])) for o in orders),
        count,
        monetary,
        tuple(ProductPurchases(p[0], p[1], tuple(from_millis(t) for t in p[2])) for p in products),
        tuple(cancelled),
    )


def _decode_pending(item: list) -> Pending:
    trigger, stage, key, anchor, due, send_at, subject = item
    due_at = from_millis(due)
    return Pending(
        TRIGGER_BY_CODE[trigger],
        stage,
        key,
        from_millis(anchor),
        due_at,
        due_at if send_at is None else from_millis(send_at),
        subject,
    )


def _decode_contacts(item: list) -> ContactLog:
    recent, last_by_trigger, attributable = item
    return ContactLog(
        tuple(from_millis(t) for t in recent),
        tuple((TRIGGER_BY_CODE[name], from_millis(t)) for name, t in last_by_trigger),
        None
        if attributable is None
        else Attributable(
            attributable[0],
            TRIGGER_BY_CODE[attributable[1]],
            attributable[2],
            from_millis(attributable[3]),
        ),
    )
