"""A scripted partition harness for the live shell: real ``Batches`` and core on fakes.

:class:`Shell` owns one worker's partitions on the fakes of ``tests.unit.shell_fakes``:
events are produced to input topic logs (offsets), the clock is stepped, ``poll``
hands the unread messages to ``Batches.process`` as one batch, and what comes out is
read back: output records, changelog records, the local store, acknowledged offsets
(``committed``: what Faust would commit). :meth:`Shell.restart` builds a fresh worker
from what survives a crash (state from the changelog or the local store, input again
from the committed offsets, ``recently_sent`` from the output topic). :meth:`Shell.replay`
is ``nudge replay`` on the same events, the oracle.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import orjson
from prometheus_client import CollectorRegistry

from stream.batches import Batches
from stream.metrics import NudgeMetrics
from stream.user_rows import unpack_row, wake_times
from tests.unit.shell_fakes import (
    TOPICS,
    Broker,
    Clock,
    Crash,
    FakeEvent,
    FakeMessage,
    Journal,
    Ledger,
    Sent,
    Store,
)
from tests.unit.timelines import wire
from triggers.driver import Driver
from triggers.events import INPUT_TOPIC_OF_TYPE, parse_event
from triggers.records import Decision, record_to_json
from triggers.replay import replay_lines
from triggers.rules import Rules
from triggers.state import UserState


class Rec(NamedTuple):
    """An output record without its wall-clock time (see :func:`project`)."""

    kind: str
    user: str
    trigger_id: str
    trigger: str | None = None
    stage: int | None = None
    due_at: str | None = None
    status: str | None = None
    reason: str | None = None
    arm: str | None = None
    order_id: str | None = None
    revenue: float | None = None
    converted_at: str | None = None


def project(record: dict[str, Any]) -> Rec:
    """A record without ``fired_at``: live reaches a stage at ``now`` (a tick, a batch),
    replay exactly when due; everything else must be equal."""
    if record["kind"] == "engagement":
        return Rec("engagement", record["user_id"], record["trigger_id"], status=record["type"])
    if record["kind"] == "erasure":
        return Rec("erasure", record["user_id"], "", converted_at=record["erased_at"])
    if record["kind"] == "decision":
        return Rec(
            "decision",
            record["user_id"],
            record["trigger_id"],
            record["trigger"],
            record["stage"],
            record["due_at"],
            record["status"],
            record["reason"],
        )
    return Rec(
        "conversion",
        record["user_id"],
        record["trigger_id"],
        trigger=record["trigger"],
        arm=record["arm"],
        order_id=record["order_id"],
        revenue=record["revenue"],
        converted_at=record["converted_at"],
    )


def by_user(records: Iterable[Rec]) -> list[Rec]:
    """Each user's records in their order (users are independent: across users, live
    emits in batch order, replay in due-time order)."""
    return sorted(records, key=lambda r: r.user)


Step = Callable[["Shell"], Awaitable[None]]


@dataclass(frozen=True)
class Ev:
    """An event to produce: its time, type, user and fields (``Shell.follow``)."""

    ts: datetime
    kind: str
    user: str = "u1"
    fields: dict[str, Any] = field(default_factory=dict)


class Shell:
    """A worker's partitions on fake ports, driven by a script (see the module docstring)."""

    def __init__(
        self,
        rules: Rules,
        start: datetime,
        *,
        partitions: Iterable[int] = (0,),
        grace_ms: int = 0,
        max_hold: float = 2.0,
        unknown_grace_ms: int = 10_000,
        max_release: int = 5_000,
        auto: bool = True,
    ) -> None:
        self.rules = rules
        self.partitions = tuple(partitions)
        self.grace_ms = grace_ms
        self.max_hold = max_hold
        self.unknown_grace_ms = unknown_grace_ms
        self.max_release = max_release
        self.clock = Clock(start)
        self.journal = Journal()
        self.broker = Broker(self.journal, auto=auto)
        self.ledger = Ledger(self.journal)
        self.store = Store(self.journal)
        self.registry = CollectorRegistry()
        self.metrics = NudgeMetrics.create(self.registry, rules)
        self.inputs: dict[tuple[str, int], list[FakeMessage]] = {}
        self.positions: dict[tuple[str, int], int] = {}
        self.acked: dict[tuple[str, int], set[int]] = {}
        self.broker_down = False  # list_end_offsets fails
        self.seeks: list[tuple[str, int, int]] = []  # the consumer sought back (read_positions)
        self.events: list[bytes] = []  # every valid event produced, for replay
        self.restarts = 0
        self._ids = itertools.count(1)
        self.batches = self._new_batches()
        self.batches.assigned(self.partitions, [], self.committed(), sources=self.sources())

    # -- the worker ---------------------------------------------------------------------

    def _new_batches(self) -> Batches:
        return Batches(
            driver=Driver(self.rules),
            topics=TOPICS,
            store=self.store,
            broker=self.broker,
            ledger=self.ledger,
            metrics=self.metrics,
            list_end_offsets=self.list_end_offsets,
            first_offset_at=self.first_offset_at,
            seek=self.seek,
            ack=self._ack,
            max_message_bytes=65536,
            fire_grace_ms=self.grace_ms,
            max_hold=self.max_hold,
            max_release=self.max_release,
            unknown_grace_ms=self.unknown_grace_ms,
            clock=self.clock.wall,
            monotonic=self.clock.monotonic,
            catalog=self.catalog_fanout(),
            rekeying=self.rekeying(),
        )

    def catalog_fanout(self) -> Any:
        """The catalog fan-out to give the worker (None here; ``tests.unit.catalog_harness``)."""
        return None

    def rekeying(self) -> Any:
        """The re-keying to give the worker (None here; ``tests.unit.rekey_harness``)."""
        return None

    def sources(self) -> list[tuple[str, int]] | None:
        """The input topic partitions the worker owns (None: the user partitions')."""
        return None

    def consumed(self) -> tuple[str, ...]:
        """The topics the worker reads."""
        return (*TOPICS.inputs, TOPICS.ticks)

    async def _ack(self, events: list[Any]) -> None:
        for event in events:
            message = event.message
            event.acked = True
            self.acked.setdefault((message.topic, message.partition), set()).add(message.offset)
            self.journal.log("ack", message.topic, message.partition, message.offset)

    def restart(self, *, from_changelog: bool = True) -> None:
        """A new worker after a crash: the local store (or, after an unclean shutdown,
        the changelog) as it is, input from the committed offsets, recent sends read
        back from the output topic."""
        self.restarts += 1
        if from_changelog:
            self.store = Store.from_changelog(self.journal, self.broker.log(TOPICS.changelog))
        self.positions = dict(self.committed())
        self.metrics = NudgeMetrics.create(CollectorRegistry(), self.rules)
        self.batches = self._new_batches()
        rows = wake_times(self.store.items())
        self.batches.assigned(self.partitions, rows, self.committed(), sources=self.sources())
        self.batches.checkpoint.recently_sent = {s.json()["trigger_id"] for s in self.triggers()}

    # -- input ----------------------------------------------------------------------------

    def produce(
        self, topic: str, value: bytes, partition: int = 0, key: bytes | None = None
    ) -> int:
        log = self.inputs.setdefault((topic, partition), [])
        log.append(FakeMessage(topic, partition, len(log), key, value))
        return len(log) - 1

    def event(
        self, kind: str, ts: datetime, user: str = "u1", partition: int = 0, **fields: Any
    ) -> int:
        """A wire-format event on its type's topic; returns its offset."""
        event_id = fields.pop("event_id", None) or f"e{next(self._ids)}"
        value = wire(kind, ts, user, event_id, **fields)
        self.events.append(value)
        return self.produce(INPUT_TOPIC_OF_TYPE[kind], value, partition, user.encode())

    def add(self, ts: datetime, user: str = "u1", product: str = "p1", **kw: Any) -> int:
        return self.event("cart_item_added", ts, user, product_id=product, unit_price=10.0, **kw)

    def order(
        self, ts: datetime, order_id: str, user: str = "u1", products: Sequence[str] = ("p1",)
    ) -> int:
        items = [{"product_id": p, "quantity": 1, "unit_price": 10.0} for p in products]
        return self.event("order_placed", ts, user, order_id=order_id, items=items)

    async def list_end_offsets(self, tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        """What the broker answers: everything produced so far (unless it is down)."""
        if self.broker_down:
            raise ConnectionError("broker down")
        return {tp: len(self.inputs.get(tp, [])) for tp in tps}

    async def first_offset_at(self, topic: str, partition: int, offset: int) -> int | None:
        """What the broker answers: the first offset from ``offset`` on that holds a record."""
        log = self.inputs.get((topic, partition), [])
        return next((m.offset for m in log if m.offset >= offset), None)

    async def seek(self, topic: str, partition: int, offset: int) -> None:
        """The consumer sought back: the partition is read again from ``offset``."""
        self.seeks.append((topic, partition, offset))
        self.positions[(topic, partition)] = offset

    def owned_tps(self) -> list[tuple[str, int]]:
        """The topic partitions the worker reads."""
        return [(t, p) for t in self.consumed() for p in self.partitions]

    def committed(self) -> dict[tuple[str, int], int]:
        """What Faust commits: per topic partition, the offset after the acked prefix."""
        out = {}
        for tp in self.owned_tps():
            done = self.acked.get(tp, set())
            offset = 0
            while offset in done:
                offset += 1
            out[tp] = offset
        return out

    def unread(
        self, topics: Iterable[str] | None = None, limit: int | None = None
    ) -> list[FakeEvent]:
        """The unread messages of ``topics`` (all), topic by topic as a fetch returns them."""
        self.deliver()
        wanted = set(topics) if topics is not None else set(self.consumed())
        owned = set(self.owned_tps())
        batch = []
        for (topic, partition), log in sorted(self.inputs.items()):
            if topic not in wanted or (topic, partition) not in owned:
                continue
            start = self.positions.get((topic, partition), 0)
            taken = [m for m in log if m.offset >= start][:limit]
            batch += [FakeEvent(m) for m in taken]
            if taken:
                self.positions[(topic, partition)] = taken[-1].offset + 1
        return batch

    def deliver(self) -> None:
        """Records the worker sent to topics it reads itself become readable input (none
        here; the re-keying and catalog shells have such topics)."""

    async def poll(self, topics: Iterable[str] | None = None, limit: int | None = None) -> None:
        """One batch: the unread messages of ``topics`` (all by default)."""
        await self.batches.process(self.unread(topics, limit))

    async def tick(self, partition: int = 0) -> None:
        """A deadline tick (and whatever else is unread), as one batch."""
        self.produce(TOPICS.ticks, b"", partition)
        await self.poll()

    async def run(self, script: Sequence[Step], *, settle_until: datetime | None = None) -> None:
        """Run the steps; after a :class:`Crash`, restart and go on with the next step."""
        for step in script:
            try:
                await step(self)
            except Crash:
                self.restart()
        if settle_until is not None:
            await self.settle(settle_until)

    async def settle(self, until: datetime, step: timedelta = timedelta(minutes=30)) -> None:
        """Read everything, then tick every ``step`` up to ``until`` (crashes restart)."""
        while True:
            try:
                await self.tick()
                self.clock.advance(self.max_hold + 0.001)  # nothing waits past max_hold
                await self.tick()
                while self.clock.now < until:
                    self.clock.set(min(until, self.clock.now + step))
                    await self.tick()
                if self.batches.waiting() == 0 and self.all_acked():
                    return
            except Crash:
                self.restart()

    def all_acked(self) -> bool:
        committed = self.committed()
        return all(
            committed[(t, p)] == len(log)
            for (t, p), log in self.inputs.items()
            if p in self.partitions
        )

    # -- output ----------------------------------------------------------------------------

    def triggers(self) -> list[Sent]:
        return self.broker.log(TOPICS.triggers)

    def audit(self) -> list[dict[str, Any]]:
        return [s.json() for s in self.broker.log(TOPICS.audit)]

    def dead_letters(self) -> list[dict[str, Any]]:
        return [s.json() for s in self.broker.log(TOPICS.dlq)]

    def sent_ids(self) -> list[str]:
        return [s.json()["trigger_id"] for s in self.triggers()]

    def records(self) -> list[Rec]:
        """The audit topic's records, projected (see :func:`project`)."""
        return [project(r) for r in self.audit()]

    def state(self, user: str) -> UserState | None:
        stored = self.store.get(user.encode())
        return None if stored is None else unpack_row(stored)[0]

    def replay(self, until: datetime) -> list[Rec]:
        """``nudge replay`` on the events produced, in event-time order, up to ``until``."""
        ordered = sorted(self.events, key=lambda raw: parse_event(raw).ts)
        result = replay_lines(ordered, self.rules, until, suppressed=self.ledger.suppressed)
        return [project(orjson.loads(record_to_json(r))) for r in result.records]

    def replay_json(self, until: datetime) -> list[dict[str, Any]]:
        """Replay's records whole (``fired_at`` included)."""
        ordered = sorted(self.events, key=lambda raw: parse_event(raw).ts)
        result = replay_lines(ordered, self.rules, until, suppressed=self.ledger.suppressed)
        return [orjson.loads(record_to_json(r)) for r in result.records]

    async def follow(
        self,
        events: Sequence[Ev],
        until: datetime,
        *,
        cuts: Sequence[bool] = (),
        polls: Sequence[Sequence[tuple[Sequence[str], int | None]]] = (),
    ) -> None:
        """Live in step with replay's clock: the events are produced in groups, each
        when its last event happened; the clock ticks at every time replay reaches a
        stage, so live reaches it at the same time (``fired_at`` equal too).

        A group ends where ``cuts`` says (one flag per event) and before any time replay
        fires at; ``polls`` are the batches each group is read in (topics, messages per
        topic at most), before a last poll of everything."""
        events = sorted(events, key=lambda e: e.ts)
        wires = [wire(e.kind, e.ts, e.user, f"f{i}", **e.fields) for i, e in enumerate(events)]
        replayed = replay_lines(wires, self.rules, until, suppressed=self.ledger.suppressed)
        dues = sorted({r.fired_at for r in replayed.records if type(r) is Decision})
        groups: list[list[tuple[Ev, bytes]]] = []
        for i, (event, raw) in enumerate(zip(events, wires, strict=True)):
            split = i == 0 or (i < len(cuts) and cuts[i])
            split = split or any(events[i - 1].ts < d <= event.ts for d in dues)
            if split:
                groups.append([])
            groups[-1].append((event, raw))
        pending = list(dues)
        for index, group in enumerate(groups):
            while pending and pending[0] <= group[0][0].ts:
                self.clock.set(max(self.clock.now, pending.pop(0)))
                await self.tick()
            self.clock.set(max(self.clock.now, group[-1][0].ts))
            for event, raw in group:
                self.events.append(raw)
                self.produce(INPUT_TOPIC_OF_TYPE[event.kind], raw, 0, event.user.encode())
            for topics, limit in polls[index] if index < len(polls) else ():
                await self.poll(topics, limit)
            await self.tick()
        for due in pending:
            self.clock.set(max(self.clock.now, due))
            await self.tick()
        self.clock.set(max(self.clock.now, until))
        await self.tick()
