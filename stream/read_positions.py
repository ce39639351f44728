"""Each message of an owned partition taken once and in offset order, whatever Faust delivers.

Around a rebalance Faust can deliver a partition's messages out of order or skip some:
a fetch that was under way when the partitions were sought back to their committed
offsets comes back with records from beyond them, and Faust, having moved its own "read
offset" past them, then drops the records it reads again from the committed offset as
already read. A worker that took those records would apply events out of order and never
see the ones in between (until its next restart): the decisions come out wrong (in the
CPU-hog runs of the crash and rebalance suites, and the 2-process benchmark drain).

So the shell keeps, per owned input partition, the next offset it expects, starting at
the committed offset of each assignment:

- a message below it was taken before (a copy delivered twice): left out;
- the message at it: taken;
- a message beyond it is a gap. Offsets may legitimately be missing (transaction
  markers, records removed by retention), so the broker is asked for the first offset
  that exists from the expected one on. If that is this message's, the gap is real and
  the message is taken; otherwise records were not delivered: the message is left out
  (not acknowledged) and the consumer is sought back to the expected offset, once, so
  that they come again, in order.

A seek can be lost the same way: a fetch Faust is still handing over when the consumer
is sought back moves Faust's read offset past the expected one again, and the records
read again are dropped before the shell sees them (the 2-process benchmark drain stalled
so). So a partition that has not reached its expected offset ``retry_after`` seconds after
its seek (2 s) is sought back again, at the next batch (ticks bring one even to an idle
partition). Seeking again is harmless: anything delivered twice is left out.

Nothing here changes what is applied, only that every message is applied exactly once
in its partition's order; a message left out is never acknowledged.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping

from stream.watermark import FOREVER

log = logging.getLogger("nudge.read_positions")

TopicPartition = tuple[str, int]
#: Seconds after a seek back without its expected offset before seeking back again.
RETRY_SEEK_AFTER = 2.0
#: The first offset at or after ``offset`` that holds a record (None: none yet).
FirstOffsetAt = Callable[[str, int, int], Awaitable[int | None]]
#: Seek the consumer's partition back to ``offset`` (its messages are delivered again).
Seek = Callable[[str, int, int], Awaitable[None]]
#: The broker's end offsets of these topic partitions.
ListEndOffsets = Callable[[list[TopicPartition]], Awaitable[dict[TopicPartition, int]]]


class ReadPositions:
    def __init__(
        self,
        first_offset_at: FirstOffsetAt,
        seek: Seek,
        monotonic: Callable[[], float],
        retry_after: float = RETRY_SEEK_AFTER,
    ) -> None:
        self._first_offset_at = first_offset_at
        self._seek = seek
        self._monotonic = monotonic
        self._retry_after = retry_after
        self._next: dict[TopicPartition, int] = {}
        # Per partition in a gap: (expected offset, first offset the broker has from it).
        self._gaps: dict[TopicPartition, tuple[int, int | None]] = {}
        # Per partition sought back: (expected offset sought back to, when).
        self._sought: dict[TopicPartition, tuple[int, float]] = {}

    def assigned(self, starts: Mapping[TopicPartition, int] | None) -> None:
        """A new assignment: each partition starts at its committed offset (if known)."""
        self._next = dict(starts or {})
        self._gaps.clear()
        self._sought.clear()

    def revoked(self, partitions: Iterable[int]) -> None:
        gone = set(partitions)
        for mapping in (self._next, self._gaps, self._sought):
            for tp in [tp for tp in mapping if tp[1] in gone]:
                del mapping[tp]

    async def retry(self) -> None:
        """Seek back again each partition whose seek has not brought its expected offset."""
        if not self._sought:
            return
        now = self._monotonic()
        for tp, (expected, at) in list(self._sought.items()):
            if self._next.get(tp) != expected:  # read on from it: the seek was not lost
                del self._sought[tp]
            elif now - at >= self._retry_after:
                log.warning(
                    "%s[%d]: offset %d not delivered %.0f s after seeking back; seeking again",
                    tp[0],
                    tp[1],
                    expected,
                    now - at,
                )
                await self._seek_back(tp, expected)

    async def take(self, topic: str, partition: int, offset: int) -> bool:
        """True: apply this message; False: leave it out (and do not acknowledge it)."""
        tp = (topic, partition)
        expected = self._next.get(tp)
        if expected is None or offset == expected:  # the common case
            self._next[tp] = offset + 1
            return True
        if offset < expected:
            return False
        return await self._gap(tp, expected, offset)

    async def _gap(self, tp: TopicPartition, expected: int, offset: int) -> bool:
        known = self._gaps.get(tp)
        if known is None or known[0] != expected:
            try:
                first = await self._first_offset_at(tp[0], tp[1], expected)
            except Exception as exc:  # the broker cannot say now: read again, ask again then
                log.warning("%s[%d]: could not read the first offset (%r)", tp[0], tp[1], exc)
                return await self._read_again(tp, expected, offset, expected)
            known = (expected, first)
            self._gaps[tp] = known
        first = known[1]
        if first is None or offset <= first:  # nothing is missing in between
            del self._gaps[tp]
            self._next[tp] = offset + 1
            return True
        return await self._read_again(tp, expected, offset, first)

    async def _read_again(self, tp: TopicPartition, expected: int, offset: int, first: int) -> bool:
        """Leave ``offset`` out; seek back to ``expected`` (once; :meth:`retry` again)."""
        sought = self._sought.get(tp)
        if sought is None or sought[0] != expected:
            log.warning(
                "%s[%d]: offset %d delivered before %d..%d; reading again from %d",
                tp[0],
                tp[1],
                offset,
                first,
                offset - 1,
                expected,
            )
            await self._seek_back(tp, expected)
        return False

    async def _seek_back(self, tp: TopicPartition, expected: int) -> None:
        self._sought[tp] = (expected, self._monotonic())
        await self._seek(tp[0], tp[1], expected)


def kafka_first_offset_at(client_kwargs: Mapping[str, object]) -> FirstOffsetAt:
    """:data:`FirstOffsetAt` from the broker: a short-lived consumer reads one record.

    Gaps are rare (around rebalances), so a client per question is cheap enough; the
    worker's own consumer cannot be used (it would move its position)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def first_offset_at(topic: str, partition: int, offset: int) -> int | None:
        probe = AIOKafkaConsumer(
            **client_kwargs,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",  # below the log's start: its first record
        )
        await probe.start()
        try:
            tp = TopicPartition(topic, partition)
            probe.assign([tp])
            probe.seek(tp, offset)
            fetched = await probe.getmany(tp, timeout_ms=5_000, max_records=1)
            records = fetched.get(tp, [])
            return records[0].offset if records else None
        finally:
            await probe.stop()

    return first_offset_at


class EndOffsets:
    """Where each input partition ends, asked from the broker at each batch.

    Asked right before the horizon is computed: a consumer's highwater is as old as its
    last fetch, which under load (or after a pause) is older than it looks
    (:mod:`stream.watermark`). Called as ``end_offsets(topic, partition)``.
    """

    def __init__(self, list_end_offsets: ListEndOffsets) -> None:
        self._list = list_end_offsets
        self._ends: dict[TopicPartition, int] = {}
        self._current = True  # False while the broker cannot say

    def __call__(self, topic: str, partition: int) -> int | None:
        if not self._current:
            # Not known now: as if something were still unread, so that deadlines wait for
            # the input read so far (an older answer is lower and would make a topic look
            # read to its end while the shop's producer may be sending what it buffered).
            return FOREVER
        return self._ends.get((topic, partition))

    async def refresh(self, tps: list[TopicPartition]) -> None:
        if not tps:
            return
        try:
            self._ends.update(await self._list(tps))
            self._current = True
        except Exception as exc:
            self._current = False
            log.warning("could not read end offsets (%s); deadlines wait", type(exc).__name__)
