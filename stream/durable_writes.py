"""Writes that must be durable before a message is acknowledged, in the right order.

- :class:`TableWriter` writes the users table so that a state change reaches the
  changelog only after the records it accounts for, in order per user.
- :class:`InOrderAcks` acknowledges each input message once its writes are durable, in
  offset order per partition.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust

log = logging.getLogger("nudge.app")


class TableWriter:
    """The users table, written so that its changelog follows the records it accounts for.

    The local store is updated at once (the next message reads it). The changelog record
    is sent only once the records the same message sent (``after``) are on the broker,
    and after the user's previous record; the returned future resolves when the changelog has it,
    so the agent acknowledges a message only once its state change is durable. (Faust's
    ``table[key] = value`` would send at once and drop the future.) The record goes
    through Faust's send buffer, which keeps the order of sends; sending it inline with
    ``Topic.send`` costs the agent enough to quintuple deadline lateness under load.
    """

    def __init__(self, table: faust.Table) -> None:
        self._table = table
        self._pending: dict[bytes, asyncio.Future[Any]] = {}  # per user: a send not issued yet

    def get(self, key: bytes) -> bytes | None:
        return self._table.get(key)  # type: ignore[no-any-return]

    async def put(self, key: bytes, value: bytes, partition: int, after: list[Any]) -> Any:
        self._table.data[key] = value
        previous = self._pending.get(key)
        if not after and previous is None:
            return await self._send(key, value, partition)
        # Waits for the records it accounts for, and for the user's previous write (the
        # changelog keeps the last record of a key: a later state must not overtake it).
        issued = asyncio.ensure_future(self._send_after(previous, after, key, value, partition))
        self._pending[key] = issued
        issued.add_done_callback(lambda done: self._forget(key, done))
        return asyncio.ensure_future(_delivered(issued))

    async def drain(self) -> None:
        """Wait until every pending changelog record is handed to the client (on shutdown)."""
        if self._pending:
            await asyncio.wait(list(self._pending.values()))

    def _forget(self, key: bytes, done: asyncio.Future[Any]) -> None:
        if self._pending.get(key) is done:
            del self._pending[key]

    async def _send_after(
        self,
        previous: asyncio.Future[Any] | None,
        after: list[Any],
        key: bytes,
        value: bytes,
        partition: int,
    ) -> Any:
        if previous is not None:
            await asyncio.wait([previous])  # issued in order, whatever became of it
        for delivery in after:
            await delivery  # raises if a record was lost: then the state is not written
        return await self._send(key, value, partition)

    async def _send(self, key: bytes, value: bytes, partition: int) -> Any:
        delivery = self._table.changelog_topic.send_soon(
            key=key, value=value, partition=partition, key_serializer="raw", value_serializer="raw"
        )
        delivery.add_done_callback(self._persisted)
        return delivery

    def _persisted(self, delivery: Any) -> None:
        # What Faust's own changelog callback does: the local store remembers the
        # changelog offset it holds, so a restart on this disk reads on from there.
        if not delivery.cancelled() and delivery.exception() is None:
            sent = delivery.result()
            self._table.data.set_persisted_offset(sent.topic_partition, sent.offset)


async def _delivered(issued: asyncio.Future[Any]) -> Any:
    return await (await issued)


class InOrderAcks:
    """Acknowledge each message once its writes are durable, in offset order per partition.

    Order matters: Faust commits up to the first run of consecutive acked offsets and
    does not notice a hole right after the committed offset, so an ack that overtook
    an earlier, still unacknowledged message would commit past it.
    """

    def __init__(self, stream: faust.StreamT) -> None:
        self._stream = stream
        self._last: dict[Any, asyncio.Future[None]] = {}

    async def ack(self, event: faust.EventT, deliveries: list[Any]) -> None:
        tp = event.message.tp
        previous = self._last.get(tp)
        if not deliveries and (previous is None or previous.done()):
            self._last.pop(tp, None)
            await self._stream.ack(event)
            return
        self._last[tp] = asyncio.ensure_future(self._ack_after(previous, event, deliveries))

    async def _ack_after(
        self, previous: asyncio.Future[None] | None, event: faust.EventT, deliveries: list[Any]
    ) -> None:
        message = event.message
        try:
            if previous is not None:
                await previous  # raises if an earlier message could not be acknowledged
            for delivery in deliveries:
                await delivery
        except Exception:
            log.exception(
                "a write caused by %s[%d]@%d (or before it) failed; "
                "it stays unacknowledged and will be processed again after a restart",
                message.topic,
                message.partition,
                message.offset,
            )
            raise
        await self._stream.ack(event)
