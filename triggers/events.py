"""Inbound shop events (contract section 1): frozen dataclasses and the hot-path parser.

``parse_event(raw)`` turns one JSON message (bytes or str) into one of the event
dataclasses below, or raises :class:`InvalidEvent` with a short stable
``reason`` code and a ``detail`` that names the offending field. It never
raises anything else, so the live service can dead-letter whatever it raises.

The parser is hand-written on top of ``orjson`` because it runs once per event
and validating with the pydantic models costs nearly twice as much (about 7 us
against 4 us per event on the development machine). The pydantic
models in :mod:`triggers.wire` describe the same wire format for documentation
and JSON Schema; a unit test checks that both accept and reject the same input.

Normalisation done here, at the edge:
- ``ts`` (RFC 3339 with offset, or integer epoch milliseconds) becomes an aware
  UTC datetime truncated to the millisecond;
- ``product_id`` and ``order_id`` may be strings or integers (kept as strings);
- JSON ``null`` for an optional field means "absent";
- ``order_placed.total`` defaults to the sum of its lines;
- unit prices become floats (see :func:`triggers.event_fields.read_unit_price`).

Bounds beyond the contract's types, so that the engine's arithmetic never
overflows: ``ts`` from 1900-01-01T00:00:00Z to 2999-12-31T23:59:59.999Z (both
forms), amounts finite and at most 1e15 (a default ``total`` too), quantities at
most 1e9. Outside them: ``invalid_value``.
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

import orjson

from triggers.event_fields import (
    MAX_AMOUNT,
    MAX_ID_CHARS,
    MAX_LABEL_CHARS,
    MAX_QUANTITY,
    MAX_QUERY_CHARS,
    REASONS,
    InvalidEvent,
    is_time_zone,
    json_type,
    read_amount,
    read_flag,
    read_id,
    read_label,
    read_quantity,
    read_timestamp,
    read_unit_price,
    undecodable,
)
from triggers.frozen import frozen_record


@frozen_record
class ProductViewed:
    type: ClassVar[str] = "product_viewed"
    event_id: str
    user_id: str
    ts: datetime
    product_id: str
    category: str | None = None
    price: float | None = None
    test: bool = False
    channel: str | None = None


@frozen_record
class CategoryViewed:
    type: ClassVar[str] = "category_viewed"
    event_id: str
    user_id: str
    ts: datetime
    category: str
    test: bool = False
    channel: str | None = None


@frozen_record
class SearchPerformed:
    type: ClassVar[str] = "search"
    event_id: str
    user_id: str
    ts: datetime
    query: str
    test: bool = False
    channel: str | None = None


@frozen_record
class CartItemAdded:
    type: ClassVar[str] = "cart_item_added"
    event_id: str
    user_id: str
    ts: datetime
    product_id: str
    quantity: int = 1
    unit_price: float | None = None
    category: str | None = None
    test: bool = False
    channel: str | None = None


@frozen_record
class CartItemRemoved:
    type: ClassVar[str] = "cart_item_removed"
    event_id: str
    user_id: str
    ts: datetime
    product_id: str
    quantity: int | None = None  # None: remove the whole line
    test: bool = False
    channel: str | None = None


@frozen_record
class CartCleared:
    type: ClassVar[str] = "cart_cleared"
    event_id: str
    user_id: str
    ts: datetime
    test: bool = False
    channel: str | None = None


@frozen_record
class CheckoutStarted:
    type: ClassVar[str] = "checkout_started"
    event_id: str
    user_id: str
    ts: datetime
    test: bool = False
    channel: str | None = None


@frozen_record
class OrderLine:
    product_id: str
    quantity: int
    unit_price: float
    category: str | None = None


@frozen_record
class OrderPlaced:
    type: ClassVar[str] = "order_placed"
    event_id: str
    user_id: str
    ts: datetime
    order_id: str
    items: tuple[OrderLine, ...]
    total: float
    test: bool = False
    channel: str | None = None


@frozen_record
class OrderCancelled:
    type: ClassVar[str] = "order_cancelled"
    event_id: str
    user_id: str
    ts: datetime
    order_id: str
    test: bool = False
    channel: str | None = None


@frozen_record
class PreferencesUpdated:
    type: ClassVar[str] = "preferences_updated"
    event_id: str
    user_id: str
    ts: datetime
    marketing_opt_in: bool | None = None
    timezone: str | None = None  # a valid IANA name
    test: bool = False
    channel: str | None = None


Event = (
    ProductViewed
    | CategoryViewed
    | SearchPerformed
    | CartItemAdded
    | CartItemRemoved
    | CartCleared
    | CheckoutStarted
    | OrderPlaced
    | OrderCancelled
    | PreferencesUpdated
)

__all__ = [
    "MAX_AMOUNT",
    "MAX_ID_CHARS",
    "MAX_LABEL_CHARS",
    "MAX_QUANTITY",
    "MAX_QUERY_CHARS",
    "REASONS",
    "TOPIC_OF_TYPE",
    "CartCleared",
    "CartItemAdded",
    "CartItemRemoved",
    "CategoryViewed",
    "CheckoutStarted",
    "Event",
    "InvalidEvent",
    "OrderCancelled",
    "OrderLine",
    "OrderPlaced",
    "PreferencesUpdated",
    "ProductViewed",
    "SearchPerformed",
    "is_time_zone",
    "parse_event",
]

TOPIC_OF_TYPE: dict[str, str] = {
    "product_viewed": "shop.browse",
    "category_viewed": "shop.browse",
    "search": "shop.browse",
    "cart_item_added": "shop.cart",
    "cart_item_removed": "shop.cart",
    "cart_cleared": "shop.cart",
    "checkout_started": "shop.cart",
    "order_placed": "shop.order",
    "order_cancelled": "shop.order",
    "preferences_updated": "shop.prefs",
}


# --- per-type builders -----------------------------------------------------------------


def _product_viewed(
    obj: dict, eid: str, uid: str, ts: datetime, test: bool, ch: str | None
) -> ProductViewed:
    return ProductViewed(
        eid,
        uid,
        ts,
        read_id(obj, "product_id", allow_int=True),
        read_label(obj, "category"),
        read_amount(obj, "price"),
        test,
        ch,
    )


def _category_viewed(
    obj: dict, eid: str, uid: str, ts: datetime, test: bool, ch: str | None
) -> CategoryViewed:
    return CategoryViewed(eid, uid, ts, read_label(obj, "category", required=True), test, ch)


def _search(
    obj: dict, eid: str, uid: str, ts: datetime, test: bool, ch: str | None
) -> SearchPerformed:
    query = read_label(obj, "query", required=True, limit=MAX_QUERY_CHARS)
    return SearchPerformed(eid, uid, ts, query, test, ch)


def _cart_item_added(
    obj: dict, eid: str, uid: str, ts: datetime, test: bool, ch: str | None
) -> CartItemAdded:
    quantity = read_quantity(obj, "quantity")
    return CartItemAdded(
        eid,
        uid,
        ts,
        read_id(obj, "product_id", allow_int=True),
        1 if quantity is None else quantity,
        read_unit_price(obj, "unit_price"),
        read_label(obj, "category"),
        test,
        ch,
    )


def _cart_item_removed(
    obj: dict, eid: str, uid: str, ts: datetime, test: bool, ch: str | None
) -> CartItemRemoved:
    product_id = read_id(obj, "product_id", allow_int=True)
    return CartItemRemoved(eid, uid, ts, product_id, read_quantity(obj, "quantity"), test, ch)


def _cart_cleared(
    obj: dict, eid: str, uid: str, ts: datetime, test: bool, ch: str | None
) -> CartCleared:
    return CartCleared(eid, uid, ts, test, ch)


def _checkout_started(
    obj: dict, eid: str, uid: str, ts: datetime, test: bool, ch: str | None
) -> CheckoutStarted:
    return CheckoutStarted(eid, uid, ts, test, ch)


def _order_line(item: object, index: int) -> OrderLine:
    where = f"items[{index}]."
    if type(item) is not dict:
        raise InvalidEvent("wrong_type", f"items[{index}] must be an object")
    try:
        product_id = read_id(item, "product_id", allow_int=True)
        category = read_label(item, "category")
    except InvalidEvent as exc:
        raise InvalidEvent(exc.reason, where + exc.detail) from None
    quantity = read_quantity(item, "quantity", where)
    unit_price = read_unit_price(item, "unit_price", where)
    if quantity is None:
        raise InvalidEvent("missing_field", f"{where}quantity is required")
    if unit_price is None:
        raise InvalidEvent("missing_field", f"{where}unit_price is required")
    return OrderLine(product_id, quantity, unit_price, category)


def _order_placed(
    obj: dict, eid: str, uid: str, ts: datetime, test: bool, ch: str | None
) -> OrderPlaced:
    order_id = read_id(obj, "order_id", allow_int=True)
    raw_items = obj.get("items")
    if raw_items is None:
        raise InvalidEvent("missing_field", "items is required")
    if type(raw_items) is not list:
        raise InvalidEvent("wrong_type", f"items must be an array, got {json_type(raw_items)}")
    if not raw_items:
        raise InvalidEvent("invalid_value", "items must hold at least one line")
    items = tuple(_order_line(item, i) for i, item in enumerate(raw_items))
    total = read_amount(obj, "total")
    if total is None:
        total = sum(line.quantity * line.unit_price for line in items)
        if not total <= MAX_AMOUNT:  # also inf: 2 x 1e308
            raise InvalidEvent(
                "invalid_value",
                f"total (default: the sum of quantity x unit_price over the lines) must be "
                f"at most 1e15, got {total}",
            )
    return OrderPlaced(eid, uid, ts, order_id, items, total, test, ch)


def _order_cancelled(
    obj: dict, eid: str, uid: str, ts: datetime, test: bool, ch: str | None
) -> OrderCancelled:
    return OrderCancelled(eid, uid, ts, read_id(obj, "order_id", allow_int=True), test, ch)


def _preferences_updated(
    obj: dict, eid: str, uid: str, ts: datetime, test: bool, ch: str | None
) -> PreferencesUpdated:
    zone = read_label(obj, "timezone")
    if zone is not None and not is_time_zone(zone):
        raise InvalidEvent("invalid_value", f"timezone is not a known IANA time zone: {zone!r}")
    return PreferencesUpdated(eid, uid, ts, read_flag(obj, "marketing_opt_in"), zone, test, ch)


_BUILDERS = {
    "product_viewed": _product_viewed,
    "category_viewed": _category_viewed,
    "search": _search,
    "cart_item_added": _cart_item_added,
    "cart_item_removed": _cart_item_removed,
    "cart_cleared": _cart_cleared,
    "checkout_started": _checkout_started,
    "order_placed": _order_placed,
    "order_cancelled": _order_cancelled,
    "preferences_updated": _preferences_updated,
}
assert _BUILDERS.keys() == TOPIC_OF_TYPE.keys()


def parse_event(raw: bytes | str, *, max_bytes: int = 65536) -> Event:
    """Parse and validate one wire message; raises :class:`InvalidEvent` and nothing else."""
    try:
        return _parse(raw, max_bytes)
    except InvalidEvent:
        raise
    except Exception as exc:  # defensive: the contract is "InvalidEvent or an Event"
        raise InvalidEvent("invalid_value", f"unreadable event: {exc}") from None


def _parse(raw: bytes | str, max_bytes: int) -> Event:
    if type(raw) is str:
        if len(raw) > max_bytes or (
            len(raw) * 4 > max_bytes and len(raw.encode("utf-8", "surrogatepass")) > max_bytes
        ):
            raise InvalidEvent("oversize", f"message larger than {max_bytes} bytes")
    elif type(raw) is bytes or isinstance(raw, bytearray | memoryview):
        if len(raw) > max_bytes:
            raise InvalidEvent("oversize", f"message of {len(raw)} bytes, limit {max_bytes}")
    else:
        raise InvalidEvent("not_json", f"expected bytes or str, got {type(raw).__name__}")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise undecodable(raw, exc) from None
    if type(obj) is not dict:
        raise InvalidEvent("not_object", f"expected a JSON object, got {json_type(obj)}")

    kind = obj.get("type")
    builder = _BUILDERS.get(kind) if type(kind) is str else None
    if builder is None:
        if kind is None:
            raise InvalidEvent("missing_field", "type is required")
        if type(kind) is not str:
            raise InvalidEvent("wrong_type", f"type must be a string, got {json_type(kind)}")
        raise InvalidEvent("unknown_type", f"type {kind[:64]!r} is not a known event type")
    # Fast paths inline the common case; the helpers produce the errors.
    event_id = obj.get("event_id")
    if type(event_id) is not str or not 0 < len(event_id) <= MAX_ID_CHARS:
        event_id = read_id(obj, "event_id")
    user_id = obj.get("user_id")
    if type(user_id) is not str or not 0 < len(user_id) <= MAX_ID_CHARS:
        user_id = read_id(obj, "user_id")
    ts = read_timestamp(obj.get("ts"))
    test = obj.get("test", False)
    if test is not False and test is not True:
        if test is not None:
            raise InvalidEvent("wrong_type", f"test must be true or false, got {json_type(test)}")
        test = False
    channel = obj.get("channel")
    if channel is not None and (
        type(channel) is not str or not 0 < len(channel) <= MAX_LABEL_CHARS
    ):
        channel = read_label(obj, "channel")
    return builder(obj, event_id, user_id, ts, test, channel)
