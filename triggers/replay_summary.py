"""What a replay counts (:class:`ReplaySummary`), printed by ``nudge replay``."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from triggers.records import STATUSES, Conversion, Decision, Engagement, Erasure
from triggers.registry import TRIGGER_NAMES
from triggers.timestamps import format_timestamp

Record = Decision | Conversion | Engagement | Erasure


@dataclass(slots=True)
class ReplaySummary:
    events_read: int = 0  # non-blank lines
    invalid: int = 0
    test: int = 0
    duplicate: int = 0
    processed: int = 0
    users: int = 0
    conversions: int = 0
    decisions: Counter[tuple[str, str]] = field(default_factory=Counter)  # (trigger, status)
    reasons: Counter[str] = field(default_factory=Counter)  # suppression reasons
    arms: Counter[str] = field(default_factory=Counter)  # conversions by arm
    invalid_reasons: Counter[str] = field(default_factory=Counter)
    errors: int = 0  # stages that could not fire (keep_going)
    engagement: int = 0  # engagement records (contract 8.3)
    erasures: int = 0  # erasure records (contract 8.5)
    before_erasure: int = 0  # events not later than a remembered erasure: ignored
    expired: int = 0  # users deleted by retention or at the end of an erasure memory
    clock: datetime | None = None  # where the clock ended
    # Every trigger of the rules (built-in, then custom), listed even with no decision.
    names: tuple[str, ...] = TRIGGER_NAMES

    @property
    def ignored(self) -> int:
        return self.test + self.duplicate + self.before_erasure

    def count(self, record: Record) -> None:
        kind = type(record)
        if kind is Decision:
            self.decisions[record.trigger, record.status] += 1  # type: ignore[union-attr]
            if record.reason is not None:  # type: ignore[union-attr]
                self.reasons[record.reason] += 1  # type: ignore[union-attr]
        elif kind is Conversion:
            self.conversions += 1
            self.arms[record.arm] += 1  # type: ignore[union-attr]
        elif kind is Engagement:
            self.engagement += 1
        else:
            self.erasures += 1

    def triggers(self) -> list[str]:
        """The rules' triggers (built-in, then custom ones in the rules' order), then any
        other trigger that decided something, by name."""
        others = {trigger for trigger, _ in self.decisions} - set(self.names)
        return [*self.names, *sorted(others)]

    def lines(self) -> list[str]:
        out = [
            f"events read  {self.events_read}",
            f"invalid      {self.invalid}"
            + (f" ({_counts(self.invalid_reasons)})" if self.invalid_reasons else ""),
            f"ignored      {self.ignored} (duplicate {self.duplicate}, test {self.test}"
            + (f", before an erasure {self.before_erasure})" if self.before_erasure else ")"),
            f"processed    {self.processed}",
            f"users        {self.users}",
            "decisions    " + "".join(f"{status:>12}" for status in STATUSES),
        ]
        for trigger in self.triggers():
            counts = [self.decisions[trigger, status] for status in STATUSES]
            out.append(f"  {trigger:<25}" + "".join(f"{n:>12}" for n in counts))
        if self.reasons:
            out.append(f"suppressed   {_counts(self.reasons)}")
        arms = f" ({_counts(self.arms)})" if self.arms else ""
        out.append(f"conversions  {self.conversions}{arms}")
        if self.engagement:
            out.append(f"engagement   {self.engagement}")
        if self.erasures or self.expired:
            out.append(f"erased       {self.erasures} (expired without a record {self.expired})")
        if self.errors:
            out.append(f"errors       {self.errors} (stages that could not fire, reported above)")
        if self.clock is not None:
            out.append(f"clock        {format_timestamp(self.clock)}")
        return out


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{key} {counter[key]}" for key in sorted(counter))
