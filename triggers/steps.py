"""What one engine call returns (:class:`Step`), its outcomes, and the outside facts the
shell passes in (:class:`OutsideFacts`). Re-exported by :mod:`triggers.engine`."""

from __future__ import annotations

from datetime import datetime

import msgspec

from triggers.frozen import frozen_record
from triggers.records import Conversion, Decision, Engagement, Erasure
from triggers.state import UserState

PROCESSED = "processed"
DUPLICATE = "duplicate"
TEST = "test"
FIRED = "fired"
#: An event of an erased user not later than the erasure, inside the erasure memory:
#: ignored (contract 8.5); the state is returned unchanged.
BEFORE_ERASURE = "before_erasure"
#: ``user_erased`` applied: the state is the erasure memory alone (``erased_at``).
ERASED = "erased"
#: The user is to be deleted without a record (retention, or the end of the erasure
#: memory of a user with nothing else kept): see ``Driver.expires_at``.
EXPIRED = "expired"

Record = Decision | Conversion | Engagement | Erasure


@frozen_record
class OutsideFacts:
    """What the shell looked up outside the core just before calling ``on_time``."""

    suppressed: bool = False  # the user is in the operator's suppression set
    contacts: tuple[datetime, ...] = ()  # contacts by other senders (frequency cap only)


NO_FACTS = OutsideFacts()


class Step(msgspec.Struct, frozen=True, gc=False):
    state: UserState
    records: tuple[Record, ...]  # in emission order
    next_due: datetime | None  # when on_time must next be called for this user
    outcome: str  # processed | duplicate | test | before_erasure | erased | fired
