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

Contract section 8, for the shell:

- engagement feedback (``message_*``) and ``user_erased`` are ordinary events of
  :func:`triggers.events.parse_event`, passed to :meth:`Driver.event` like any other;
- ``Advance.outcome == "erased"``: the user was erased; ``Advance.state`` is the erasure
  memory alone (``UserState(user_id, erased_at=ts)``), ``records`` ends with the
  ``Erasure`` record. The shell deletes everything else it keeps of the user (outside
  facts, catalog interest rows, deadlines) and stores that memory;
- ``Advance.outcome == "before_erasure"``: an event not later than a remembered
  erasure, ignored;
- :meth:`Driver.expires_at` / :meth:`Driver.expired`: when the user is to be deleted
  without a record, whatever they had (retention: no event and no pending stage for
  ``retention``; or an erasure memory with nothing else, ``erasure_memory`` after the
  erasure). Not part of ``wake``: the shell sweeps for it; ``nudge replay`` keeps a
  second index (:mod:`triggers.replay`).
"""

from __future__ import annotations

from datetime import datetime

import msgspec
from msgspec.structs import replace

from triggers.catalog import CatalogChanged
from triggers.engine import Engine
from triggers.events import Event
from triggers.held import earliest_held, hold, release
from triggers.rules import Rules
from triggers.state import UserState
from triggers.steps import NO_FACTS, PROCESSED, OutsideFacts, Record


class Advance(msgspec.Struct, frozen=True, gc=False):
    state: UserState
    records: tuple[Record, ...]  # in emission order
    wake: datetime | None  # when to look at the user again (None: nothing pending or held)
    outcome: str  # processed | duplicate | test | before_erasure | erased (events), fired
    changed: bool  # False: the state is the one passed in, nothing to store


class Driver:
    def __init__(self, rules: Rules) -> None:
        self.engine = Engine(rules)
        self.rules = rules
        self._max_delay = rules.contact_policy.max_delay
        self._retention = rules.retention  # zero: forever
        self._erasure_memory = rules.erasure_memory
        self._channels = rules.channels

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
        if self._retention and outcome == PROCESSED and type(event) is not CatalogChanged:
            state = _touched(state, event.ts)
        if outcome == PROCESSED:
            if due is not None and due <= horizon and due <= now:
                records += step.records
                state, due = self._fire(state, now, horizon, facts, records)
            elif records:
                records += step.records
            else:  # the common case: nothing fired, the engine's records as they are
                wake = due if not state.held else _wake(state, due)
                return Advance(state, step.records, wake, outcome, state is not before)
        elif step.records:  # erased: the erasure record
            records += step.records
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
        state, released = release(state, now, facts.suppressed, self._max_delay, self._channels)
        out += released
        return _touched(state, now) if self._retention and released else state

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
        if self._retention:
            step = replace(step, state=_touched(step.state, now))
        if facts is None:
            after, emitted = hold(state.contacts, step.state, step.records)  # type: ignore[arg-type]
            out += emitted
            return after, step.next_due
        out += step.records
        return step.state, step.next_due

    def expires_at(self, state: UserState) -> datetime | None:
        """When the user is to be deleted without a record (contract 8.5), as things stand:
        the end of the erasure memory of a user with nothing else kept; else, with a
        ``retention``, that long after the later of their last event and last decision,
        unless a stage is pending or a decision held. None: not as things stand."""
        erased_at = state.erased_at
        if erased_at is not None and state == UserState(state.user_id, erased_at=erased_at):
            return erased_at + self._erasure_memory
        if not self._retention or state.held or self.engine.next_due(state) is not None:
            return None
        last = state.touched_at or state.last_activity
        return None if last is None else last + self._retention

    def expired(self, state: UserState, now: datetime) -> bool:
        """Is the user to be deleted now (no record, no trace: contract 8.5)?"""
        at = self.expires_at(state)
        return at is not None and at <= now


def _touched(state: UserState, moment: datetime) -> UserState:
    """The state with ``touched_at`` (retention's clock) moved to ``moment`` if later."""
    if state.touched_at is not None and state.touched_at >= moment:
        return state
    return replace(state, touched_at=moment)


def _wake(state: UserState, due: datetime | None) -> datetime | None:
    """The next due time, or earlier, when the oldest held decision was reached."""
    if not state.held:
        return due
    held = earliest_held(state)
    return held if due is None or held < due else due  # type: ignore[operator]
