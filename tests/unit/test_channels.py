"""Channels (contract 8.1, 8.2, 8.7): the rules, per-channel consent from preferences and
feedback, the channel step 5a with per-channel caps and quiet hours, holdouts and
conversions with their channel, engagement records. Scripted timelines through replay."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
import pytest

from tests.unit.timelines import Timeline, at, brief, iso, make_rules, wire
from triggers.records import Conversion, Engagement, record_to_json
from triggers.replay import replay_lines
from triggers.rules import Rules, RulesError, dump_rules, parse_rules

pytestmark = pytest.mark.unit

CHANNELS: dict[str, Any] = {
    "push": {"consent": "opt_out", "frequency_cap": {"max": 1, "per": "24h"}},
    "email": {"consent": "opt_out", "cost": 0.001},
    "sms": {"consent": "opt_in", "quiet_hours": {"start": "21:00", "end": "09:00"}},
}


def cart_rules(table: dict[str, Any] | None = None, **cart: Any) -> Rules:
    """Cart abandonment alone (one stage at 1h unless said), UTC, no global cap in the way."""
    sections: dict[str, Any] = {
        "default_timezone": "UTC",
        "triggers": {"cart_abandonment": {"stages": ["1h"], "cooldown": 0, **cart}},
        "contact_policy": {"frequency_cap": {"max": 100, "per": "24h"}},
    }
    if table is not None:
        sections["channels"] = table
    return make_rules(only=("cart_abandonment",), **sections)


def briefs(tl: Timeline) -> list[tuple]:
    """(stage, status, reason, fired_at, channel) of each decision."""
    return [(*brief(d)[1:], d.channel) for d in tl.decisions()]


# --- the rules -------------------------------------------------------------------------------


def test_channels_in_the_rules_keep_file_order_and_default_to_every_channel() -> None:
    rules = parse_rules(
        "channels:\n"
        "  sms: {consent: opt_in, cost: 0.05, frequency_cap: {max: 1, per: 7d}}\n"
        "  push: {}\n"
        "triggers:\n"
        "  lapsing: {channels: [push]}\n"
        "  custom:\n"
        "    socks: {when: {type: search}, channels: [push, sms]}\n"
        "retention: 730d\n"
        "erasure_memory: 7d\n"
    )
    assert list(rules.channels) == ["sms", "push"]
    assert rules.channels["push"].consent == "opt_out" and rules.channels["push"].cost == 0
    assert rules.trigger("lapsing").channels == ("push",)
    assert rules.trigger("socks").channels == ("push", "sms")
    assert rules.trigger("cart_abandonment").channels is None  # every channel, file order
    assert rules.retention == timedelta(days=730)
    assert rules.erasure_memory == timedelta(days=7)
    assert parse_rules(dump_rules(rules)) == rules
    assert Rules().retention == timedelta(0) and Rules().erasure_memory == timedelta(days=30)


def test_rules_without_channels_keep_their_rules_version() -> None:
    explicit = parse_rules("channels: {}\nretention: 0\nerasure_memory: 30d\n")
    assert explicit.version_label == Rules().version_label
    assert "channels: null" not in dump_rules(Rules())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "channels:\n  push: {}\ntriggers:\n  cart_abandonment:\n    channels: [push, fax]\n",
            "r.yaml:5: triggers.cart_abandonment.channels[1]: unknown channel 'fax' "
            "(channels: push)",
        ),
        (
            "channels:\n  push: {}\ntriggers:\n  custom:\n"
            "    socks: {when: {type: search}, channels: [fax]}\n",
            "r.yaml:5: triggers.custom.socks.channels[0]: unknown channel 'fax' (channels: push)",
        ),
        (
            "triggers:\n  lapsing: {channels: [push]}\n",
            "r.yaml:2: triggers.lapsing.channels[0]: unknown channel 'push' "
            "(channels: none: the rules define no channels)",
        ),
        (
            "channels:\n  push: {}\ntriggers:\n  lapsing: {channels: [push, push]}\n",
            "r.yaml:4: triggers.lapsing.channels: channel 'push' is listed twice",
        ),
        (
            "channels:\n  push: {}\ntriggers:\n  lapsing: {channels: []}\n",
            "r.yaml:4: triggers.lapsing.channels: Tuple should have at least 1 item after "
            "validation, not 0",
        ),
        (
            "channels:\n  Push: {}\n",
            "r.yaml:2: channels.Push: channel name 'Push': use 1..32 of a-z, 0-9 and _",
        ),
        (
            "channels:\n  sms: {consent: maybe}\n",
            "r.yaml:2: channels.sms.consent: Input should be 'opt_out' or 'opt_in'",
        ),
        (
            "channels:\n  sms:\n    cost: -1\n",
            "r.yaml:3: channels.sms.cost: Input should be greater than or equal to 0",
        ),
        (
            "channels:\n  sms: {quiet_hours: {start: '09:00', end: '09:00'}}\n",
            "r.yaml:2: channels.sms.quiet_hours: quiet_hours start and end must differ "
            "(omit quiet_hours for none)",
        ),
        ("retention: -1d\n", "r.yaml:1: retention: "),
    ],
)
def test_channel_rules_errors_name_the_file_line_and_key(text: str, message: str) -> None:
    with pytest.raises(RulesError) as caught:
        parse_rules(text, "r.yaml")
    assert caught.value.messages()[0].startswith(message)


# --- no channels: channel null ---------------------------------------------------------------


def test_without_channels_decisions_and_conversions_carry_channel_null() -> None:
    tl = Timeline(cart_rules())
    tl.add(at())
    tl.order(at(hours=2), "o1")
    decision, conversion = tl.records
    assert decision.channel is None and isinstance(conversion, Conversion)
    assert conversion.channel is None
    assert orjson.loads(record_to_json(decision))["channel"] is None
    assert list(orjson.loads(record_to_json(conversion)))[-1] == "channel"


# --- step 5a ---------------------------------------------------------------------------------


def test_the_first_channel_with_consent_is_chosen_and_a_conversion_carries_it() -> None:
    tl = Timeline(cart_rules(CHANNELS))
    tl.add(at())
    tl.order(at(hours=2), "o1")
    assert briefs(tl) == [(1, "sent", None, iso(at(hours=1)), "push")]
    assert tl.conversions()[0].channel == "push"
    assert orjson.loads(record_to_json(tl.decisions()[0]))["channel"] == "push"


def test_a_triggers_own_list_is_its_preference() -> None:
    tl = Timeline(cart_rules(CHANNELS, channels=["email", "push"]))
    tl.add(at())
    tl.advance(at(hours=2))
    assert briefs(tl) == [(1, "sent", None, iso(at(hours=1)), "email")]


def test_opt_in_without_a_yes_is_no_channel_and_a_yes_opens_it() -> None:
    rules = cart_rules(CHANNELS, channels=["sms"], stages=["1h", "2h"])
    tl = Timeline(rules)
    tl.send("preferences_updated", at(minutes=-5), marketing_opt_in=True)  # not a yes for sms
    tl.add(at(hours=10))  # stage 1 at 11:00Z, stage 2 at 12:00Z (sms quiet 21-09: open)
    tl.send("preferences_updated", at(hours=11, minutes=30), channels={"sms": True})
    tl.advance(at(hours=13))
    assert briefs(tl) == [
        (1, "suppressed", "no_channel", iso(at(hours=11)), None),
        (2, "sent", None, iso(at(hours=12)), "sms"),
    ]


def test_a_no_on_a_channel_passes_to_the_next_and_opted_out_still_stops_every_channel() -> None:
    tl = Timeline(cart_rules(CHANNELS, stages=["1h", "2h", "3h"]))
    tl.send("preferences_updated", at(minutes=-5), channels={"push": False, "fax": True})
    tl.add(at())
    tl.send("preferences_updated", at(hours=1, minutes=30), marketing_opt_in=False)
    tl.send("preferences_updated", at(hours=2, minutes=30), marketing_opt_in=True)
    tl.advance(at(hours=4))
    assert briefs(tl) == [
        (1, "sent", None, iso(at(hours=1)), "email"),
        (2, "suppressed", "opted_out", iso(at(hours=2)), None),
        (3, "sent", None, iso(at(hours=3)), "email"),  # push's no is not forgotten
    ]


def test_a_hard_bounce_withdraws_the_channel_until_a_later_yes() -> None:
    rules = cart_rules({"email": {}}, stages=["1h", "2h", "3h", "4h"])
    tl = Timeline(rules)
    tl.add(at())
    tl.send("message_bounced", at(minutes=10), trigger_id="t0", channel="email", bounce="soft")
    tl.send("message_bounced", at(minutes=20), trigger_id="t0", channel="email", bounce="hard")
    # a yes older than the bounce, arriving late, does not lift it
    tl.send("preferences_updated", at(minutes=15), channels={"email": True})
    tl.advance(at(hours=2, minutes=30))
    tl.send("preferences_updated", at(hours=2, minutes=30), channels={"email": True})
    tl.advance(at(hours=5))
    assert briefs(tl) == [
        (1, "suppressed", "no_channel", iso(at(hours=1)), None),
        (2, "suppressed", "no_channel", iso(at(hours=2)), None),
        (3, "sent", None, iso(at(hours=3)), "email"),
        (4, "sent", None, iso(at(hours=4)), "email"),
    ]


@pytest.mark.parametrize("kind", ["message_unsubscribed", "message_complained"])
def test_an_unsubscribe_or_complaint_moves_to_the_next_channel(kind: str) -> None:
    tl = Timeline(cart_rules({"push": {}, "email": {}}, stages=["1h", "2h"]))
    tl.add(at())
    tl.send(kind, at(hours=1, minutes=5), trigger_id="t1", channel="push")
    tl.advance(at(hours=3))
    assert [d.channel for d in tl.decisions()] == ["push", "email"]


def test_a_channel_cap_passes_to_the_next_channel_then_is_frequency_cap() -> None:
    channels = {"push": {"frequency_cap": {"max": 1, "per": "24h"}}, "email": {}}
    channels["email"] = {"frequency_cap": {"max": 1, "per": "24h"}}
    tl = Timeline(cart_rules(channels, stages=["1h", "2h", "3h"]))
    tl.add(at())
    tl.advance(at(hours=4))
    assert briefs(tl) == [
        (1, "sent", None, iso(at(hours=1)), "push"),
        (2, "sent", None, iso(at(hours=2)), "email"),
        (3, "suppressed", "frequency_cap", iso(at(hours=3)), None),
    ]
    tl.add(at(days=1, hours=2))  # the windows have passed: push again
    tl.advance(at(days=1, hours=4))
    assert briefs(tl)[3] == (1, "sent", None, iso(at(days=1, hours=3)), "push")


def test_no_channel_when_none_had_consent_even_if_some_is_capped() -> None:
    channels = {"push": {"frequency_cap": {"max": 1, "per": "24h"}}, "sms": {"consent": "opt_in"}}
    tl = Timeline(cart_rules(channels, stages=["1h", "2h"]))
    tl.add(at())
    tl.send("message_unsubscribed", at(hours=1, minutes=30), trigger_id="t", channel="push")
    tl.advance(at(hours=3))
    assert [(d.status, d.reason) for d in tl.decisions()] == [
        ("sent", None),
        ("suppressed", "no_channel"),
    ]


def test_the_global_cap_counts_every_channel_and_comes_first() -> None:
    rules = make_rules(
        only=("cart_abandonment",),
        channels={"push": {}, "email": {}},
        triggers={"cart_abandonment": {"stages": ["1h", "2h"], "cooldown": 0}},
        contact_policy={"frequency_cap": {"max": 1, "per": "24h"}},
    )
    tl = Timeline(rules)
    tl.add(at())
    tl.advance(at(hours=3))
    assert [(d.reason, d.channel) for d in tl.decisions()] == [
        (None, "push"),
        ("frequency_cap", None),
    ]


def test_channel_quiet_hours_defer_the_stage_and_it_is_judged_again_then() -> None:
    channels = {"sms": {"quiet_hours": {"start": "21:00", "end": "09:00"}}, "email": {}}
    rules = cart_rules(channels, stages=["1h", "2h"])
    tl = Timeline(rules)
    tl.add(at(hours=19))  # stage 1 due 22:00Z, stage 2 23:00Z: sms is quiet, email is not
    tl.send("message_unsubscribed", at(hours=21, minutes=30), trigger_id="t", channel="sms")
    tl.advance(at(days=1, hours=12))
    # not sent on email at 22:00 (no falling through): deferred to 09:00, then re-judged,
    # when the unsubscribe has made sms unavailable: email
    assert briefs(tl) == [
        (1, "sent", None, iso(at(hours=31)), "email"),
        (2, "sent", None, iso(at(hours=31)), "email"),
    ]
    assert [d.due_at for d in tl.decisions()] == [at(hours=20), at(hours=21)]


def test_channel_quiet_hours_deferral_then_sent_on_that_channel() -> None:
    rules = cart_rules({"sms": {"quiet_hours": {"start": "21:00", "end": "09:00"}}})
    tl = Timeline(rules)
    tl.add(at(hours=19))  # due 22:00Z
    tl.advance(at(days=1, hours=12))
    assert briefs(tl) == [(1, "sent", None, iso(at(hours=31)), "sms")]


def test_channel_quiet_hours_ending_inside_the_global_ones_wait_for_those() -> None:
    rules = make_rules(
        only=("cart_abandonment",),
        default_timezone="UTC",
        channels={"sms": {"quiet_hours": {"start": "20:00", "end": "21:30"}}},
        triggers={"cart_abandonment": {"stages": ["1h"], "cooldown": 0}},
        contact_policy={"quiet_hours": {"start": "21:00", "end": "08:00"}},
    )
    tl = Timeline(rules)
    tl.add(at(hours=17, minutes=30))  # due 20:30Z: sms quiet to 21:30, then global to 08:00
    tl.advance(at(days=1, hours=12))
    assert briefs(tl) == [(1, "sent", None, iso(at(hours=30)), "sms")]


def test_a_cancelled_episode_deferred_by_channel_quiet_hours_sends_nothing() -> None:
    rules = cart_rules({"sms": {"quiet_hours": {"start": "21:00", "end": "09:00"}}})
    tl = Timeline(rules)
    tl.add(at(hours=19))
    tl.order(at(hours=23), "o1")
    tl.advance(at(days=1, hours=12))
    assert tl.decisions() == []


def test_a_holdout_records_the_channel_it_would_have_used_and_counts_on_it() -> None:
    channels = {"push": {"frequency_cap": {"max": 1, "per": "24h"}}, "email": {}}
    rules = cart_rules(channels, stages=["1h", "2h"])
    rules = Rules.model_validate(
        {**rules.model_dump(mode="json"), "contact_policy": {"holdout_percent": 100}}
    )
    tl = Timeline(rules)
    tl.add(at())
    tl.order(at(hours=2, minutes=30), "o1")
    first, second = tl.decisions()
    assert (first.status, first.channel, first.variant) == ("holdout", "push", None)
    assert (second.status, second.channel) == ("holdout", "email")  # push's cap counts it
    (conversion,) = tl.conversions()
    assert (conversion.arm, conversion.channel) == ("holdout", "email")


def test_a_holdout_waits_for_its_channels_quiet_hours_too() -> None:
    rules = cart_rules({"sms": {"quiet_hours": {"start": "21:00", "end": "09:00"}}})
    rules = Rules.model_validate(
        {**rules.model_dump(mode="json"), "contact_policy": {"holdout_percent": 100}}
    )
    tl = Timeline(rules)
    tl.add(at(hours=19))
    tl.advance(at(days=1, hours=12))
    assert briefs(tl) == [(1, "holdout", None, iso(at(hours=31)), "sms")]


# --- engagement records ----------------------------------------------------------------------


def test_each_engagement_event_gives_one_engagement_record() -> None:
    tl = Timeline(cart_rules(CHANNELS))
    tl.send("message_delivered", at(), trigger_id="t1", channel="push")
    tl.send("message_clicked", at(minutes=1), trigger_id="t1", channel="push", url="https://x/y")
    tl.send("message_bounced", at(minutes=2), trigger_id="t2", channel="pigeon", bounce="hard")
    tl.send("message_opened", at(minutes=3), event_id="o1", trigger_id="t1", channel="push")
    tl.send("message_opened", at(minutes=3), event_id="o1", trigger_id="t1", channel="push")
    assert all(isinstance(r, Engagement) for r in tl.records)
    assert [orjson.loads(record_to_json(r)) for r in tl.records] == [
        {
            "kind": "engagement",
            "type": "message_delivered",
            "trigger_id": "t1",
            "channel": "push",
            "user_id": "u1",
            "at": iso(at()),
        },
        {
            "kind": "engagement",
            "type": "message_clicked",
            "trigger_id": "t1",
            "channel": "push",
            "user_id": "u1",
            "at": iso(at(minutes=1)),
            "url": "https://x/y",
        },
        {
            "kind": "engagement",
            "type": "message_bounced",
            "trigger_id": "t2",
            "channel": "pigeon",  # a channel the rules do not know: recorded all the same
            "user_id": "u1",
            "at": iso(at(minutes=2)),
            "bounce": "hard",
        },
        {
            "kind": "engagement",
            "type": "message_opened",
            "trigger_id": "t1",
            "channel": "push",
            "user_id": "u1",
            "at": iso(at(minutes=3)),
        },
    ]  # the re-delivered open is a duplicate
    assert tl.replay.summary.engagement == 4 and tl.replay.summary.duplicate == 1


def test_engagement_is_no_activity_it_re_arms_nothing() -> None:
    rules = make_rules(
        only=("dormancy",), triggers={"dormancy": {"audience": "all", "stages": ["1d"]}}
    )
    tl = Timeline(rules)
    tl.send("search", at(), query="socks")
    tl.send("message_opened", at(hours=12), trigger_id="t1", channel="push")
    tl.advance(at(days=2))
    assert [d.fired_at for d in tl.decisions()] == [at(days=1)]
    assert tl.state().last_activity == at()


def test_invalid_engagement_lines_are_reported_like_other_invalid_lines() -> None:
    lines = [
        wire("message_bounced", at(), "u1", "e1", trigger_id="t", channel="sms"),
        wire("message_bounced", at(), "u1", "e2", trigger_id="t", channel="sms", bounce="x"),
        wire("message_opened", at(), "u1", "e3", channel="sms"),
        wire("message_clicked", at(), "u1", "e4", trigger_id="t", channel=""),
        wire("message_clicked", at(), "u1", "e5", trigger_id="t", channel="sms"),
    ]
    result = replay_lines(lines, Rules())
    assert [(n, reason) for n, reason, _ in result.invalid] == [
        (1, "missing_field"),
        (2, "invalid_value"),
        (3, "missing_field"),
        (4, "invalid_value"),
    ]
    assert result.invalid[0][2] == "$.bounce is required"
    assert [type(r) for r in result.records] == [Engagement]


# --- schemas and the stored state ------------------------------------------------------------


def test_section_8_records_match_their_schemas_and_consent_survives_the_state_codec() -> None:
    from triggers.schemas import decode_output_record, schema_document
    from triggers.state import decode_state, encode_state

    tl = Timeline(cart_rules(CHANNELS, stages=["1h", "2h"]))
    tl.send("preferences_updated", at(minutes=-1), channels={"sms": True, "fax": False})
    tl.add(at())
    tl.send("message_bounced", at(minutes=5), trigger_id="t", channel="email", bounce="hard")
    tl.send("message_clicked", at(minutes=6), trigger_id="t", channel="push", url="https://x")
    tl.advance(at(hours=8))  # stage 2 (04:00Z) waits for sms's quiet end, 09:00Z
    tl.send("user_erased", at(hours=9), user="u2")
    kinds = [orjson.loads(record_to_json(r))["kind"] for r in tl.records]
    assert kinds == ["engagement", "engagement", "decision", "decision", "erasure"]
    for record in tl.records:
        decode_output_record(record_to_json(record))  # raises where it breaks its schema
    assert [(d.channel, d.fired_at) for d in tl.decisions()] == [
        ("push", at(hours=1)),
        ("sms", at(hours=7)),  # push at its cap, email bounced
    ]
    state = tl.state()
    assert {c.channel for c in state.consent} == {"sms", "fax", "email"}
    assert [c.channel for c in state.channel_contacts] == ["push"]  # only capped channels
    assert decode_state(encode_state(state)) == state
    assert schema_document("engagement")["title"] == "Nudge engagement"
    mapping = schema_document("input-event")["discriminator"]["mapping"]
    assert {"user_erased", "message_bounced", "message_clicked"} <= set(mapping)


def test_the_commented_channels_example_in_rules_example_yaml_is_valid() -> None:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "rules.example.yaml").read_text()
    lines = text.splitlines()
    start = lines.index("# channels:")
    block = []
    for line in lines[start:]:
        if not line.startswith("# ") or line.startswith("# and under"):
            break
        block.append(line[2:])
    rules = parse_rules("\n".join(block) + "\n")
    assert list(rules.channels) == ["push", "email", "sms"]
    assert rules.channels["sms"].consent == "opt_in"


def test_consent_kept_per_user_is_bounded_and_compact() -> None:
    from triggers.state import MAX_CONSENT, encode_state

    tl = Timeline(cart_rules(CHANNELS))
    for n in range(40):
        answers = {f"c{n}_{k}": k % 2 == 0 for k in range(3)}
        tl.send("preferences_updated", at(minutes=n), channels=answers)
    tl.send("message_complained", at(hours=1), trigger_id="t", channel="push")
    consent = tl.state().consent
    assert len(consent) == MAX_CONSENT
    assert consent[-1].channel == "push" and consent[-1].withdrawn_at == at(hours=1)
    assert consent[0].channel == "c19_0"  # the least recently changed went first
    assert len(encode_state(tl.state())) < 3000
    tl.add(at(hours=2))
    tl.advance(at(hours=4))
    assert tl.decisions()[0].channel == "email"  # push withdrawn, sms never said yes
