"""What ``nudge report`` reports: its rows and summaries, as msgspec structs (``--json``
prints them as they are). Built by :func:`cli.report.build_report`."""

from __future__ import annotations

from datetime import datetime

import msgspec

from cli.report_stats import (
    ALPHA,
    MIN_CONVERTERS,
    MIN_RECIPIENTS,
    ArmStats,
    CostReturn,
    Step,
    Uplift,
)
from triggers.registry import TRIGGER_NAMES

POOLED = "(all)"  # the label of a row pooled over variants or channels


class FunnelStats(msgspec.Struct, frozen=True):
    """A group's sent decisions and how many reached each step (contract 8.4): delivered,
    opened, clicked, ordered with their share of sent; bounces, unsubscribes and complaints
    as counts."""

    sent: int
    delivered: Step
    opened: Step
    clicked: Step
    ordered: Step
    bounced: int
    unsubscribed: int
    complained: int


class Row(msgspec.Struct, frozen=True):
    """One group: a trigger's stage (or "all"), variant (None, a name, or "(all)") and channel
    (None, a name, or "(all)"); the holdout is the trigger's holdout of the same channel."""

    trigger: str
    stage: int | str  # a stage number or "all"
    variant: str | None
    channel: str | None
    treatment: ArmStats
    holdout: ArmStats | None
    uplift: Uplift | None
    funnel: FunnelStats
    cost: CostReturn
    warnings: list[str]


class VariantComparison(msgspec.Struct, frozen=True):
    """Variant ``variant`` against variant ``baseline`` (both treatment, same stage, every
    channel)."""

    trigger: str
    stage: int | str
    variant: str
    baseline: str
    uplift: Uplift | None
    warnings: list[str]


class SendsBucket(msgspec.Struct, frozen=True):
    start: datetime
    sent: dict[str, int]  # trigger -> sent decisions fired in the bucket


class InputSummary(msgspec.Struct, frozen=True):
    lines: int
    invalid: int
    duplicates: int
    decisions: int
    conversions: int
    unmatched_conversions: int
    first_fired_at: datetime | None
    last_fired_at: datetime | None
    statuses: dict[str, dict[str, int]]  # trigger -> status -> decisions
    engagement: int = 0  # engagement records (contract 8.3)
    unmatched_engagement: int = 0  # whose trigger_id is no sent decision of the input
    erasures: int = 0


class Rules(msgspec.Struct, frozen=True):
    confidence: float = 1 - ALPHA
    min_recipients: int = MIN_RECIPIENTS
    min_converters: int = MIN_CONVERTERS
    costs: dict[str, float] | None = None  # channel -> cost per sent message; None: no --rules


class Report(msgspec.Struct, frozen=True):
    input: InputSummary
    rows: list[Row]
    variant_comparisons: list[VariantComparison]
    sends_bucket: str  # hour | day | week
    sends: list[SendsBucket]
    rules: Rules = Rules()


def trigger_order(trigger: str) -> tuple[int, str]:
    known = TRIGGER_NAMES.index(trigger) if trigger in TRIGGER_NAMES else len(TRIGGER_NAMES)
    return known, trigger
