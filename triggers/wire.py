"""Pydantic v2 models of the wire format: input events (section 1), output records (section 4).

These are the *documentation* of the wire format and the way to get its JSON
Schema (:func:`json_schemas`, e.g. for producers and consumers in other
languages). The hot path does not use them: :func:`triggers.events.parse_event`
is a hand-written validator that accepts and rejects exactly the same input
(a unit test checks both on the same corpus) at a fraction of the cost.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    TypeAdapter,
    WithJsonSchema,
    model_validator,
)

from triggers.events import (
    MAX_AMOUNT,
    MAX_ID_CHARS,
    MAX_LABEL_CHARS,
    MAX_QUANTITY,
    MAX_QUERY_CHARS,
    is_time_zone,
)
from triggers.records import (
    ARMS,
    SEGMENT_NAMES,
    STATUSES,
    SUPPRESSION_REASONS,
    TRIGGER_NAMES,
)
from triggers.timestamps import parse_timestamp


def _timestamp(value: object) -> datetime:
    return parse_timestamp(value)  # TimestampError is a ValueError: pydantic reports it


def _int_id_as_string(value: object) -> object:
    return str(value) if type(value) is int else value


def _known_zone(value: str) -> str:
    if not is_time_zone(value):
        raise ValueError(f"not a known IANA time zone: {value!r}")
    return value


Timestamp = Annotated[
    datetime,
    BeforeValidator(_timestamp),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "format": "date-time", "description": "RFC 3339 with offset"},
                {"type": "integer", "description": "epoch milliseconds"},
            ]
        }
    ),
]
Id = Annotated[StrictStr, Field(min_length=1, max_length=MAX_ID_CHARS)]
ObjectId = Annotated[
    StrictStr,
    BeforeValidator(_int_id_as_string),
    Field(min_length=1, max_length=MAX_ID_CHARS),
    WithJsonSchema({"type": ["string", "integer"], "description": "string, or integer"}),
]
Label = Annotated[StrictStr, Field(min_length=1, max_length=MAX_LABEL_CHARS)]
Amount = Annotated[
    StrictInt | Annotated[StrictFloat, Field(allow_inf_nan=False)], Field(ge=0, le=MAX_AMOUNT)
]
Quantity = Annotated[StrictInt, Field(ge=1, le=MAX_QUANTITY)]


class _Event(BaseModel):
    """Fields every event has; unknown extra fields are accepted and ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_id: Id
    user_id: Id
    ts: Timestamp
    test: StrictBool | None = False
    channel: Label | None = None


class ProductViewedIn(_Event):
    type: Literal["product_viewed"]
    product_id: ObjectId
    category: Label | None = None
    price: Amount | None = None


class CategoryViewedIn(_Event):
    type: Literal["category_viewed"]
    category: Label


class SearchIn(_Event):
    type: Literal["search"]
    query: Annotated[StrictStr, Field(min_length=1, max_length=MAX_QUERY_CHARS)]


class CartItemAddedIn(_Event):
    type: Literal["cart_item_added"]
    product_id: ObjectId
    quantity: Quantity | None = 1
    unit_price: Amount | None = None
    category: Label | None = None


class CartItemRemovedIn(_Event):
    type: Literal["cart_item_removed"]
    product_id: ObjectId
    quantity: Quantity | None = None  # absent: remove the line


class CartClearedIn(_Event):
    type: Literal["cart_cleared"]


class CheckoutStartedIn(_Event):
    type: Literal["checkout_started"]


class OrderLineIn(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    product_id: ObjectId
    quantity: Quantity
    unit_price: Amount
    category: Label | None = None


class OrderPlacedIn(_Event):
    type: Literal["order_placed"]
    order_id: ObjectId
    items: Annotated[list[OrderLineIn], Field(min_length=1)]
    total: Amount | None = None  # default: the sum of the lines, also at most MAX_AMOUNT

    @model_validator(mode="after")
    def _default_total_in_range(self) -> OrderPlacedIn:
        if self.total is None:
            total = sum(line.quantity * float(line.unit_price) for line in self.items)
            if not total <= MAX_AMOUNT:
                raise ValueError("total (default: the sum of the lines) must be at most 1e15")
        return self


class OrderCancelledIn(_Event):
    type: Literal["order_cancelled"]
    order_id: ObjectId


class PreferencesUpdatedIn(_Event):
    type: Literal["preferences_updated"]
    marketing_opt_in: StrictBool | None = None
    timezone: Annotated[Label, AfterValidator(_known_zone)] | None = None


InputEvent = Annotated[
    ProductViewedIn
    | CategoryViewedIn
    | SearchIn
    | CartItemAddedIn
    | CartItemRemovedIn
    | CartClearedIn
    | CheckoutStartedIn
    | OrderPlacedIn
    | OrderCancelledIn
    | PreferencesUpdatedIn,
    Field(discriminator="type"),
]
INPUT_EVENT: TypeAdapter[Any] = TypeAdapter(InputEvent)

Rfc3339Utc = Annotated[
    StrictStr,
    Field(pattern=r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z$"),
]


class DecisionOut(BaseModel):
    """A decision on ``marketing.triggers`` (sent) and ``marketing.triggers.audit`` (all)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["decision"]
    trigger_id: Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{32}$")]
    trigger: Literal[TRIGGER_NAMES]  # type: ignore[valid-type]
    stage: Annotated[StrictInt, Field(ge=1)]
    user_id: Id
    due_at: Rfc3339Utc
    fired_at: Rfc3339Utc
    status: Literal[STATUSES]  # type: ignore[valid-type]
    reason: Literal[SUPPRESSION_REASONS] | None  # type: ignore[valid-type]
    segment: Literal[SEGMENT_NAMES]  # type: ignore[valid-type]
    offer: StrictStr | None
    context: dict[str, Any]
    rules_version: StrictStr


class ConversionOut(BaseModel):
    """An attributed order on ``marketing.triggers.audit``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["conversion"]
    trigger_id: Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{32}$")]
    trigger: Literal[TRIGGER_NAMES]  # type: ignore[valid-type]
    user_id: Id
    arm: Literal[ARMS]  # type: ignore[valid-type]
    order_id: Id
    revenue: Amount
    converted_at: Rfc3339Utc


OutputRecord = Annotated[DecisionOut | ConversionOut, Field(discriminator="kind")]
OUTPUT_RECORD: TypeAdapter[Any] = TypeAdapter(OutputRecord)


def json_schemas() -> dict[str, dict[str, Any]]:
    """JSON Schema of an input event and of an output record."""
    return {
        "input_event": INPUT_EVENT.json_schema(),
        "output_record": OUTPUT_RECORD.json_schema(),
    }
