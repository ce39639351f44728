"""Episodes and their scheduled stages: ids, arming, re-arming, cancelling.

An episode is one arming of a trigger. Its *key* is the ``event_id`` of the
event that armed it (for replenishment, that event id plus the product id), so
the same events give the same ids in replay, in the live service and after a
restart: ``trigger_id`` = BLAKE2b-128 of (user_id, trigger, key, stage), 32 hex
characters. The key is kept as is in the pending stage and hashed only when
the stage fires.

A user has at most one pending stage per *slot*: (trigger, product id) for
replenishment, the trigger alone otherwise.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime, timedelta

from triggers.state import Pending

Target = tuple[datetime, datetime]  # (anchor, due) a recomputed trigger would arm with


def trigger_id(user_id: str, trigger: str, key: str, stage: int) -> str:
    data = f"{user_id}\x1f{trigger}\x1f{key}\x1f{stage}".encode()
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def open_episode(
    trigger: str, key: str, anchor: datetime, due: datetime, subject: str | None = None
) -> Pending:
    """Stage 1 of a new episode."""
    return Pending(trigger, 1, key, anchor, due, due, subject)


def next_stage(pending: Pending, stages: tuple[timedelta, ...]) -> Pending | None:
    """The stage after ``pending`` (same episode), or None after the last one."""
    if pending.stage >= len(stages):
        return None
    due = pending.anchor + stages[pending.stage]
    return Pending(
        pending.trigger,
        pending.stage + 1,
        pending.key,
        pending.anchor,
        due,
        due,
        pending.subject,
    )


def find_slot(
    pending: tuple[Pending, ...], trigger: str, subject: str | None = None
) -> Pending | None:
    for item in pending:
        if item.trigger == trigger and item.subject == subject:
            return item
    return None


def find_trigger(pending: tuple[Pending, ...], trigger: str) -> Pending | None:
    for item in pending:
        if item.trigger == trigger:
            return item
    return None


def without(pending: tuple[Pending, ...], item: Pending | None) -> tuple[Pending, ...]:
    if item is None:
        return pending
    return tuple(p for p in pending if p is not item)


def replace(pending: tuple[Pending, ...], old: Pending | None, new: Pending) -> tuple[Pending, ...]:
    if old is None:
        return (*pending, new)
    if len(pending) == 1 and pending[0] is old:  # the common case: the only pending stage
        return (new,)
    return tuple([new if p is old else p for p in pending])


def rearm(
    pending: tuple[Pending, ...],
    current: Pending | None,
    before: Target | None,
    after: Target | None,
    arm: Callable[[datetime, datetime], Pending],
    event_ts: datetime,
) -> tuple[Pending, ...]:
    """Re-arm a trigger recomputed from history (replenishment, lapsing).

    ``before``/``after`` are the (anchor, due) the history before/after the
    event (at ``event_ts``) would arm. A pending stage that still matches is
    kept; one that no longer matches is replaced by a new episode
    (``arm(anchor, due)``). With nothing pending, a new episode starts only if
    the anchor moved or the trigger just became armable: an unchanged anchor
    means this episode has already fired, and it must not fire twice. When a
    cancellation moves the anchor *back* to an older order whose due time has
    already passed, nothing is armed: that older episode had its turn.
    """
    if after is None:
        return without(pending, current)
    if current is not None and (current.anchor, current.due) == after:
        return pending
    if before is not None and after[0] < before[0] and after[1] <= event_ts:
        return without(pending, current)
    if current is not None:
        return replace(pending, current, arm(*after))
    if before is None or before[0] != after[0]:
        return (*pending, arm(*after))
    return pending
