"""Inbound shop events (contract section 1): frozen dataclasses and the hot-path parser.

``parse_event(raw)`` turns one JSON message (bytes or str) into one of the event
dataclasses below, or raises :class:`InvalidEvent` with a short stable
``reason`` code and a ``detail`` that names the offending field. It never
raises anything else, so the live service can dead-letter whatever it raises.

The parser is hand-written on top of ``orjson`` because it runs once per event
and pydantic validation per message costs several times more. The pydantic
models in :mod:`triggers.wire` describe the same wire format for documentation
and JSON Schema; a unit test checks that both accept and reject the same input.

Normalisation done here, at the edge:
- ``ts`` (RFC 3339 with offset, or integer epoch milliseconds) becomes an aware
  UTC datetime truncated to the millisecond;
- ``product_id`` and ``order_id`` may be strings or integers (kept as strings);
- JSON ``null`` for an optional field means "absent";
- ``order_placed.total`` defaults to the sum of its lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar
from zoneinfo import ZoneInfo

import orjson

from triggers.timestamps import TimestampError, parse_timestamp

MAX_ID_CHARS = 128
MAX_LABEL_CHARS = 256
MAX_QUERY_CHARS = 1024

REASONS = (
    "not_json",
    "not_object",
    "oversize",
    "unknown_type",
    "missing_field",
    "wrong_type",
    "invalid_value",
    "naive_timestamp",
    "bad_encoding",
)


class InvalidEvent(ValueError):
    """An input message the engine refuses; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class CategoryViewed:
    type: ClassVar[str] = "category_viewed"
    event_id: str
    user_id: str
    ts: datetime
    category: str
    test: bool = False
    channel: str | None = None


@dataclass(frozen=True, slots=True)
class SearchPerformed:
    type: ClassVar[str] = "search"
    event_id: str
    user_id: str
    ts: datetime
    query: str
    test: bool = False
    channel: str | None = None


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class CartItemRemoved:
    type: ClassVar[str] = "cart_item_removed"
    event_id: str
    user_id: str
    ts: datetime
    product_id: str
    quantity: int | None = None  # None: remove the whole line
    test: bool = False
    channel: str | None = None


@dataclass(frozen=True, slots=True)
class CartCleared:
    type: ClassVar[str] = "cart_cleared"
    event_id: str
    user_id: str
    ts: datetime
    test: bool = False
    channel: str | None = None


@dataclass(frozen=True, slots=True)
class CheckoutStarted:
    type: ClassVar[str] = "checkout_started"
    event_id: str
    user_id: str
    ts: datetime
    test: bool = False
    channel: str | None = None


@dataclass(frozen=True, slots=True)
class OrderLine:
    product_id: str
    quantity: int
    unit_price: float
    category: str | None = None


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class OrderCancelled:
    type: ClassVar[str] = "order_cancelled"
    event_id: str
    user_id: str
    ts: datetime
    order_id: str
    test: bool = False
    channel: str | None = None


@dataclass(frozen=True, slots=True)
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


# --- field readers: each raises InvalidEvent naming the field ---------------------------


def _id(obj: dict, name: str, *, allow_int: bool = False) -> str:
    value = obj.get(name)
    if type(value) is str:
        if 0 < len(value) <= MAX_ID_CHARS:
            return value
        raise InvalidEvent("invalid_value", f"{name} must be 1..{MAX_ID_CHARS} characters")
    if value is None:
        raise InvalidEvent("missing_field", f"{name} is required")
    if allow_int and type(value) is int:
        return str(value)
    expected = "a string or an integer" if allow_int else "a string"
    raise InvalidEvent("wrong_type", f"{name} must be {expected}, got {_json_type(value)}")


def _label(
    obj: dict, name: str, *, required: bool = False, limit: int = MAX_LABEL_CHARS
) -> str | None:
    value = obj.get(name)
    if type(value) is str:
        if 0 < len(value) <= limit:
            return value
        raise InvalidEvent("invalid_value", f"{name} must be 1..{limit} characters")
    if value is None:
        if required:
            raise InvalidEvent("missing_field", f"{name} is required")
        return None
    raise InvalidEvent("wrong_type", f"{name} must be a string, got {_json_type(value)}")


def _amount(obj: dict, name: str, where: str = "") -> float | None:
    value = obj.get(name)
    kind = type(value)
    if kind is float or kind is int:
        if value >= 0:
            return value
        raise InvalidEvent("invalid_value", f"{where}{name} must be >= 0, got {value}")
    if value is None:
        return None
    raise InvalidEvent("wrong_type", f"{where}{name} must be a number, got {_json_type(value)}")


def _quantity(obj: dict, name: str, where: str = "") -> int | None:
    value = obj.get(name)
    if type(value) is int:
        if value >= 1:
            return value
        raise InvalidEvent("invalid_value", f"{where}{name} must be an integer >= 1, got {value}")
    if value is None:
        return None
    raise InvalidEvent("wrong_type", f"{where}{name} must be an integer, got {_json_type(value)}")


def _flag(obj: dict, name: str) -> bool | None:
    value = obj.get(name)
    if value is None or type(value) is bool:
        return value
    raise InvalidEvent("wrong_type", f"{name} must be true or false, got {_json_type(value)}")


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if type(value) is bool:
        return "boolean"
    if type(value) in (int, float):
        return "number"
    if type(value) is str:
        return "string"
    if type(value) is list:
        return "array"
    return "object"


# --- per-type builders -----------------------------------------------------------------


def _product_viewed(
    obj: dict, eid: str, uid: str, ts: datetime, test: bool, ch: str | None
) -> ProductViewed:
    return ProductViewed(
        eid,
        uid,
        ts,
        _id(obj, "product_id", allow_int=True),
        _label(obj, "category"),
        _amount(obj, "price"),
        test,
        ch,
    )


def _category_viewed(
    obj: dict, eid: str, uid: str, ts: datetime, test: bool, ch: str | None
) -> CategoryViewed:
    return CategoryViewed(eid, uid, ts, _label(obj, "category", required=True), test, ch)


def _search(
    obj: dict, eid: str, uid: str, ts: datetime, test: bool, ch: str | None
) -> SearchPerformed:
    query = _label(obj, "query", required=True, limit=MAX_QUERY_CHARS)
    return SearchPerformed(eid, uid, ts, query, test, ch)


def _cart_item_added(
    obj: dict, eid: str, uid: str, ts: datetime, test: bool, ch: str | None
) -> CartItemAdded:
    quantity = _quantity(obj, "quantity")
    return CartItemAdded(
        eid,
        uid,
        ts,
        _id(obj, "product_id", allow_int=True),
        1 if quantity is None else quantity,
        _amount(obj, "unit_price"),
        _label(obj, "category"),
        test,
        ch,
    )


def _cart_item_removed(
    obj: dict, eid: str, uid: str, ts: datetime, test: bool, ch: str | None
) -> CartItemRemoved:
    product_id = _id(obj, "product_id", allow_int=True)
    return CartItemRemoved(eid, uid, ts, product_id, _quantity(obj, "quantity"), test, ch)


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
        product_id = _id(item, "product_id", allow_int=True)
        category = _label(item, "category")
    except InvalidEvent as exc:
        raise InvalidEvent(exc.reason, where + exc.detail) from None
    quantity = _quantity(item, "quantity", where)
    unit_price = _amount(item, "unit_price", where)
    if quantity is None:
        raise InvalidEvent("missing_field", f"{where}quantity is required")
    if unit_price is None:
        raise InvalidEvent("missing_field", f"{where}unit_price is required")
    return OrderLine(product_id, quantity, unit_price, category)


def _order_placed(
    obj: dict, eid: str, uid: str, ts: datetime, test: bool, ch: str | None
) -> OrderPlaced:
    order_id = _id(obj, "order_id", allow_int=True)
    raw_items = obj.get("items")
    if raw_items is None:
        raise InvalidEvent("missing_field", "items is required")
    if type(raw_items) is not list:
        raise InvalidEvent("wrong_type", f"items must be an array, got {_json_type(raw_items)}")
    if not raw_items:
        raise InvalidEvent("invalid_value", "items must hold at least one line")
    items = tuple(_order_line(item, i) for i, item in enumerate(raw_items))
    total = _amount(obj, "total")
    if total is None:
        total = sum(line.quantity * line.unit_price for line in items)
    return OrderPlaced(eid, uid, ts, order_id, items, total, test, ch)


def _order_cancelled(
    obj: dict, eid: str, uid: str, ts: datetime, test: bool, ch: str | None
) -> OrderCancelled:
    return OrderCancelled(eid, uid, ts, _id(obj, "order_id", allow_int=True), test, ch)


def _preferences_updated(
    obj: dict, eid: str, uid: str, ts: datetime, test: bool, ch: str | None
) -> PreferencesUpdated:
    zone = _label(obj, "timezone")
    if zone is not None and not is_time_zone(zone):
        raise InvalidEvent("invalid_value", f"timezone is not a known IANA time zone: {zone!r}")
    return PreferencesUpdated(eid, uid, ts, _flag(obj, "marketing_opt_in"), zone, test, ch)


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


def is_time_zone(name: str) -> bool:
    """True if ``name`` is an IANA time zone known to ``zoneinfo``."""
    try:
        ZoneInfo(name)
    except Exception:  # ZoneInfoNotFoundError, ValueError for malformed keys, OSError
        return False
    return True


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
    elif isinstance(raw, bytes | bytearray | memoryview):
        if len(raw) > max_bytes:
            raise InvalidEvent("oversize", f"message of {len(raw)} bytes, limit {max_bytes}")
    else:
        raise InvalidEvent("not_json", f"expected bytes or str, got {type(raw).__name__}")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _undecodable(raw, exc) from None
    if type(obj) is not dict:
        raise InvalidEvent("not_object", f"expected a JSON object, got {_json_type(obj)}")

    kind = obj.get("type")
    builder = _BUILDERS.get(kind) if type(kind) is str else None
    if builder is None:
        if kind is None:
            raise InvalidEvent("missing_field", "type is required")
        if type(kind) is not str:
            raise InvalidEvent("wrong_type", f"type must be a string, got {_json_type(kind)}")
        raise InvalidEvent("unknown_type", f"type {kind[:64]!r} is not a known event type")
    # Fast paths inline the common case; the helpers produce the errors.
    event_id = obj.get("event_id")
    if type(event_id) is not str or not 0 < len(event_id) <= MAX_ID_CHARS:
        event_id = _id(obj, "event_id")
    user_id = obj.get("user_id")
    if type(user_id) is not str or not 0 < len(user_id) <= MAX_ID_CHARS:
        user_id = _id(obj, "user_id")
    ts = _timestamp(obj.get("ts"))
    test = obj.get("test", False)
    if test is not False and test is not True:
        if test is not None:
            raise InvalidEvent("wrong_type", f"test must be true or false, got {_json_type(test)}")
        test = False
    channel = obj.get("channel")
    if channel is not None and (
        type(channel) is not str or not 0 < len(channel) <= MAX_LABEL_CHARS
    ):
        channel = _label(obj, "channel")
    return builder(obj, event_id, user_id, ts, test, channel)


_FAST_MS_LIMIT = 2**32 * 1000  # below this, ms / 1000 as a float is exact to the microsecond


def _timestamp(value: object) -> datetime:
    if type(value) is int:
        if 0 <= value < _FAST_MS_LIMIT:
            return datetime.fromtimestamp(value / 1000, UTC)
    elif (
        type(value) is str
        and len(value) in (20, 24)
        and value[-1] == "Z"
        and value[4] == "-"
        and value[7] == "-"
        and value[10] == "T"
        and value[13] == ":"
        and value[16] == ":"
        and (len(value) == 20 or value[19] == ".")
        and value.isascii()
    ):
        try:
            return datetime.fromisoformat(value)  # "...T10:00:00Z" / "...T10:00:00.250Z"
        except ValueError:
            pass  # the general parser reports it
    elif value is None:
        raise InvalidEvent("missing_field", "ts is required")
    try:
        return parse_timestamp(value)
    except TimestampError as exc:
        raise InvalidEvent(exc.reason, f"ts: {exc.detail}") from None


def _undecodable(raw: bytes | str, exc: Exception) -> InvalidEvent:
    try:
        if type(raw) is str:
            raw.encode("utf-8")
        else:
            bytes(raw).decode("utf-8")
    except UnicodeError:
        return InvalidEvent("bad_encoding", "message is not valid UTF-8")
    return InvalidEvent("not_json", f"not valid JSON: {exc}")
