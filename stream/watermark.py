"""One event-time watermark per partition: what may be applied, and how far deadlines may fire.

A partition's events arrive on four input topics. Live, each is read as it is
produced, so they arrive in about the order they happened. After a restart, a
rebalance or an outage the worker reads a backlog, and the topics are fetched
round-robin: a user's order could arrive before the cart events that preceded it.
``nudge replay`` applies events in time order and fires a stage due at T before an
event later than T; the live service must do the same to give the same records.

So each partition keeps, per input topic, the messages read but not yet applied
(in offset order), and for each topic a *bound*: no unapplied event of that topic
is earlier than it, as far as the worker knows:

- messages waiting: the time of the first one;
- none waiting and the topic read to its end offset: no bound. The end offsets must be
  current: the live worker asks the broker for them at every batch, right before the
  horizon is computed (``Batches``) — a consumer's highwater is as old as its last fetch,
  which under load, or after a pause, is older than it looks;
- none waiting but the topic behind its end: the time of the last message read from it
  (each topic partition is written in about the order of its events), or, before
  anything was read from it, the start of time;
- no end offset or position known at all: the start of time for ``unknown_grace`` after
  the assignment, no bound after that (a partition must never stall for good).

:meth:`Watermark.release` hands out waiting messages in event-time order while the
earliest is not later than every other topic's bound (or has waited ``max_hold``:
a topic that stops delivering delays events, never stalls them). The *watermark* is
the least bound over all topics; deadlines fire up to ``min(now - grace, watermark)``
(:meth:`Watermark.horizon`) — never ahead of input still unread or unapplied. A
message that could not be parsed leaves as soon as it heads its queue.

Messages of one topic partition leave in offset order, so acknowledging each once
its batch is checkpointed commits offsets in order.

An *external* topic (the catalog fan-out, ``stream.catalog_side``) merges several ordered
sources: its messages wait in event-time order (not offset order: the caller acknowledges
them in offset order), its bound is the least of the first waiting message and the
``external`` function's answer (a bound its sources announce), and its first message
leaves only once it is not later than that answer either. Waiting for an external bound
ends after its own hold (``external_holds``, else ``external_hold``, default ``max_hold``)
rather than ``max_hold``. :class:`Marks` keeps such announced bounds, :class:`Gate`
acknowledges an external topic's messages in offset order.

A message *passing through* (re-keyed to another partition's owner, ``stream.rekeying``)
waits in its topic's queue like an unparseable one (it leaves as soon as it heads the
queue, so the topic is still acknowledged in offset order) but counts as read at its
event time.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

UNORDERED = -(2**62)  # event time of an unparseable message: leaves when at the head
NEVER = -(2**62)  # a horizon before every deadline
FOREVER = 2**62
EndOffset = Callable[[str, int], int | None]


@dataclass(slots=True)
class _Waiting:
    ts_ms: int
    arrived: float  # monotonic seconds
    item: Any


@dataclass(slots=True)
class _Topic:
    waiting: deque[_Waiting] = field(default_factory=deque)
    read: int | None = None  # offset after the last message read (None: from the start offset)
    last_ts: int | None = None  # event time of the last parseable message read


class Watermark:
    """The input of one partition (see the module docstring)."""

    def __init__(
        self,
        topics: Sequence[str],
        partition: int,
        starts: Mapping[str, int] | None,
        assigned_ms: int,
        *,
        max_hold: float,
        unknown_grace_ms: int,
        external: Mapping[str, Callable[[int], int]] | None = None,
        external_hold: float | None = None,
        external_holds: Mapping[str, float] | None = None,
        read_external: Collection[str] = (),
    ) -> None:
        """``read_external``: external topics whose announced bound counts in
        :meth:`read_horizon` (their sources announce what they have *read*)."""
        self.partition = partition
        self._external = dict(external or {})
        hold = max_hold if external_hold is None else external_hold
        self._holds = {name: (external_holds or {}).get(name, hold) for name in self._external}
        self._names = (*topics, *self._external)
        self._read_names = (*topics, *(n for n in self._external if n in read_external))
        self._topics = {name: _Topic() for name in self._names}
        self._starts = dict(starts or {})
        self.assigned_ms = assigned_ms
        self._max_hold = max_hold
        self._unknown_grace_ms = unknown_grace_ms
        self.waiting = 0

    def add(
        self, topic: str, offset: int, ts_ms: int, item: Any, now: float, *, passing: bool = False
    ) -> None:
        """``passing``: the message only passes through (see the module docstring)."""
        state = self._topics[topic]
        if topic in self._external and state.waiting and ts_ms < state.waiting[-1].ts_ms:
            keys = [w.ts_ms for w in state.waiting]
            state.waiting.insert(bisect.bisect_right(keys, ts_ms), _Waiting(ts_ms, now, item))
        else:
            state.waiting.append(_Waiting(UNORDERED if passing else ts_ms, now, item))
        state.read = offset + 1
        if ts_ms != UNORDERED:
            state.last_ts = ts_ms
        self.waiting += 1

    def _bound(self, name: str, end_offset: EndOffset, now_ms: int, *, read: bool = False) -> int:
        """``read``: a bound on what is still unread (messages waiting do not count)."""
        state = self._topics[name]
        external = self._external.get(name)
        if external is not None:
            bound = external(now_ms)
            return min(bound, state.waiting[0].ts_ms) if state.waiting else bound
        if state.waiting and not read:
            return state.waiting[0].ts_ms
        end = end_offset(name, self.partition)
        position = state.read if state.read is not None else self._starts.get(name)
        if end is not None and position is not None and position >= end:
            return FOREVER  # read to its end: holds nothing unread
        fresh = now_ms - self.assigned_ms < self._unknown_grace_ms
        if end is not None and position is not None:
            # Behind: what is still unread comes after what was read; with nothing read
            # yet, it may be anything.
            return state.last_ts if state.last_ts is not None else NEVER
        # Unknown (no end offset, no position): hold for a short while after the
        # assignment at most, never for good.
        return NEVER if fresh else FOREVER

    def release(
        self, end_offset: EndOffset, now: float, now_ms: int, limit: int | None = None
    ) -> list[Any]:
        """The waiting messages that may be applied now, in the order to apply them; at
        most ``limit`` of them (the rest leave at a later call, in the same order, and
        meanwhile hold :meth:`horizon` at the first of them: they are still waiting)."""
        out: list[Any] = []
        if not self.waiting:
            return out
        topics = self._topics
        while self.waiting and (limit is None or len(out) < limit):
            first_name = None
            first: _Waiting | None = None
            oldest_arrival = None
            for name in self._names:
                queue = topics[name].waiting
                if queue:
                    head = queue[0]
                    if first is None or head.ts_ms < first.ts_ms:
                        first, first_name = head, name
                    if oldest_arrival is None or head.arrived < oldest_arrival:
                        oldest_arrival = head.arrived
            assert first is not None and first_name is not None and oldest_arrival is not None
            waited = now - oldest_arrival
            if first.ts_ms != UNORDERED and (
                (
                    waited < self._max_hold
                    and any(
                        name != first_name
                        and name not in self._external
                        and not topics[name].waiting
                        and self._bound(name, end_offset, now_ms) < first.ts_ms
                        for name in self._names
                    )
                )
                or any(
                    waited < self._holds[name]
                    and self._bound(name, end_offset, now_ms) < first.ts_ms
                    for name in self._external
                )
            ):
                break  # another topic may still hold an earlier event
            topics[first_name].waiting.popleft()
            self.waiting -= 1
            out.append(first.item)
        return out

    def horizon(self, now_ms: int, end_offset: EndOffset) -> int:
        """How far deadlines may fire: ``now_ms``, or the watermark if that is earlier."""
        horizon = now_ms
        for name in self._names:
            bound = self._bound(name, end_offset, now_ms)
            if bound < horizon:
                horizon = bound
        return horizon

    def read_horizon(self, now_ms: int, end_offset: EndOffset) -> int:
        """How far the topics that are not external (and the ``read_external`` ones) have
        been *read* (applied or not): ``now_ms``, or the least bound on their unread
        messages if that is earlier."""
        horizon = now_ms
        for name in self._read_names:
            bound = self._bound(name, end_offset, now_ms, read=True)
            if bound < horizon:
                horizon = bound
        return horizon

    def read_bound(self, topic: str, now_ms: int, end_offset: EndOffset) -> int:
        """How far one topic has been read: ``now_ms``, or its bound on unread messages."""
        return min(now_ms, self._bound(topic, end_offset, now_ms, read=True))


class Gate:
    """Acknowledges one topic partition's messages in offset order, whatever the order in
    which they are done (Faust commits acknowledged offsets only in order)."""

    def __init__(self) -> None:
        self._order: deque[Any] = deque()
        self._done: set[int] = set()

    def read(self, item: Any) -> None:
        self._order.append(item)

    def done(self, item: Any) -> None:
        self._done.add(id(item))

    def ready(self) -> list[Any]:
        out = []
        while self._order and id(self._order[0]) in self._done:
            item = self._order.popleft()
            self._done.discard(id(item))
            out.append(item)
        return out


def through_gates(
    batch: Sequence[Any],
    topic: str,
    gates: Mapping[int, Gate],
    finished: Callable[[Any], bool] = lambda item: True,
) -> list[Any]:
    """A batch's acknowledgements: a message of ``topic`` goes through its partition's gate
    once ``finished`` says it is (one of a partition no longer owned is dropped), any other
    as it is; then what every gate lets through, in offset order."""
    out = []
    for item in batch:
        message = item.message
        if message.topic != topic:
            out.append(item)
            continue
        gate = gates.get(message.partition)
        if gate is not None and finished(item):
            gate.done(item)
    for gate in gates.values():
        out += gate.ready()
    return out


class Marks:
    """The watermarks ``sources`` partitions announce: their least, once all have spoken.

    A source not heard of holds the bound at the start of time for ``grace_ms`` after the
    assignment (another worker's partitions may take a while to recover); one silent for
    ``stale`` seconds is left out (a stopped source delays, never stalls)."""

    def __init__(
        self, sources: int, assigned_ms: int, grace_ms: int, stale: float, monotonic: Callable
    ) -> None:
        self._sources = sources
        self._assigned_ms = assigned_ms
        self._grace_ms = grace_ms
        self._stale = stale
        self._monotonic = monotonic
        self._marks: dict[int, tuple[int, float]] = {}

    def note(self, source: int, ms: int) -> None:
        known = self._marks.get(source)
        self._marks[source] = (max(ms, known[0]) if known else ms, self._monotonic())

    def bound(self, now_ms: int) -> int:
        now = self._monotonic()
        least = FOREVER
        for source in range(self._sources):
            known = self._marks.get(source)
            if known is None:
                if now_ms - self._assigned_ms < self._grace_ms:
                    return NEVER
                continue
            if now - known[1] <= self._stale and known[0] < least:
                least = known[0]
        return least
