"""Properties of contract section 8 under replay: never a decision on a channel without
consent at its send time; rules without channels give the records of before plus
``channel: null`` (pinned outputs of the engine before section 8, and, on random
timelines, a single permissive channel changes nothing but the channel)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.seeded_shops import RULE_SETS as SEEDED_RULE_SETS
from tests.unit.seeded_shops import START, seeded_shop
from tests.unit.test_properties import end_of, merged, shop
from tests.unit.timelines import T0, iso, make_rules
from triggers.records import Decision, record_to_json
from triggers.replay import replay_lines
from triggers.rules import Rules
from triggers.timestamps import parse_timestamp

pytestmark = pytest.mark.unit

# blake2b-128 of the records of seeded_shop(seed) under SEEDED_RULE_SETS[r], until START +
# 60d, as the engine wrote them before contract 8 (commit d786969), one JSON per line.
PINNED: dict[str, tuple[int, str]] = {
    "0-0": (165, "fbc9b8fa04cc7f1ef3eb88c6f13c01b7"),
    "0-1": (148, "0a8125b3620dafd4b8aa1c7a53a3369a"),
    "0-2": (148, "08b76e09e1b8d36206576f9e88333549"),
    "0-3": (152, "d79ce05669f00e8dd0b62d211a806ef6"),
    "0-4": (158, "ee614febe84ca34271a2c66aa14a4e44"),
    "0-5": (166, "f9c0d1c8b953e178810b157fdb1fff2d"),
    "1-0": (159, "0be90a3cd7fcfaa41106224b090057cf"),
    "1-1": (143, "87afd55e157171b1ffe59d42fcf4183a"),
    "1-2": (141, "b6a26b14b55fe91222942d8eec379201"),
    "1-3": (148, "6ccfdf2d85252e9ba6ba8386d7abb0d4"),
    "1-4": (149, "62610c4d5995628a5af271111d98bee7"),
    "1-5": (158, "fc37d1606cbaecf74d05ce9704a4f8be"),
    "2-0": (165, "5738b673fda1ea1a7ed9ff2f7ec9d7b4"),
    "2-1": (148, "babbe811e9c1aef8dbb18ac2f3912494"),
    "2-2": (148, "65d4dfa70002f6b82e96b0a5d76352a6"),
    "2-3": (152, "de9a63a34960e145647fcbab0f2161fa"),
    "2-4": (157, "71b50289bfeca750eea7d0277e49ea08"),
    "2-5": (166, "2440763893145fe8adcd24eba567db16"),
    "3-0": (335, "5c2e1ece4c660cc75f8c605aedde6fc0"),
    "3-1": (308, "755d8485d9b17dd13f239c6d51dccdc0"),
    "3-2": (325, "3de95553c173fb7890d0b04d3d5b8f54"),
    "3-3": (317, "a970771638ae36cf19458cfd0b7a08cb"),
    "3-4": (338, "4989151e78c36c478e96f50fa7fd9029"),
    "3-5": (321, "f8f0ff84dcc79bf0018ac96c1c9a5c21"),
}


def _without_channel(raw: bytes) -> bytes:
    record = orjson.loads(raw)
    if record["kind"] in ("decision", "conversion"):
        assert record.pop("channel") is None
    return orjson.dumps(record)


@pytest.mark.parametrize("case", sorted(PINNED))
def test_rules_without_channels_give_the_records_of_before_plus_channel_null(case: str) -> None:
    rule_set, seed = (int(part) for part in case.split("-"))
    rules = Rules.model_validate(SEEDED_RULE_SETS[rule_set])
    result = replay_lines(seeded_shop(seed), rules, START + timedelta(days=60))
    lines = [_without_channel(record_to_json(record)) for record in result.records]
    digest = hashlib.blake2b(b"\n".join(lines), digest_size=16).hexdigest()
    assert (len(lines), digest) == PINNED[case]


PROPERTY_SETTINGS = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@PROPERTY_SETTINGS
@given(shop())
def test_one_permissive_channel_changes_nothing_but_the_channel(
    world: tuple[Rules, dict[str, list[dict[str, Any]]]],
) -> None:
    rules, timelines = world
    lines, until = merged(timelines, 0), end_of(timelines)
    plain = replay_lines(lines, rules, until).records
    data = rules.model_dump(mode="json")
    with_channel = Rules.model_validate({**data, "channels": {"only": {}}})
    chosen = replay_lines(lines, with_channel, until).records
    assert len(plain) == len(chosen)
    for before, after in zip(plain, chosen, strict=True):
        old, new = orjson.loads(record_to_json(before)), orjson.loads(record_to_json(after))
        assert old.pop("channel") is None
        expected = "only" if new.get("status", "sent") != "suppressed" else None
        assert new.pop("channel") == expected
        old.pop("rules_version", None), new.pop("rules_version", None)
        assert old == new


# --- never a decision on a channel without consent -------------------------------------------

CHANNELS: dict[str, Any] = {
    "push": {"frequency_cap": {"max": 1, "per": "6h"}},
    "email": {"quiet_hours": {"start": "22:00", "end": "07:00"}},
    "sms": {"consent": "opt_in", "frequency_cap": {"max": 1, "per": "24h"}},
}
CHANNEL_RULE_SETS: list[dict[str, Any]] = [
    {"channels": CHANNELS},
    {
        "channels": CHANNELS,
        "default_timezone": "Asia/Shanghai",
        "triggers": {
            "cart_abandonment": {"stages": ["1h", "3h", "9h"], "cooldown": 0,
                                 "channels": ["sms", "email"]},
            "browse_abandonment": {"channels": ["email"]},
            "dormancy": {"audience": "all", "stages": ["1d", "2d"]},
        },
        "contact_policy": {"quiet_hours": {"start": "23:00", "end": "06:00"},
                           "holdout_percent": 30},
    },
]  # fmt: skip
NAMES = ["push", "email", "sms", "fax"]
FEEDBACK = [
    ("message_bounced", {"bounce": "hard"}),
    ("message_bounced", {"bounce": "soft"}),
    ("message_unsubscribed", {}),
    ("message_complained", {}),
    ("message_delivered", {}),
]


@st.composite
def consent_timelines(draw: st.DrawFn) -> tuple[Rules, list[dict[str, Any]]]:
    rules = make_rules(**draw(st.sampled_from(CHANNEL_RULE_SETS)))
    events: list[dict[str, Any]] = []
    for user in ("u0", "u1", "u2")[: draw(st.integers(1, 3))]:
        minute = draw(st.integers(0, 600))
        for n in range(draw(st.integers(1, 16))):
            minute += draw(st.sampled_from([0, 1, 30, 60, 61, 180, 600, 1440, 3000]))
            ts = iso(T0 + timedelta(minutes=minute))
            base = {"event_id": f"{user}-{n}", "user_id": user, "ts": ts}
            kind = draw(st.sampled_from(["add", "view", "order", "prefs", "feedback", "feedback"]))
            if kind == "add":
                event = {"type": "cart_item_added", "product_id": "p1", "unit_price": 5.0}
            elif kind == "view":
                event = {"type": "product_viewed", "product_id": "p2"}
            elif kind == "order":
                items = [{"product_id": "p3", "quantity": 1, "unit_price": 9.0}]
                event = {"type": "order_placed", "order_id": f"{user}-o{n}", "items": items}
            elif kind == "prefs":
                answers = draw(st.dictionaries(st.sampled_from(NAMES), st.booleans()))
                event = {"type": "preferences_updated", "channels": answers}
                if draw(st.booleans()):
                    event["marketing_opt_in"] = draw(st.booleans())
            else:
                kind, extra = draw(st.sampled_from(FEEDBACK))
                channel = draw(st.sampled_from(NAMES))
                event = {"type": kind, "trigger_id": "t", "channel": channel, **extra}
            events.append({**base, **event})
    events.sort(key=lambda event: event["ts"])
    return rules, events


def _consents(rules: Rules, events: list[dict[str, Any]], user: str, channel: str,
              moment: datetime) -> bool:  # fmt: skip
    """The oracle: consent on ``channel`` for a send at ``moment`` (events before it)."""
    answer, answer_at, withdrawn, opted_out = None, None, None, False
    for event in events:
        ts = parse_timestamp(event["ts"])
        if event["user_id"] != user or ts >= moment:
            continue
        if event["type"] == "preferences_updated":
            if event.get("marketing_opt_in") is not None:
                opted_out = event["marketing_opt_in"] is False
            if channel in event["channels"] and (answer_at is None or ts >= answer_at):
                answer, answer_at = event["channels"][channel], ts
        elif event.get("channel") == channel and (
            event["type"] in ("message_unsubscribed", "message_complained")
            or event.get("bounce") == "hard"
        ):
            withdrawn = ts if withdrawn is None else max(withdrawn, ts)
    if opted_out:
        return False
    if withdrawn is not None and not (answer is True and answer_at > withdrawn):  # type: ignore[operator]
        return False
    return answer if answer is not None else rules.channels[channel].consent == "opt_out"


@PROPERTY_SETTINGS
@given(consent_timelines())
def test_never_a_decision_on_a_channel_without_consent_at_its_send_time(
    world: tuple[Rules, list[dict[str, Any]]],
) -> None:
    rules, events = world
    until = parse_timestamp(events[-1]["ts"]) + timedelta(days=10)
    result = replay_lines([orjson.dumps(e) for e in events], rules, until)
    assert result.invalid == []
    for decision in result.records:
        if type(decision) is not Decision:
            continue
        if decision.status == "suppressed":
            assert decision.channel is None
            continue
        listed = rules.trigger(decision.trigger).channels or tuple(rules.channels)
        assert decision.channel in listed
        assert _consents(rules, events, decision.user_id, decision.channel, decision.fired_at)


@PROPERTY_SETTINGS
@given(consent_timelines(), st.data())
def test_after_an_erasure_no_decision_comes_of_anything_before_it(
    world: tuple[Rules, list[dict[str, Any]]], data: st.DataObject
) -> None:
    rules, events = world
    erasures = data.draw(st.lists(st.sampled_from(events), max_size=3))
    for n, erased in enumerate(erasures):
        events.append({"event_id": f"x{n}", "type": "user_erased",
                       "user_id": erased["user_id"], "ts": erased["ts"]})  # fmt: skip
    events.sort(key=lambda event: parse_timestamp(event["ts"]))  # stable: erasure last
    until = parse_timestamp(events[-1]["ts"]) + timedelta(days=10)
    result = replay_lines([orjson.dumps(e) for e in events], rules, until)
    assert result.invalid == []
    for record in result.records:
        if type(record) is not Decision:
            continue
        mine = [e for e in events if e["user_id"] == record.user_id]
        before = [parse_timestamp(e["ts"]) for e in mine if e["type"] == "user_erased"]
        erased_at = max((t for t in before if t < record.fired_at), default=None)
        if erased_at is None:
            continue
        # something armed it after the erasure: a shop event (feedback is no activity)
        assert any(
            erased_at < parse_timestamp(e["ts"]) < record.fired_at
            for e in mine
            if e["type"] != "user_erased" and not e["type"].startswith("message_")
        )
