"""Firing: what happens when a user's pending stages come due (``Engine.on_time``).

A stage's *send time* is its due time, or, when the due time falls in quiet
hours (in the user's time zone), the end of those quiet hours: a stage due in
a quiet night is deferred, never dropped, whether it is reached at its due
time or only later (a stage armed by the decision on an earlier stage made in
the morning, a worker back from an outage).

Every stage whose send time is <= now is reached, in send-time order, equal
times by priority (highest first, then trigger name, product, stage). For each:

1. reached later than its send time + ``max_delay``: ``suppressed``/``stale``;
2. reached inside quiet hours: deferred to the end of the window (no record;
   the end becomes its send time);
3. otherwise the contact policy (:func:`triggers.contact_policy.judge`) decides, with
   the channel step 5a (:func:`triggers.channels.choose_channel`) between its steps 5
   and 6; a chosen channel inside its own quiet hours defers the stage to their end
   (and past the global quiet hours then), where steps 3-6 are judged again.

A decision that is not ``holdout`` carries the user's A/B variant of its trigger
(:mod:`triggers.variants`; suppressed ones too, so that a report can see what each
variant lost to the policy), and the offer of that variant if the rules name one.

A decision (any status) schedules the episode's next stage. ``sent`` and
``holdout`` are recorded as contacts (frequency cap, cooldown, attribution).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from triggers import dormancy
from triggers.channel_rules import ChannelRules, trigger_channels
from triggers.channels import choose_channel, record_channel_contact
from triggers.contact_policy import HOLDOUT, SUPPRESSED, judge, record_contact
from triggers.custom import context as custom_context
from triggers.episodes import next_stage, trigger_id
from triggers.frozen import frozen_record
from triggers.quiet_hours import quiet_until
from triggers.records import Decision
from triggers.registry import KINDS, ContextOf, Follow
from triggers.rules import Rules
from triggers.segments import segment_of
from triggers.state import Pending, UserState
from triggers.variants import offer_for, variant_of, weighted


@frozen_record
class FiringRules:
    """What firing needs from the rules, looked up once."""

    rules: Rules
    rules_version: str
    stages: dict[str, tuple[timedelta, ...]]  # () for one-stage triggers with a computed due
    priority: dict[str, int]
    cooldown: dict[str, timedelta]
    enabled: dict[str, bool]
    offers: dict[str, dict[str, str]]
    default_zone: ZoneInfo
    variants: dict[str, tuple[tuple[str, int], ...]]  # (name, weight) in name order
    sections: dict[str, object]  # the trigger's rules section
    contexts: dict[str, ContextOf]
    follows: dict[str, Follow]  # triggers whose next stage is not the next of `stages`
    channels: dict[str, tuple[str, ...]]  # per trigger, in preference order (contract 8.2)
    channel_rules: dict[str, ChannelRules]


def firing_rules(rules: Rules) -> FiringRules:
    """Per trigger name, from the registry (triggers.registry) and the rules (custom ones)."""
    sections = {name: rules.trigger(name) for name in rules.trigger_names()}
    custom = rules.triggers.custom  # type: ignore[attr-defined]
    return FiringRules(
        rules,
        rules.version_label,
        {
            **{kind.name: kind.stages(sections[kind.name]) for kind in KINDS},
            **{name: section.stages for name, section in custom.items()},
        },
        {name: section.priority for name, section in sections.items()},
        {name: section.cooldown for name, section in sections.items()},
        {name: section.enabled for name, section in sections.items()},
        {name: rules.offers_of(name) for name in sections},
        ZoneInfo(rules.default_timezone),
        {name: weighted(section.variants) for name, section in sections.items()},
        sections,  # type: ignore[arg-type]
        {
            **{kind.name: kind.context for kind in KINDS},
            **dict.fromkeys(custom, custom_context),
        },
        {kind.name: kind.follow for kind in KINDS if kind.follow is not None},
        {name: trigger_channels(rules.channels, section) for name, section in sections.items()},
        dict(rules.channels),
    )


_DORMANCY = dormancy.NAME


def next_due(fr: FiringRules, state: UserState) -> datetime | None:
    """The earliest send time pending for the user, or None."""
    earliest = None
    for item in state.pending:
        if earliest is None or item.send_at < earliest:
            earliest = item.send_at
    stage = state.dormancy_stage
    if not stage:
        return earliest
    stages = fr.stages[_DORMANCY]
    if stage <= len(stages) and state.last_activity is not None:
        at = state.dormancy_send_at or state.last_activity + stages[stage - 1]
        if earliest is None or at < earliest:
            earliest = at
    return earliest


def fire_due(
    fr: FiringRules,
    state: UserState,
    now: datetime,
    suppressed: bool,
    outside_contacts: Iterable[datetime],
    until: datetime | None = None,
) -> tuple[UserState, tuple[Decision, ...]]:
    """Reach every stage due by ``until`` (default ``now``), at ``now``; new state, decisions."""
    until = now if until is None else min(until, now)
    remaining: list[Pending] = []
    reached: list[Pending] = []
    for item in state.pending:
        (reached if item.send_at <= until else remaining).append(item)
    due_now: list[Pending] = []
    dormant = _dormancy_pending(fr, state, until)
    dormancy_reached = dormant is not None
    if dormant is not None:
        reached.append(dormant)
    for item in reached:
        item = _at_send_time(fr, state, item)
        (due_now if item.send_at <= until else remaining).append(item)
    policy = fr.rules.contact_policy
    contacts = state.contacts
    channel_log = state.channel_contacts
    records: list[Decision] = []
    while due_now:
        if len(due_now) == 1:
            item = due_now[0]
        else:
            item = min(due_now, key=lambda pending: _firing_order(fr, pending))
        due_now = [other for other in due_now if other is not item]
        if not fr.enabled[item.trigger]:  # disabled since it was armed: dropped
            continue
        channel = None
        if now - item.send_at > policy.max_delay:
            status, reason = SUPPRESSED, "stale"
        else:
            # a send time is never quiet: only a stage reached after it can be
            quiet_end = None if now == item.send_at else _quiet_end(fr, state, now)
            if quiet_end is not None:  # reached late, in the next quiet hours: deferred
                remaining.append(_sent_at(item, quiet_end))
                continue
            prefs = state.prefs
            channel, refusal = choose_channel(
                fr.channels[item.trigger], fr.channel_rules, state.consent, channel_log, now
            )
            status, reason = judge(
                state.user_id,
                item.trigger,
                item.stage,
                now,
                suppressed or (prefs is not None and prefs.opt_in is False),
                fr.cooldown[item.trigger],
                contacts,
                outside_contacts,
                policy,
                refusal,
            )
            if status == SUPPRESSED:
                channel = None
            elif channel is not None:
                channel_quiet = _channel_quiet_end(fr, state, channel, now)
                if channel_quiet is not None:  # judged again at the end of its quiet hours
                    remaining.append(_at_send_time(fr, state, _sent_at(item, channel_quiet)))
                    continue
        decision_id = trigger_id(state.user_id, item.trigger, item.key, item.stage)
        decision = _decision(fr, state, item, decision_id, now, status, reason, channel)
        records.append(decision)
        if status != SUPPRESSED:
            contacts = record_contact(
                contacts,
                item.trigger,
                decision_id,
                status,
                now,
                policy.frequency_cap.per,
                decision.variant,
                channel,
            )
            if channel is not None:
                rules = fr.channel_rules[channel]
                channel_log = record_channel_contact(channel_log, channel, now, rules)
        follow = fr.follows.get(item.trigger)
        if follow is None:
            following = next_stage(item, fr.stages[item.trigger])
        else:
            following = follow(state, item, fr.sections[item.trigger], fr.rules.default_timezone)
        if following is not None:
            if following.send_at < item.send_at:  # due while this one waited for a quiet end
                following = _sent_at(following, item.send_at)
            if following.send_at <= until:  # already due: deferred if due in quiet hours
                following = _at_send_time(fr, state, following)
            (due_now if following.send_at <= until else remaining).append(following)

    key, stage, send_at = state.dormancy_key, state.dormancy_stage, state.dormancy_send_at
    if dormancy_reached:
        key, stage, send_at = None, 0, None
        for item in remaining:
            if item.trigger == dormancy.NAME:
                key = item.key
                stage = item.stage
                send_at = item.send_at if item.send_at != item.due else None
                remaining.remove(item)
                break
    new_state = UserState(
        state.user_id,
        state.seen,
        state.last_activity,
        state.prefs,
        state.cart,
        state.history,
        state.viewed,
        tuple(remaining),
        contacts,
        key,
        stage,
        send_at,
        (),
        state.consent,
        channel_log,
        state.erased_at,
        state.touched_at,
    )
    return new_state, tuple(records)


def _firing_order(fr: FiringRules, item: Pending) -> tuple:
    """Send time, then priority (highest first), then a stable tie-break."""
    return (item.send_at, -fr.priority[item.trigger], item.trigger, item.subject or "", item.stage)


def _dormancy_pending(fr: FiringRules, state: UserState, until: datetime) -> Pending | None:
    """The inline dormancy episode as a pending stage, if one is pending and due by ``until``
    (None otherwise)."""
    stage = state.dormancy_stage
    if not stage:
        return None
    rules = fr.rules.triggers.dormancy
    last_activity = state.last_activity
    if stage > len(rules.stages) or last_activity is None:
        return None
    send_at = state.dormancy_send_at or last_activity + rules.stages[stage - 1]
    if send_at > until:
        return None
    return dormancy.as_pending(
        state.dormancy_key or "", stage, state.dormancy_send_at, state.last_activity, rules
    )


def _at_send_time(fr: FiringRules, state: UserState, item: Pending) -> Pending:
    """The stage with its send time: moved to the end of the quiet hours it is due in."""
    quiet_end = _quiet_end(fr, state, item.send_at)
    return item if quiet_end is None else _sent_at(item, quiet_end)


def _sent_at(item: Pending, send_at: datetime) -> Pending:
    return Pending(item.trigger, item.stage, item.key, item.anchor, item.due, send_at, item.subject)


def _quiet_end(fr: FiringRules, state: UserState, now: datetime) -> datetime | None:
    window = fr.rules.contact_policy.quiet_hours
    if window is None:
        return None
    return quiet_until(now, _zone(fr, state), window.start, window.end)


def _channel_quiet_end(
    fr: FiringRules, state: UserState, channel: str, now: datetime
) -> datetime | None:
    """The end of the channel's own quiet hours ``now`` is in (None: not in them)."""
    window = fr.channel_rules[channel].quiet_hours
    if window is None:
        return None
    return quiet_until(now, _zone(fr, state), window.start, window.end)


def _zone(fr: FiringRules, state: UserState) -> ZoneInfo:
    zone_name = state.prefs.timezone if state.prefs is not None else None
    return ZoneInfo(zone_name) if zone_name else fr.default_zone


def _decision(
    fr: FiringRules,
    state: UserState,
    item: Pending,
    decision_id: str,
    now: datetime,
    status: str,
    reason: str | None,
    channel: str | None,
) -> Decision:
    segment = segment_of(state.history, now, fr.rules.segments)
    variant = None  # the holdout comes first: a holdout decision has no variant
    if status != HOLDOUT:
        salt = fr.rules.contact_policy.holdout_salt
        variant = variant_of(state.user_id, item.trigger, salt, fr.variants[item.trigger])
    return Decision(
        decision_id,
        item.trigger,
        item.stage,
        state.user_id,
        item.due,
        now,
        status,
        reason,
        segment,
        offer_for(fr.offers[item.trigger], variant, segment),
        _context(fr, state, item, now),
        fr.rules_version,
        variant,
        channel,
        item.send_at,
    )


def _context(fr: FiringRules, state: UserState, item: Pending, now: datetime) -> dict:
    trigger = item.trigger
    return fr.contexts[trigger](state, item, now, fr.sections[trigger])
