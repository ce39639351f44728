"""Writing a Faust table's local store after its changelog has the rows.

Both tables (``users``, :mod:`stream.user_rows`; ``products``, :mod:`stream.product_table`)
are written only by the checkpoint, after the changelog records are acknowledged
(``docs/protocol.md``). The rows go into the store through the store's own recovery
path, ``apply_changelog_batch``: one write batch per partition, with the changelog
offsets the store persists (so a restart recovers from after them, not from the start).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import faust
from faust.types import TP


@dataclass(slots=True)
class _ChangelogMessage:
    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes | None

    @property
    def tp(self) -> TP:
        return TP(self.topic, self.partition)


@dataclass(slots=True)
class _ChangelogEvent:
    message: _ChangelogMessage

    @property
    def key(self) -> bytes:
        return self.message.key

    @property
    def value(self) -> bytes | None:
        return self.message.value


def write_after_changelog(
    table: faust.Table, rows: Sequence[tuple[int, bytes, bytes | None, int]]
) -> None:
    """Apply ``(partition, key, value, changelog offset)`` rows to the store (None deletes)."""
    changelog = table.changelog_topic.get_topic_name()
    events = [
        _ChangelogEvent(_ChangelogMessage(changelog, p, offset, key, value))
        for p, key, value, offset in rows
    ]
    table.data.apply_changelog_batch(events, _same, _same)


def _same(value: Any) -> Any:
    return value
