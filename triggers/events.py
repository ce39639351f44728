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

from typing import Annotated, ClassVar

import msgspec
from msgspec import UNSET, UnsetType
from msgspec.structs import force_setattr

from triggers.event_base import UserEvent, settle
from triggers.event_engagement import (
    ENGAGEMENT_TOPIC,
    ENGAGEMENT_TYPES,
    ERASURE_TOPIC,
    EngagementEvent,
    MessageBounced,
    MessageClicked,
    MessageComplained,
    MessageDelivered,
    MessageOpened,
    MessageUnsubscribed,
    UserErased,
)
from triggers.event_fields import (
    MAX_AMOUNT,
    MAX_ID_CHARS,
    MAX_LABEL_CHARS,
    MAX_QUANTITY,
    MAX_QUERY_CHARS,
    REASONS,
    Amount,
    Birthday,
    ChannelAnswers,
    Id,
    InvalidEvent,
    Label,
    ObjectId,
    Quantity,
    Query,
    Timestamp,
    TimeZoneName,
    UnitPrice,
    decode_message,
    is_birthday,
    is_time_zone,
)

__all__ = [
    "ENGAGEMENT_TOPIC",
    "ENGAGEMENT_TYPES",
    "INPUT_TOPIC_OF_TYPE",
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
    "EngagementEvent",
    "Event",
    "InvalidEvent",
    "MessageBounced",
    "MessageClicked",
    "MessageComplained",
    "MessageDelivered",
    "MessageOpened",
    "MessageUnsubscribed",
    "OrderCancelled",
    "OrderLine",
    "OrderPlaced",
    "PreferencesUpdated",
    "ProductUpdated",
    "ProductViewed",
    "SearchPerformed",
    "UserErased",
    "WishlistAdded",
    "is_time_zone",
    "parse_catalog_event",
    "parse_event",
]

CATALOG_TOPIC = "shop.catalog"


class ProductViewed(UserEvent, frozen=True, gc=False, tag="product_viewed"):
    """A product page view (topic shop.browse)."""

    type: ClassVar[str] = "product_viewed"
    product_id: ObjectId
    category: Label | None = None
    price: Amount | None = None
    test: bool | None = False
    channel: Label | None = None

    def __post_init__(self) -> None:
        settle(self)
        if type(self.product_id) is int:
            force_setattr(self, "product_id", str(self.product_id))


class CategoryViewed(UserEvent, frozen=True, gc=False, tag="category_viewed"):
    """A category page view (topic shop.browse)."""

    type: ClassVar[str] = "category_viewed"
    category: Label
    test: bool | None = False
    channel: Label | None = None


class SearchPerformed(UserEvent, frozen=True, gc=False, tag="search"):
    """A search (topic shop.browse)."""

    type: ClassVar[str] = "search"
    query: Query
    test: bool | None = False
    channel: Label | None = None


class WishlistAdded(UserEvent, frozen=True, gc=False, tag="wishlist_added"):
    """A product put on the user's wishlist (section 7.1, topic shop.browse)."""

    type: ClassVar[str] = "wishlist_added"
    product_id: ObjectId
    category: Label | None = None
    price: Amount | None = None
    test: bool | None = False
    channel: Label | None = None

    def __post_init__(self) -> None:
        settle(self)
        if type(self.product_id) is int:
            force_setattr(self, "product_id", str(self.product_id))


class CartItemAdded(UserEvent, frozen=True, gc=False, tag="cart_item_added"):
    """A product added to the cart (topic shop.cart); quantity absent or null: 1."""

    type: ClassVar[str] = "cart_item_added"
    product_id: ObjectId
    quantity: Quantity | None = 1
    unit_price: UnitPrice | None = None
    category: Label | None = None
    test: bool | None = False
    channel: Label | None = None

    def __post_init__(self) -> None:
        settle(self)
        if type(self.product_id) is int:
            force_setattr(self, "product_id", str(self.product_id))
        if self.quantity is None:
            force_setattr(self, "quantity", 1)


class CartItemRemoved(UserEvent, frozen=True, gc=False, tag="cart_item_removed"):
    """A product taken out of the cart (topic shop.cart); quantity absent: the whole line."""

    type: ClassVar[str] = "cart_item_removed"
    product_id: ObjectId
    quantity: Quantity | None = None  # None: remove the whole line
    test: bool | None = False
    channel: Label | None = None

    def __post_init__(self) -> None:
        settle(self)
        if type(self.product_id) is int:
            force_setattr(self, "product_id", str(self.product_id))


class CartCleared(UserEvent, frozen=True, gc=False, tag="cart_cleared"):
    """The cart emptied (topic shop.cart)."""

    type: ClassVar[str] = "cart_cleared"
    test: bool | None = False
    channel: Label | None = None


class CheckoutStarted(UserEvent, frozen=True, gc=False, tag="checkout_started"):
    """Checkout begun (topic shop.cart)."""

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
        if type(self.product_id) is int:
            force_setattr(self, "product_id", str(self.product_id))


class OrderPlaced(UserEvent, frozen=True, gc=False, tag="order_placed"):
    """An order (topic shop.order); it empties the cart. total defaults to the sum of
    quantity x unit_price over the lines, which must be at most 1e15 too."""

    type: ClassVar[str] = "order_placed"
    order_id: ObjectId
    items: Annotated[tuple[OrderLine, ...], msgspec.Meta(min_length=1)]
    total: Amount | None = None
    test: bool | None = False
    channel: Label | None = None

    def __post_init__(self) -> None:
        settle(self)
        if type(self.order_id) is int:
            force_setattr(self, "order_id", str(self.order_id))
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
    """An order withdrawn from the user's history (topic shop.order)."""

    type: ClassVar[str] = "order_cancelled"
    order_id: ObjectId
    test: bool | None = False
    channel: Label | None = None

    def __post_init__(self) -> None:
        settle(self)
        if type(self.order_id) is int:
            force_setattr(self, "order_id", str(self.order_id))


class PreferencesUpdated(UserEvent, frozen=True, gc=False, tag="preferences_updated"):
    """Preferences (topic shop.prefs), each optional; timezone is an IANA name. birthday
    (section 7.1): absent leaves it as it was (UNSET here), null removes it."""

    type: ClassVar[str] = "preferences_updated"
    marketing_opt_in: bool | None = None
    timezone: TimeZoneName | None = None
    birthday: Birthday | UnsetType | None = UNSET
    channels: ChannelAnswers | None = None  # contract 8.1: per-channel consent, name -> yes
    test: bool | None = False
    channel: Label | None = None

    def __post_init__(self) -> None:
        settle(self)
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
    """A catalog change (section 7.1, topic shop.catalog, key product_id; no user_id). An
    absent (or null) price or in_stock leaves that attribute as it was."""

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
        settle(self)
        if type(self.product_id) is int:
            force_setattr(self, "product_id", str(self.product_id))


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
    | UserErased
    | MessageDelivered
    | MessageOpened
    | MessageClicked
    | MessageBounced
    | MessageUnsubscribed
    | MessageComplained
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
#: Every user event's topic: the shop's (TOPIC_OF_TYPE, shop activity), the erasure and the
#: engagement feedback (contract 8.3, 8.5).
INPUT_TOPIC_OF_TYPE: dict[str, str] = {
    **TOPIC_OF_TYPE,
    UserErased.type: ERASURE_TOPIC,
    **dict.fromkeys(ENGAGEMENT_TYPES, ENGAGEMENT_TOPIC),
}
_EVENT_CLASSES: tuple[type[UserEvent], ...] = Event.__args__  # type: ignore[attr-defined]
assert {cls.type for cls in _EVENT_CLASSES} == INPUT_TOPIC_OF_TYPE.keys()

_USER = msgspec.json.Decoder(Event)
_CATALOG = msgspec.json.Decoder(ProductUpdated)
_decode_user = _USER.decode
#: The types each parser refuses as read from the wrong topic, with the reason why.
_OTHERS_OF_USER = {
    ProductUpdated.type: f"a catalog event: catalog events are read from the catalog topic "
    f"{CATALOG_TOPIC}, not from the user topics"
}
_OTHERS_OF_CATALOG = dict.fromkeys(
    INPUT_TOPIC_OF_TYPE,
    f"a user event: user events are read from the user topics, not from the catalog topic "
    f"{CATALOG_TOPIC}",
)


def parse_event(raw: bytes | str, *, max_bytes: int = 65536) -> Event:
    """Parse and validate one user-event message; raises :class:`InvalidEvent` only."""
    kind = type(raw)
    if (kind is bytes or kind is str) and len(raw) <= max_bytes and raw.isascii():  # common
        try:
            return _decode_user(raw)
        except Exception:  # the general path below tells what is wrong
            pass
    return decode_message(raw, max_bytes, _USER, _OTHERS_OF_USER)


def parse_catalog_event(raw: bytes | str, *, max_bytes: int = 65536) -> ProductUpdated:
    """Parse and validate one ``shop.catalog`` message; raises :class:`InvalidEvent` only."""
    return decode_message(raw, max_bytes, _CATALOG, _OTHERS_OF_CATALOG)
