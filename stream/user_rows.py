"""A user's row in the ``users`` table: engine state, next deadline, held decisions.

Layout (bytes): a header ``>qHI`` — next deadline in epoch ms (-1 for none), the
partition, the length of the encoded state — then the engine's encoded state, then
(optional) a JSON list of *held* decisions: decisions the engine made while Redis
could not be asked, kept until their checks can run (see ``stream.processor``).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from triggers.state import UserState, decode_state, encode_state

_HEADER = struct.Struct(">qHI")
_NO_DUE = -1

Held = dict[str, Any]  # a decision record (the audit JSON), waiting for Redis


def to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class UserRow:
    state: UserState
    due_ms: int | None
    partition: int
    held: tuple[Held, ...] = ()

    @property
    def wake_ms(self) -> int | None:
        """When the worker must next look at this user: the deadline, or at once if held."""
        if not self.held:
            return self.due_ms
        held_since = min(to_ms(datetime.fromisoformat(h["due_at"])) for h in self.held)
        return held_since if self.due_ms is None else min(self.due_ms, held_since)


def pack_row(row: UserRow) -> bytes:
    state = encode_state(row.state)
    due = _NO_DUE if row.due_ms is None else row.due_ms
    held = orjson.dumps(list(row.held)) if row.held else b""
    return _HEADER.pack(due, row.partition, len(state)) + state + held


def unpack_row(value: bytes) -> UserRow:
    due, partition, size = _HEADER.unpack_from(value)
    start = _HEADER.size
    state = decode_state(value[start : start + size])
    rest = value[start + size :]
    held = tuple(orjson.loads(rest)) if rest else ()
    return UserRow(state, None if due == _NO_DUE else due, partition, held)


def wake_times(rows: Iterable[tuple[bytes, bytes]]) -> Iterator[tuple[int, str, int | None]]:
    """(partition, user, wake) of table rows, for rebuilding the deadline index."""
    for key, value in rows:
        due, partition, size = _HEADER.unpack_from(value)
        if len(value) > _HEADER.size + size:  # held decisions: decode to find the wake time
            yield partition, key.decode(), unpack_row(value).wake_ms
        else:
            yield partition, key.decode(), None if due == _NO_DUE else due
