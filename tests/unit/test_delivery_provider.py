"""The demo delivery provider's model (stream.delivery_rates) and its commit bookkeeping
(stream.delivery_provider.Outstanding): what feedback a sent decision gets, when, at which
rates, deterministically; what offset may be committed."""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream.delivery_provider import Outstanding, ProviderStats
from stream.delivery_rates import (
    DEFAULT_RATES,
    DELAY_CAP,
    DELAY_MEANS,
    RATE_NAMES,
    NotASentDecision,
    parse_rates,
    plan_feedback,
)
from stream.simulate import with_channel_consent
from triggers.event_engagement import ENGAGEMENT_TYPES, EngagementEvent
from triggers.events import parse_event
from triggers.rules import load_rules
from triggers.timestamps import format_timestamp

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
FIRED = datetime(2026, 12, 8, 10, 0, tzinfo=UTC)


def sent(i: int, channel: str | None = "email", **extra: Any) -> dict[str, Any]:
    return {
        "kind": "decision",
        "trigger_id": f"tr-{i}",
        "trigger": "cart_abandonment",
        "stage": 1,
        "user_id": f"u{i % 11}",
        "fired_at": format_timestamp(FIRED),
        "status": "sent",
        "channel": channel,
        **extra,
    }


def counts(channel: str, n: int, rates: Any = DEFAULT_RATES, seed: int = 1) -> Counter[str]:
    out: Counter[str] = Counter()
    for i in range(n):
        for f in plan_feedback(sent(i, channel), rates, seed=seed):
            out[f.value["type"] + (":" + f.value["bounce"] if "bounce" in f.value else "")] += 1
    return out


def near(observed: int, trials: int, p: float) -> bool:
    return abs(observed - trials * p) <= 4.5 * math.sqrt(trials * p * (1 - p)) + 1


def test_every_event_parses_as_contract_input_keyed_by_user_after_its_decision() -> None:
    seen = set()
    for i in range(3000):
        channel = ("email", "push", "sms", None, "in_app")[i % 5]
        planned = plan_feedback(sent(i, channel), DEFAULT_RATES, seed=3)
        assert [f.at for f in planned] == sorted(f.at for f in planned)
        for f in planned:
            event = parse_event(orjson.dumps(f.value))
            assert isinstance(event, EngagementEvent)
            assert f.key == event.user_id.encode() == f"u{i % 11}".encode()
            assert event.trigger_id == f"tr-{i}" and event.ts == f.at
            assert event.channel == (channel or "email")  # no channel: answered as email
            assert FIRED < event.ts <= FIRED + timedelta(seconds=DELAY_CAP * 80)
            seen.add(event.type)
    assert seen == set(ENGAGEMENT_TYPES)


def test_the_defaults_give_the_published_rates() -> None:
    n = 12_000
    for channel, r in DEFAULT_RATES.items():
        c = counts(channel, n)
        assert near(c["message_bounced:hard"], n, r.hard_bounce), (channel, c)
        assert near(c["message_bounced:soft"], n, r.soft_bounce), (channel, c)
        delivered = c["message_delivered"]
        assert near(delivered, n, (1 - r.hard_bounce - r.soft_bounce) * r.delivered)
        for name in ("opened", "clicked", "unsubscribed", "complained"):
            # rates of delivered, as the benchmarks publish them
            assert near(c[f"message_{name}"], delivered, getattr(r, name)), (channel, name, c)


def test_a_click_needs_an_open_where_opens_are_tracked() -> None:
    for i in range(2000):
        for channel in ("email", "push", "sms"):
            types = [
                f.value["type"] for f in plan_feedback(sent(i, channel), DEFAULT_RATES, seed=2)
            ]
            if "message_clicked" in types and channel != "sms":
                assert types.index("message_opened") < types.index("message_clicked")
            if "message_bounced" in types:
                assert types == ["message_bounced"]  # a bounce is all a bounced message gets
            if channel == "sms":
                assert "message_opened" not in types  # SMS has no open receipt


def test_the_same_decision_gets_the_same_feedback_whatever_else_was_read() -> None:
    one = [f.value for f in plan_feedback(sent(5), DEFAULT_RATES, seed=9)]
    for i in range(20):
        plan_feedback(sent(i), DEFAULT_RATES, seed=9)
    assert [f.value for f in plan_feedback(sent(5), DEFAULT_RATES, seed=9)] == one
    other_seeds = [
        [f.value for f in plan_feedback(sent(5), DEFAULT_RATES, seed=s)] for s in range(10, 20)
    ]
    assert any(plan != one for plan in other_seeds), "the seed decides"
    ids = [
        f.value["event_id"]
        for i in range(200)
        for f in plan_feedback(sent(i), DEFAULT_RATES, seed=1)
    ]
    assert len(ids) == len(set(ids)) and all(len(x) <= 128 for x in ids)


@pytest.mark.parametrize(
    ("channel", "name", "value"),
    [
        ("email", "opened", 0.6),
        ("email", "clicked", 0.2),
        ("sms", "clicked", 0.3),
        ("push", "unsubscribed", 0.1),
        ("email", "complained", 0.1),
    ],
)
def test_a_higher_rate_only_adds_its_own_events(channel: str, name: str, value: float) -> None:
    raised_rates = parse_rates(f"{channel}.{name}={value}")
    added = 0
    for i in range(2000):
        planned = plan_feedback(sent(i, channel), DEFAULT_RATES, seed=4)
        base = {orjson.dumps(f.value) for f in planned}
        raised = {
            orjson.dumps(f.value) for f in plan_feedback(sent(i, channel), raised_rates, seed=4)
        }
        assert base <= raised
        assert all(orjson.loads(e)["type"] == f"message_{name}" for e in raised - base)
        added += len(raised - base)
    assert added > 0


def test_delays_are_scaled_and_capped() -> None:
    fast = [
        f.at - FIRED
        for i in range(500)
        for f in plan_feedback(sent(i), DEFAULT_RATES, seed=1, delay_scale=0.001)
    ]
    assert max(fast) <= timedelta(seconds=DELAY_CAP * sum(DELAY_MEANS.values()) * 0.001)
    slow = [f.at - FIRED for i in range(500) for f in plan_feedback(sent(i), DEFAULT_RATES, seed=1)]
    assert max(slow) > timedelta(seconds=10)
    first = [plan_feedback(sent(i), DEFAULT_RATES, seed=1)[0].at - FIRED for i in range(2000)]
    mean = sum(d.total_seconds() for d in first) / len(first)
    assert 1.5 < mean < 2.5  # delivery (or bounce) about 2 s after the decision fired


@pytest.mark.parametrize(
    "record",
    [
        sent(1, status="holdout"),
        sent(1, status="suppressed"),
        {**sent(1), "kind": "conversion"},
        {k: v for k, v in sent(1).items() if k != "fired_at"},
        {**sent(1), "fired_at": "2026-12-08T10:00:00"},  # no offset
        {**sent(1), "user_id": 7},
    ],
)
def test_what_is_not_a_sent_decision_is_refused(record: dict[str, Any]) -> None:
    with pytest.raises(NotASentDecision):
        plan_feedback(record, DEFAULT_RATES, seed=1)


def test_rates_are_overridden_per_channel_or_for_all() -> None:
    rates = parse_rates("opened=0.3, sms.clicked=0.12,in_app.complained=0.01")
    assert all(rates[c].opened == 0.3 for c in ("email", "push", "sms"))
    assert rates["sms"].clicked == 0.12 and rates["email"].clicked == DEFAULT_RATES["email"].clicked
    assert rates["in_app"] == replace(DEFAULT_RATES["email"], complained=0.01)
    assert parse_rates("") == dict(DEFAULT_RATES)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("bogus=1", "expected [CHANNEL.]NAME=P"),
        ("opened", "expected [CHANNEL.]NAME=P"),
        ("opened=lots", "'lots' is not a number"),
        ("email.opened=1.5", "email.opened must be between 0 and 1"),
        ("push.unsubscribed=-0.1", "push.unsubscribed must be between 0 and 1"),
        ("email.clicked=0.5", "a click needs an open"),
        ("hard_bounce=0.6,soft_bounce=0.6", "hard_bounce + soft_bounce is more than 1"),
    ],
)
def test_bad_rates_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_rates(text)


def test_the_readme_gives_the_default_rates_and_their_sources() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Delivery feedback for the demo") :]
    section = section[: section.index("\n## ")]
    for channel, r in DEFAULT_RATES.items():
        (row,) = [line for line in section.splitlines() if line.startswith(f"| {channel} |")]
        cells = [cell.strip() for cell in row.strip("|").split("|")][1:]
        assert len(cells) == len(RATE_NAMES) + 1, row  # the rates, then the source
        for name, cell in zip(RATE_NAMES, cells, strict=False):
            assert float(cell.rstrip("%")) / 100 == pytest.approx(getattr(r, name)), (channel, name)
        assert "http" in cells[-1] or "assumption" in cells[-1].lower(), row


def test_an_offset_is_committable_once_its_decision_is_fully_answered() -> None:
    out = Outstanding()
    out.read(0, 10, 2)
    out.read(0, 11, 0)  # no receipt at all: nothing pending
    out.read(0, 12, 1)
    out.read(1, 4, 1)
    assert out.committable() == {0: 10, 1: 4}
    assert out.produced(0, 12) is True
    assert out.committable() == {0: 10, 1: 4}
    assert out.produced(0, 10) is False
    assert out.committable() == {0: 10, 1: 4}
    assert out.produced(0, 10) is True
    assert out.produced(1, 4) is True
    assert out.committable() == {0: 13, 1: 5}


def test_the_stats_line_counts_by_type() -> None:
    stats = ProviderStats(decisions=3, answered=2, skipped=1)
    stats.events.update({"message_delivered": 2, "message_opened": 1})
    assert stats.line() == (
        "simulate: answered 2 decisions with 3 feedback events (delivered 2, opened 1); "
        "skipped 1 records that are not sent decisions"
    )


def test_the_demo_rules_use_three_channels_sms_on_a_yes() -> None:
    rules = load_rules(ROOT / "deploy" / "rules.demo.yaml")
    assert list(rules.channels) == ["push", "email", "sms"]
    assert rules.channels["sms"].consent == "opt_in" and rules.channels["sms"].cost == 0.05
    assert rules.channels["email"].cost == 0.001
    assert set(DEFAULT_RATES) == set(rules.channels), "every demo channel has its own rates"
    assert "sms" in rules.trigger("cart_abandonment").channels


def test_half_the_synthetic_shoppers_say_yes_to_sms_unless_they_opt_out() -> None:
    def prefs(user: str, **fields: Any) -> dict[str, Any]:
        return {"type": "preferences_updated", "user_id": user, **fields}

    yes = [with_channel_consent(prefs(f"u{i}", timezone="UTC")) for i in range(4000)]
    share = sum("channels" in e for e in yes) / len(yes)
    assert 0.46 < share < 0.54
    again = [with_channel_consent(prefs(f"u{i}", timezone="UTC")) for i in range(4000)]
    assert again == yes  # the same shoppers every run
    said_yes = [e["user_id"] for e in yes if "channels" in e]
    assert all(e["channels"] == {"sms": True} for e in yes if "channels" in e)
    for user in said_yes[:50]:
        assert "channels" not in with_channel_consent(prefs(user, marketing_opt_in=False))
        view = {"type": "product_viewed", "user_id": user, "product_id": "p1"}
        assert "channels" not in with_channel_consent(view)
