"""Reading an audit stream for ``nudge report``: decisions, conversions and engagement, tallied.

The input is JSON Lines of the audit records of contract sections 4 and 8.6 (what
``nudge replay`` writes, or the ``marketing.triggers.audit`` topic). Only the
fields the report needs are read; other fields are ignored, so older and newer
records both work. Erasure records are counted and otherwise left alone: an
erasure does not unmake what was sent before it.

Definitions (also in docs/report.md):

- a **recipient** of a group (trigger, stage, variant, channel, arm) is a distinct user
  with at least one decision of that group: arm ``treatment`` = status
  ``sent``, arm ``holdout`` = status ``holdout``. Stage ``all`` counts a user
  once over every stage of the trigger, channel "all" once over every channel.
  Suppressed decisions make no recipient.
- a **converter** is a recipient with at least one conversion attributed to a
  decision of that group; a conversion is placed by its ``trigger_id`` on the
  decision it is attributed to (that decision's stage, variant and arm);
  a conversion whose decision is not in the input is counted as unmatched and
  left out (so converters are always recipients).
- the same ``trigger_id`` read twice (the audit topic is at-least-once) is one
  decision; the same (``trigger_id``, ``order_id``) twice is one conversion.
- holdout decisions carry no variant (contract 7.2): a trigger's holdout is
  shared by its variants. They carry the channel that would have been used
  (contract 8.2), so holdout and treatment are compared within a channel.
- the **funnel** of a group counts ``sent`` decisions (messages, not users):
  a step (delivered, opened, clicked, ...) counts the sent decisions with at
  least one engagement record of that type, placed by ``trigger_id`` on the
  decision (its channel, whatever the record's ``channel`` says); ordered
  counts the sent decisions with at least one attributed conversion. An
  engagement record whose ``trigger_id`` is not a sent decision of the input
  is counted as unmatched and left out.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated

import msgspec

from triggers.events import INPUT_TOPIC_OF_TYPE

ALL_STAGES = 0  # the stage key of the "every stage" groups
ALL_VARIANTS = ""  # the variant key of the pooled treatment (variant names are non-empty)
ALL_CHANNELS = ""  # the channel key of the groups pooled over channels (names are non-empty)
#: The engagement types of contract 8.3, as funnel steps, in funnel order.
ENGAGEMENT_STEPS = {
    "message_delivered": "delivered",
    "message_opened": "opened",
    "message_clicked": "clicked",
    "message_bounced": "bounced",
    "message_unsubscribed": "unsubscribed",
    "message_complained": "complained",
}
ARM_OF_STATUS = {"sent": "treatment", "holdout": "holdout"}

AwareTime = Annotated[datetime, msgspec.Meta(tz=True)]


class AuditDecision(msgspec.Struct, tag_field="kind", tag="decision"):
    trigger_id: str
    trigger: str
    stage: Annotated[int, msgspec.Meta(ge=1)]
    user_id: str
    fired_at: AwareTime
    status: str
    variant: str | None = None
    channel: str | None = None


class AuditConversion(msgspec.Struct, tag_field="kind", tag="conversion"):
    trigger_id: str
    trigger: str
    user_id: str
    revenue: float
    order_id: str = ""
    variant: str | None = None


class AuditEngagement(msgspec.Struct, tag_field="kind", tag="engagement"):
    type: str
    trigger_id: str
    channel: str
    user_id: str
    at: AwareTime


class AuditErasure(msgspec.Struct, tag_field="kind", tag="erasure"):
    user_id: str
    erased_at: AwareTime


_decoder = msgspec.json.Decoder(AuditDecision | AuditConversion | AuditEngagement | AuditErasure)


class _Shape(msgspec.Struct):
    """What tells an input event (``type``, contract section 1) from an audit record."""

    type: object = None
    kind: object = None


_shape = msgspec.json.Decoder(_Shape)
#: The ``type`` of every input event (the user events, feedback and erasures included, and the
#: catalog's ``product_updated``).
EVENT_TYPES = frozenset({*INPUT_TOPIC_OF_TYPE, "product_updated"})


def _is_event(raw: bytes | str) -> bool:
    """Whether an invalid audit line is an input event (what ``nudge replay`` reads)."""
    try:
        shape = _shape.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return False
    return shape.kind is None and isinstance(shape.type, str) and shape.type in EVENT_TYPES


#: trigger, stage (0 = all), variant ("" = all), channel ("" = all), arm
GroupKey = tuple[str, int, str | None, str | None, str]


@dataclass(slots=True)
class _Placed:
    """A decision, as far as conversions need it."""

    trigger: str
    stage: int
    variant: str | None
    channel: str | None
    arm: str | None  # None: suppressed
    user_id: str

    def group_keys(self) -> list[GroupKey]:
        """The groups a sent or held-out decision counts in."""
        assert self.arm is not None
        return _group_keys(self.trigger, self.stage, self.variant, self.channel, self.arm)


class Funnel(msgspec.Struct):
    """Per group, the sent decisions reaching each step; filled by :meth:`AuditTally.funnel`."""

    delivered: int = 0
    opened: int = 0
    clicked: int = 0
    bounced: int = 0
    unsubscribed: int = 0
    complained: int = 0
    ordered: int = 0


@dataclass
class AuditTally:
    """Everything the report needs from the stream, filled by :meth:`add_line`."""

    lines: int = 0
    invalid: int = 0
    events: int = 0  # invalid lines that are input events: replay's input, not its output
    duplicates: int = 0
    invalid_examples: list[str] = field(default_factory=list)  # "line N: reason", the first few
    decisions: int = 0
    erasures: int = 0
    statuses: Counter[tuple[str, str]] = field(default_factory=Counter)  # (trigger, status)
    first: datetime | None = None
    last: datetime | None = None
    sends_by_hour: Counter[tuple[datetime, str]] = field(default_factory=Counter)
    recipients: defaultdict[GroupKey, set[str]] = field(default_factory=lambda: defaultdict(set))
    sent: Counter[GroupKey] = field(default_factory=Counter)  # sent decisions (treatment keys)
    _placed: dict[str, _Placed] = field(default_factory=dict)
    _conversions: dict[tuple[str, str], AuditConversion] = field(default_factory=dict)
    # trigger_id -> records by engagement type; (trigger_id, type, at) of each record, once
    _engaged: defaultdict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    _engagements: set[tuple[str, str, datetime]] = field(default_factory=set)

    def add_line(self, raw: bytes | str, where: str | None = None) -> None:
        """One JSON Lines line (or Kafka record value); ``where`` names it in an invalid
        record's example (default ``line N``)."""
        if not raw.strip():
            return
        self.lines += 1
        try:
            record = _decoder.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.invalid += 1
            self.events += _is_event(raw)
            if len(self.invalid_examples) < 5:
                self.invalid_examples.append(f"{where or f'line {self.lines}'}: {exc}")
            return
        if type(record) is AuditDecision:
            self._add_decision(record)
        elif type(record) is AuditConversion:
            key = (record.trigger_id, record.order_id)
            if key in self._conversions:
                self.duplicates += 1
            else:
                self._conversions[key] = record
        elif type(record) is AuditEngagement:
            self._add_engagement(record)
        else:
            self.erasures += 1

    def _add_engagement(self, record: AuditEngagement) -> None:
        seen = (record.trigger_id, record.type, record.at)
        if seen in self._engagements:
            self.duplicates += 1
            return
        self._engagements.add(seen)
        self._engaged[record.trigger_id][record.type] += 1

    def _add_decision(self, record: AuditDecision) -> None:
        if record.trigger_id in self._placed:
            self.duplicates += 1
            return
        self.decisions += 1
        self.statuses[record.trigger, record.status] += 1
        arm = ARM_OF_STATUS.get(record.status)
        variant = record.variant if arm == "treatment" else None
        channel = record.channel if arm is not None else None
        self._placed[record.trigger_id] = _Placed(
            record.trigger, record.stage, variant, channel, arm, record.user_id
        )
        if arm is None:
            return
        fired = record.fired_at
        self.first = fired if self.first is None else min(self.first, fired)
        self.last = fired if self.last is None else max(self.last, fired)
        keys = _group_keys(record.trigger, record.stage, variant, channel, arm)
        if arm == "treatment":
            hour = fired.replace(minute=0, second=0, microsecond=0)
            self.sends_by_hour[hour, record.trigger] += 1
            self.sent.update(keys)
        for key in keys:
            self.recipients[key].add(record.user_id)

    def conversions(self) -> tuple[dict[GroupKey, dict[str, float]], Counter[GroupKey], int]:
        """Per group: revenue by converting user, conversion count; and the unmatched count."""
        revenue: defaultdict[GroupKey, dict[str, float]] = defaultdict(dict)
        counts: Counter[GroupKey] = Counter()
        unmatched = 0
        # In key order, not arrival order: the audit topic's partitions interleave in any
        # order, and the sums of revenues must not depend on it (floating point).
        for (trigger_id, _order), conversion in sorted(self._conversions.items()):
            placed = self._placed.get(trigger_id)
            if placed is None or placed.arm is None:
                unmatched += 1
                continue
            for key in placed.group_keys():
                by_user = revenue[key]
                user = placed.user_id
                by_user[user] = by_user.get(user, 0.0) + float(conversion.revenue)
                counts[key] += 1
        return revenue, counts, unmatched

    def funnel(self) -> tuple[dict[GroupKey, Funnel], int]:
        """Per treatment group, the sent decisions reaching each step; and the number of
        engagement records whose ``trigger_id`` is no sent decision of the input."""
        steps: defaultdict[GroupKey, Funnel] = defaultdict(Funnel)
        unmatched = 0
        for trigger_id, types in self._engaged.items():
            placed = self._placed.get(trigger_id)
            if placed is None or placed.arm != "treatment":
                unmatched += types.total()
                continue
            names = [ENGAGEMENT_STEPS[t] for t in types if t in ENGAGEMENT_STEPS]
            for key in placed.group_keys():
                funnel = steps[key]
                for name in names:
                    setattr(funnel, name, getattr(funnel, name) + 1)
        ordered = {trigger_id for trigger_id, _order in self._conversions}
        for trigger_id in ordered:
            placed = self._placed.get(trigger_id)
            if placed is not None and placed.arm == "treatment":
                for key in placed.group_keys():
                    steps[key].ordered += 1
        return steps, unmatched

    @property
    def conversion_records(self) -> int:
        return len(self._conversions)

    @property
    def engagement_records(self) -> int:
        return len(self._engagements)

    def not_audit(self) -> str | None:
        """``"events"`` if the lines are input events (replay's input, not its output),
        ``"other"`` if none of them is an audit record either, None if the input is an audit
        stream (or empty)."""
        if self.lines == 0 or self.lines > self.invalid:
            return None
        return "events" if self.events else "other"


def _group_keys(
    trigger: str, stage: int, variant: str | None, channel: str | None, arm: str
) -> list[GroupKey]:
    variants = [variant, ALL_VARIANTS] if arm == "treatment" else [variant]
    return [
        (trigger, s, v, c, arm)
        for s in (stage, ALL_STAGES)
        for v in variants
        for c in (channel, ALL_CHANNELS)
    ]


def tally_lines(lines: Iterable[bytes | str]) -> AuditTally:
    tally = AuditTally()
    for raw in lines:
        tally.add_line(raw)
    return tally
