"""Dead-letter records: an input message that could not be applied, with the reason."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

import orjson

#: A dead letter embeds the raw message whole up to this size, and its record must stay
#: well under the broker's 1 MB default; beyond, a prefix is kept (``size`` tells the
#: original length, ``raw_truncated`` that it was cut).
MAX_RAW_IN_DEAD_LETTER = 256 * 1024
MAX_DEAD_LETTER_BYTES = 512 * 1024


def dead_letter_record(
    *,
    reason: str,
    detail: str,
    topic: str,
    partition: int,
    offset: int,
    raw: bytes | None,
    at: datetime,
) -> bytes:
    raw = raw or b""  # a tombstone (no value) is dead-lettered as empty
    letter = _dead_letter(reason, detail, topic, partition, offset, raw, at, MAX_RAW_IN_DEAD_LETTER)
    if len(letter) > MAX_DEAD_LETTER_BYTES:  # control characters escape to 6 bytes each
        letter = _dead_letter(reason, detail, topic, partition, offset, raw, at, 64 * 1024)
    return letter


def _dead_letter(
    reason: str,
    detail: str,
    topic: str,
    partition: int,
    offset: int,
    raw: bytes,
    at: datetime,
    keep: int,
) -> bytes:
    record: dict[str, Any] = {
        "kind": "dead_letter",
        "reason": reason,
        "detail": detail,
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "received_at": at.isoformat().replace("+00:00", "Z"),
        "size": len(raw),
    }
    kept = raw[:keep]
    try:
        record["raw"] = kept.decode("utf-8")
    except UnicodeDecodeError as exc:
        if len(kept) < len(raw) and exc.start >= len(kept) - 3:  # cut inside a character
            kept = kept[: exc.start]
            record["raw"] = kept.decode("utf-8")
        else:
            record["raw_base64"] = base64.b64encode(kept).decode("ascii")
    if len(kept) < len(raw):
        record["raw_truncated"] = True
    return orjson.dumps(record)
