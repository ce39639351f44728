"""Held decisions: stages reached while the outside facts could not be asked.

Sending needs facts only the shell can look up (the operator's suppression set,
other senders' contacts: Redis in the live service). When they cannot be asked,
stages still fire at the same point in the user's timeline as in replay — so a
later event cannot cancel a reminder that was due before it — but a decision that
would contact the user (``sent`` or ``holdout``) is *held* in ``UserState.held``
instead of being emitted. Decisions the engine suppressed on its own (stale,
cooldown, frequency cap, opted out in preferences) need no facts and go out at once.

A held decision still counts as a contact for the frequency cap and cooldown (as it
does in replay), but it is not *attributable*: a conversion is only ever credited
to a decision that was delivered (sent) or recorded as held out.

:func:`release` judges held decisions once the facts are known, with the same rules
as at send time everywhere else: stale if reached later than its send time +
``max_delay`` (the send time is when the stage was reached, so a stage deferred by
quiet hours is not stale because Redis was down at the end of the night); opted out
if the operator's suppression set or the user's own preferences now say so; else it
keeps its status and ``fired_at`` becomes the real send time. A decision on a channel
whose consent was withdrawn meanwhile (contract 8.3) is suppressed, ``no_channel``.
Idempotency (a decision already delivered before a crash is never delivered twice) is
the shell's, by its id.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from msgspec.structs import replace

from triggers.channel_rules import ChannelRules
from triggers.channels import NO_CHANNEL, consent_of, has_consent
from triggers.contact_policy import HOLDOUT, SENT, SUPPRESSED
from triggers.records import Decision
from triggers.state import Attributable, ContactLog, UserState


def hold(
    before: ContactLog, state: UserState, decisions: tuple[Decision, ...]
) -> tuple[UserState, tuple[Decision, ...]]:
    """Facts unknown: keep what would contact the user; return the state and what goes out."""
    held = tuple(d for d in decisions if d.status != SUPPRESSED)
    if not held:
        return state, decisions
    contacts = state.contacts
    attributable = contacts.attributable
    if attributable is not None and any(d.trigger_id == attributable.trigger_id for d in held):
        contacts = ContactLog(contacts.recent, contacts.last_by_trigger, before.attributable)
    out = tuple(d for d in decisions if d.status == SUPPRESSED)
    return replace(state, contacts=contacts, held=(*state.held, *held)), out


def release(
    state: UserState,
    now: datetime,
    suppressed: bool,
    max_delay: timedelta,
    channels: Mapping[str, ChannelRules] | None = None,
) -> tuple[UserState, tuple[Decision, ...]]:
    """Judge the held decisions now that the facts are known; return the state and records."""
    if not state.held:
        return state, ()
    opted_out = suppressed or (state.prefs is not None and state.prefs.opt_in is False)
    contacts = state.contacts
    attributable = contacts.attributable
    out: list[Decision] = []
    for decision in state.held:
        status, reason, channel = decision.status, decision.reason, decision.channel
        if now - decision.fired_at > max_delay:
            status, reason = SUPPRESSED, "stale"
        elif opted_out:
            status, reason = SUPPRESSED, "opted_out"
        elif channels and channel in channels and not _consents(state, channel, channels):
            status, reason = SUPPRESSED, NO_CHANNEL
        if status == SUPPRESSED:
            channel = None
        released = Decision(
            decision.trigger_id,
            decision.trigger,
            decision.stage,
            decision.user_id,
            decision.due_at,
            now,
            status,
            reason,
            decision.segment,
            decision.offer,
            decision.context,
            decision.rules_version,
            decision.variant,
            channel,
        )
        out.append(released)
        if status in (SENT, HOLDOUT):
            arm = "treatment" if status == SENT else "holdout"
            attributable = Attributable(
                decision.trigger_id, decision.trigger, arm, now, decision.variant, channel
            )
    if attributable is not contacts.attributable:
        contacts = ContactLog(contacts.recent, contacts.last_by_trigger, attributable)
    return replace(state, contacts=contacts, held=()), tuple(out)


def _consents(state: UserState, channel: str, channels: Mapping[str, ChannelRules]) -> bool:
    return has_consent(consent_of(state.consent, channel), channels[channel])


def earliest_held(state: UserState) -> datetime | None:
    """When the oldest held decision was reached (None if nothing is held)."""
    if not state.held:
        return None
    return min(d.fired_at for d in state.held)
