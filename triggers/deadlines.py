"""Which users are due: a min-heap of ``(due epoch ms, user id)`` with lazy deletion.

One structure for ``nudge replay`` (one heap for all users) and the live service
(one heap per partition, rebuilt from the users table after every recovery). It
holds at most one live entry per user: setting a user's due time again pushes a
new entry and leaves the old one to be skipped when it surfaces. Taking the due
users costs O(due x log pending): it grows with the number of due users, never
with the number of users or pending deadlines. Keys are integers (epoch
milliseconds), not datetimes: cheaper to compare and to allocate.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from datetime import datetime

from triggers.timestamps import EPOCH


def due_millis(moment: datetime | None) -> int | None:
    """A due time as an index key: epoch milliseconds, rounded up (never fire early)."""
    if moment is None:
        return None
    span = moment - EPOCH  # days, seconds and microseconds, the last two never negative
    return span.days * 86_400_000 + span.seconds * 1000 - (-span.microseconds // 1000)


class Deadlines:
    __slots__ = ("_due", "_heap")

    def __init__(self, entries: Iterable[tuple[str, int | None]] = ()) -> None:
        self._due: dict[str, int] = {u: d for u, d in entries if d is not None}
        self._heap: list[tuple[int, str]] = [(d, u) for u, d in self._due.items()]
        heapq.heapify(self._heap)

    def __len__(self) -> int:
        return len(self._due)

    def __iter__(self) -> Iterator[tuple[str, int]]:
        return iter(self._due.items())

    def get(self, user_id: str) -> int | None:
        return self._due.get(user_id)

    def set(self, user_id: str, due_ms: int | None) -> None:
        """The user's next due time (None: nothing pending)."""
        if due_ms is None:
            self._due.pop(user_id, None)
            return
        if self._due.get(user_id) == due_ms:
            return
        self._due[user_id] = due_ms
        heapq.heappush(self._heap, (due_ms, user_id))
        if len(self._heap) > 2 * len(self._due) + 1024:
            self._heap = [(d, u) for u, d in self._due.items()]
            heapq.heapify(self._heap)

    def earliest(self) -> int | None:
        """The earliest due time, or None (drops stale entries on the way)."""
        heap, due = self._heap, self._due
        while heap:
            due_ms, user_id = heap[0]
            if due.get(user_id) == due_ms:
                return due_ms
            heapq.heappop(heap)
        return None

    def pop_due(self, until_ms: int, limit: int | None = None) -> list[tuple[str, int]]:
        """Remove and return the users due at or before ``until_ms``, in (due, user) order."""
        taken: list[tuple[str, int]] = []
        heap, due = self._heap, self._due
        pop = heapq.heappop
        while heap and heap[0][0] <= until_ms and (limit is None or len(taken) < limit):
            due_ms, user_id = pop(heap)
            if due.get(user_id) == due_ms:  # otherwise stale: the deadline moved
                del due[user_id]
                taken.append((user_id, due_ms))
        return taken
