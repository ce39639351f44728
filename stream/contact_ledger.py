"""Redis adapter: operator suppression set, shared contact ledger, send idempotency.

Keys (prefix configurable, default ``nudge:``):
- ``nudge:suppressed`` (set, name configurable): user ids the operator never wants contacted;
- ``{prefix}contacts:{user_id}`` (sorted set): contacts by any sender, member
  ``{sender}:{id}``, score = epoch seconds. Nudge writes ``nudge:{trigger_id}``;
  other senders write their own members and Nudge counts them toward the
  frequency cap;
- ``{prefix}sent:{trigger_id}`` (string with TTL): this decision reached
  ``marketing.triggers``; a replay after a crash does not send it again;
- ``{prefix}sent-by:{user_id}`` (set with the same TTL): the user's sent marks, so that an
  erasure (contract 8.5) finds them (a trigger id is a hash, not the user id).

An erasure deletes the user's sent marks, their set, and Nudge's own members of their
contacts; members other senders wrote are theirs to erase.

Every method raises :class:`RedisUnavailable` when Redis cannot be reached, so the
caller can hold due decisions back (never send unchecked) and retry later.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import redis.asyncio as aioredis
from redis.exceptions import RedisError

SENDER = "nudge"


class RedisUnavailable(Exception):
    """Redis could not be reached or answered with an error."""

    def __init__(self, operation: str, cause: BaseException) -> None:
        super().__init__(f"redis {operation} failed: {type(cause).__name__}")
        self.operation = operation


class ContactLedger:
    def __init__(
        self,
        client: aioredis.Redis,
        *,
        suppression_key: str = "nudge:suppressed",
        prefix: str = "nudge:",
        contact_retention: timedelta = timedelta(days=8),
        sent_ttl: timedelta = timedelta(days=35),
    ) -> None:
        self._redis = client
        self._suppression_key = suppression_key
        self._prefix = prefix
        self._retention = contact_retention
        self._sent_ttl = sent_ttl

    @classmethod
    def from_url(cls, url: str, *, password: str | None = None, **kwargs: object) -> ContactLedger:
        client = aioredis.Redis.from_url(
            url,
            password=password,
            socket_timeout=2.0,
            socket_connect_timeout=2.0,
            retry_on_timeout=False,
        )
        return cls(client, **kwargs)  # type: ignore[arg-type]

    async def close(self) -> None:
        await self._redis.aclose()

    def _contacts_key(self, user_id: str) -> str:
        return f"{self._prefix}contacts:{user_id}"

    def _sent_key(self, trigger_id: str) -> str:
        return f"{self._prefix}sent:{trigger_id}"

    def _sent_by_key(self, user_id: str) -> str:
        return f"{self._prefix}sent-by:{user_id}"

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError) as exc:
            raise RedisUnavailable("ping", exc) from exc

    async def lookup(
        self, user_ids: Iterable[str], now: datetime
    ) -> dict[str, tuple[bool, tuple[datetime, ...]]]:
        """For each user: suppressed?, and when other senders contacted them recently.

        One pipelined round trip for all users (a batch's due users)."""
        users = list(dict.fromkeys(user_ids))
        if not users:
            return {}
        since = (now - self._retention).timestamp()
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for user_id in users:
                    pipe.sismember(self._suppression_key, user_id)
                    pipe.zrangebyscore(self._contacts_key(user_id), since, "+inf", withscores=True)
                answers = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise RedisUnavailable("lookup", exc) from exc
        mine = f"{SENDER}:".encode()
        facts = {}
        for index, user_id in enumerate(users):
            suppressed, contacts = answers[2 * index], answers[2 * index + 1]
            others = tuple(
                sorted(
                    datetime.fromtimestamp(score, UTC)
                    for member, score in contacts
                    if not member.startswith(mine)
                )
            )
            facts[user_id] = (bool(suppressed), others)
        return facts

    async def already_sent(self, trigger_ids: Iterable[str]) -> set[str]:
        ids = list(trigger_ids)
        if not ids:
            return set()
        try:
            values = await self._redis.mget([self._sent_key(t) for t in ids])
        except (RedisError, OSError) as exc:
            raise RedisUnavailable("already_sent", exc) from exc
        return {t for t, v in zip(ids, values, strict=True) if v is not None}

    async def record(
        self, contacts: Iterable[tuple[str, str, datetime]], sent: Iterable[str]
    ) -> None:
        """Record this engine's contacts ``(user, trigger id, time)`` and the ids it sent,
        for a whole batch in one pipelined round trip."""
        by_user: dict[str, dict[str, float]] = {}
        sent = set(sent)
        sent_by: dict[str, list[str]] = {}
        for user_id, trigger_id, at in contacts:
            by_user.setdefault(user_id, {})[f"{SENDER}:{trigger_id}"] = at.timestamp()
            if trigger_id in sent:
                sent_by.setdefault(user_id, []).append(trigger_id)
        if not by_user and not sent:
            return
        retention = self._retention.total_seconds()
        ttl = int(self._sent_ttl.total_seconds())
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for user_id, members in by_user.items():
                    key = self._contacts_key(user_id)
                    pipe.zadd(key, members)
                    pipe.zremrangebyscore(key, "-inf", max(members.values()) - retention)
                    pipe.expire(key, int(retention))
                for trigger_id in sorted(sent):
                    pipe.set(self._sent_key(trigger_id), b"1", ex=ttl)
                for user_id, ids in sent_by.items():
                    pipe.sadd(self._sent_by_key(user_id), *ids)
                    pipe.expire(self._sent_by_key(user_id), ttl)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise RedisUnavailable("record", exc) from exc

    async def erase(self, user_ids: Iterable[str]) -> None:
        """Erased users (contract 8.5): their sent marks and Nudge's contacts, in two round
        trips (read what there is, delete it); idempotent."""
        users = list(dict.fromkeys(user_ids))
        if not users:
            return
        mine = f"{SENDER}:".encode()
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for user_id in users:
                    pipe.smembers(self._sent_by_key(user_id))
                    pipe.zrange(self._contacts_key(user_id), 0, -1)
                found = await pipe.execute()
            async with self._redis.pipeline(transaction=False) as pipe:
                for index, user_id in enumerate(users):
                    ids, members = found[2 * index], found[2 * index + 1]
                    keys = [self._sent_key(t.decode()) for t in sorted(ids)]
                    pipe.delete(self._sent_by_key(user_id), *keys)
                    ours = [m for m in members if m.startswith(mine)]
                    if ours:
                        pipe.zrem(self._contacts_key(user_id), *ours)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise RedisUnavailable("erase", exc) from exc
