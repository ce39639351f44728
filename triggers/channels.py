"""Channels at send time (contract 8.2, 8.7): consent per channel, the channel step 5a,
per-channel contacts.

Consent on a channel (:func:`has_consent`): a feedback event that withdrew it (a hard
bounce, an unsubscribe, a complaint, :mod:`triggers.event_engagement`) holds from its
``ts`` until a ``preferences_updated`` later than it says ``channels: {NAME: true}``;
otherwise the latest answer by event time decides; without one the channel's
``consent`` does (``opt_out``: yes, ``opt_in``: no). ``marketing_opt_in`` is step 3's,
not this one's: it stops every channel and is no yes for an ``opt_in`` channel.

Step 5a (:func:`choose_channel`): the trigger's channels in preference order; a channel
without consent or at its own frequency cap is skipped; the first one left is the
decision's channel. None left: ``no_channel`` when none had consent, else
``frequency_cap``. Its quiet hours are the firing's business (:mod:`triggers.firing`).

A channel's contacts are kept (:func:`record_channel_contact`) only when the channel
has a cap of its own, inside that cap's window: all the cap needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from triggers.channel_rules import OPT_OUT, ChannelRules
from triggers.event_engagement import EngagementEvent, withdraws_consent
from triggers.events import PreferencesUpdated
from triggers.state import MAX_CONSENT, ChannelContacts, Consent, Preferences

NO_CHANNEL = "no_channel"
FREQUENCY_CAP = "frequency_cap"

ConsentLog = tuple[Consent, ...]
ChannelLog = tuple[ChannelContacts, ...]


def consent_of(consent: ConsentLog, channel: str) -> Consent | None:
    for entry in consent:
        if entry.channel == channel:
            return entry
    return None


def has_consent(entry: Consent | None, rules: ChannelRules) -> bool:
    """May the user be contacted on the channel (``entry``: what they and feedback said)?"""
    if entry is not None:
        withdrawn = entry.withdrawn_at
        answer = entry.answer
        if withdrawn is not None and not (
            answer is True and entry.answer_at is not None and entry.answer_at > withdrawn
        ):
            return False
        if answer is not None:
            return answer
    return rules.consent == OPT_OUT


def _with(consent: ConsentLog, entry: Consent) -> ConsentLog:
    """The log with ``entry`` as its most recently changed one (bounded)."""
    kept = [other for other in consent if other.channel != entry.channel]
    return (*kept[max(0, len(kept) + 1 - MAX_CONSENT) :], entry)


def after_answers(consent: ConsentLog, answers: Mapping[str, bool], ts: datetime) -> ConsentLog:
    """``preferences_updated.channels`` applied: each answer unless an answer later in
    event time is known for its channel (names the rules do not know are kept too)."""
    for channel, answer in answers.items():
        entry = consent_of(consent, channel) or Consent(channel)
        if entry.answer_at is None or ts >= entry.answer_at:
            consent = _with(consent, Consent(channel, answer, ts, entry.withdrawn_at))
    return consent


def after_feedback(consent: ConsentLog, event: EngagementEvent) -> ConsentLog:
    """A hard bounce, unsubscribe or complaint withdraws the channel's consent from its ts."""
    if not withdraws_consent(event):
        return consent
    channel, ts = event.channel, event.ts
    entry = consent_of(consent, channel) or Consent(channel)
    if entry.withdrawn_at is not None and entry.withdrawn_at >= ts:
        return consent
    return _with(consent, Consent(channel, entry.answer, entry.answer_at, ts))


def preferences_after(prefs: Preferences | None, event: PreferencesUpdated) -> Preferences:
    """``marketing_opt_in`` and ``timezone`` each keep the latest value by event time."""
    prefs = prefs or Preferences()
    opt_in, opt_in_at = prefs.opt_in, prefs.opt_in_at
    zone, zone_at = prefs.timezone, prefs.timezone_at
    if event.marketing_opt_in is not None and (opt_in_at is None or event.ts >= opt_in_at):
        opt_in, opt_in_at = event.marketing_opt_in, event.ts
    if event.timezone is not None and (zone_at is None or event.ts >= zone_at):
        zone, zone_at = event.timezone, event.ts
    return Preferences(opt_in, opt_in_at, zone, zone_at)


def contacts_on(log: ChannelLog, channel: str, now: datetime, rules: ChannelRules) -> int:
    """The channel's contacts in its own window ``(now - per, now]`` (0 without a cap)."""
    cap = rules.frequency_cap
    if cap is None:
        return 0
    start = now - cap.per
    for entry in log:
        if entry.channel == channel:
            return sum(1 for moment in entry.times if start < moment <= now)
    return 0


def choose_channel(
    names: tuple[str, ...],
    channels: Mapping[str, ChannelRules],
    consent: ConsentLog,
    log: ChannelLog,
    now: datetime,
) -> tuple[str | None, str | None]:
    """Step 5a: (the channel, None), or (None, the suppression reason); (None, None) when
    the trigger has no channels (rules without ``channels``: the step is skipped)."""
    consented = False
    for name in names:
        rules = channels[name]
        if not has_consent(consent_of(consent, name), rules):
            continue
        consented = True
        cap = rules.frequency_cap
        if cap is not None and contacts_on(log, name, now, rules) >= cap.max:
            continue
        return name, None
    if not names:
        return None, None
    return None, FREQUENCY_CAP if consented else NO_CHANNEL


def record_channel_contact(
    log: ChannelLog, channel: str, now: datetime, rules: ChannelRules
) -> ChannelLog:
    """The log after a sent/holdout decision on ``channel`` at ``now``."""
    cap = rules.frequency_cap
    if cap is None:
        return log
    start = now - cap.per
    times: tuple[datetime, ...] = ()
    kept = []
    for entry in log:
        if entry.channel == channel:
            times = tuple(moment for moment in entry.times if moment > start)
        else:
            kept.append(entry)
    return (*kept, ChannelContacts(channel, (*times, now)))
