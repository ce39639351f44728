"""The typed ``context`` of each built-in trigger's decision, as the published decision
schema documents it (:mod:`triggers.schemas`): what each trigger module's ``context()``
returns."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

Rfc3339Utc = Annotated[
    str,
    Meta(
        pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{3})?Z$",
        description="RFC 3339 in UTC with Z; milliseconds only when not zero",
    ),
]
_DOC = {"forbid_unknown_fields": True, "frozen": True}


class CartLine(msgspec.Struct, **_DOC):
    product_id: str
    quantity: int
    unit_price: float | None
    category: str | None


class CartAbandonmentContext(msgspec.Struct, **_DOC):
    """The cart when the stage came due: its lines and value."""

    lines: list[CartLine]
    items: int
    value: float
    checkout_started: bool
    last_cart_activity: Rfc3339Utc | None


class BrowseAbandonmentContext(msgspec.Struct, **_DOC):
    """The last product viewed (empty if unknown)."""

    product_id: str | UnsetType = UNSET
    category: str | UnsetType | None = UNSET
    price: float | UnsetType | None = UNSET
    viewed_at: Rfc3339Utc | UnsetType = UNSET


class ReplenishmentContext(msgspec.Struct, **_DOC):
    """The product, its last purchase and interval (only ``product_id`` if the product
    left the history)."""

    product_id: str | None
    category: str | UnsetType | None = UNSET
    last_purchase: Rfc3339Utc | UnsetType = UNSET
    purchases: int | UnsetType = UNSET
    interval_days: float | UnsetType | None = UNSET
    interval_source: Literal["product", "category", "learned"] | UnsetType | None = UNSET


class FirstPurchaseFollowupContext(msgspec.Struct, **_DOC):
    """The first order (only ``order_id`` if it left the history)."""

    order_id: str | None
    order_total: float | UnsetType = UNSET
    ordered_at: Rfc3339Utc | UnsetType = UNSET
    products: list[str] | UnsetType = UNSET


class LapsingContext(msgspec.Struct, **_DOC):
    """The last order and the mean gap between the last orders (only ``orders`` if no
    order is remembered)."""

    orders: int
    last_order_id: str | UnsetType = UNSET
    last_order_at: Rfc3339Utc | UnsetType = UNSET
    mean_gap_days: float | UnsetType | None = UNSET


class DormancyContext(msgspec.Struct, **_DOC):
    """The last activity and the whole days since (null if none is known)."""

    last_activity: Rfc3339Utc | None
    days_inactive: int | None


class BirthdayContext(msgspec.Struct, **_DOC):
    """The user's birthday and how many days before it the greeting goes out."""

    birthday: Annotated[str, Meta(pattern=r"^[0-9]{2}-[0-9]{2}$", description="MM-DD")]
    days_before: Annotated[int, Meta(ge=0)]


class BackInStockContext(msgspec.Struct, **_DOC):
    """The product back in stock."""

    product_id: str
    category: str | None


class PriceDropContext(msgspec.Struct, **_DOC):
    """The product, the lowest price the user saw and its new price."""

    product_id: str
    category: str | None
    old_price: float
    new_price: float


class CustomContext(msgspec.Struct, **_DOC):
    """A custom trigger's arming event: its type, and its product, category and price
    where present (for an order: the first line that matched)."""

    type: str
    product_id: str | UnsetType = UNSET
    category: str | UnsetType = UNSET
    price: float | UnsetType = UNSET
