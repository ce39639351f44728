"""Inbound events (contract sections 1 and 7.1): one typed msgspec model, and its parsers.

Each event type is a frozen ``msgspec.Struct`` tagged by ``type``; the same classes
validate a message, are what the engine dispatches on (``type(event)``), and generate
the published JSON Schema (:mod:`triggers.schemas`). ``parse_event(raw)`` turns one
user-event message (bytes or str) into one of them, ``parse_catalog_event(raw)`` one
``shop.catalog`` message into a :class:`ProductUpdated`; both raise
:class:`InvalidEvent` with a stable ``reason`` and a ``detail`` naming the field by its
JSON path (``$.items[0].quantity``), and nothing else, so the live service can
dead-letter whatever they raise.

Normalisation done here, at the edge (``__post_init__``):
- ``ts`` (RFC 3339 with offset, or integer epoch milliseconds) becomes an aware UTC
  datetime truncated to the millisecond (:func:`triggers.timestamps.event_time`);
- ``product_id`` and ``order_id`` may be strings or integers (kept as strings);
- JSON ``null`` for an optional field means "absent" (``test``: false, ``quantity`` of
  an add: 1), except ``birthday``, where null removes it and absence is ``UNSET``;
- ``order_placed.total`` defaults to the sum of its lines (at most 1e15 too);
- unit prices become floats; a ``price`` or ``total`` keeps its JSON number type.

JSON is read by msgspec straight into the classes; a message it refuses is read again
with ``orjson`` to tell JSON-level faults (``not_json``, ``bad_encoding``,
``not_object``) and the ``type`` field's faults apart from a field's, exactly as the
dead-letter reasons always were. Unknown fields are skipped uninterpreted (a huge number
or a deep array in one does not matter), but a message must be UTF-8 throughout.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar

import msgspec
import orjson
from msgspec import UNSET, UnsetType
from msgspec.structs import force_setattr

from triggers.event_fields import (
    MAX_AMOUNT,
    MAX_ID_CHARS,
    MAX_LABEL_CHARS,
    MAX_QUANTITY,
    MAX_QUERY_CHARS,
    REASONS,
    Amount,
    Birthday,
    Id,
    InvalidEvent,
    Label,
    ObjectId,
    Quantity,
    Query,
    Timestamp,
    TimeZoneName,
    UnitPrice,
    is_birthday,
    is_time_zone,
    json_type,
    refusal,
    undecodable,
)
from triggers.timestamps import TimestampError, event_time

__all__ = [
    "MAX_AMOUNT",
    "MAX_ID_CHARS",
    "MAX_LABEL_CHARS",
    "MAX_QUANTITY",
    "MAX_QUERY_CHARS",
    "REASONS",
    "TOPIC_OF_TYPE",
    "UNSET",
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
    "ProductUpdated",
    "ProductViewed",
    "SearchPerformed",
    "WishlistAdded",
    "is_time_zone",
    "parse_catalog_event",
    "parse_event",
]

CATALOG_TOPIC = "shop.catalog"


def _settle(event: UserEvent | ProductUpdated) -> None:
    """The common normalisation: ``ts`` to aware UTC, a null ``test`` to false."""
    ts = event.ts
    if type(ts) is not datetime:
        try:
            force_setattr(event, "ts", event_time(ts))
        except TimestampError as exc:
            raise InvalidEvent(exc.reason, f"ts: {exc.detail}") from None
    if event.test is None:
        force_setattr(event, "test", False)


def _id_as_string(event: msgspec.Struct, name: str) -> None:
    value = getattr(event, name)
    if type(value) is int:
        force_setattr(event, name, str(value))


class UserEvent(msgspec.Struct, frozen=True, gc=False, tag_field="type"):
    """Fields every user event has (contract section 1); unknown extra fields are ignored.

    Each subclass also has ``test`` (true: a test order or staff purchase, ignored
    entirely; null: false) and ``channel`` (web, app, store, ...), declared last."""

    type: ClassVar[str]
    event_id: Id
    user_id: Id
    ts: Timestamp

    def __post_init__(self) -> None:
        _settle(self)


class ProductViewed(UserEvent, frozen=True, gc=False, tag="product_viewed"):
    type: ClassVar[str] = "product_viewed"
    product_id: ObjectId
    category: Label | None = None
    price: Amount | None = None
    test: bool | None = False
    channel: Label | None = None

    def __post_init__(self) -> None:
        _settle(self)
        _id_as_string(self, "product_id")


class CategoryViewed(UserEvent, frozen=True, gc=False, tag="category_viewed"):
    type: ClassVar[str] = "category_viewed"
    category: Label
    test: bool | None = False
    channel: Label | None = None


class SearchPerformed(UserEvent, frozen=True, gc=False, tag="search"):
    type: ClassVar[str] = "search"
    query: Query
    test: bool | None = False
    channel: Label | None = None


class WishlistAdded(UserEvent, frozen=True, gc=False, tag="wishlist_added"):
    """Section 7.1: a product put on the user's wishlist (topic ``shop.browse``)."""

    type: ClassVar[str] = "wishlist_added"
    product_id: ObjectId
    category: Label | None = None
    price: Amount | None = None
    test: bool | None = False
    channel: Label | None = None

    def __post_init__(self) -> None:
        _settle(self)
        _id_as_string(self, "product_id")


class CartItemAdded(UserEvent, frozen=True, gc=False, tag="cart_item_added"):
    type: ClassVar[str] = "cart_item_added"
    product_id: ObjectId
    quantity: Quantity | None = 1
    unit_price: UnitPrice | None = None
    category: Label | None = None
    test: bool | None = False
    channel: Label | None = None

    def __post_init__(self) -> None:
        _settle(self)
        _id_as_string(self, "product_id")
        if self.quantity is None:
            force_setattr(self, "quantity", 1)


class CartItemRemoved(UserEvent, frozen=True, gc=False, tag="cart_item_removed"):
    type: ClassVar[str] = "cart_item_removed"
    product_id: ObjectId
    quantity: Quantity | None = None  # None: remove the whole line
    test: bool | None = False
    channel: Label | None = None

    def __post_init__(self) -> None:
        _settle(self)
        _id_as_string(self, "product_id")


class CartCleared(UserEvent, frozen=True, gc=False, tag="cart_cleared"):
    type: ClassVar[str] = "cart_cleared"
    test: bool | None = False
    channel: Label | None = None


class CheckoutStarted(UserEvent, frozen=True, gc=False, tag="checkout_started"):
    type: ClassVar[str] = "checkout_started"
    test: bool | None = False
    channel: Label | None = None


class OrderLine(msgspec.Struct, frozen=True, gc=False):
    """One line of an order; unknown extra fields are ignored."""

    product_id: ObjectId
    quantity: Quantity
    unit_price: UnitPrice
    category: Label | None = None

    def __post_init__(self) -> None:
        _id_as_string(self, "product_id")


class OrderPlaced(UserEvent, frozen=True, gc=False, tag="order_placed"):
    """``total`` (default: the sum of quantity x unit_price over the lines) is at most 1e15
    either way."""

    type: ClassVar[str] = "order_placed"
    order_id: ObjectId
    items: Annotated[tuple[OrderLine, ...], msgspec.Meta(min_length=1)]
    total: Amount | None = None
    test: bool | None = False
    channel: Label | None = None

    def __post_init__(self) -> None:
        _settle(self)
        _id_as_string(self, "order_id")
        if self.total is None:
            total = sum(line.quantity * line.unit_price for line in self.items)
            if not total <= MAX_AMOUNT:  # also inf: 2 x 1e308
                raise InvalidEvent(
                    "invalid_value",
                    f"total: the default, the sum of quantity x unit_price over the lines, "
                    f"must be at most 1e15, got {total}",
                )
            force_setattr(self, "total", total)


class OrderCancelled(UserEvent, frozen=True, gc=False, tag="order_cancelled"):
    type: ClassVar[str] = "order_cancelled"
    order_id: ObjectId
    test: bool | None = False
    channel: Label | None = None

    def __post_init__(self) -> None:
        _settle(self)
        _id_as_string(self, "order_id")


class PreferencesUpdated(UserEvent, frozen=True, gc=False, tag="preferences_updated"):
    """Each preference optional; ``birthday`` (section 7.1): absent leaves it as it was
    (``UNSET``), null removes it."""

    type: ClassVar[str] = "preferences_updated"
    marketing_opt_in: bool | None = None
    timezone: TimeZoneName | None = None
    birthday: Birthday | UnsetType | None = UNSET
    test: bool | None = False
    channel: Label | None = None

    def __post_init__(self) -> None:
        _settle(self)
        zone = self.timezone
        if zone is not None and not is_time_zone(zone):
            raise InvalidEvent(
                "invalid_value", f"timezone: not a known IANA time zone: {zone[:64]!r}"
            )
        birthday = self.birthday
        if type(birthday) is str and not is_birthday(birthday):
            raise InvalidEvent("invalid_value", f"birthday: not a real date: {birthday!r}")


class ProductUpdated(
    msgspec.Struct, frozen=True, gc=False, tag_field="type", tag="product_updated"
):
    """Section 7.1, topic ``shop.catalog``, key ``product_id``: no ``user_id``. An absent
    (or null) ``price`` or ``in_stock`` leaves that attribute as it was."""

    type: ClassVar[str] = "product_updated"
    event_id: Id
    ts: Timestamp
    product_id: ObjectId
    price: Amount | None = None
    in_stock: bool | None = None
    category: Label | None = None
    test: bool | None = False
    channel: Label | None = None

    def __post_init__(self) -> None:
        _settle(self)
        _id_as_string(self, "product_id")


Event = (
    ProductViewed
    | CategoryViewed
    | SearchPerformed
    | WishlistAdded
    | CartItemAdded
    | CartItemRemoved
    | CartCleared
    | CheckoutStarted
    | OrderPlaced
    | OrderCancelled
    | PreferencesUpdated
)
CatalogEvent = ProductUpdated

TOPIC_OF_TYPE: dict[str, str] = {
    "product_viewed": "shop.browse",
    "category_viewed": "shop.browse",
    "search": "shop.browse",
    "wishlist_added": "shop.browse",
    "cart_item_added": "shop.cart",
    "cart_item_removed": "shop.cart",
    "cart_cleared": "shop.cart",
    "checkout_started": "shop.cart",
    "order_placed": "shop.order",
    "order_cancelled": "shop.order",
    "preferences_updated": "shop.prefs",
}
_EVENT_CLASSES: tuple[type[UserEvent], ...] = Event.__args__  # type: ignore[attr-defined]
assert {cls.type for cls in _EVENT_CLASSES} == TOPIC_OF_TYPE.keys()

_USER = msgspec.json.Decoder(Event)
_CATALOG = msgspec.json.Decoder(ProductUpdated)


def parse_event(raw: bytes | str, *, max_bytes: int = 65536) -> Event:
    """Parse and validate one user-event message; raises :class:`InvalidEvent` only."""
    try:
        return _parse(raw, max_bytes, _USER)
    except InvalidEvent:
        raise
    except Exception as exc:  # defensive: the contract is "InvalidEvent or an Event"
        raise InvalidEvent("invalid_value", f"unreadable event: {exc}") from None


def parse_catalog_event(raw: bytes | str, *, max_bytes: int = 65536) -> ProductUpdated:
    """Parse and validate one ``shop.catalog`` message; raises :class:`InvalidEvent` only."""
    try:
        return _parse(raw, max_bytes, _CATALOG)
    except InvalidEvent:
        raise
    except Exception as exc:  # defensive: the contract is "InvalidEvent or an Event"
        raise InvalidEvent("invalid_value", f"unreadable event: {exc}") from None


def _parse(raw: bytes | str, max_bytes: int, decoder: msgspec.json.Decoder) -> Event:
    if type(raw) is bytes:
        if len(raw) > max_bytes:
            raise InvalidEvent("oversize", f"message of {len(raw)} bytes, limit {max_bytes}")
    elif type(raw) is str:
        if len(raw) > max_bytes or (
            len(raw) * 4 > max_bytes and len(raw.encode("utf-8", "surrogatepass")) > max_bytes
        ):
            raise InvalidEvent("oversize", f"message larger than {max_bytes} bytes")
    elif isinstance(raw, bytearray | memoryview):
        raw = bytes(raw)
        if len(raw) > max_bytes:
            raise InvalidEvent("oversize", f"message of {len(raw)} bytes, limit {max_bytes}")
    else:
        raise InvalidEvent("not_json", f"expected bytes or str, got {type(raw).__name__}")
    try:
        event = decoder.decode(raw)
    except (msgspec.MsgspecError, RecursionError, UnicodeError):
        return _reread(raw, decoder)
    if type(raw) is bytes and not raw.isascii():  # skipped (unknown) strings are UTF-8 too
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidEvent("bad_encoding", "message is not valid UTF-8") from None
    return event


def _reread(raw: bytes | str, decoder: msgspec.json.Decoder) -> Event:
    """The slow path of a refused message: orjson tells which reason applies."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise undecodable(raw, exc) from None
    except Exception as exc:  # defensive: the contract is "InvalidEvent or an Event"
        raise InvalidEvent("not_json", f"unreadable message: {exc}") from None
    if type(obj) is not dict:
        raise InvalidEvent("not_object", f"expected a JSON object, got {json_type(obj)}")
    catalog = decoder is _CATALOG
    kind = obj.get("type")
    if kind is None:
        raise InvalidEvent("missing_field", "$.type is required")
    if type(kind) is not str:
        raise InvalidEvent("wrong_type", f"$.type: expected str, got {json_type(kind)}")
    if catalog and kind in TOPIC_OF_TYPE:
        raise InvalidEvent(
            "unknown_type",
            f"type {kind!r} is a user event: user events are read from the user topics, "
            f"not from the catalog topic {CATALOG_TOPIC}",
        )
    if not catalog and kind == ProductUpdated.type:
        raise InvalidEvent(
            "unknown_type",
            f"type {kind!r} is a catalog event: catalog events are read from the catalog "
            f"topic {CATALOG_TOPIC}, not from the user topics",
        )
    if kind != ProductUpdated.type and kind not in TOPIC_OF_TYPE:
        raise InvalidEvent("unknown_type", f"type {kind[:64]!r} is not a known event type")
    try:
        # orjson's reading may be valid where msgspec's was not (a nesting too deep for
        # msgspec in an unknown field, a repeated "type": the last one wins).
        return msgspec.convert(obj, decoder.type)
    except msgspec.ValidationError as exc:
        raise refusal(exc, obj) from None
