"""Apply a partition's events in event-time order across the four input topics.

A user's browse, cart, order and prefs events arrive on four topics. Live, each is
read as it is produced, so they are applied in about the order they happened. But
after a restart, a rebalance or an outage the worker reads a backlog, and Faust
fetches the topics round-robin: a user's order could be applied before the cart
events that preceded it, and a reminder due between the two would differ from
``nudge replay``'s.

So messages wait here, per partition and topic, in arrival order, and leave in
event-time order: the earliest head of the four queues goes first, but only once every
other topic of the partition has delivered what it held when that message arrived (its
end offset then) — unless that topic has already delivered events up to about the
message's own time (``slack_ms``): each topic partition is written in about the order of
its events, so what it still holds is later. Live traffic therefore flows through at
once, while a backlog, whose topics lag in event time, is merged by event time. A message
waits at most ``max_hold`` seconds and the queues hold at most ``max_waiting`` messages,
so a topic that stops delivering (paused, or ending in transaction markers) delays
events, never stalls them.

Messages of one topic partition leave in offset order, so acknowledging each after
it is processed still commits offsets in order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")
TP = tuple[str, int]

#: Event time of a message that could not be parsed: it leaves as soon as it is at the
#: head of its queue (it changes no state, but must not overtake its predecessors).
UNORDERED = -(2**62)


@dataclass(slots=True)
class _Waiting(Generic[T]):
    ts_ms: int
    arrived: float  # monotonic seconds
    seq: int
    ends: tuple[int | None, ...]  # each topic's end offset when this message arrived
    item: T


@dataclass
class EventTimeOrder(Generic[T]):
    topics: Sequence[str]
    max_hold: float = 2.0
    max_waiting: int = 10_000
    slack_ms: int = 1_000
    _queues: dict[TP, deque[_Waiting[T]]] = field(default_factory=dict)
    _received: dict[TP, int] = field(default_factory=dict)  # offset after the last arrival
    _start: dict[TP, int] = field(default_factory=dict)
    _latest: dict[TP, int] = field(default_factory=dict)  # latest event time arrived
    _waiting: int = 0
    _seq: int = 0

    def __len__(self) -> int:
        return self._waiting

    def assigned(self, start_offsets: Mapping[TP, int] | None) -> list[T]:
        """A new assignment: forget what waited (it is read again), note where reading starts."""
        dropped = [w.item for q in self._queues.values() for w in q]
        self._queues.clear()
        self._received.clear()
        self._latest.clear()
        self._start = dict(start_offsets or {})
        self._waiting = 0
        return dropped

    def add(
        self,
        topic: str,
        partition: int,
        offset: int,
        ts_ms: int,
        item: T,
        *,
        now: float,
        end_offset: Callable[[str, int], int | None],
    ) -> None:
        """A message arrived; ``end_offset`` tells how far each topic partition is written."""
        tp = (topic, partition)
        self._seq += 1
        ends = tuple(end_offset(t, partition) for t in self.topics)
        self._queues.setdefault(tp, deque()).append(_Waiting(ts_ms, now, self._seq, ends, item))
        self._received[tp] = offset + 1
        if ts_ms != UNORDERED:
            self._latest[tp] = max(ts_ms, self._latest.get(tp, ts_ms))
        self._waiting += 1

    def release(self, partition: int, now: float) -> Iterator[T]:
        """Messages of ``partition`` that may be applied now, in the order to apply them."""
        while True:
            heads = [q[0] for t in self.topics if (q := self._queues.get((t, partition)))]
            if not heads:
                return
            first = min(heads, key=lambda w: (w.ts_ms, w.seq))
            if (
                self._waits_for_others(first, partition)
                and now - min(w.arrived for w in heads) < self.max_hold
                and self._waiting <= self.max_waiting
            ):
                return
            self._queue_headed_by(first, partition).popleft()
            self._waiting -= 1
            yield first.item

    def partitions(self) -> set[int]:
        return {p for (_, p), q in self._queues.items() if q}

    def _queue_headed_by(self, waiting: _Waiting[T], partition: int) -> deque[_Waiting[T]]:
        for topic in self.topics:
            queue = self._queues.get((topic, partition))
            if queue and queue[0] is waiting:
                return queue
        raise LookupError("not at the head of a queue")

    def _waits_for_others(self, first: _Waiting[T], partition: int) -> bool:
        """True while a topic with nothing waiting may still hold an earlier event."""
        for topic, end in zip(self.topics, first.ends, strict=True):
            tp = (topic, partition)
            if end is None or self._queues.get(tp):
                continue
            position = self._received.get(tp, self._start.get(tp))
            if position is None or position >= end:
                continue  # it delivered what it held when ``first`` arrived
            latest = self._latest.get(tp)
            if latest is None or latest < first.ts_ms - self.slack_ms:
                return True
        return False
