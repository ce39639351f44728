"""A time-bucketed index of pending deadlines, one per partition, kept in a Faust table.

Layout (all keys and values bytes, so the table's changelog is compact):
- ``b"{p}:{second}"`` -> JSON list of user ids whose next deadline falls in that
  second (epoch seconds, floor);
- ``b"{p}:cursor"`` -> the last second whose bucket is fully processed;
- ``b"{p}:count"`` -> how many users of partition ``p`` have a pending deadline.

Every write happens while the worker processes a message of partition ``p``
(an input event or a tick), so it lands in changelog partition ``p`` and in the
RocksDB of that partition: a restarted or rebalanced worker recovers the index
with the partition. Firing costs one bucket read per elapsed second plus one
state read per due user — it grows with the number of due users, never with
the number of users or pending deadlines.
"""

from __future__ import annotations

import math
from collections.abc import MutableMapping

import orjson

#: Upper bound on empty seconds scanned per tick after a long pause; the rest
#: is scanned on the following ticks.
MAX_BUCKETS_PER_TICK = 20_000


def _second(epoch_ms: int) -> int:
    return math.floor(epoch_ms / 1000)


class DeadlineIndex:
    def __init__(self, table: MutableMapping[bytes, bytes], partition: int) -> None:
        self._table = table
        self._p = partition

    def _key(self, name: str | int) -> bytes:
        return f"{self._p}:{name}".encode()

    def _int(self, name: str) -> int | None:
        raw = self._table.get(self._key(name))
        return None if raw is None else int(raw)

    def cursor(self, now_ms: int) -> int:
        """The last fully processed second; initialised to just before now."""
        cursor = self._int("cursor")
        if cursor is None:
            cursor = _second(now_ms) - 1
            self._table[self._key("cursor")] = str(cursor).encode()
        return cursor

    def count(self) -> int:
        return self._int("count") or 0

    def _add_count(self, delta: int) -> None:
        self._table[self._key("count")] = str(max(0, self.count() + delta)).encode()

    def _bucket_for(self, due_ms: int, now_ms: int) -> int:
        # A deadline already behind the cursor goes to the next bucket to be scanned.
        return max(_second(due_ms), self.cursor(now_ms) + 1)

    def bucket_users(self, second: int) -> list[str]:
        raw = self._table.get(self._key(second))
        return [] if raw is None else orjson.loads(raw)

    def _write_bucket(self, second: int, users: list[str]) -> None:
        key = self._key(second)
        if users:
            self._table[key] = orjson.dumps(users)
        elif key in self._table:
            del self._table[key]

    def move(
        self, user_id: str, old_due_ms: int | None, new_due_ms: int | None, now_ms: int
    ) -> None:
        """Re-index a user whose next deadline changed from ``old`` to ``new``."""
        old_b = None if old_due_ms is None else self._bucket_for(old_due_ms, now_ms)
        new_b = None if new_due_ms is None else self._bucket_for(new_due_ms, now_ms)
        if old_b == new_b:
            return
        delta = 0
        if old_b is not None:
            users = self.bucket_users(old_b)
            if user_id in users:
                users.remove(user_id)
                self._write_bucket(old_b, users)
                delta -= 1
        if new_b is not None:
            users = self.bucket_users(new_b)
            if user_id not in users:
                users.append(user_id)
                self._write_bucket(new_b, users)
                delta += 1
        if delta:
            self._add_count(delta)

    def discard(self, second: int, user_id: str) -> None:
        """Drop a user found in a bucket where their state says they do not belong."""
        users = self.bucket_users(second)
        if user_id in users:
            users.remove(user_id)
            self._write_bucket(second, users)
            self._add_count(-1)

    def due_buckets(self, now_ms: int) -> list[int]:
        """Seconds from the cursor up to now (inclusive), at most MAX_BUCKETS_PER_TICK."""
        start = self.cursor(now_ms) + 1
        end = min(_second(now_ms), start + MAX_BUCKETS_PER_TICK - 1)
        return list(range(start, end + 1))

    def advance_cursor(self, second: int) -> None:
        self._table[self._key("cursor")] = str(second).encode()
