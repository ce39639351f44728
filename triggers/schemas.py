"""Published JSON Schemas (2020-12) of the wire contract, generated from typed models.

Input events come from the parser's own model (:mod:`triggers.events`); the output
records and the dead letter are described by the documentation models below, which
the engine does not use to build records (:func:`triggers.records.record_to_json`
does): a unit test decodes real replay output into them, unknown fields forbidden, so
a record and its schema cannot drift apart. A decision's ``context`` is typed per
trigger: the decision schema is a union discriminated by ``trigger``.

The same documents are checked in under ``schemas/`` (a unit test keeps them current):
regenerate them with ``python -m triggers.schemas --out schemas``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import orjson
from msgspec import UNSET, Meta, UnsetType

from triggers.event_fields import REASONS, Amount, Id, Label
from triggers.events import ENGAGEMENT_TYPES, Event, ProductUpdated
from triggers.records import ARMS, SEGMENT_NAMES, STATUSES, SUPPRESSION_REASONS
from triggers.schema_contexts import (
    BackInStockContext,
    BirthdayContext,
    BrowseAbandonmentContext,
    CartAbandonmentContext,
    CustomContext,
    DormancyContext,
    FirstPurchaseFollowupContext,
    LapsingContext,
    PriceDropContext,
    ReplenishmentContext,
    Rfc3339Utc,
)

DRAFT = "https://json-schema.org/draft/2020-12/schema"

TriggerId = Annotated[
    str,
    Meta(
        pattern=r"^[0-9a-f]{32}$",
        description="deterministic: the same input events give the same id",
    ),
]
Variant = Annotated[
    str,
    Meta(min_length=1, max_length=32, description="A/B variant (section 7.2); null: none"),
]
ChannelName = Annotated[
    str,
    Meta(
        pattern=r"^[a-z0-9_]{1,32}$",
        description="the channel of the rules' channels (section 8); null: no channels, "
        "or a suppressed decision",
    ),
]
_DOC = {"forbid_unknown_fields": True, "frozen": True}


# --- output records ---------------------------------------------------------------------


class Decision(msgspec.Struct, tag_field="trigger", **_DOC):
    """A decision: ``sent`` ones go to ``marketing.triggers``, every one to
    ``marketing.triggers.audit`` (contract section 4). Key: ``user_id``."""

    kind: Literal["decision"]
    trigger_id: TriggerId
    stage: Annotated[int, Meta(ge=1, description="1-based")]
    user_id: Id
    due_at: Rfc3339Utc
    fired_at: Rfc3339Utc
    status: Literal[STATUSES]  # type: ignore[valid-type]
    reason: Literal[SUPPRESSION_REASONS] | None  # type: ignore[valid-type]
    segment: Literal[SEGMENT_NAMES]  # type: ignore[valid-type]
    offer: str | None
    context: dict[str, Any]
    rules_version: str
    variant: Variant | None = None
    channel: ChannelName | None = None


class CartAbandonmentDecision(Decision, tag="cart_abandonment", **_DOC):
    context: CartAbandonmentContext


class BrowseAbandonmentDecision(Decision, tag="browse_abandonment", **_DOC):
    context: BrowseAbandonmentContext


class ReplenishmentDecision(Decision, tag="replenishment", **_DOC):
    context: ReplenishmentContext


class FirstPurchaseFollowupDecision(Decision, tag="first_purchase_followup", **_DOC):
    context: FirstPurchaseFollowupContext


class LapsingDecision(Decision, tag="lapsing", **_DOC):
    context: LapsingContext


class DormancyDecision(Decision, tag="dormancy", **_DOC):
    context: DormancyContext


class BirthdayDecision(Decision, tag="birthday", **_DOC):
    context: BirthdayContext


class BackInStockDecision(Decision, tag="back_in_stock", **_DOC):
    context: BackInStockContext


class PriceDropDecision(Decision, tag="price_drop", **_DOC):
    context: PriceDropContext


#: A custom trigger's name (the rules' ``triggers.custom.NAME``, never a built-in one).
CustomName = Annotated[
    str, Meta(pattern=r"^[a-z0-9_]{1,64}$", description="a built-in or custom trigger")
]


class CustomDecision(msgspec.Struct, **_DOC):
    """A decision of a custom trigger (``trigger`` is its name in the rules)."""

    kind: Literal["decision"]
    trigger_id: TriggerId
    trigger: CustomName
    stage: Annotated[int, Meta(ge=1, description="1-based")]
    user_id: Id
    due_at: Rfc3339Utc
    fired_at: Rfc3339Utc
    status: Literal[STATUSES]  # type: ignore[valid-type]
    reason: Literal[SUPPRESSION_REASONS] | None  # type: ignore[valid-type]
    segment: Literal[SEGMENT_NAMES]  # type: ignore[valid-type]
    offer: str | None
    context: CustomContext
    rules_version: str
    variant: Variant | None = None
    channel: ChannelName | None = None


#: One decision model per trigger (a new trigger adds its context and decision above).
DECISIONS: dict[str, type[Decision]] = {
    cls.__struct_config__.tag: cls  # type: ignore[misc]
    for cls in (
        CartAbandonmentDecision,
        BrowseAbandonmentDecision,
        ReplenishmentDecision,
        FirstPurchaseFollowupDecision,
        LapsingDecision,
        DormancyDecision,
        BirthdayDecision,
        BackInStockDecision,
        PriceDropDecision,
    )
}
AnyDecision = (
    CartAbandonmentDecision
    | BrowseAbandonmentDecision
    | ReplenishmentDecision
    | FirstPurchaseFollowupDecision
    | LapsingDecision
    | DormancyDecision
    | BirthdayDecision
    | BackInStockDecision
    | PriceDropDecision
)


class Conversion(msgspec.Struct, **_DOC):
    """An order attributed to the latest ``sent`` or ``holdout`` decision, on
    ``marketing.triggers.audit``. Key: ``user_id``."""

    kind: Literal["conversion"]
    trigger_id: TriggerId
    trigger: CustomName
    user_id: Id
    arm: Literal[ARMS]  # type: ignore[valid-type]
    order_id: Id
    revenue: Amount
    converted_at: Rfc3339Utc
    variant: Variant | None = None
    channel: ChannelName | None = None


class Engagement(msgspec.Struct, **_DOC):
    """One engagement feedback event (contract 8.3), on ``marketing.triggers.audit``.
    Key: ``user_id``. ``trigger_id`` and ``channel`` as the delivery provider sent them."""

    kind: Literal["engagement"]
    type: Literal[ENGAGEMENT_TYPES]  # type: ignore[valid-type]
    trigger_id: Id
    channel: Label
    user_id: Id
    at: Rfc3339Utc
    url: str | UnsetType = UNSET
    bounce: Literal["hard", "soft"] | UnsetType = UNSET


class Erasure(msgspec.Struct, **_DOC):
    """A user erased (contract 8.5), on ``marketing.triggers.audit``. Key: ``user_id``."""

    kind: Literal["erasure"]
    user_id: Id
    erased_at: Rfc3339Utc


class DeadLetter(msgspec.Struct, **_DOC):
    """An input message that could not be applied, on ``shop.events.dlq``: the raw
    message whole up to 256 KiB (``raw`` if UTF-8, else ``raw_base64``), a prefix beyond
    (``raw_truncated``)."""

    kind: Literal["dead_letter"]
    reason: Literal[(*REASONS, "processing_error")]  # type: ignore[valid-type]
    detail: str
    topic: str
    partition: Annotated[int, Meta(ge=0)]
    offset: Annotated[int, Meta(ge=0)]
    received_at: Annotated[str, Meta(description="RFC 3339 in UTC with Z")]
    size: Annotated[int, Meta(ge=0, description="the raw message's length in bytes")]
    raw: str | UnsetType = UNSET
    raw_base64: str | UnsetType = UNSET
    raw_truncated: Literal[True] | UnsetType = UNSET


_DECISION = msgspec.json.Decoder(AnyDecision)
_CUSTOM_DECISION = msgspec.json.Decoder(CustomDecision)
_CONVERSION = msgspec.json.Decoder(Conversion)
_OTHERS = {
    "conversion": _CONVERSION,
    "engagement": msgspec.json.Decoder(Engagement),
    "erasure": msgspec.json.Decoder(Erasure),
}


def decode_output_record(
    raw: bytes | str,
) -> Decision | CustomDecision | Conversion | Engagement | Erasure:
    """An output record read back into its documentation model: raises
    ``msgspec.ValidationError`` where it breaks its schema (an unknown field too)."""
    kind = orjson.loads(raw).get("kind")
    if kind == "decision":
        if orjson.loads(raw).get("trigger") in DECISIONS:
            return _DECISION.decode(raw)
        return _CUSTOM_DECISION.decode(raw)
    if kind in _OTHERS:
        return _OTHERS[kind].decode(raw)
    raise msgspec.ValidationError(f"not an output record kind: {kind!r}")


# --- the documents --------------------------------------------------------------------------

#: name -> (model, title, description); the files are ``schemas/NAME.json``.
SCHEMAS: dict[str, tuple[Any, str, str]] = {
    "input-event": (
        Event,
        "Nudge input event",
        "A user event on shop.browse, shop.cart, shop.order, shop.prefs or "
        "marketing.engagement (contract sections 1, 7.1, 8.3 and 8.5), discriminated by "
        "type. Unknown fields are ignored; JSON null for an optional field means absent "
        "(except birthday: null removes it).",
    ),
    "catalog-event": (
        ProductUpdated,
        "Nudge catalog event",
        "A product_updated event on shop.catalog (contract section 7.1); key product_id.",
    ),
    "decision": (
        AnyDecision,
        "Nudge decision",
        "A decision record (contract section 4), discriminated by trigger; context is "
        "trigger specific.",
    ),
    "conversion": (Conversion, "Nudge conversion", "A conversion record (contract section 4)."),
    "engagement": (
        Engagement,
        "Nudge engagement",
        "An engagement audit record (contract 8.3): one per valid engagement event.",
    ),
    "erasure": (Erasure, "Nudge erasure", "An erasure audit record (contract 8.5)."),
    "dead-letter": (DeadLetter, "Nudge dead letter", "A dead-letter record on shop.events.dlq."),
}


def schema_document(name: str) -> dict[str, Any]:
    """The JSON Schema document ``name`` (a key of :data:`SCHEMAS`)."""
    model, title, description = SCHEMAS[name]
    body = msgspec.json.schema(model)
    if name == "decision":  # the built-in triggers by their tag, or a custom trigger
        custom = msgspec.json.schema(CustomDecision)
        body["anyOf"].append({"$ref": custom["$ref"]})
        body["$defs"].update(custom["$defs"])
        trigger = body["$defs"]["CustomDecision"]["properties"]["trigger"]
        trigger["not"] = {"enum": list(DECISIONS)}
    return {"$schema": DRAFT, "title": title, "description": description, **body}


def render(document: dict[str, Any]) -> bytes:
    """A schema document as its checked-in file: indented JSON, a final newline."""
    return orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n"


def schema_files() -> dict[str, bytes]:
    """``NAME.json`` -> file contents, for every published schema."""
    return {f"{name}.json": render(schema_document(name)) for name in SCHEMAS}


def schema_command(name: str | None, out_dir: str | None) -> int:
    """``nudge schema [NAME] [--out DIR]``: print one schema (all: one JSON object by name),
    or write the files to ``DIR``. Returns the exit status."""
    if name is not None:
        name = name.removesuffix(".json")
        if name not in SCHEMAS:
            print(f"unknown schema {name!r}; one of: {', '.join(SCHEMAS)}", file=sys.stderr)
            return 2
    names = [name] if name is not None else list(SCHEMAS)
    if out_dir is None:
        document = (
            schema_document(names[0])
            if name is not None
            else {each: schema_document(each) for each in names}
        )
        sys.stdout.write(render(document).decode())
        return 0
    target = Path(out_dir)
    target.mkdir(parents=True, exist_ok=True)
    for each in names:
        path = target / f"{each}.json"
        path.write_bytes(render(schema_document(each)))
        print(path, file=sys.stderr)
    return 0


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m triggers.schemas", description=__doc__)
    parser.add_argument("name", nargs="?", choices=list(SCHEMAS), help="one schema (default: all)")
    parser.add_argument("--out", help="write NAME.json files to this directory")
    arguments = parser.parse_args()
    sys.exit(schema_command(arguments.name, arguments.out))
