"""The replay simulation: the engine on JSON Lines events, with an event-time clock.

The same :class:`~triggers.engine.Engine` as the live service, without Kafka or
Redis. The simulation (contract section 6):

- a heap holds ``(next_due, user_id)`` for every user with something pending;
- before each event with time T, every user whose next due time is <= T is
  fired, in (due, user_id) order, with ``on_time(state, now=due)``: in replay
  a stage is reached exactly when it is due;
- the event is then applied with ``on_event(state, event, now=clock)``, where
  ``clock = max(clock, T)``: events need not be sorted, an out-of-order event
  is processed at the current clock; if it makes something due at once, that
  fires right after, at the clock;
- at the end the clock advances to ``until`` (default: the latest event time
  seen) and everything due by then fires.

Same input, same output, byte for byte. The operator suppression set is an
injected collection of user ids (empty for the command line).

Errors (``keep_going=True``, what the command and :func:`replay_lines` use): a
line whose own processing raises anything is reported like an invalid line,
with reason ``processing_error``, and skipped (nothing of it is kept: the
user's state and the clock are as if the line were absent); a stage of another
user that cannot fire when the clock reaches it is reported as a
``processing_error`` of the line being read (or of the end of input), that
user keeps their state and is scheduled again by their next event. The
parser and the engine are meant never to raise (bounded input, bounded
rules); this is the safety net, so one bad line never stops a replay. With
the default ``keep_going=False`` the exception propagates (tests see it).

Programmatic use (the benchmark, tests)::

    from triggers.replay import replay_lines
    result = replay_lines(open("events.jsonl", "rb"), rules, until=None)
    result.records   # list of Decision | Conversion, in emission order
    result.summary   # ReplaySummary: events_read, invalid, test, duplicate, processed, ...
    result.states    # final UserState per user id
    result.invalid   # [(line number, reason, detail)]
    result.errors    # [(line number or None at the end, detail)]: stages that could not fire

or incrementally with :class:`Replay` (``feed_line`` / ``feed_event`` /
``finish``), which is what ``nudge replay`` (:mod:`cli.replay`) streams with.
"""

from __future__ import annotations

import gc
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

from triggers.catalog_interest import CatalogBook
from triggers.deadlines import Deadlines, due_millis
from triggers.driver import Advance, Driver
from triggers.events import (
    Event,
    InvalidEvent,
    ProductUpdated,
    parse_catalog_event,
    parse_event,
)
from triggers.replay_summary import Record, ReplaySummary
from triggers.rules import Rules
from triggers.state import UserState
from triggers.steps import BEFORE_ERASURE, ERASED, NO_FACTS, PROCESSED, TEST, OutsideFacts
from triggers.timestamps import format_timestamp, to_millis

__all__ = [
    "Record",
    "Replay",
    "ReplayResult",
    "ReplaySummary",
    "describe_error",
    "replay_lines",
    "without_cycle_collector",
]

_SUPPRESSED_FACTS = OutsideFacts(suppressed=True)


class Replay:
    """The event-time simulation, fed one line or event at a time.

    Every ``feed_*`` call and :meth:`finish` return the records it produced, in
    emission order. ``states`` holds the current state of every user seen.
    """

    def __init__(
        self,
        rules: Rules,
        *,
        suppressed: Collection[str] = frozenset(),
        keep_going: bool = False,
    ) -> None:
        self.driver = Driver(rules)
        self.engine = self.driver.engine
        self.suppressed = suppressed
        self.keep_going = keep_going
        self.states: dict[str, UserState] = {}
        self.summary = ReplaySummary(names=tuple(rules.trigger_names()))
        self.clock: datetime | None = None
        # keep_going: stages that could not fire (details, see take_errors), and records
        # produced before a line failed (returned with the next call, so none is lost).
        self.errors: list[str] = []
        self._carry: list[Record] = []
        self._deadlines = Deadlines()  # the same structure as the live service's index
        # Contract 8.5: when users are to be deleted without a record (retention, the end
        # of an erasure memory), checked again when the clock reaches it.
        self._expiries = Deadlines()
        self._retention = bool(rules.retention)
        self.catalog = CatalogBook.of(rules)
        self._catalog_enabled = self.catalog.enabled  # the rules are fixed

    def feed_line(self, raw: bytes | str) -> list[Record]:
        """Parse and apply one line; raises InvalidEvent (counted) for a bad one, and
        (``keep_going``) ``InvalidEvent("processing_error")`` for one that fails."""
        self.summary.events_read += 1
        try:
            try:
                event: Event | ProductUpdated = parse_event(raw)
            except InvalidEvent as exc:
                if exc.reason != "unknown_type" or b"product_updated" not in _as_bytes(raw):
                    raise
                event = parse_catalog_event(raw)  # a catalog line (no user_id)
        except InvalidEvent as exc:
            self.summary.invalid += 1
            self.summary.invalid_reasons[exc.reason] += 1
            raise
        return self.feed_event(event)

    def feed_event(self, event: Event | ProductUpdated) -> list[Record]:
        earliest = self._deadlines.earliest()
        if self._expiries:  # contract 8.5: someone is to be deleted at some point
            expiring = self._expiries.earliest()
            earliest = expiring if earliest is None or expiring < earliest else earliest  # type: ignore[operator]
        if earliest is not None and earliest <= to_millis(event.ts):
            out: list[Record] = self._fire_until(event.ts)
        else:  # the common case: nobody is due yet
            out = []
        if self._carry:
            out[:0] = self._carry
            self._carry = []
        try:
            self._apply(event, out)
        except Exception as exc:
            if not self.keep_going:
                raise
            self._carry = out  # what fired before the failure still goes out, in order
            self.summary.invalid += 1
            self.summary.invalid_reasons["processing_error"] += 1
            raise InvalidEvent("processing_error", describe_error(exc)) from exc
        return out

    def _apply(self, event: Event, out: list[Record]) -> None:
        """Apply one event at ``max(clock, ts)``; commits nothing if the engine raises."""
        if type(event) is ProductUpdated:
            self._apply_catalog(event, out)
            return
        ts = event.ts
        clock = self.clock
        if clock is None or ts > clock:
            clock = ts
        user_id = event.user_id
        previous = self.states.get(user_id)
        facts = _SUPPRESSED_FACTS if user_id in self.suppressed else NO_FACTS
        advance = self.driver.event(previous, event, clock, facts, clock)
        summary = self.summary
        outcome = advance.outcome
        self.clock = clock
        if outcome != PROCESSED and outcome != ERASED:
            if outcome == TEST:
                summary.test += 1
            elif outcome == BEFORE_ERASURE:
                summary.before_erasure += 1
            else:
                summary.duplicate += 1
            if advance.records:  # stages due before an ignored event still fired
                self._keep(user_id, advance, out)
            return
        summary.processed += 1
        if previous is None:
            summary.users += 1
        self._keep(user_id, advance, out)
        if outcome == ERASED:
            self.catalog.forget_user(user_id)
        elif self._catalog_enabled:
            self.catalog.note_event(event)

    def _keep(self, user_id: str, advance: Advance, out: list[Record]) -> None:
        """Store a user's advance: state, records, wake-up and (section 8.5) expiry."""
        state = advance.state
        self.states[user_id] = state
        records = advance.records
        if records:
            self._collect(records, out)
        wake = advance.wake
        self._deadlines.set(user_id, None if wake is None else due_millis(wake))
        if self._retention or state.erased_at is not None:
            self._expiries.set(user_id, due_millis(self.driver.expires_at(state)))

    def _apply_catalog(self, event: ProductUpdated, out: list[Record]) -> None:
        """A catalog event: each user concerned gets its CatalogChanged, in user-id order, at
        the catalog event's time (triggers.catalog_interest); the user states all or none."""
        summary = self.summary
        if event.test:
            summary.test += 1
            return
        if event.event_id in self.catalog.seen:
            summary.duplicate += 1
            return
        clock = self.clock
        if clock is None or event.ts > clock:
            clock = event.ts
        if not self.catalog.enabled:
            self.clock = clock
            summary.processed += 1
            return
        changes = self.catalog.apply(event)
        advanced = []
        for change in changes:
            state = self.states.get(change.user_id)
            facts = self._facts(change.user_id)
            advance = self.driver.event(state, change, clock, facts, clock)  # type: ignore[arg-type]
            advanced.append((change.user_id, advance))
        self.clock = clock
        summary.processed += 1
        for user_id, advance in advanced:
            if advance.outcome == PROCESSED:
                self._keep(user_id, advance, out)

    def take_errors(self) -> list[str]:
        """The stages that could not fire since the last call (``keep_going``)."""
        errors, self.errors = self.errors, []
        return errors

    def advance(self, until: datetime) -> list[Record]:
        """Move the clock forward to ``until``, firing every stage due by then."""
        out = self._fire_until(until)
        if self._carry:
            out[:0] = self._carry
            self._carry = []
        if self.clock is None or until > self.clock:
            self.clock = until
        self.summary.clock = self.clock
        return out

    def finish(self, until: datetime | None = None) -> list[Record]:
        """End of input: advance to ``until`` (default: the latest event time seen)."""
        target = until if until is not None else self.clock
        return self.advance(target) if target is not None else []

    def _facts(self, user_id: str) -> OutsideFacts:
        return _SUPPRESSED_FACTS if user_id in self.suppressed else NO_FACTS

    def _collect(self, records: tuple[Record, ...], out: list[Record]) -> None:
        count = self.summary.count
        for record in records:
            count(record)
        out += records

    def _fire_until(self, moment: datetime) -> list[Record]:
        """Every user due by ``moment``, in (due, user) order, each reached exactly when due."""
        out: list[Record] = []
        deadlines = self._deadlines
        states, wake, suppressed = self.states, self.driver.wake, self.suppressed
        until_ms = to_millis(moment)
        while (earliest := deadlines.earliest()) is not None and earliest <= until_ms:
            expiring = self._expiries.earliest()
            if expiring is not None and expiring < earliest:
                self._expire(expiring)
                continue
            for user_id, _ in deadlines.pop_due(earliest):
                state = states[user_id]
                due = wake(state)
                if due is None or due > moment:  # cannot happen: the index follows the state
                    deadlines.set(user_id, due_millis(due))
                    continue
                if self.clock is None or due > self.clock:
                    self.clock = due
                try:
                    facts = _SUPPRESSED_FACTS if user_id in suppressed else NO_FACTS
                    advance = self.driver.time(state, due, due, facts)
                except Exception as exc:
                    if not self.keep_going:
                        raise
                    # The user keeps their state, unscheduled: their next event re-arms them.
                    self.summary.errors += 1
                    self.errors.append(
                        f"a stage due at {format_timestamp(due)} could not fire: "
                        f"{describe_error(exc)}"
                    )
                    continue
                self._keep(user_id, advance, out)
        while (expiring := self._expiries.earliest()) is not None and expiring <= until_ms:
            self._expire(expiring)
        return out

    def _expire(self, at_ms: int) -> None:
        """Delete, without a record, the users whose expiry is ``at_ms`` and still holds."""
        for user_id, _ in self._expiries.pop_due(at_ms):
            state = self.states.get(user_id)
            at = None if state is None else self.driver.expires_at(state)
            if at is None or due_millis(at) > at_ms:  # cannot happen: the index follows
                self._expiries.set(user_id, due_millis(at))
                continue
            del self.states[user_id]
            self._deadlines.set(user_id, None)
            self.catalog.forget_user(user_id)
            self.summary.expired += 1


def _as_bytes(raw: bytes | str) -> bytes:
    return raw if isinstance(raw, bytes) else raw.encode("utf-8", "replace")


def describe_error(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 300 else text[:297] + "..."


@dataclass(slots=True)
class ReplayResult:
    records: list[Record]
    summary: ReplaySummary
    states: dict[str, UserState]
    invalid: list[tuple[int, str, str]]  # (line number, reason, detail)
    # stages that could not fire: (line being read, None at the end of input; detail)
    errors: list[tuple[int | None, str]] = field(default_factory=list)


@contextmanager
def without_cycle_collector() -> Iterator[None]:
    """Pause the cyclic garbage collector for a batch run.

    The engine only builds immutable trees (no reference cycles), so reference
    counting frees everything; the collector would only re-scan the growing
    set of live user states, which costs about a fifth of a replay's time.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def replay_lines(
    lines: Iterable[bytes | str],
    rules: Rules,
    until: datetime | None = None,
    *,
    suppressed: Collection[str] = frozenset(),
) -> ReplayResult:
    """Replay JSON Lines (blank lines skipped, invalid ones collected) and finish at ``until``.

    A line that fails in the engine is collected as invalid (``processing_error``)."""
    replay = Replay(rules, suppressed=suppressed, keep_going=True)
    records: list[Record] = []
    invalid: list[tuple[int, str, str]] = []
    errors: list[tuple[int | None, str]] = []
    with without_cycle_collector():
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            try:
                records += replay.feed_line(raw)
            except InvalidEvent as exc:
                invalid.append((number, exc.reason, exc.detail))
            if replay.errors:
                errors += ((number, detail) for detail in replay.take_errors())
        records += replay.finish(until)
        errors += ((None, detail) for detail in replay.take_errors())
    return ReplayResult(records, replay.summary, replay.states, invalid, errors)
