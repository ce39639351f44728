"""What one batch writes: output records, dead letters and the dirty users' rows.

Collected while the batch is processed, written by the checkpoint in its order
(``stream.batches``). Every Kafka record carries ``content-type: application/json``;
decisions also ``nudge-trigger-id`` and ``nudge-rules-version`` (contract 7.4).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from stream.dead_letters import dead_letter_record
from stream.user_rows import pack_row
from triggers.engine import Record
from triggers.records import Conversion, Decision, Erasure, record_to_json
from triggers.state import UserState

JSON = ("content-type", b"application/json")
KafkaRecord = tuple[str, bytes | None, bytes, int | None, list[tuple[str, bytes]]]


class Outputs:
    def __init__(self, topics: Any, rules_version: str) -> None:
        self._topics = topics
        self._version = rules_version.encode()
        self._records: list[tuple[str, Record]] = []  # (user, record), in emission order
        self._dead: list[tuple[bytes | None, bytes]] = []
        #: Per (partition, user): the state to write and its wake, or None (a tombstone).
        self._dirty: dict[tuple[int, str], tuple[UserState, int | None] | None] = {}

    def records(self, user_id: str, records: tuple[Record, ...]) -> None:
        self._records += ((user_id, record) for record in records)

    def dead_letter(self, message: Any, reason: str, detail: str, now: datetime) -> None:
        value = dead_letter_record(
            reason=reason,
            detail=detail,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            raw=message.value,
            at=now,
        )
        self._dead.append((message.key, value))

    def dirty(self, partition: int, user_id: str, state: UserState, wake_ms: int | None) -> None:
        self._dirty[(partition, user_id)] = (state, wake_ms)

    def deleted(self, partition: int, user_id: str) -> None:
        """The user's row goes (retention, the end of an erasure memory)."""
        self._dirty[(partition, user_id)] = None

    def dirty_states(self) -> Iterator[tuple[int, str, UserState]]:
        for (partition, user_id), row in self._dirty.items():
            if row is not None:
                yield partition, user_id, row[0]

    def decisions(self) -> list[Decision]:
        return [r for _, r in self._records if type(r) is Decision]

    def conversions(self) -> list[Conversion]:
        return [r for _, r in self._records if type(r) is Conversion]

    def sent_ids(self) -> list[str]:
        return [r.trigger_id for r in self.decisions() if r.status == "sent"]

    def erased(self) -> list[str]:
        """The users erased in this batch (contract 8.5), in order."""
        return [user_id for user_id, r in self._records if type(r) is Erasure]

    def contacts(self) -> list[tuple[str, str, datetime]]:
        """``(user, trigger id, time)`` of every sent or held-out decision the ledger keeps:
        not those of a user erased later in the batch (the erasure deletes them)."""
        erased: set[str] = set()
        kept = []
        for user_id, r in reversed(self._records):
            if type(r) is Erasure:
                erased.add(user_id)
            elif type(r) is Decision and r.status in ("sent", "holdout") and user_id not in erased:
                kept.append((user_id, r.trigger_id, r.fired_at))
        kept.reverse()
        return kept

    def kafka_records(self, already_sent: set[str]) -> Iterator[KafkaRecord]:
        """Audit (every decision and conversion), triggers (sent decisions), dead letters.

        A decision already delivered before a crash (``already_sent``) is skipped whole."""
        topics = self._topics
        for user_id, record in self._records:
            key = user_id.encode()
            value = record_to_json(record)
            if type(record) is Decision:
                if record.trigger_id in already_sent:
                    continue
                headers = [
                    JSON,
                    ("nudge-trigger-id", record.trigger_id.encode()),
                    ("nudge-rules-version", self._version),
                ]
                yield topics.audit, key, value, None, headers
                if record.status == "sent":
                    yield topics.triggers, key, value, None, headers
            else:
                yield topics.audit, key, value, None, [JSON]
        for key, value in self._dead:
            yield topics.dlq, key, value, None, [JSON]

    def rows(self) -> list[tuple[int, bytes, bytes | None]]:
        """Changelog rows: a packed state, or None (a tombstone: compaction removes the key)."""
        return [
            (partition, user_id.encode(), None if row is None else pack_row(*row, partition))
            for (partition, user_id), row in self._dirty.items()
        ]
