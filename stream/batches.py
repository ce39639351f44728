"""The imperative shell: one micro-batch of a worker's partitions, from messages to checkpoint.

The Faust agent hands :meth:`Batches.process` each batch of messages it takes from
the input topics and the tick topic. The shell owns no business logic — the core's
:class:`~triggers.driver.Driver` does — only the order of effects, written once in
``docs/protocol.md``:

1. parse every message; per partition, the event-time watermark
   (:mod:`stream.watermark`) releases what may be applied, in event-time order, and
   tells how far deadlines may fire (the horizon);
2. the users concerned are read through a cache of decoded states; the facts for
   every user about to fire (the operator's suppression set, other senders'
   contacts) are asked from Redis in one pipelined round trip — if Redis cannot
   answer, the core holds what would contact users (:mod:`triggers.held`);
3. each partition (:class:`~stream.user_partition.UserPartition`) has the driver apply
   its released events, then fire its due users up to the horizon (and delete the
   expired ones, contract 8.5);
4. one checkpoint (:class:`~stream.checkpoint.Checkpoint`): the output records, then the Redis
   ledger (erased users' keys, contacts and sent marks), then one changelog record (or
   tombstone) per dirty user, then
   the local store, then the messages are acknowledged so their offsets may be
   committed. Any failure there raises: the worker stops and its partitions restart
   from their committed offsets and their changelog (the local store is never ahead
   of the changelog).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from stream.catalog_fanout import CatalogFanout
from stream.checkpoint import Broker, Checkpoint, LocalStore
from stream.metrics import NudgeMetrics
from stream.outputs import Outputs
from stream.read_positions import EndOffsets, FirstOffsetAt, ListEndOffsets, ReadPositions, Seek
from stream.redis_facts import Ledger, RedisFacts
from stream.rekeying import Rekeying
from stream.user_partition import UserPartition
from stream.watermark import NEVER, UNORDERED, Watermark
from triggers.driver import Driver
from triggers.engine import OutsideFacts
from triggers.events import Event, InvalidEvent, parse_event
from triggers.timestamps import from_millis, to_millis

log = logging.getLogger("nudge.batches")

#: Users fired per partition per batch; the rest wait for the next tick.
MAX_DUE_PER_BATCH = 5_000
#: Messages applied per partition per batch; the rest wait (and hold the horizon) for the
#: next batch, so that one burst (a catalog fan-out of 25k users) is spread over several
#: checkpoints instead of one.
MAX_RELEASE_PER_BATCH = 5_000


class Message(Protocol):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True)
class Topics:
    inputs: tuple[str, ...]
    ticks: str
    triggers: str
    audit: str
    dlq: str
    changelog: str


class Batches:
    def __init__(
        self,
        *,
        driver: Driver,
        topics: Topics,
        store: LocalStore,
        broker: Broker,
        ledger: Ledger,
        metrics: NudgeMetrics,
        list_end_offsets: ListEndOffsets,
        first_offset_at: FirstOffsetAt,
        seek: Seek,
        ack: Callable[[list[Any]], Awaitable[None]],
        max_message_bytes: int,
        fire_grace_ms: int,
        max_hold: float,
        max_release: int = MAX_RELEASE_PER_BATCH,
        unknown_grace_ms: int = 10_000,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
        catalog: CatalogFanout | None = None,
        rekeying: Rekeying | None = None,
    ) -> None:
        self._driver = driver
        #: The catalog fan-out (stream.catalog_fanout), when a catalog trigger is enabled.
        self.catalog = catalog
        #: Input as shops have it (stream.rekeying); None: every input topic has the
        #: worker's partition count and every message is on its user's partition.
        self.rekeying = rekeying
        self._topics = topics
        # The user topics read on their user's partition (not the catalog topic: contract 9
        # re-keys it too, to its product's partition: stream.catalog_fanout).
        self._direct = (
            topics.inputs
            if rekeying is None
            else tuple(t for t in rekeying.direct if t in topics.inputs)
        )
        if catalog is not None:
            catalog.use_rekeying(rekeying)
        self._store = store
        self._metrics = metrics
        # End offsets are asked from the broker at each batch, right before the horizon is
        # computed: a consumer's highwater is as old as its last fetch, which under load
        # (or after a pause) is older than it looks (stream.watermark).
        self._end_offset = EndOffsets(list_end_offsets)
        # Each message once and in offset order, whatever Faust delivers (stream.read_positions).
        self._positions = ReadPositions(first_offset_at, seek, monotonic)
        self._max_bytes = max_message_bytes
        self._grace_ms = fire_grace_ms
        self._max_hold = max_hold
        self._max_release = max_release
        self._unknown_grace_ms = unknown_grace_ms
        self._clock = clock
        self._monotonic = monotonic
        self._partitions: dict[int, UserPartition] = {}
        self.facts = RedisFacts(ledger, metrics, monotonic)
        self.checkpoint = Checkpoint(
            changelog=topics.changelog,
            store=store,
            broker=broker,
            facts=self.facts,
            metrics=metrics,
            ack=ack,
            monotonic=monotonic,
            catalog=catalog,
            rekeying=rekeying,
        )

    # -- assignment ---------------------------------------------------------------------

    def assigned(
        self,
        partitions: Iterable[int],
        rows: Iterable[tuple[int, str, int | None]],
        starts: dict[tuple[str, int], int] | None,
        sources: Iterable[tuple[str, int]] | None = None,
    ) -> int:
        """A new assignment (after every recovery): start over from the table's rows.

        ``sources``: the owned input topic partitions (with re-keying; default: the
        direct topics' partitions of ``partitions``). Whatever waited or was cached is
        dropped: it is read again from the committed offsets and the store. Returns the
        number of pending deadlines."""
        now_ms = to_millis(self._clock())
        self._partitions = {}
        self._positions.assigned(starts)
        partitions = list(partitions)
        catalog, rekeying = self.catalog, self.rekeying
        if rekeying is not None:
            if sources is None:
                sources = [(t, p) for t in rekeying.direct for p in partitions]
            rekeying.assigned(partitions, sources, starts, now_ms)
        if catalog is not None:  # after re-keying: forwarded catalog events wait on its marks
            catalog.assigned(partitions, starts, now_ms)
        for p in partitions:
            external: dict[str, Callable[[int], int]] = {}
            holds: dict[str, float] = {}
            if rekeying is not None:
                external |= rekeying.external(p)
                holds[rekeying.topic] = rekeying.max_hold
            if catalog is not None:
                external |= catalog.external(p)
                holds[catalog.topics.fanout] = catalog.max_hold
            self._partitions[p] = UserPartition(
                p,
                Watermark(
                    self._direct,
                    p,
                    _of_partition(starts, self._direct, p),
                    now_ms,
                    max_hold=self._max_hold,
                    unknown_grace_ms=self._unknown_grace_ms,
                    external=external,
                    external_holds=holds,
                    read_external=() if rekeying is None else (rekeying.topic,),
                ),
                self._driver,
                self._store,
                self._metrics,
                forget=None if catalog is None else catalog.forget,
            )
        for p, user_id, wake_ms in rows:
            owned = self._partitions.get(p)
            if owned is not None:
                owned.deadlines.set(user_id, wake_ms)
        self._metrics.reset_partitions(self._partitions)
        return sum(len(part.deadlines) for part in self._partitions.values())

    def revoked(self, partitions: Iterable[int], sources: Iterable[tuple[str, int]] = ()) -> None:
        partitions = list(partitions)
        for p in partitions:
            self._partitions.pop(p, None)
        self._positions.revoked(partitions)
        if self.catalog is not None:
            self.catalog.revoked(partitions)
        if self.rekeying is not None:
            self.rekeying.revoked(partitions, sources)
        self._metrics.reset_partitions(self._partitions)

    @property
    def owned(self) -> set[int]:
        return set(self._partitions)

    def pending(self, partition: int) -> int:
        part = self._partitions.get(partition)
        return 0 if part is None else len(part.deadlines)

    def partition_gauges(self) -> dict[int, tuple[int, int]]:
        """Per owned partition: (pending deadlines, held decisions)."""
        return {
            p: (len(part.deadlines), sum(part.held.values()))
            for p, part in self._partitions.items()
        }

    def waiting(self) -> int:
        return sum(part.watermark.waiting for part in self._partitions.values())

    # -- one batch ----------------------------------------------------------------------

    async def process(self, batch: Sequence[Any]) -> None:
        """One batch of Faust events (each with a ``.message``), up to its checkpoint."""
        started = self._monotonic()
        now = self._clock()
        now_ms = to_millis(now)
        out = Outputs(self._topics, self._driver.rules.version_label)
        acks: list[Any] = []
        touched: set[int] = set()
        await self._positions.retry()  # a seek back lost in Faust's fetcher
        ticks = self._topics.ticks
        catalog, rekeying = self.catalog, self.rekeying
        for item in batch:
            message = item.message
            topic, p = message.topic, message.partition
            # A source of another partition count than the worker's: read apart.
            apart = rekeying is not None and topic in rekeying.apart_topics
            if apart and not rekeying.reads_apart(topic, p):  # type: ignore[union-attr]
                continue  # not ours (any more): its new owner reads it
            part = None if apart else self._partitions.get(p)
            if part is None and not apart:  # not ours (any more): its new owner reads it
                continue
            if not apart:
                touched.add(p)
            if topic == ticks:
                acks.append(item)
                continue
            if not await self._positions.take(topic, p, message.offset):
                continue  # taken before, or ahead of messages not delivered yet
            if catalog is not None and catalog.takes(topic):  # the catalog topic: maybe apart
                # users' catalog changes (a fan-out message), each in its turn
                for ts_ms, change in catalog.read(item, started):
                    part.watermark.add(topic, message.offset, ts_ms, (item, change), started)
                continue
            if part is not None and rekeying is not None and topic == rekeying.topic:
                forwarded = rekeying.read(item)  # a forwarded event, or None (a mark)
                if (
                    catalog is not None
                    and forwarded
                    and catalog.read_forwarded(item, *forwarded, started)
                ):
                    continue  # a catalog event, to the product side
                if forwarded is not None:
                    parsed = self._parse(forwarded[1])
                    self._read(part, item, parsed, started)
                continue
            parsed = self._parse(message.value or b"")
            if rekeying is not None:
                valid = not isinstance(parsed, InvalidEvent)
                owner = rekeying.owner(parsed.user_id) if valid else p  # type: ignore[union-attr]
                if apart or owner != p:
                    if valid:
                        rekeying.forward(message, parsed.user_id, owner)  # type: ignore[union-attr]
                    else:  # dead-lettered where it is read
                        out.dead_letter(message, parsed.reason, parsed.detail, now)  # type: ignore[union-attr]
                        self._metrics.dead_letter(topic, parsed.reason)  # type: ignore[union-attr]
                    ts_ms = to_millis(parsed.ts) if valid else UNORDERED  # type: ignore[union-attr]
                    if apart:
                        rekeying.read_apart(item, ts_ms, started)
                    else:  # passes through, so the topic is acknowledged in order
                        part.watermark.add(
                            topic, message.offset, ts_ms, (item, None), started, passing=True
                        )  # type: ignore[union-attr]
                    continue
            self._read(part, item, parsed, started)  # type: ignore[arg-type]

        end_topics = self._direct
        if catalog is not None:
            end_topics = (*end_topics, *catalog.end_topics())
        ends = [(t, p) for p in sorted(touched) for t in end_topics]
        if rekeying is not None and rekeying.marks_due(started):
            ends += rekeying.end_topics()
        await self._end_offset.refresh(ends)
        if catalog is not None:  # the product side: catalog events, interest, fan-out
            for item, error in catalog.products(sorted(touched), self._end_offset, started, now_ms):
                out.dead_letter(item.message, error.reason, error.detail, now)
                self._metrics.dead_letter(item.message.topic, error.reason)
        # Per partition: what may be applied, how far deadlines may fire, who is due.
        work: list[tuple[UserPartition, list[Any], datetime, list[str]]] = []
        held_back = self._metrics.held_back
        for p in sorted(touched):
            part = self._partitions[p]
            released = part.watermark.release(
                self._end_offset, started, now_ms, limit=self._max_release
            )
            horizon_ms = part.watermark.horizon(now_ms - self._grace_ms, self._end_offset)
            # A horizon before every deadline (input not read yet) counts from the assignment,
            # not from the start of time.
            since = part.watermark.assigned_ms if horizon_ms <= NEVER else horizon_ms
            held_ms = now_ms - self._grace_ms - since
            held_back.labels(str(p)).set(max(0.0, held_ms / 1000))
            if catalog is not None:  # this partition's interest up to here is written
                catalog.user_mark(
                    p,
                    part.watermark.read_horizon(now_ms - self._grace_ms, self._end_offset),
                    started,
                )
            due = [u for u, _ in part.deadlines.pop_due(horizon_ms, MAX_DUE_PER_BATCH)]
            work.append((part, released, from_millis(max(horizon_ms, 0)), due))
        if rekeying is not None:  # how far the owned sources are read, after what they sent
            rekeying.mark(self._read_bound, self._end_offset, started, now_ms - self._grace_ms)

        facts = await self._facts_for(work, now)
        for part, released, horizon, due in work:
            # After an event, what it made due fires only up to the next event's time (as
            # in replay, where the clock has not reached the next event yet).
            bound = horizon
            bounds: list[datetime] = []
            for _, parsed in reversed(released):
                bounds.append(bound)
                if parsed is not None and type(parsed) is not InvalidEvent and parsed.ts < bound:
                    bound = parsed.ts
            for (item, parsed), limit in zip(released, reversed(bounds), strict=True):
                acks.append(item)
                message = item.message
                if parsed is None:  # passed through to its user's partition
                    continue
                if isinstance(parsed, InvalidEvent):
                    out.dead_letter(message, parsed.reason, parsed.detail, now)
                    self._metrics.dead_letter(message.topic, parsed.reason)
                    continue
                part.apply(message, parsed, now, limit, facts, out)
            # What an event made due but could not fire (cut at the next event's time, any
            # user's) fires now, up to the horizon, not at the next tick: all is applied.
            if released:
                more = MAX_DUE_PER_BATCH - len(due)
                due += [u for u, _ in part.deadlines.pop_due(to_millis(horizon), more)]
            for user_id in due:
                part.fire(user_id, now, horizon, facts, out)

        await self._release_stragglers(now, out, {part.partition: h for part, _, h, _ in work})
        await self.checkpoint.write(out, acks)
        for part in self._partitions.values():  # all clean now
            part.checkpointed()
        self._metrics.batch_done(len(batch), self._monotonic() - started, self.waiting())

    def _parse(self, raw: bytes) -> Event | InvalidEvent:
        try:
            return parse_event(raw, max_bytes=self._max_bytes)
        except InvalidEvent as exc:
            # Without its traceback: that would keep this frame, and the whole batch
            # with it, alive in a reference cycle until a full collection.
            return exc.with_traceback(None)
        except Exception as exc:  # the parser failed otherwise than on invalid input
            return InvalidEvent("processing_error", f"{type(exc).__name__}: {exc}"[:500])

    def _read(
        self, part: UserPartition, item: Any, parsed: Event | InvalidEvent, now: float
    ) -> None:
        """A message of the partition's own: it waits in the watermark for its turn (an
        invalid one too, so that it is dead-lettered in its turn)."""
        ts_ms = UNORDERED if isinstance(parsed, InvalidEvent) else to_millis(parsed.ts)
        if self.catalog is not None and ts_ms != UNORDERED:
            self.catalog.note(parsed)  # type: ignore[arg-type]
        message = item.message
        part.watermark.add(message.topic, message.offset, ts_ms, (item, parsed), now)

    def _read_bound(self, topic: str, partition: int, now_ms: int) -> int:
        if self.catalog is not None and topic == self.catalog.topics.catalog:
            return self.catalog.read_bound(partition, now_ms, self._end_offset)
        return self._partitions[partition].watermark.read_bound(topic, now_ms, self._end_offset)

    # -- Redis ---------------------------------------------------------------------------

    async def _facts_for(
        self, work: list[tuple[UserPartition, list[Any], datetime, list[str]]], now: datetime
    ) -> dict[str, OutsideFacts] | None:
        """The facts of every user about to fire, in one round trip (None: Redis can't say)."""
        users: list[str] = []
        for part, released, horizon, due in work:
            users += due
            for _, parsed in released:
                if parsed is None or isinstance(parsed, InvalidEvent):
                    continue
                state = part.load(parsed.user_id)
                if state is None:
                    continue
                wake = self._driver.wake(state)
                if wake is not None and wake <= max(horizon, parsed.ts):
                    users.append(parsed.user_id)
        if not users:
            return {}
        return await self.facts.lookup(users, now)

    async def _release_stragglers(
        self, now: datetime, out: Outputs, horizons: dict[int, datetime]
    ) -> None:
        """Users who fired without prefetched facts (a late event made a stage due at
        once): their decisions were held; ask Redis for them now and release at once
        (firing nothing beyond their partition's horizon: an event may still come first)."""
        held = [(p, u) for p, u, state in out.dirty_states() if state.held]
        if not held or not self.facts.ready():
            return
        facts = await self.facts.lookup([u for _, u in held], now)
        if facts is None:
            return
        for p, user_id in held:
            part = self._partitions[p]
            until = horizons.get(p, now)
            advance = self._driver.time(part.cache[user_id], now, until, facts.get(user_id))
            part.keep(user_id, advance, out)


def _of_partition(
    offsets: dict[tuple[str, int], int] | None, topics: Sequence[str], partition: int
) -> dict[str, int] | None:
    if offsets is None:
        return None
    return {t: offsets[(t, partition)] for t in topics if (t, partition) in offsets}
