"""The driver: how a user is advanced, by an event or by the time — the one place both
``nudge replay`` and the live service go through, so the two cannot drift apart.

- :meth:`Driver.event` applies one event at ``now``: first the stages due by the
  event's own time fire (what replay fires before it), then the event is applied,
  then whatever it made due by ``horizon`` fires (a late event can arm a stage that
  is already due).
- :meth:`Driver.time` fires the stages due by ``until`` (at most ``now``), reached at
  ``now``.

``facts`` are what the shell looked up outside the core (the operator's suppression
set, other senders' contacts). ``None`` means they could not be asked: decisions that
would contact the user are then held in the state (:mod:`triggers.held`) and released
by the next call that has the facts. Replay always has them.

``Advance.wake`` is when the user must next be looked at: the next due time, or the
time the oldest held decision was reached (at once: it waits only for the facts).
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from triggers.engine import NO_FACTS, PROCESSED, Engine, OutsideFacts, Record
from triggers.events import Event
from triggers.held import earliest_held, hold, release
from triggers.rules import Rules
from triggers.state import UserState


class Advance(msgspec.Struct, frozen=True, gc=False):
    state: UserState
    records: tuple[Record, ...]  # in emission order
    wake: datetime | None  # when to look at the user again (None: nothing pending or held)
    outcome: str  # processed | duplicate | test (events), fired (time)
    changed: bool  # False: the state is the one passed in, nothing to store


class Driver:
    def __init__(self, rules: Rules) -> None:
        self.engine = Engine(rules)
        self.rules = rules
        self._max_delay = rules.contact_policy.max_delay

    def wake(self, state: UserState) -> datetime | None:
        due = self.engine.next_due(state)
        return due if not state.held else _wake(state, due)

    def event(
        self,
        state: UserState | None,
        event: Event,
        now: datetime,
        facts: OutsideFacts | None,
        horizon: datetime,
    ) -> Advance:
        records: list[Record] = []
        before = state
        if state is not None:
            if state.held:
                state = self._release(state, now, facts, records)
            due = self.engine.next_due(state)
            if due is not None and due <= event.ts and due <= now:
                state, due = self._fire(state, now, min(event.ts, now), facts, records)
        step = self.engine.on_event(state, event, now)
        state = step.state
        due = step.next_due
        outcome = step.outcome
        if outcome == PROCESSED:
            if due is not None and due <= horizon and due <= now:
                records += step.records
                state, due = self._fire(state, now, horizon, facts, records)
            elif records:
                records += step.records
            else:  # the common case: nothing fired, the engine's records as they are
                wake = due if not state.held else _wake(state, due)
                return Advance(state, step.records, wake, outcome, state is not before)
        wake = due if not state.held else _wake(state, due)
        return Advance(state, tuple(records), wake, outcome, state is not before)

    def time(
        self, state: UserState, now: datetime, until: datetime, facts: OutsideFacts | None
    ) -> Advance:
        records: list[Record] = []
        after = self._release(state, now, facts, records) if state.held else state
        after, due = self._fire(after, now, until if until <= now else now, facts, records)
        wake = due if not after.held else _wake(after, due)
        return Advance(after, tuple(records), wake, "fired", after is not state)

    def _release(
        self, state: UserState, now: datetime, facts: OutsideFacts | None, out: list[Record]
    ) -> UserState:
        if not state.held or facts is None:
            return state
        state, released = release(state, now, facts.suppressed, self._max_delay)
        out += released
        return state

    def _fire(
        self,
        state: UserState,
        now: datetime,
        until: datetime,
        facts: OutsideFacts | None,
        out: list[Record],
    ) -> tuple[UserState, datetime | None]:
        """The state after the stages due by ``until`` fired, and its next due time (held
        decisions and their release leave the pending stages, so the due time, alone)."""
        step = self.engine.on_time(state, now, facts or NO_FACTS, until=until)
        if not step.records:
            return step.state, step.next_due
        if facts is None:
            after, emitted = hold(state.contacts, step.state, step.records)  # type: ignore[arg-type]
            out += emitted
            return after, step.next_due
        out += step.records
        return step.state, step.next_due


def _wake(state: UserState, due: datetime | None) -> datetime | None:
    """The next due time, or earlier, when the oldest held decision was reached."""
    if not state.held:
        return due
    held = earliest_held(state)
    return held if due is None or held < due else due  # type: ignore[operator]
