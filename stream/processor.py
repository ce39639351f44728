"""The imperative shell around the engine: load state, call the core, save, emit.

One :class:`UserProcessor` serves one worker. The Faust agent hands it every input
message and every deadline tick; it owns no business logic — that lives in
``triggers`` — only the order of effects:

1. before an event, fire the user's stages already due (as ``nudge replay`` does);
2. apply the event; fire again if the event made something due at once;
3. save the state (with its next deadline) and update the in-memory deadline index;
4. emit records: audit first, then ``marketing.triggers``; once the broker has them,
   mark the sends in Redis.

Every write a message causes (its state changelog and its records) is handed back
through :meth:`UserProcessor.take_deliveries`; the agent acknowledges the message —
letting Faust commit its offset — only once all of them are durable, so a crash can
never commit an offset whose state change was lost.

Sending needs Redis (suppression set, other senders' contacts, idempotency). When
Redis cannot be asked, stages still fire at the same point in the user's timeline as
in replay (so a later event cannot cancel a reminder that was due before it), but the
decisions that would contact the user are *held* in the user's row, unsent: once Redis
answers again they are checked (suppression set, idempotency, ``max_delay``) and sent
or suppressed. Nothing is sent unchecked, nothing is dropped, events keep flowing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from stream.catch_up import NEVER
from stream.contact_ledger import ContactLedger, RedisUnavailable
from stream.dead_letters import dead_letter_record
from stream.deadline_index import DeadlineIndex
from stream.metrics import NudgeMetrics
from stream.user_rows import Held, UserRow, pack_row, to_ms, unpack_row, wake_times
from triggers.engine import Engine, OutsideFacts
from triggers.events import Event, InvalidEvent, parse_event
from triggers.records import Conversion, record_to_json

log = logging.getLogger("nudge.processor")

RETRY_FAILED_USER_MS = 60_000


class RecordSink(Protocol):
    """Output topics; each send returns an awaitable that resolves once the broker has it."""

    async def audit(self, key: bytes, value: bytes) -> Awaitable[Any]: ...
    async def triggered(self, key: bytes, value: bytes) -> Awaitable[Any]: ...
    async def dead_letter(self, key: bytes | None, value: bytes) -> Awaitable[Any]: ...


class UserTable(Protocol):
    """The users table; ``put`` returns an awaitable that resolves once the change is durable."""

    def get(self, key: bytes) -> bytes | None: ...
    async def put(
        self, key: bytes, value: bytes, partition: int, after: list[Awaitable[Any]]
    ) -> Awaitable[Any]: ...


@dataclass
class RedisBackoff:
    """Exponential backoff between attempts to use Redis after a failure."""

    initial: float = 0.5
    ceiling: float = 30.0
    _delay: float = 0.0
    _retry_at: float = 0.0

    def ready(self, monotonic_now: float) -> bool:
        return monotonic_now >= self._retry_at

    def failed(self, monotonic_now: float) -> None:
        self._delay = min(self.ceiling, max(self.initial, self._delay * 2))
        self._retry_at = monotonic_now + self._delay

    def succeeded(self) -> None:
        self._delay = 0.0
        self._retry_at = 0.0


class UserProcessor:
    def __init__(
        self,
        *,
        engine: Engine,
        users: UserTable,
        ledger: ContactLedger,
        sink: RecordSink,
        metrics: NudgeMetrics,
        max_message_bytes: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
        horizon: Callable[[int, int], int] = lambda partition, now_ms: now_ms,
    ) -> None:
        self._engine = engine
        self._max_delay_s = engine.rules.contact_policy.max_delay.total_seconds()
        self._users = users
        self.deadlines = DeadlineIndex()
        self._ledger = ledger
        self._sink = sink
        self._metrics = metrics
        self._max_bytes = max_message_bytes
        self._clock = clock
        self._monotonic = monotonic
        self._horizon = horizon
        self.backoff = RedisBackoff()
        self._bookkeeping: set[asyncio.Future[None]] = set()
        self._deliveries: list[Awaitable[Any]] = []
        self._unaccounted: list[Awaitable[Any]] = []  # records sent, state not yet saved
        #: Trigger ids found on the output topic at the last assignment (stream.recent_sends).
        self.recently_sent: set[str] = set()

    def _record_sent(self, delivery: Awaitable[Any]) -> None:
        """A record sent for the user being processed: their state's write waits for it."""
        self._deliveries.append(delivery)
        self._unaccounted.append(delivery)

    def take_deliveries(self) -> list[Awaitable[Any]]:
        """What the last message produced (state changelog, outputs), to ack it once durable."""
        deliveries, self._deliveries = self._deliveries, []
        self._unaccounted = []
        return deliveries

    # -- input events -------------------------------------------------------------------

    def parse(self, raw: bytes | None) -> Event | InvalidEvent:
        """The event in a message, or why it is not one (no side effects)."""
        try:
            return parse_event(raw or b"", max_bytes=self._max_bytes)
        except InvalidEvent as exc:
            return exc

    async def on_input(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        raw: bytes | None,
        parsed: Event | InvalidEvent | None = None,
    ) -> int | None:
        """Process one input message; return its event time (epoch ms), None if invalid."""
        now = self._clock()
        event = self.parse(raw) if parsed is None else parsed
        if isinstance(event, InvalidEvent):
            exc = event
            delivery = await self._sink.dead_letter(
                key,
                dead_letter_record(
                    reason=exc.reason,
                    detail=exc.detail,
                    topic=topic,
                    partition=partition,
                    offset=offset,
                    raw=raw,
                    at=now,
                ),
            )
            self._deliveries.append(delivery)
            self._metrics.dead_letters.labels(exc.reason).inc()
            self._metrics.events.labels(topic, "invalid", "invalid").inc()
            log.warning("dead-lettered %s[%d]@%d: %s", topic, partition, offset, exc.reason)
            return None

        user_key = event.user_id.encode()
        stored = self._users.get(user_key)
        row = unpack_row(stored) if stored is not None else None
        before = row
        if row is not None and row.held:
            row = await self._release(row, now)
        # As in replay: stages due at or before the event's time fire before it is applied.
        due = None if row is None else row.due_ms
        if row is not None and due is not None and due <= min(to_ms(now), to_ms(event.ts)):
            row = await self._fire(row, now, until=event.ts)

        step = self._engine.on_event(None if row is None else row.state, event, now)
        self._metrics.events.labels(topic, event.type, step.outcome).inc()
        if step.outcome != "processed" and row == before:
            return to_ms(event.ts)  # duplicate or test event: nothing changed, nothing to write
        await self._emit_conversions(event.user_id, step.records)
        held = () if row is None else row.held
        row = UserRow(step.state, _ms_or_none(step.next_due), partition, held)

        # Whatever is due by now fires, but never ahead of unread input (stream.catch_up).
        horizon = self._horizon(partition, to_ms(now))
        if row.due_ms is not None and row.due_ms <= horizon:
            row = await self._fire(row, now, until=_moment(horizon))
        await self._save(user_key, row)
        return to_ms(event.ts)

    async def dead_letter_failure(self, message: Any, raw: bytes | None, exc: Exception) -> None:
        """A message the engine failed on: keep it, with the reason, in the dead-letter topic."""
        delivery = await self._sink.dead_letter(
            message.key,
            dead_letter_record(
                reason="processing_error",
                detail=f"{type(exc).__name__}: {exc}"[:500],
                topic=message.topic,
                partition=message.partition,
                offset=message.offset,
                raw=raw,
                at=self._clock(),
            ),
        )
        self._deliveries.append(delivery)
        self._metrics.dead_letters.labels("processing_error").inc()
        self._metrics.events.labels(message.topic, "unknown", "error").inc()

    # -- deadline ticks -----------------------------------------------------------------

    async def on_tick(self, partition: int) -> None:
        """Fire the partition's due users (never ahead of its unread input)."""
        now = self._clock()
        now_ms = to_ms(now)
        self._metrics.ticks.inc()
        deadlines = self.deadlines.partition(partition)
        horizon = self._horizon(partition, now_ms)
        behind = max(0.0, (now_ms - horizon) / 1000) if horizon > NEVER else float("inf")
        self._metrics.held_back.labels(str(partition)).set(behind)
        for user_id, due_ms in deadlines.take_due(horizon):
            try:
                await self._tick_user(user_id, now, horizon)
            except Exception:  # one user's failure must not cost the others their deadlines
                log.exception("failed to fire a user's deadlines on partition %d", partition)
                deadlines.set(user_id, max(due_ms, now_ms) + RETRY_FAILED_USER_MS)
        self._metrics.pending_deadlines.labels(str(partition)).set(len(deadlines))

    async def _tick_user(self, user_id: str, now: datetime, horizon: int) -> None:
        user_key = user_id.encode()
        stored = self._users.get(user_key)
        if stored is None:
            return
        row = before = unpack_row(stored)
        if row.held:
            row = await self._release(row, now)
        if row.due_ms is not None and row.due_ms <= horizon:
            # Only what is due by the horizon: a later stage may be cancelled by input
            # still unread (the user's order in a backlog).
            row = await self._fire(row, now, until=_moment(horizon))
        if row != before:
            await self._save(user_key, row)
        else:
            self.deadlines.set(row.partition, user_id, row.wake_ms)

    def rebuild_deadlines(self, rows: Iterable[tuple[bytes, bytes]]) -> int:
        """Rebuild the deadline index from the users table (after every recovery)."""
        return self.deadlines.rebuild(wake_times(rows))

    async def _save(self, user_key: bytes, row: UserRow) -> None:
        # The state change goes to the changelog only once the records this message sent
        # are on the broker: a crash in between then leaves a state that sends them again
        # (skipped if they were out: Redis marks, stream.recent_sends), never a reminder
        # lost under a state that says it went out.
        written = await self._users.put(
            user_key, pack_row(row), row.partition, after=self._unaccounted
        )
        self._unaccounted = []
        self._deliveries.append(written)
        self.deadlines.set(row.partition, user_key.decode(), row.wake_ms)

    # -- firing -------------------------------------------------------------------------

    async def _facts(self, user_id: str, now: datetime) -> OutsideFacts | None:
        """The suppression set and other senders' contacts, or None if Redis can't be asked."""
        if not self.backoff.ready(self._monotonic()):
            return None
        try:
            suppressed, others = await self._ledger.lookup(user_id, now)
        except RedisUnavailable as exc:
            self._redis_failed(exc)
            return None
        self.backoff.succeeded()
        self._metrics.redis_up.set(1)
        return OutsideFacts(suppressed, others)

    async def _fire(self, row: UserRow, now: datetime, until: datetime | None = None) -> UserRow:
        """Fire the stages due by ``until`` (default: now); hold what Redis must check first."""
        facts = await self._facts(row.state.user_id, now)
        step = self._engine.on_time(row.state, now, facts or OutsideFacts(), until=until)
        decisions = [orjson.loads(record_to_json(d)) for d in step.records]
        scheduled_ms = row.due_ms if row.due_ms is not None else to_ms(now)
        if facts is None:
            # Suppressed already (stale, cooldown, cap, opted out in prefs): Redis can't
            # change that. The rest would contact the user: held until Redis answers.
            await self._deliver(row.state.user_id, [d for d in decisions if d["reason"]], 0)
            held = [d for d in decisions if not d["reason"]]
            if held:
                log.warning("redis unavailable: %d decision(s) held", len(held))
        else:
            held = await self._deliver(row.state.user_id, decisions, scheduled_ms)
        return UserRow(step.state, _ms_or_none(step.next_due), row.partition, (*row.held, *held))

    async def _release(self, row: UserRow, now: datetime) -> UserRow:
        """Check and send the decisions held during a Redis outage, if Redis answers now."""
        facts = await self._facts(row.state.user_id, now)
        if facts is None:
            return row
        checked = []
        for held in row.held:
            decision = dict(held)
            late = (now - datetime.fromisoformat(decision["due_at"])).total_seconds()
            if late > self._max_delay_s:
                decision["status"], decision["reason"] = "suppressed", "stale"
            elif facts.suppressed:
                decision["status"], decision["reason"] = "suppressed", "opted_out"
            decision["fired_at"] = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
            checked.append(decision)
        still_held = await self._deliver(row.state.user_id, checked, 0)
        return UserRow(row.state, row.due_ms, row.partition, tuple(still_held))

    async def _deliver(self, user_id: str, decisions: list[Held], scheduled_ms: int) -> list[Held]:
        """Audit and send decisions (skipping ids already sent); return those left held."""
        if not decisions:
            return []
        sent_ids = [d["trigger_id"] for d in decisions if d["status"] == "sent"]
        held: list[Held] = []
        try:
            already = await self._ledger.already_sent(sent_ids)
            already |= self.recently_sent.intersection(sent_ids)
        except RedisUnavailable as exc:
            self._redis_failed(exc)
            held = [d for d in decisions if not d["reason"]]
            decisions, sent_ids, already = [d for d in decisions if d["reason"]], [], set()
        key = user_id.encode()
        deliveries = []
        for d in decisions:
            if d["trigger_id"] in already:
                continue  # sent before a crash: never twice
            value = orjson.dumps(d)
            self._record_sent(await self._sink.audit(key, value))
            if d["status"] == "sent":
                delivery = await self._sink.triggered(key, value)
                self._record_sent(delivery)
                deliveries.append(delivery)
            self._metrics.decisions.labels(d["trigger"], d["status"], d["reason"] or "none").inc()
            fired = datetime.fromisoformat(d["fired_at"]).timestamp()
            due = max(datetime.fromisoformat(d["due_at"]).timestamp(), scheduled_ms / 1000)
            self._metrics.lateness.labels(d["trigger"]).observe(max(0.0, fired - due))
        contacts = [
            (d["trigger_id"], datetime.fromisoformat(d["fired_at"]))
            for d in decisions
            if d["status"] in ("sent", "holdout")
        ]
        if contacts:
            # Marked sent only once the broker has the records; the agent does not wait.
            sent = [t for t in sent_ids if t not in already]
            task = asyncio.ensure_future(
                self._record_after_delivery(user_id, deliveries, contacts, sent)
            )
            self._bookkeeping.add(task)
            task.add_done_callback(self._bookkeeping.discard)
        return held

    async def _record_after_delivery(
        self,
        user_id: str,
        deliveries: list[Awaitable[Any]],
        contacts: list[tuple[str, datetime]],
        sent: list[str],
    ) -> None:
        try:
            for delivery in deliveries:
                await delivery
        except Exception:
            log.exception("a triggered record was not acknowledged; it is not marked sent")
            return
        try:
            await self._ledger.record(user_id, contacts, sent)
        except RedisUnavailable as exc:
            # The checks passed and the records are out; only the bookkeeping failed.
            self._redis_failed(exc)

    async def drain_bookkeeping(self) -> None:
        """Wait for pending sent-marks (on shutdown)."""
        if self._bookkeeping:
            await asyncio.gather(*self._bookkeeping, return_exceptions=True)

    def _redis_failed(self, exc: RedisUnavailable) -> None:
        self.backoff.failed(self._monotonic())
        self._metrics.redis_errors.labels(exc.operation).inc()
        self._metrics.redis_up.set(0)
        log.warning("redis unavailable (%s); decisions are held", exc.operation)

    async def _emit_conversions(self, user_id: str, records: Iterable[Any]) -> None:
        for record in records:
            if isinstance(record, Conversion):
                value = record_to_json(record)
                self._record_sent(await self._sink.audit(user_id.encode(), value))
                self._metrics.conversions.labels(record.trigger, record.arm).inc()


def _moment(epoch_ms: int) -> datetime:
    """A horizon as a time (clamped: a horizon of NEVER fires nothing)."""
    return datetime.fromtimestamp(max(epoch_ms, 0) / 1000, UTC)


def _ms_or_none(moment: datetime | None) -> int | None:
    return None if moment is None else to_ms(moment)
