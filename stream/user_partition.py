"""One user partition of a worker: its users' states, deadlines and the driver's steps on them.

:class:`~stream.batches.Batches` decides, per batch, which events a partition applies and
which of its users fire (the watermark's release and horizon); :class:`UserPartition`
does it for one user at a time, through the core's :class:`~triggers.driver.Driver`, and
puts what changed into the batch's :class:`~stream.outputs.Outputs` for the checkpoint:

- states are read through a cache of decoded states (all clean after a checkpoint) in
  front of the local store;
- the deadline index holds, per user, the earlier of the next due stage and the user's
  expiry (contract 8.5: retention, the end of an erasure memory), so expired users are
  found like due ones; an event finds an expired user gone too, as replay does;
- a deleted user's row is a tombstone in the checkpoint (changelog, then store); until
  then the store still has the row, so the user is remembered as deleted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from stream.checkpoint import LocalStore
from stream.metrics import NudgeMetrics
from stream.outputs import Outputs
from stream.user_rows import unpack_row
from stream.watermark import Watermark
from triggers.deadlines import Deadlines, due_millis
from triggers.driver import Advance, Driver
from triggers.engine import OutsideFacts
from triggers.events import Event
from triggers.state import UserState

log = logging.getLogger("nudge.batches")

#: Decoded states kept per partition between batches (all clean after a checkpoint).
CACHE_PER_PARTITION = 50_000


@dataclass
class UserPartition:
    partition: int
    watermark: Watermark
    driver: Driver
    store: LocalStore
    metrics: NudgeMetrics
    deadlines: Deadlines = field(default_factory=Deadlines)
    cache: dict[str, UserState] = field(default_factory=dict)
    held: dict[str, int] = field(default_factory=dict)  # users with held decisions
    #: Users deleted in this batch: their rows stay in the store until the checkpoint.
    deleted: set[str] = field(default_factory=set)
    #: Told each user deleted at a retention expiry, and when (the catalog side's rows go).
    forget: Callable[[str, datetime], object] | None = None

    def apply(
        self,
        message: Any,
        event: Event,
        now: datetime,
        horizon: datetime,
        facts: dict[str, OutsideFacts] | None,
        out: Outputs,
    ) -> None:
        """One released event of this partition's (a failure dead-letters it alone)."""
        user_id = event.user_id
        try:
            state = self.load(user_id)
            if state is not None and self.driver.expired(state, event.ts):
                # Deleted at its expiry, before this event, as replay does (contract 8.5).
                self.delete(user_id, state, out)
                state = None
            advance = self.driver.event(
                state, event, now, _facts(facts, user_id), max(horizon, event.ts)
            )
        except Exception as exc:  # one bad message must never stop the partition
            log.exception(
                "failed to apply %s[%d]@%d", message.topic, message.partition, message.offset
            )
            out.dead_letter(message, "processing_error", f"{type(exc).__name__}: {exc}"[:500], now)
            self.metrics.dead_letter(message.topic, "processing_error")
            return
        self.metrics.event(message.topic, event, advance.outcome)
        self.keep(user_id, advance, out)

    def fire(
        self,
        user_id: str,
        now: datetime,
        horizon: datetime,
        facts: dict[str, OutsideFacts] | None,
        out: Outputs,
    ) -> None:
        """A user due by ``horizon``: its stages fire, or it is deleted if it expired."""
        try:
            state = self.load(user_id)
            if state is None:
                return
            if self.driver.expired(state, horizon):  # retention, or an erasure memory's end
                self.delete(user_id, state, out)
                return
            advance = self.driver.time(state, now, horizon, _facts(facts, user_id))
        except Exception:  # one user's failure must not cost the others their deadlines
            log.exception("failed to fire a user's deadlines on partition %d", self.partition)
            return
        self.keep(user_id, advance, out)

    def keep(self, user_id: str, advance: Advance, out: Outputs) -> None:
        """A user's advance: the deadline index, the cache and, if changed, the row."""
        wake_ms = due_millis(advance.wake)
        expiry_ms = due_millis(self.driver.expires_at(advance.state))
        if expiry_ms is not None and (wake_ms is None or expiry_ms < wake_ms):
            wake_ms = expiry_ms
        self.deadlines.set(user_id, wake_ms)
        if advance.changed:
            state = advance.state
            self.deleted.discard(user_id)
            self.cache[user_id] = state
            if state.held:
                self.held[user_id] = len(state.held)
            else:
                self.held.pop(user_id, None)
            out.dirty(self.partition, user_id, state, wake_ms)
        if advance.records:
            out.records(user_id, advance.records)

    def delete(self, user_id: str, state: UserState, out: Outputs) -> None:
        """Delete a user without a record: a tombstone on the changelog, then the store."""
        self.deadlines.set(user_id, None)
        self.cache.pop(user_id, None)
        self.held.pop(user_id, None)
        self.deleted.add(user_id)
        out.deleted(self.partition, user_id)
        if state.erased_at is None:  # retention (the end of an erasure memory is no erasure)
            self.metrics.expired(1)
            at = self.driver.expires_at(state)
            if self.forget is not None and at is not None:
                self.forget(user_id, at)

    def load(self, user_id: str) -> UserState | None:
        if user_id in self.deleted:
            return None
        state = self.cache.get(user_id)
        if state is None:
            stored = self.store.get(user_id.encode())
            if stored is not None:
                state = unpack_row(stored)[0]
                self.cache[user_id] = state
        return state

    def checkpointed(self) -> None:
        """The batch's checkpoint is written: every cached state is clean."""
        self.deleted.clear()
        if len(self.cache) > CACHE_PER_PARTITION:
            self.cache.clear()


def _facts(facts: dict[str, OutsideFacts] | None, user_id: str) -> OutsideFacts | None:
    """A user's facts; None if Redis could not be asked or they were not looked up."""
    return None if facts is None else facts.get(user_id)
