"""The contact policy at send time (contract section 3, rules 3 to 7) and the contact log.

``judge`` applies, in order: opted out -> cooldown (stage 1 of an episode
only) -> frequency cap -> no channel left (step 5a, contract 8.2, found by
:func:`triggers.channels.choose_channel`) -> holdout -> sent. Staleness and quiet hours (rules 1
and 2) are decided before, by the engine, because they move or drop a stage
rather than judge it.

Contacts are ``sent`` and ``holdout`` decisions. The frequency cap counts them
in the rolling window ``(now - per, now]``, together with contacts other
senders made (passed in by the caller).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime, timedelta

from triggers.rules import ContactPolicyRules
from triggers.state import Attributable, ContactLog

SENT = "sent"
HOLDOUT = "holdout"
SUPPRESSED = "suppressed"
_ZERO = timedelta(0)


def in_holdout(user_id: str, trigger: str, salt: str, percent: float) -> bool:
    """Deterministic: BLAKE2b of (user, trigger, salt) mapped to [0, 100) below ``percent``.

    The A/B variant hashes a different input (:func:`triggers.variants.variant_of`)."""
    if percent <= 0:
        return False
    digest = hashlib.blake2b(f"{user_id}\x1f{trigger}\x1f{salt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 10_000 / 100 < percent


def last_contact(log: ContactLog, trigger: str) -> datetime | None:
    for name, moment in log.last_by_trigger:
        if name == trigger:
            return moment
    return None


def contacts_in_window(
    log: ContactLog, outside: Iterable[datetime], now: datetime, per: timedelta
) -> int:
    start = now - per
    count = sum(1 for moment in log.recent if start < moment <= now)
    return count + sum(1 for moment in outside if start < moment <= now)


def judge(
    user_id: str,
    trigger: str,
    stage: int,
    now: datetime,
    opted_out: bool,
    cooldown: timedelta,
    log: ContactLog,
    outside: Iterable[datetime],
    policy: ContactPolicyRules,
    channel_refusal: str | None = None,
) -> tuple[str, str | None]:
    """(status, reason) for a stage reached at ``now``, outside quiet hours and not stale.

    ``channel_refusal``: why step 5a found no channel (``no_channel``, ``frequency_cap``)."""
    if opted_out:
        return SUPPRESSED, "opted_out"
    if stage == 1 and cooldown > timedelta(0):
        last = last_contact(log, trigger)
        if last is not None and now - last < cooldown:
            return SUPPRESSED, "cooldown"
    cap = policy.frequency_cap
    if (log.recent or outside) and contacts_in_window(log, outside, now, cap.per) >= cap.max:
        return SUPPRESSED, "frequency_cap"
    if channel_refusal is not None:
        return SUPPRESSED, channel_refusal
    if in_holdout(user_id, trigger, policy.holdout_salt, policy.holdout_percent):
        return HOLDOUT, None
    return SENT, None


def record_contact(
    log: ContactLog,
    trigger: str,
    trigger_id: str,
    status: str,
    now: datetime,
    per: timedelta,
    variant: str | None = None,
    channel: str | None = None,
) -> ContactLog:
    """The log after a sent/holdout decision at ``now``: counted, last per trigger, attributable."""
    start = now - per
    recent = (*[moment for moment in log.recent if moment > start], now)
    by_trigger = (*[(n, m) for n, m in log.last_by_trigger if n != trigger], (trigger, now))
    arm = "treatment" if status == SENT else "holdout"
    return ContactLog(
        recent, by_trigger, Attributable(trigger_id, trigger, arm, now, variant, channel)
    )


def pruned(
    log: ContactLog, now: datetime, per: timedelta, cooldowns: dict[str, timedelta]
) -> ContactLog:
    """Forget what can no longer matter at ``now`` or later (keeps the state small)."""
    start = now - per
    recent = log.recent
    if recent and min(recent) <= start:
        recent = tuple(moment for moment in recent if moment > start)
    by_trigger = log.last_by_trigger
    for name, moment in by_trigger:
        if now - moment >= cooldowns.get(name, _ZERO):
            by_trigger = tuple(
                (name, moment)
                for name, moment in by_trigger
                if now - moment < cooldowns.get(name, _ZERO)
            )
            break
    if recent is log.recent and by_trigger is log.last_by_trigger:
        return log
    return ContactLog(recent, by_trigger, log.attributable)
