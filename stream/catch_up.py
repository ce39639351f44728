"""Fire no deadline ahead of input that is still unread.

After a restart, a rebalance or an outage, a worker owns partitions with a backlog.
If it fired deadlines by the wall clock straight away, a stage due at 10:00 could be
sent although the user's order at 09:59 is still waiting in the backlog. So while a
partition's input is behind, deadlines fire only up to the partition's *event-time
horizon*: the time of the last event processed on each input topic that is behind.
Once every input topic of the partition is read to its end, the horizon is the wall
clock again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

TP = tuple[str, int]
NEVER = -(2**62)  # a horizon before every deadline
#: How long after an assignment unknown read positions may hold deadlines back.
UNKNOWN_GRACE_MS = 10_000


class CatchUp:
    def __init__(self, input_topics: Sequence[str]) -> None:
        self._topics = tuple(input_topics)
        self._start: dict[TP, int] = {}  # where reading began after the last assignment
        self._next: dict[TP, int] = {}  # the offset after the last message processed
        self._ts: dict[TP, int] = {}  # event time (epoch ms) of the last valid event processed
        self._enabled = False  # until the first assignment is known
        self._assigned_at: int | None = None  # first horizon asked after the assignment

    def assigned(self, start_offsets: Mapping[TP, int] | None) -> None:
        """A new assignment: reading starts at these offsets (committed, else earliest).

        ``None`` means they could not be read: then deadlines follow the wall clock.
        """
        self._enabled = start_offsets is not None
        self._start = dict(start_offsets or {})
        self._next = {}
        self._ts = {}
        self._assigned_at = None

    def processed(self, topic: str, partition: int, offset: int, ts_ms: int | None) -> None:
        self._next[(topic, partition)] = offset + 1
        if ts_ms is not None:
            self._ts[(topic, partition)] = ts_ms

    def horizon(
        self, partition: int, now_ms: int, end_offset: Callable[[str, int], int | None]
    ) -> int:
        horizon = now_ms
        if not self._enabled:
            return horizon
        if self._assigned_at is None:
            self._assigned_at = now_ms
        # Hold deadlines only on positive evidence of unread input. What is unknown (no end
        # offset fetched yet, no read position) holds them for a short while after an
        # assignment at most: a partition must never stall for good.
        fresh = now_ms - self._assigned_at < UNKNOWN_GRACE_MS
        for topic in self._topics:
            tp = (topic, partition)
            end = end_offset(topic, partition)
            position = self._next.get(tp, self._start.get(tp))
            if end is None or position is None:
                if fresh:
                    horizon = min(horizon, self._ts.get(tp, NEVER))
            elif position < end:
                read = self._ts.get(tp)
                if read is not None:
                    horizon = min(horizon, read)
                elif fresh:
                    horizon = NEVER
        return horizon
