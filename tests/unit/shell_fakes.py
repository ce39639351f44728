"""Fakes for the ports of the live service's shell (:mod:`stream.batches`).

Every port of :class:`~stream.batches.Batches` has an in-memory stand-in that writes
what happens to one shared :class:`Journal`, in order:

- :class:`Clock`: the wall clock and the monotonic clock, moved only by the test;
- :class:`Broker`: records every send (topic, key, value, partition, headers) on
  per-partition topic logs and returns a delivery future, resolved at once (or left
  pending with ``auto=False``, or failed with :meth:`Broker.fail_next`);
- :class:`Store`: the users table's local store (a dict with each row's changelog offset);
- :class:`Ledger`: an in-memory Redis (suppression set, contacts, sent marks) that can
  be switched down to raise :class:`~stream.contact_ledger.RedisUnavailable`;
- :class:`FakeEvent`: a Faust event (``.message``) that records its acknowledgement.

The journal can *crash* the worker right after its n-th entry (:class:`Crash`): the
effect happened (the record is on the topic, the row in the store), then the process
died. ``tests.unit.shell_harness`` runs scripted partition timelines on these fakes.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson

from stream.batches import Topics
from stream.contact_ledger import RedisUnavailable

TOPICS = Topics(
    inputs=("shop.browse", "shop.cart", "shop.order", "shop.prefs", "marketing.engagement"),
    ticks="nudge.ticks",
    triggers="marketing.triggers",
    audit="marketing.triggers.audit",
    dlq="shop.events.dlq",
    changelog="nudge-users-changelog",
)
BROWSE, CART, ORDER, PREFS, ENGAGEMENT = TOPICS.inputs


class Crash(Exception):
    """The worker process dies (kill -9) right after the journal entry that raised it."""


@dataclass
class Journal:
    """Every effect of the shell, in order: ``(kind, detail...)`` tuples.

    Kinds: ``output`` (topic, key, trigger id or None), ``changelog`` (partition, key),
    ``ledger`` (contacts, sent ids), ``store`` (keys), ``ack`` (topic, partition, offset)."""

    entries: list[tuple[Any, ...]] = field(default_factory=list)
    crash_after: int | None = None  # crash right after this many entries (1-based)

    def log(self, *entry: Any) -> None:
        self.entries.append(entry)
        if self.crash_after is not None and len(self.entries) == self.crash_after:
            self.crash_after = None
            raise Crash(f"killed after {entry!r}")

    def kinds(self) -> list[str]:
        return [entry[0] for entry in self.entries]


class Clock:
    """Wall clock (aware UTC) and monotonic seconds; both move only with :meth:`advance`."""

    def __init__(self, start: datetime) -> None:
        self.now = start
        self.mono = 1000.0

    def wall(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self.mono += seconds

    def set(self, moment: datetime) -> None:
        assert moment >= self.now, "the fake clock never goes back"
        self.advance((moment - self.now).total_seconds())


@dataclass(frozen=True)
class Sent:
    """One record on a topic partition."""

    topic: str
    key: bytes | None
    value: bytes
    partition: int
    headers: tuple[tuple[str, bytes], ...]
    offset: int

    def json(self) -> dict[str, Any]:
        return orjson.loads(self.value)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Metadata:
    topic: str
    partition: int
    offset: int


class Broker:
    """The producer: records each send in order on its topic partition's log."""

    def __init__(self, journal: Journal, *, auto: bool = True) -> None:
        self.journal = journal
        self.auto = auto
        self.sends: list[Sent] = []  # every record, in send order
        self.pending: list[tuple[Sent, asyncio.Future[Metadata]]] = []  # auto=False
        self._offsets: Counter[tuple[str, int]] = Counter()
        self._failures: list[tuple[str | None, Exception]] = []  # (topic or any, error)

    def fail_next(self, error: Exception, topic: str | None = None) -> None:
        """The next delivery (of ``topic``, or of any record) fails with ``error``."""
        self._failures.append((topic, error))

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        partition: int | None,
        headers: list[tuple[str, bytes]] | None,
    ) -> Awaitable[Metadata]:
        future: asyncio.Future[Metadata] = asyncio.get_running_loop().create_future()
        for index, (only, error) in enumerate(self._failures):
            if only is None or only == topic:
                del self._failures[index]
                future.set_exception(error)  # never reached the broker
                return future
        p = 0 if partition is None else partition
        record = Sent(topic, key, value, p, tuple(headers or ()), self._offsets[(topic, p)])
        self._offsets[(topic, p)] += 1
        self.sends.append(record)
        meta = Metadata(topic, p, record.offset)
        if self.auto:
            future.set_result(meta)
        else:
            self.pending.append((record, future))
        if topic == TOPICS.changelog:
            self.journal.log("changelog", p, key)
        else:
            trigger_id = dict(headers or ()).get("nudge-trigger-id")
            self.journal.log("output", topic, key, trigger_id and trigger_id.decode())
        return future

    def resolve_all(self) -> None:
        for record, future in self.pending:
            future.set_result(Metadata(record.topic, record.partition, record.offset))
        self.pending.clear()

    def log(self, topic: str) -> list[Sent]:
        return [s for s in self.sends if s.topic == topic]


class Store:
    """The local store: key -> (value, changelog offset); written in batches."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.rows: dict[bytes, tuple[int, bytes, int]] = {}  # key -> (partition, value, offset)
        self.writes: list[list[bytes]] = []  # keys of each write, in order

    def get(self, key: bytes) -> bytes | None:
        row = self.rows.get(key)
        return None if row is None else row[1]

    def write(self, rows: Sequence[tuple[int, bytes, bytes | None, int]]) -> None:
        for partition, key, value, offset in rows:
            if value is None:
                self.rows.pop(key, None)
            else:
                self.rows[key] = (partition, value, offset)
        self.writes.append([key for _, key, _, _ in rows])
        self.journal.log("store", tuple(key for _, key, _, _ in rows))

    def items(self) -> list[tuple[bytes, bytes]]:
        return [(key, value) for key, (_, value, _) in self.rows.items()]

    @classmethod
    def from_changelog(cls, journal: Journal, records: Iterable[Sent]) -> Store:
        """What recovery builds: the last record of each key, in offset order."""
        store = cls(journal)
        for record in records:
            assert record.key is not None
            if record.value is None:  # a tombstone
                store.rows.pop(record.key, None)
            else:
                store.rows[record.key] = (record.partition, record.value, record.offset)
        return store


class Ledger:
    """An in-memory Redis: the operator's suppression set, contacts, sent marks."""

    def __init__(self, journal: Journal, *, retention: timedelta = timedelta(days=8)) -> None:
        self.journal = journal
        self.retention = retention
        self.down = False
        self.failing: set[str] = set()  # operations that fail even while Redis is up
        self.suppressed: set[str] = set()
        self.contacts: dict[str, dict[str, datetime]] = {}  # user -> member -> time
        self.sent: set[str] = set()
        self.sent_by: dict[str, set[str]] = {}  # user -> their sent marks
        self.calls: Counter[str] = Counter()
        self.looked_up: list[list[str]] = []  # the users of each lookup

    def _check(self, operation: str) -> None:
        self.calls[operation] += 1
        if self.down or operation in self.failing:
            raise RedisUnavailable(operation, ConnectionError("redis is down"))

    def other_contact(self, user_id: str, at: datetime, member: str = "email:x") -> None:
        self.contacts.setdefault(user_id, {})[member] = at

    async def lookup(
        self, user_ids: Iterable[str], now: datetime
    ) -> dict[str, tuple[bool, tuple[datetime, ...]]]:
        users = list(dict.fromkeys(user_ids))
        self._check("lookup")
        self.looked_up.append(users)
        since = now - self.retention
        return {
            user: (
                user in self.suppressed,
                tuple(
                    sorted(
                        at
                        for member, at in self.contacts.get(user, {}).items()
                        if not member.startswith("nudge:") and at >= since
                    )
                ),
            )
            for user in users
        }

    async def already_sent(self, trigger_ids: Iterable[str]) -> set[str]:
        ids = list(trigger_ids)
        self._check("already_sent")
        return {t for t in ids if t in self.sent}

    async def record(
        self, contacts: Iterable[tuple[str, str, datetime]], sent: Iterable[str]
    ) -> None:
        contacts, sent = list(contacts), list(sent)
        self._check("record")
        for user_id, trigger_id, at in contacts:
            self.contacts.setdefault(user_id, {})[f"nudge:{trigger_id}"] = at
            if trigger_id in sent:
                self.sent_by.setdefault(user_id, set()).add(trigger_id)
        self.sent.update(sent)
        self.journal.log("ledger", tuple(t for _, t, _ in contacts), tuple(sent))

    async def erase(self, user_ids: Iterable[str]) -> None:
        users = list(user_ids)
        self._check("erase")
        for user_id in users:
            self.sent -= self.sent_by.pop(user_id, set())
            members = self.contacts.get(user_id, {})
            for member in [m for m in members if m.startswith("nudge:")]:
                del members[member]
            if not members:
                self.contacts.pop(user_id, None)
        self.journal.log("erase", tuple(users))

    def keys_of(self, user_id: str) -> list[str]:
        """What the ledger keeps of a user (Nudge's contacts and sent marks)."""
        contacts = [m for m in self.contacts.get(user_id, {}) if m.startswith("nudge:")]
        return contacts + sorted(self.sent_by.get(user_id, set()) & self.sent)


@dataclass(frozen=True)
class FakeMessage:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass
class FakeEvent:
    """A Faust event: ``.message``; acknowledged through the shell's ``ack`` callback."""

    message: FakeMessage
    acked: bool = False
