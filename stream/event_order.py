"""Apply a partition's events in event-time order across the four input topics.

A user's browse, cart, order and prefs events arrive on four topics. Live, each is
read as it is produced, so they are applied in about the order they happened. But
after a restart, a rebalance or an outage the worker reads a backlog, and Faust
fetches the topics round-robin: a user's order could be applied before the cart
events that preceded it, and a reminder due between the two would differ from
``nudge replay``'s.

So messages wait here, per partition and topic, in arrival order, and leave in
event-time order: the earliest head of the four queues goes first, but only once
every other topic of the partition has a message waiting or has nothing more to be
read (its read position is at its end offset). A message waits at most ``max_hold``
seconds and the queues hold at most ``max_waiting`` messages, so a topic that stops
delivering (paused, or ending in transaction markers) delays events, never stalls them.

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
    item: T


@dataclass
class EventTimeOrder(Generic[T]):
    topics: Sequence[str]
    max_hold: float = 2.0
    max_waiting: int = 10_000
    _queues: dict[TP, deque[_Waiting[T]]] = field(default_factory=dict)
    _received: dict[TP, int] = field(default_factory=dict)  # offset after the last arrival
    _start: dict[TP, int] = field(default_factory=dict)
    _waiting: int = 0
    _seq: int = 0

    def __len__(self) -> int:
        return self._waiting

    def assigned(self, start_offsets: Mapping[TP, int] | None) -> list[T]:
        """A new assignment: forget what waited (it is read again), note where reading starts."""
        dropped = [w.item for q in self._queues.values() for w in q]
        self._queues.clear()
        self._received.clear()
        self._start = dict(start_offsets or {})
        self._waiting = 0
        return dropped

    def add(self, topic: str, partition: int, offset: int, ts_ms: int, item: T, now: float) -> None:
        tp = (topic, partition)
        self._seq += 1
        self._queues.setdefault(tp, deque()).append(_Waiting(ts_ms, now, self._seq, item))
        self._received[tp] = offset + 1
        self._waiting += 1

    def release(
        self, partition: int, now: float, end_offset: Callable[[str, int], int | None]
    ) -> Iterator[T]:
        """Messages of ``partition`` that may be applied now, in the order to apply them."""
        while True:
            heads: list[_Waiting[T]] = []
            blocked = False
            for topic in self.topics:
                queue = self._queues.get((topic, partition))
                if queue:
                    heads.append(queue[0])
                elif self._behind(topic, partition, end_offset):
                    blocked = True
            if not heads:
                return
            first = min(heads, key=lambda w: (w.ts_ms, w.seq))
            if blocked:
                oldest = min(w.arrived for w in heads)
                if now - oldest < self.max_hold and self._waiting <= self.max_waiting:
                    return
            for topic in self.topics:
                queue = self._queues.get((topic, partition))
                if queue and queue[0] is first:
                    queue.popleft()
                    break
            self._waiting -= 1
            yield first.item

    def partitions(self) -> set[int]:
        return {p for (_, p), q in self._queues.items() if q}

    def _behind(
        self, topic: str, partition: int, end_offset: Callable[[str, int], int | None]
    ) -> bool:
        """True when the topic partition has records that have not arrived here yet."""
        end = end_offset(topic, partition)
        position = self._received.get((topic, partition), self._start.get((topic, partition)))
        return end is not None and position is not None and position < end
