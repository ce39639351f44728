"""The ``users`` table's rows and its local store.

A user's row: when to look at the user next, their partition, their state.

Layout (bytes): a header ``>qHI`` — the wake time in epoch ms (-1 for none), the
partition, the length of the encoded state — then the engine's encoded state
(:func:`triggers.state.encode_state`). The wake time is the user's next due stage or,
if decisions are held (:mod:`triggers.held`), when the oldest was reached. It is in
the header so the deadline index is rebuilt after a recovery without decoding states.
Rows written before held decisions became core state had a JSON tail of held
decisions; it is ignored.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Sequence

import faust

from stream.table_store import write_after_changelog
from triggers.state import UserState, decode_state, encode_state

_HEADER = struct.Struct(">qHI")
_NONE = -1


def pack_row(state: UserState, wake_ms: int | None, partition: int) -> bytes:
    encoded = encode_state(state)
    return _HEADER.pack(_NONE if wake_ms is None else wake_ms, partition, len(encoded)) + encoded


def unpack_row(value: bytes) -> tuple[UserState, int | None, int]:
    """(state, wake ms, partition) of a row."""
    wake, partition, size = _HEADER.unpack_from(value)
    start = _HEADER.size
    state = decode_state(value[start : start + size])
    return state, None if wake == _NONE else wake, partition


def wake_times(rows: Iterable[tuple[bytes, bytes]]) -> Iterator[tuple[int, str, int | None]]:
    """(partition, user, wake ms) of table rows, for rebuilding the deadline index."""
    for key, value in rows:
        wake, partition, _ = _HEADER.unpack_from(value)
        yield partition, key.decode(), None if wake == _NONE else wake


class UsersStore:
    """The users table's local store: read by key, written only after the changelog."""

    def __init__(self, table: faust.Table) -> None:
        self._table = table

    def get(self, key: bytes) -> bytes | None:
        return self._table.data.get(key)  # type: ignore[no-any-return]

    def write(self, rows: Sequence[tuple[int, bytes, bytes | None, int]]) -> None:
        write_after_changelog(self._table, rows)
