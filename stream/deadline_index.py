"""The in-memory index of pending deadlines, per partition, derived from the users table.

Every user's next deadline is part of their row in the ``users`` table (changelogged,
in RocksDB). This index is only a way to find the due ones fast: a min-heap of
``(due, user)`` per partition with lazy deletion. It is rebuilt from the table after
every recovery (start-up, rebalance), so it never needs a changelog of its own and
costs no extra writes per event. Taking the due users of a partition costs
O(due x log pending): it grows with the number of due users, never with the number
of users or pending deadlines.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

#: Users handed out per partition per tick; the rest wait for the next tick
#: (a quarter of a second later), so one huge second cannot stall the agent.
MAX_DUE_PER_TICK = 5_000


class PartitionDeadlines:
    def __init__(self) -> None:
        self._heap: list[tuple[int, str]] = []
        self._due: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._due)

    def set(self, user_id: str, due_ms: int | None) -> None:
        if due_ms is None:
            self._due.pop(user_id, None)
            return
        if self._due.get(user_id) == due_ms:
            return
        self._due[user_id] = due_ms
        heapq.heappush(self._heap, (due_ms, user_id))
        if len(self._heap) > 2 * len(self._due) + 1024:
            self._compact()

    def take_due(self, now_ms: int, limit: int = MAX_DUE_PER_TICK) -> list[tuple[str, int]]:
        """Remove and return up to ``limit`` users whose deadline is at or before ``now``."""
        taken: list[tuple[str, int]] = []
        heap, due = self._heap, self._due
        while heap and heap[0][0] <= now_ms and len(taken) < limit:
            due_ms, user_id = heapq.heappop(heap)
            if due.get(user_id) == due_ms:  # otherwise a stale entry: the deadline moved
                del due[user_id]
                taken.append((user_id, due_ms))
        return taken

    def _compact(self) -> None:
        self._heap = [(d, u) for u, d in self._due.items()]
        heapq.heapify(self._heap)


class DeadlineIndex:
    def __init__(self) -> None:
        self._partitions: dict[int, PartitionDeadlines] = {}

    def partition(self, partition: int) -> PartitionDeadlines:
        found = self._partitions.get(partition)
        if found is None:
            found = self._partitions[partition] = PartitionDeadlines()
        return found

    def set(self, partition: int, user_id: str, due_ms: int | None) -> None:
        self.partition(partition).set(user_id, due_ms)

    def rebuild(self, entries: Iterable[tuple[int, str, int | None]]) -> int:
        """Start over from ``(partition, user, due)`` rows; return the number of deadlines."""
        self._partitions = {}
        for partition, user_id, due_ms in entries:
            if due_ms is not None:
                self.partition(partition).set(user_id, due_ms)
        return sum(len(p) for p in self._partitions.values())
