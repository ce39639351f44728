"""Re-keying: input as shops have it, any partition counts and any keys (contract section 9).

The payload's ``user_id`` decides whose event a message is; its user's partition is the
one Kafka's default partitioner gives ``user_id`` among the worker's ``N`` partitions
(``stream.catalog_wire.partition_of``). Each partition of every input topic is a
*source*, numbered across the topics (:class:`Sources`), read by whichever worker Faust
assigns it to:

- A message of a *direct* topic (one with ``N`` partitions: Faust co-assigns its
  partition ``p`` with the users table's) that belongs to ``p`` is applied where it is
  read, as before. Everything else — a misplaced key, a null key, a topic with another
  partition count — is *forwarded*: its raw payload goes to the internal topic
  ``nudge.rekeyed`` (``N`` partitions), keyed by ``user_id``, to its user's partition,
  in step 1 of the checkpoint (with the outputs). A correctly keyed shop pays nothing
  but the marks below. ``NUDGE_REKEY=all`` forwards every message (the benchmark's
  contender: docs/benchmarks.md).
- Event time across the hop is the catalog fan-out's mechanism (``stream.watermark``):
  after the forwarded messages of a batch, every source announces how far it has been
  *read* (``Horizons``: one record per re-keyed partition with all of the worker's
  sources, at most every ``mark_interval``), and ``nudge.rekeyed`` is an *external*
  topic of each user partition's :class:`~stream.watermark.Watermark`: forwarded events
  wait there in event-time order, bounded by the least announced horizon
  (:class:`~stream.watermark.Marks`), so they are applied in replay's order among the
  partition's own events, and deadlines never fire ahead of a forwarded event still on
  its way. A source silent for ``max_hold`` is left out (a dead worker delays, never
  stalls).
- Acknowledgements: a forwarded message of a direct topic passes through its user
  partition's watermark (so the topic is acknowledged in offset order); a source of
  another count has a watermark of its own that only counts what was read; the re-keyed
  topic is acknowledged in offset order through a :class:`~stream.watermark.Gate`.

Crashes: a forwarded message is acknowledged only after its record is on
``nudge.rekeyed``; a crash before that forwards it again, and the user's state remembers
its event id (a duplicate changes nothing), as for any re-delivered event.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import msgspec

from stream.catalog_wire import partition_of
from stream.watermark import UNORDERED, EndOffset, Gate, Marks, Watermark, through_gates

log = logging.getLogger("nudge.rekeying")

KafkaRecord = tuple[str, bytes | None, bytes, int | None, list[tuple[str, bytes]] | None]


class Forwarded(msgspec.Struct, frozen=True, tag="f", array_like=True):
    source: int  # the source partition it was read from (Sources numbering)
    offset: int  # its offset there
    payload: bytes  # the message as the shop wrote it


class Horizons(msgspec.Struct, frozen=True, tag="h", array_like=True):
    marks: list[tuple[int, int]]  # (source, how far it has been read, epoch ms)


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Forwarded | Horizons)


class Sources:
    """Every partition of every input topic, numbered: topic by topic, partition by
    partition (the same numbering on every worker: the topics in settings order)."""

    def __init__(self, counts: Mapping[str, int]) -> None:
        self.counts = dict(counts)
        self._first: dict[str, int] = {}
        total = 0
        for topic, count in self.counts.items():
            self._first[topic] = total
            total += count
        self.total = total

    def id(self, topic: str, partition: int) -> int:
        return self._first[topic] + partition


class Rekeying:
    def __init__(
        self,
        *,
        topic: str,
        inputs: Mapping[str, int],
        partitions: int,
        everything: bool,
        max_hold: float,
        unknown_grace_ms: int,
        mark_interval: float,
        monotonic: Callable[[], float],
        on_forwarded: Callable[[str], object] | None = None,
    ) -> None:
        """``on_forwarded``: told the source topic of each forwarded message (a metric)."""
        self.topic = topic
        self.sources = Sources(inputs)
        self.partitions = partitions
        #: Topics whose partition ``p`` is read with the users table's ``p``.
        self.direct = tuple(t for t, c in inputs.items() if c == partitions and not everything)
        #: Topics each of whose partitions is a source read apart from the user partitions.
        self.apart_topics = frozenset(inputs) - frozenset(self.direct)
        self.max_hold = max_hold
        self._grace_ms = unknown_grace_ms
        self._mark_interval = mark_interval
        self._monotonic = monotonic
        self._on_forwarded = on_forwarded
        self._fanin: dict[int, Marks] = {}
        self._gates: dict[int, Gate] = {}
        self._apart: dict[tuple[str, int], Watermark] = {}  # sources of other counts
        self._direct: list[tuple[str, int]] = []  # owned sources of direct topics
        self._marked: float | None = None
        self._batch()

    def _batch(self) -> None:
        self._records: list[KafkaRecord] = []
        self._marks: list[KafkaRecord] = []
        self._acks: list[Any] = []

    # -- assignment ---------------------------------------------------------------------

    def assigned(
        self,
        partitions: Iterable[int],
        sources: Iterable[tuple[str, int]],
        starts: Mapping[tuple[str, int], int] | None,
        now_ms: int,
    ) -> None:
        """``partitions``: the owned user partitions; ``sources``: the owned input topic
        partitions (a direct topic's are the user partitions)."""
        self._fanin, self._gates, self._apart, self._direct = {}, {}, {}, []
        self._marked = None
        for p in partitions:
            self._fanin[p] = Marks(
                self.sources.total, now_ms, self._grace_ms, self.max_hold, self._monotonic
            )
            self._gates[p] = Gate()
        for topic, s in sources:
            if topic in self.direct:
                self._direct.append((topic, s))
                continue
            start = None if starts is None else starts.get((topic, s))
            self._apart[(topic, s)] = Watermark(
                (topic,),
                s,
                None if start is None else {topic: start},
                now_ms,
                max_hold=0.0,
                unknown_grace_ms=self._grace_ms,
            )
        self._batch()

    def revoked(self, partitions: Iterable[int], sources: Iterable[tuple[str, int]]) -> None:
        for p in partitions:
            self._fanin.pop(p, None)
            self._gates.pop(p, None)
        gone = set(sources)
        self._direct = [tp for tp in self._direct if tp not in gone]
        for tp in gone:
            self._apart.pop(tp, None)

    def external(self, partition: int) -> dict[str, Callable[[int], int]]:
        """The user partition's external topic: the re-keyed input, and its bound."""
        return {self.topic: self._fanin[partition].bound}

    # -- reading ------------------------------------------------------------------------

    def reads_apart(self, topic: str, partition: int) -> bool:
        """A message of an owned source that no user partition's watermark reads."""
        return (topic, partition) in self._apart

    def owner(self, user_id: str) -> int:
        return partition_of(user_id.encode(), self.partitions)

    def forward(self, message: Any, user_id: str, owner: int) -> None:
        """Send a message to its user's partition (in step 1 of the checkpoint)."""
        topic = message.topic
        record = Forwarded(
            self.sources.id(topic, message.partition), message.offset, message.value or b""
        )
        key = user_id.encode()
        self._records.append((self.topic, key, _encoder.encode(record), owner, None))
        if self._on_forwarded is not None:
            self._on_forwarded(topic)

    def read_apart(self, item: Any, ts_ms: int | None, now: float) -> None:
        """A message of a source of another count, forwarded or dead-lettered: it counts
        as read (``ts_ms``: its event time, None if it had none)."""
        message = item.message
        watermark = self._apart[(message.topic, message.partition)]
        ts = UNORDERED if ts_ms is None else ts_ms  # no time: the read bound stays
        watermark.add(message.topic, message.offset, ts, item, now, passing=True)

    def read(self, item: Any) -> tuple[int, bytes, int] | None:
        """A message of the re-keyed topic: a forwarded one is returned as ``(source,
        payload, offset at its source)`` for the partition's watermark; a mark is noted."""
        message = item.message
        p = message.partition
        gate = self._gates.get(p)
        if gate is None:
            return None
        gate.read(item)
        try:
            decoded = _decoder.decode(message.value or b"")
        except (msgspec.DecodeError, msgspec.ValidationError):
            log.warning("an unreadable message on %s[%d]", message.topic, p)
            gate.done(item)
            return None
        if type(decoded) is Forwarded:
            return decoded.source, decoded.payload, decoded.offset
        for source, ms in decoded.marks:
            self._fanin[p].note(source, ms)
        gate.done(item)
        return None

    # -- a batch ------------------------------------------------------------------------

    def marks_due(self, now: float) -> bool:
        return self._marked is None or now - self._marked >= self._mark_interval

    def end_topics(self) -> list[tuple[str, int]]:
        """The owned sources whose end offsets the marks need."""
        return [*self._direct, *self._apart]

    def mark(
        self,
        read_bound: Callable[[str, int, int], int],
        end_offset: EndOffset,
        now: float,
        now_ms: int,
    ) -> None:
        """Release what the sources of other counts read (acknowledged at the checkpoint)
        and, if due, announce every owned source's read horizon to every re-keyed
        partition. ``read_bound(topic, partition, now_ms)``: a direct source's, from its
        user partition's watermark."""
        for watermark in self._apart.values():
            self._acks += watermark.release(end_offset, now, now_ms)
        if not self.marks_due(now):
            return
        self._marked = now
        sources = self.sources
        marks = [(sources.id(t, s), read_bound(t, s, now_ms)) for t, s in self._direct]
        marks += [
            (sources.id(t, s), watermark.read_horizon(now_ms, end_offset))
            for (t, s), watermark in self._apart.items()
        ]
        if not marks:
            return
        value = _encoder.encode(Horizons(marks))
        self._marks += ((self.topic, None, value, q, None) for q in range(self.partitions))

    # -- the checkpoint -------------------------------------------------------------------

    def kafka_records(self) -> list[KafkaRecord]:
        """Forwarded messages, then the marks that vouch for them."""
        return [*self._records, *self._marks]

    def acks(self, batch: Sequence[Any]) -> list[Any]:
        """The batch's acknowledgements with the re-keyed topic's (each topic partition in
        offset order) and the sources of other counts'."""
        out = through_gates(batch, self.topic, self._gates)
        out += self._acks
        self._batch()
        return out
