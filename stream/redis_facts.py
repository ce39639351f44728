"""What the shell asks Redis, and what it does while Redis cannot answer.

The contact ledger (:mod:`stream.contact_ledger`) knows two facts the core needs before it
contacts a user: whether the operator suppressed them, and when other senders last
contacted them. The shell asks for the facts of every user about to fire in one round
trip per batch, and after delivery writes back the contacts and the sent marks.

When Redis fails, the batch goes on without the facts (``None``): the core holds what
would contact a user (:mod:`triggers.held`) and releases it once Redis answers again. The
next attempt waits an exponential backoff, so a Redis outage costs the batches one failed
round trip per backoff period, not one per batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from stream.contact_ledger import RedisUnavailable
from stream.metrics import NudgeMetrics
from triggers.engine import OutsideFacts

log = logging.getLogger("nudge.batches")


class Ledger(Protocol):
    async def lookup(
        self, user_ids: Iterable[str], now: datetime
    ) -> dict[str, tuple[bool, tuple[datetime, ...]]]: ...
    async def already_sent(self, trigger_ids: Iterable[str]) -> set[str]: ...
    async def record(
        self, contacts: Iterable[tuple[str, str, datetime]], sent: Iterable[str]
    ) -> None: ...
    async def erase(self, user_ids: Iterable[str]) -> None: ...


@dataclass
class RedisBackoff:
    """Exponential backoff between attempts to use Redis after a failure."""

    initial: float = 0.5
    ceiling: float = 30.0
    _delay: float = 0.0
    _retry_at: float = 0.0

    def ready(self, monotonic_now: float) -> bool:
        return monotonic_now >= self._retry_at

    def failed(self, monotonic_now: float) -> None:
        self._delay = min(self.ceiling, max(self.initial, self._delay * 2))
        self._retry_at = monotonic_now + self._delay

    def succeeded(self) -> None:
        self._delay = 0.0
        self._retry_at = 0.0


class RedisFacts:
    """The ledger behind a backoff: every call either answers or reports Redis down."""

    def __init__(
        self, ledger: Ledger, metrics: NudgeMetrics, monotonic: Callable[[], float]
    ) -> None:
        self._ledger = ledger
        self._metrics = metrics
        self._monotonic = monotonic
        self.backoff = RedisBackoff()
        #: Erased users whose Redis keys could not be deleted yet: retried at each
        #: checkpoint (a crash loses the list; the keys' TTLs bound what is left).
        self.erasing: list[str] = []

    def ready(self) -> bool:
        """False while the backoff after a failure runs: do not ask now."""
        return self.backoff.ready(self._monotonic())

    async def lookup(self, users: list[str], now: datetime) -> dict[str, OutsideFacts] | None:
        """The users' facts, or None if Redis cannot say (now, or during the backoff)."""
        if not self.ready():
            return None
        try:
            found = await self._ledger.lookup(users, now)
        except RedisUnavailable as exc:
            self._failed(exc)
            return None
        self.backoff.succeeded()
        self._metrics.redis_up.set(1)
        return {user: OutsideFacts(s, others) for user, (s, others) in found.items()}

    async def already_sent(self, trigger_ids: list[str]) -> set[str]:
        """Which of these decisions the ledger marks as delivered (none if it cannot say)."""
        if not trigger_ids or not self.ready():
            return set()
        try:
            return await self._ledger.already_sent(trigger_ids)
        except RedisUnavailable as exc:
            self._failed(exc)
            return set()

    async def record(self, contacts: list[tuple[str, str, datetime]], sent: list[str]) -> None:
        """Contacts and sent marks, after delivery; lost (not retried) if Redis fails."""
        if not contacts:
            return
        try:
            await self._ledger.record(contacts, sent)
        except RedisUnavailable as exc:
            self._failed(exc)

    async def erase(self, users: list[str]) -> None:
        """Delete erased users' keys, with any whose deletion failed before."""
        self.erasing += users
        if not self.erasing or not self.ready():
            return
        try:
            await self._ledger.erase(self.erasing)
        except RedisUnavailable as exc:
            self._failed(exc)
            return
        self.erasing = []

    def _failed(self, exc: RedisUnavailable) -> None:
        self.backoff.failed(self._monotonic())
        self._metrics.redis_errors.labels(exc.operation).inc()
        self._metrics.redis_up.set(0)
        log.warning("redis unavailable (%s); decisions are held", exc.operation)
