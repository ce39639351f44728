"""Output records (contract sections 4 and 8.6): decisions, conversions, engagement and
erasure audit records, and their JSON bytes.

``record_to_json`` is deterministic: fixed key order, RFC 3339 UTC times with
``Z`` (milliseconds only when non-zero), the ``context`` mapping in the order
its trigger built it, then ``variant`` (contract 7.2, null where the trigger has no
variants) and ``channel`` (contract 8, null without channels or when suppressed).
An engagement record carries ``url`` and ``bounce`` only when its event had them.
No trailing newline.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import ClassVar

import orjson

from triggers.frozen import frozen_record
from triggers.timestamps import format_timestamp

SEGMENT_NAMES = ("prospect", "new", "potential", "core", "dormant", "churned")
STATUSES = ("sent", "holdout", "suppressed")
SUPPRESSION_REASONS = ("stale", "opted_out", "cooldown", "frequency_cap", "no_channel")
ARMS = ("treatment", "holdout")


@frozen_record
class Decision:
    """What the engine decided when one stage of one episode came due."""

    kind: ClassVar[str] = "decision"
    trigger_id: str
    trigger: str
    stage: int  # 1-based
    user_id: str
    due_at: datetime
    fired_at: datetime
    status: str  # sent | holdout | suppressed
    reason: str | None  # None unless suppressed: stale | opted_out | cooldown | frequency_cap
    segment: str
    offer: str | None
    context: Mapping[str, object]  # JSON-ready values, trigger specific
    rules_version: str
    variant: str | None = None  # the user's A/B variant (section 7.2); None for holdout
    channel: str | None = None  # the channel step's choice (8.2); None when suppressed
    # When the stage was to be sent: due_at, or the end of the quiet hours it was deferred
    # to. Not on the wire (nor in equality); fired_at minus it is how late the service was.
    send_at: datetime | None = dataclasses.field(default=None, compare=False)


@frozen_record
class Conversion:
    """An order attributed to the most recent ``sent`` or ``holdout`` decision."""

    kind: ClassVar[str] = "conversion"
    trigger_id: str
    trigger: str
    user_id: str
    arm: str  # treatment (the decision was sent) | holdout
    order_id: str
    revenue: float
    converted_at: datetime
    variant: str | None = None  # the converted decision's variant
    channel: str | None = None  # the converted decision's channel


@frozen_record
class Engagement:
    """One engagement feedback event, as the audit keeps it (contract 8.3)."""

    kind: ClassVar[str] = "engagement"
    type: str  # the event's type verbatim: message_delivered, message_opened, ...
    trigger_id: str
    channel: str
    user_id: str
    at: datetime  # the event's ts
    url: str | None = None  # message_clicked, when given
    bounce: str | None = None  # message_bounced: hard | soft


@frozen_record
class Erasure:
    """A user erased (contract 8.5): everything else about them is gone."""

    kind: ClassVar[str] = "erasure"
    user_id: str
    erased_at: datetime  # the user_erased event's ts


OutputRecord = Decision | Conversion | Engagement | Erasure


def record_to_json(record: OutputRecord) -> bytes:
    """The wire form of a record (one JSON object, UTF-8, no newline)."""
    if type(record) is Decision:
        return orjson.dumps(
            {
                "kind": "decision",
                "trigger_id": record.trigger_id,
                "trigger": record.trigger,
                "stage": record.stage,
                "user_id": record.user_id,
                "due_at": format_timestamp(record.due_at),
                "fired_at": format_timestamp(record.fired_at),
                "status": record.status,
                "reason": record.reason,
                "segment": record.segment,
                "offer": record.offer,
                "context": record.context,
                "rules_version": record.rules_version,
                "variant": record.variant,
                "channel": record.channel,
            }
        )
    if type(record) is Conversion:
        return orjson.dumps(
            {
                "kind": "conversion",
                "trigger_id": record.trigger_id,
                "trigger": record.trigger,
                "user_id": record.user_id,
                "arm": record.arm,
                "order_id": record.order_id,
                "revenue": record.revenue,
                "converted_at": format_timestamp(record.converted_at),
                "variant": record.variant,
                "channel": record.channel,
            }
        )
    if type(record) is Engagement:
        fields: dict[str, object] = {
            "kind": "engagement",
            "type": record.type,
            "trigger_id": record.trigger_id,
            "channel": record.channel,
            "user_id": record.user_id,
            "at": format_timestamp(record.at),
        }
        if record.url is not None:
            fields["url"] = record.url
        if record.bounce is not None:
            fields["bounce"] = record.bounce
        return orjson.dumps(fields)
    if type(record) is Erasure:
        return orjson.dumps(
            {
                "kind": "erasure",
                "user_id": record.user_id,
                "erased_at": format_timestamp(record.erased_at),
            }
        )
    raise TypeError(f"not an output record: {type(record).__name__}")
