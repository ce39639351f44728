"""The scripted shell (``tests.unit.shell_harness``) with re-keying: input as shops have it.

:class:`RekeyShell` owns every user partition (``partitions``, the worker's N) and every
partition of input topics of any counts (``counts``). Events go to whatever partition the
test says (a misplaced key, a null key: the shop's producer decided), the re-keying
topic's records become readable input as the fake broker holds them, and a tick reaches
every user partition. :meth:`Shell.replay` stays the oracle: the events in event-time order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from stream.rekeying import Rekeying
from tests.unit.shell_fakes import TOPICS, Crash, FakeMessage
from tests.unit.shell_harness import Shell
from tests.unit.timelines import wire
from triggers.events import TOPIC_OF_TYPE
from triggers.records import Decision
from triggers.replay import replay_lines
from triggers.rules import Rules

REKEYED = "nudge.rekeyed"


class RekeyShell(Shell):
    def __init__(
        self,
        rules: Rules,
        start: datetime,
        *,
        counts: Mapping[str, int],
        partitions: int = 2,
        everything: bool = False,
        **kw: Any,
    ) -> None:
        self.counts = {t: counts.get(t, partitions) for t in TOPICS.inputs}
        self.everything = everything
        self.forwarded: list[str] = []  # the source topic of each forwarded message
        super().__init__(rules, start, partitions=range(partitions), **kw)

    def rekeying(self) -> Rekeying:
        return Rekeying(
            topic=REKEYED,
            inputs=self.counts,
            partitions=len(self.partitions),
            everything=self.everything,
            max_hold=30.0,
            unknown_grace_ms=self.unknown_grace_ms,
            mark_interval=0.0,
            monotonic=self.clock.monotonic,
            on_forwarded=self._forwarded,
        )

    def _forwarded(self, topic: str) -> None:
        self.forwarded.append(topic)
        self.metrics.rekeyed.labels(topic).inc()  # the worker's counter, as live

    def sources(self) -> list[tuple[str, int]]:
        return [(t, s) for t, count in self.counts.items() for s in range(count)]

    def consumed(self) -> tuple[str, ...]:
        return (*TOPICS.inputs, TOPICS.ticks, REKEYED)

    def owned_tps(self) -> list[tuple[str, int]]:
        own = [(t, p) for t in (TOPICS.ticks, REKEYED) for p in self.partitions]
        return [*self.sources(), *own]

    def all_acked(self) -> bool:
        committed = self.committed()
        return all(committed[tp] == len(log) for tp, log in self.inputs.items())

    # -- input ----------------------------------------------------------------------------

    def on(self, partition: int, kind: str, ts: datetime, user: str, **fields: Any) -> None:
        """An event on ``partition`` of its type's topic, whatever its user's partition."""
        event_id = fields.pop("event_id", None) or f"e{next(self._ids)}"
        value = wire(kind, ts, user, event_id, **fields)
        self.events.append(value)
        self.produce(TOPIC_OF_TYPE[kind], value, partition, None)

    def deliver(self) -> None:
        for sent in self.broker.sends:
            if sent.topic == REKEYED:
                log = self.inputs.setdefault((sent.topic, sent.partition), [])
                if sent.offset == len(log):
                    log.append(
                        FakeMessage(sent.topic, sent.partition, sent.offset, sent.key, sent.value)
                    )

    async def list_end_offsets(self, tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        self.deliver()
        return await super().list_end_offsets(tps)

    async def tick(self, partition: int = 0) -> None:
        """A tick on every user partition, then batches until the marks' round trip is
        done (forwarded events and marks out, read back, applied).

        The first batch reads only ticks and marks: live, sources announce how far they
        have read every ``mark_interval`` whether or not input arrives, so when input
        comes the marks are fresh; the fake clock jumps hours between ticks, and marks
        older than ``max_hold`` count as a dead worker's."""
        for p in self.partitions:
            self.produce(TOPICS.ticks, b"", p)
        await self.poll([TOPICS.ticks, REKEYED])
        for _ in range(3):
            await self.poll()

    async def play(self, plan: Sequence[Planned], until: datetime) -> None:
        """Live in step with replay's clock (``Shell.follow``, with partitions): each
        event produced when it happened, a tick at every time replay fires at. A
        :class:`Crash` restarts the worker and the script goes on."""
        plan = sorted(plan, key=lambda e: e.ts)
        wires = [wire(e.kind, e.ts, e.user, f"f{i}", **e.fields) for i, e in enumerate(plan)]
        replayed = replay_lines(wires, self.rules, until, suppressed=self.ledger.suppressed)
        dues = sorted({r.fired_at for r in replayed.records if type(r) is Decision})
        for event, raw in zip(plan, wires, strict=True):
            while dues and dues[0] <= event.ts:
                self.clock.set(max(self.clock.now, dues.pop(0)))
                await self._surviving_tick()
            self.clock.set(max(self.clock.now, event.ts))
            self.events.append(raw)
            self.produce(TOPIC_OF_TYPE[event.kind], raw, event.partition, None)
            await self._surviving_tick()
        for due in dues:
            self.clock.set(max(self.clock.now, due))
            await self._surviving_tick()
        self.clock.set(max(self.clock.now, until))
        await self._surviving_tick()

    async def _surviving_tick(self) -> None:
        """A tick; after a crash the restarted worker goes on at the same time."""
        try:
            await self.tick()
        except Crash:
            self.restart()
            await self.tick()


@dataclass(frozen=True)
class Planned:
    """An event to produce on a partition of its type's topic (``RekeyShell.play``)."""

    ts: datetime
    kind: str
    user: str
    partition: int
    fields: dict[str, Any] = field(default_factory=dict)
