"""The base of every user event (contract section 1): the common fields and their
normalisation, shared by the shop events (:mod:`triggers.events`) and the engagement
and erasure events (:mod:`triggers.event_engagement`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

import msgspec
from msgspec.structs import force_setattr

from triggers.event_fields import Id, InvalidEvent, Timestamp
from triggers.timestamps import FAST_MS_LIMIT, TimestampError, event_time

_from_timestamp = datetime.fromtimestamp


def settle(event: UserEvent | Any) -> None:
    """The common normalisation: ``ts`` to aware UTC, a null ``test`` to false."""
    ts = event.ts
    if type(ts) is int and 0 <= ts < FAST_MS_LIMIT:  # the common case, inline
        force_setattr(event, "ts", _from_timestamp(ts / 1000, UTC))
    elif type(ts) is not datetime:
        try:
            force_setattr(event, "ts", event_time(ts))
        except TimestampError as exc:
            raise InvalidEvent(exc.reason, f"ts: {exc.detail}") from None
    if event.test is None:
        force_setattr(event, "test", False)


class UserEvent(msgspec.Struct, frozen=True, gc=False, tag_field="type"):
    """Fields every user event has (contract section 1); unknown extra fields are ignored.

    Each subclass also has ``test`` (true: a test order or staff purchase, ignored
    entirely; null: false) and ``channel`` (web, app, store, ...), declared last."""

    type: ClassVar[str]
    event_id: Id
    user_id: Id
    ts: Timestamp

    def __post_init__(self) -> None:
        settle(self)
