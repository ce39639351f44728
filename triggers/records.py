"""Output records (contract section 4): decisions and conversions, and their JSON bytes.

``record_to_json`` is deterministic: fixed key order, RFC 3339 UTC times with
``Z`` (milliseconds only when non-zero), the ``context`` mapping in the order
its trigger built it, ``variant`` (contract 7.2, null where the trigger has no
variants) last. No trailing newline.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import ClassVar

import orjson

from triggers.frozen import frozen_record
from triggers.timestamps import format_timestamp

SEGMENT_NAMES = ("prospect", "new", "potential", "core", "dormant", "churned")
STATUSES = ("sent", "holdout", "suppressed")
SUPPRESSION_REASONS = ("stale", "opted_out", "cooldown", "frequency_cap")
ARMS = ("treatment", "holdout")


def __getattr__(name: str) -> object:
    """``TRIGGER_NAMES``: the built-in triggers, in registry order (:mod:`triggers.registry`,
    which imports this module: it is looked up on first use)."""
    if name == "TRIGGER_NAMES":
        from triggers.registry import NAMES

        globals()["TRIGGER_NAMES"] = NAMES
        return NAMES
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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


def record_to_json(record: Decision | Conversion) -> bytes:
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
            }
        )
    raise TypeError(f"not an output record: {type(record).__name__}")
