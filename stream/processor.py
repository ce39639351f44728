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

Firing needs Redis (suppression set, other senders' contacts, idempotency). When
Redis fails, nothing is fired — the pure engine's result is simply discarded, the
stored state keeps the stage pending — and firing is retried with backoff, while
events keep being consumed.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import struct
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from stream.catch_up import NEVER
from stream.contact_ledger import ContactLedger, RedisUnavailable
from stream.deadline_index import DeadlineIndex
from stream.metrics import NudgeMetrics
from triggers.engine import Engine, OutsideFacts, Step
from triggers.events import InvalidEvent, parse_event
from triggers.records import Conversion, Decision, record_to_json
from triggers.state import UserState, decode_state, encode_state

log = logging.getLogger("nudge.processor")

_HEADER = struct.Struct(">qH")  # next deadline (epoch ms, -1 = none), partition
_NO_DUE = -1


class RecordSink(Protocol):
    """Output topics; each send returns an awaitable that resolves once the broker has it."""

    async def audit(self, key: bytes, value: bytes) -> Awaitable[Any]: ...
    async def triggered(self, key: bytes, value: bytes) -> Awaitable[Any]: ...
    async def dead_letter(self, key: bytes | None, value: bytes) -> Awaitable[Any]: ...


class UserTable(Protocol):
    """The users table; ``put`` returns an awaitable that resolves once the change is durable."""

    def get(self, key: bytes) -> bytes | None: ...
    def put(self, key: bytes, value: bytes, partition: int) -> Awaitable[Any]: ...


def to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def pack_user(state: UserState, next_due_ms: int | None, partition: int) -> bytes:
    """Table value: next deadline and partition, then the engine's encoded state."""
    due = _NO_DUE if next_due_ms is None else next_due_ms
    return _HEADER.pack(due, partition) + encode_state(state)


def unpack_user(value: bytes) -> tuple[UserState, int | None, int]:
    due_ms, partition = _HEADER.unpack_from(value)
    state = decode_state(value[_HEADER.size :])
    return state, (None if due_ms == _NO_DUE else due_ms), partition


def _due_rows(
    rows: Iterable[tuple[bytes, bytes]],
) -> Iterator[tuple[bytes, tuple[int | None, int]]]:
    """(key, (due, partition)) of table rows, reading only the header."""
    for key, value in rows:
        due_ms, partition = _HEADER.unpack_from(value)
        yield key, (None if due_ms == _NO_DUE else due_ms, partition)


def dead_letter_record(
    *, reason: str, detail: str, topic: str, partition: int, offset: int, raw: bytes, at: datetime
) -> bytes:
    record: dict[str, Any] = {
        "kind": "dead_letter",
        "reason": reason,
        "detail": detail,
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "received_at": at.isoformat().replace("+00:00", "Z"),
        "size": len(raw),
    }
    try:
        record["raw"] = raw.decode("utf-8")
    except UnicodeDecodeError:
        record["raw_base64"] = base64.b64encode(raw).decode("ascii")
    return orjson.dumps(record)


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

    def take_deliveries(self) -> list[Awaitable[Any]]:
        """What the last message produced (state changelog, outputs), to ack it once durable."""
        deliveries, self._deliveries = self._deliveries, []
        return deliveries

    # -- input events -------------------------------------------------------------------

    async def on_input(
        self, topic: str, partition: int, offset: int, key: bytes | None, raw: bytes
    ) -> int | None:
        """Process one input message; return its event time (epoch ms), None if invalid."""
        now = self._clock()
        try:
            event = parse_event(raw, max_bytes=self._max_bytes)
        except InvalidEvent as exc:
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
        state, due, _p = unpack_user(stored) if stored is not None else (None, None, partition)
        fired_first = False

        # As in replay: stages due at or before the event's time fire before it is applied.
        if state is not None and due is not None and due <= min(to_ms(now), to_ms(event.ts)):
            fired = await self._fire(state, due, now, until=event.ts)
            if fired is not None:
                state, due, fired_first = fired.state, _ms_or_none(fired.next_due), True

        step = self._engine.on_event(state, event, now)
        self._metrics.events.labels(topic, event.type, step.outcome).inc()
        if step.outcome != "processed" and not fired_first:
            return to_ms(event.ts)  # duplicate or test event: nothing changed, nothing to write
        state, due = step.state, _ms_or_none(step.next_due)
        await self._emit(event.user_id, step.records)

        # Whatever is due by now fires, but never ahead of unread input (stream.catch_up).
        if due is not None and due <= self._horizon(partition, to_ms(now)):
            fired = await self._fire(state, due, now)
            if fired is not None:
                state, due = fired.state, _ms_or_none(fired.next_due)

        self._deliveries.append(
            self._users.put(user_key, pack_user(state, due, partition), partition)
        )
        self.deadlines.set(partition, event.user_id, due)
        return to_ms(event.ts)

    async def dead_letter_failure(self, message: Any, raw: bytes, exc: Exception) -> None:
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
        now = self._clock()
        now_ms = to_ms(now)
        self._metrics.ticks.inc()
        deadlines = self.deadlines.partition(partition)
        horizon = self._horizon(partition, now_ms)
        behind = max(0.0, (now_ms - horizon) / 1000) if horizon > NEVER else float("inf")
        self._metrics.held_back.labels(str(partition)).set(behind)
        due_users = deadlines.take_due(horizon)
        for n, (user_id, _) in enumerate(due_users):
            stored = self._users.get(user_id.encode())
            if stored is None:
                continue
            state, due, _p = unpack_user(stored)
            if due is None or due > now_ms:
                deadlines.set(user_id, due)  # the index was behind the table: trust the table
                continue
            fired = await self._fire(state, due, now)
            if fired is None:  # Redis is down: these users stay due for a later tick
                for waiting, waiting_due in due_users[n:]:
                    deadlines.set(waiting, waiting_due)
                break
            next_due = _ms_or_none(fired.next_due)
            value = pack_user(fired.state, next_due, partition)
            self._deliveries.append(self._users.put(user_id.encode(), value, partition))
            deadlines.set(user_id, next_due)
        self._metrics.pending_deadlines.labels(str(partition)).set(len(deadlines))

    def rebuild_deadlines(self, rows: Iterable[tuple[bytes, bytes]]) -> int:
        """Rebuild the deadline index from the users table (after every recovery)."""
        return self.deadlines.rebuild(
            (partition, key.decode(), due) for key, (due, partition) in _due_rows(rows)
        )

    # -- firing -------------------------------------------------------------------------

    async def _fire(
        self, state: UserState, scheduled_ms: int, now: datetime, until: datetime | None = None
    ) -> Step | None:
        """Fire the user's stages due by ``until`` (default: now).

        Returns None, and changes nothing, if Redis cannot be used.
        """
        if not self.backoff.ready(self._monotonic()):
            return None
        try:
            suppressed, others = await self._ledger.lookup(state.user_id, now)
            step = self._engine.on_time(state, now, OutsideFacts(suppressed, others), until=until)
            decisions = [r for r in step.records if isinstance(r, Decision)]
            already = await self._ledger.already_sent(
                d.trigger_id for d in decisions if d.status == "sent"
            )
        except RedisUnavailable as exc:
            self._redis_failed(exc)
            return None
        self.backoff.succeeded()
        self._metrics.redis_up.set(1)

        fresh = [r for r in step.records if getattr(r, "trigger_id", None) not in already]
        deliveries = await self._emit(state.user_id, fresh)
        scheduled = scheduled_ms / 1000
        for d in decisions:
            self._metrics.decisions.labels(d.trigger, d.status, d.reason or "none").inc()
            late = d.fired_at.timestamp() - max(d.due_at.timestamp(), scheduled)
            self._metrics.lateness.labels(d.trigger).observe(max(0.0, late))
        contacts = [
            (d.trigger_id, d.fired_at) for d in decisions if d.status in ("sent", "holdout")
        ]
        sent = [d.trigger_id for d in decisions if d.status == "sent"]
        if contacts or sent:
            # Marked sent only once the broker has the records; the agent does not wait.
            task = asyncio.ensure_future(
                self._record_after_delivery(state.user_id, deliveries, contacts, sent)
            )
            self._bookkeeping.add(task)
            task.add_done_callback(self._bookkeeping.discard)
        return step

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
        log.warning("redis unavailable (%s); due decisions wait", exc.operation)

    async def _emit(
        self, user_id: str, records: tuple[Decision | Conversion, ...] | list[Any]
    ) -> list[Awaitable[Any]]:
        """Audit every record, send the `sent` ones; return their delivery futures."""
        key = user_id.encode()
        deliveries = []
        for record in records:
            value = record_to_json(record)
            self._deliveries.append(await self._sink.audit(key, value))
            if isinstance(record, Conversion):
                self._metrics.conversions.labels(record.trigger, record.arm).inc()
            elif record.status == "sent":
                delivery = await self._sink.triggered(key, value)
                self._deliveries.append(delivery)
                deliveries.append(delivery)
        return deliveries


def _ms_or_none(moment: datetime | None) -> int | None:
    return None if moment is None else to_ms(moment)
