"""Custom triggers (contract 7.3): when / unless / stages from the rules file, validated
with key paths; the same contact policy, offers, variants and conversions as the others."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.timelines import Timeline, at, brief, make_rules
from triggers.rules import RulesError, parse_rules

pytestmark = pytest.mark.unit

SOCKS: dict[str, Any] = {
    "enabled": True,
    "when": {"type": "order_placed", "category": ["running_shoes"]},
    "unless": [{"type": "order_placed", "category": ["socks"]}],
    "stages": ["3d"],
    "offers": {"default": "SOCKS10"},
}
MATTRESS: dict[str, Any] = {
    "enabled": True,
    "when": {"type": "product_viewed", "category": ["mattress"], "min_price": 300},
    "unless": [{"type": "order_placed"}],
    "stages": ["10m", "1d"],
}


def timeline(**custom: dict[str, Any]) -> Timeline:
    return Timeline(make_rules(only=(), triggers={"custom": custom}))


def order(t: Timeline, ts: Any, order_id: str, *lines: tuple[str, str]) -> None:
    items = [{"product_id": p, "quantity": 1, "unit_price": 50.0, "category": c} for p, c in lines]
    t.send("order_placed", ts, order_id=order_id, items=items)


def test_socks_three_days_after_running_shoes() -> None:
    t = timeline(socks=SOCKS)
    order(t, at(0), "o1", ("mug", "kitchen"), ("shoe-9", "running_shoes"))
    t.advance(at(days=4))
    (decision,) = t.decisions("socks")
    assert brief(decision) == ("socks", 1, "sent", None, "2026-11-26T02:00:00Z")
    assert decision.offer == "SOCKS10"
    assert decision.context == {
        "type": "order_placed",
        "product_id": "shoe-9",
        "category": "running_shoes",
        "price": 50.0,
    }


def test_unless_matching_an_order_line_cancels() -> None:
    t = timeline(socks=SOCKS)
    order(t, at(0), "o1", ("shoe-9", "running_shoes"))
    order(t, at(days=1), "o2", ("sock-1", "socks"), ("cap", "hats"))
    t.advance(at(days=4))
    assert t.decisions("socks") == []


def test_an_unless_event_older_than_the_arming_one_does_not_cancel() -> None:
    t = timeline(socks=SOCKS)
    order(t, at(days=1), "o1", ("shoe-9", "running_shoes"))
    order(t, at(0), "o0", ("sock-1", "socks"))  # arrives late, happened before
    t.advance(at(days=5))
    assert len(t.decisions("socks")) == 1


def test_an_order_that_does_not_match_unless_leaves_it_pending() -> None:
    t = timeline(socks=SOCKS)
    order(t, at(0), "o1", ("shoe-9", "running_shoes"))
    order(t, at(days=1), "o2", ("cap", "hats"))
    t.advance(at(days=4))
    assert [d.stage for d in t.decisions("socks")] == [1]


def test_mattress_view_filters_on_min_price_and_any_order_cancels() -> None:
    t = timeline(mattress=MATTRESS)
    t.view(at(0), "m-cheap", category="mattress", price=120)  # below min_price: no match
    t.advance(at(hours=1))
    assert t.decisions("mattress") == []
    t.view(at(hours=2), "m-1", category="mattress", price=899)
    t.advance(at(hours=3))
    (first,) = t.decisions("mattress")
    assert first.context == {
        "type": "product_viewed",
        "product_id": "m-1",
        "category": "mattress",
        "price": 899,
    }
    order(t, at(hours=5), "o1", ("pillow", "bedding"))  # cancels stage 2
    t.advance(at(days=3))
    assert [d.stage for d in t.decisions("mattress")] == [1]


def test_a_new_match_rearms_and_a_resent_order_does_not() -> None:
    t = timeline(socks=SOCKS)
    order(t, at(0), "o1", ("shoe-9", "running_shoes"))
    first = t.state().pending[0].key
    t.send(
        "order_placed",
        at(hours=1),
        order_id="o1",
        items=[{"product_id": "shoe-9", "quantity": 1, "unit_price": 50.0}],
    )
    assert t.state().pending[0].key == first  # the same order id again: no new episode
    order(t, at(days=1), "o2", ("shoe-10", "running_shoes"))
    (pending,) = t.state().pending
    assert pending.key != first and pending.due == at(days=4)


def test_off_unless_enabled_and_audience_customers() -> None:
    t = timeline(mattress={**MATTRESS, "enabled": False})
    t.view(at(0), "m-1", category="mattress", price=899)
    t.advance(at(days=2))
    assert t.decisions() == []
    t = timeline(mattress={**MATTRESS, "audience": "customers"})
    t.view(at(0), "m-1", category="mattress", price=899)
    assert t.state().pending == ()
    order(t, at(hours=1), "o1", ("pillow", "bedding"))
    t.view(at(hours=2), "m-1", category="mattress", price=899)
    assert [p.trigger for p in t.state().pending] == ["mattress"]


def test_contact_policy_variants_and_conversion() -> None:
    t = timeline(socks={**SOCKS, "variants": {"A": 1}, "offers": {"A": "SOCKS-A"}})
    t.send("preferences_updated", at(-1), marketing_opt_in=True)
    order(t, at(0), "o1", ("shoe-9", "running_shoes"))
    t.advance(at(days=3))
    (decision,) = t.decisions("socks")
    assert (decision.variant, decision.offer) == ("A", "SOCKS-A")
    order(t, at(days=3, hours=1), "o2", ("hat", "hats"))
    (conversion,) = [c for c in t.conversions() if c.trigger == "socks"]
    assert conversion.trigger_id == decision.trigger_id and conversion.variant == "A"


def test_same_input_same_ids() -> None:
    ids = []
    for _ in range(2):
        t = timeline(socks=SOCKS)
        order(t, at(0), "o1", ("shoe-9", "running_shoes"))
        t.advance(at(days=4))
        ids.append([d.trigger_id for d in t.decisions()])
    assert ids[0] == ids[1] and len(ids[0]) == 1


@pytest.mark.parametrize(
    ("custom", "path", "reason"),
    [
        ("x: {when: {type: teleported}}", "triggers.custom.x.when.type", "unknown event type"),
        ("x: {when: {type: search, category: [a]}}", "triggers.custom.x.when", "category"),
        (
            "x: {when: {type: order_placed}, unless: [{type: search, min_total: 3}]}",
            "triggers.custom.x.unless[0]",
            "min_total",
        ),
        (
            "x: {when: {type: search, colour: [red]}}",
            "triggers.custom.x.when.colour",
            "unknown key",
        ),
        ("x: {stages: [1h]}", "triggers.custom.x.when", "required"),
        ("Bad-Name: {when: {type: search}}", "triggers.custom.Bad-Name", "a-z"),
        ("lapsing: {when: {type: search}}", "triggers.custom.lapsing", "built-in"),
        (
            "x: {when: {type: search}, offers: {Z: Q}}",
            "triggers.custom.x.offers.Z",
            "unknown offer key",
        ),
    ],
)
def test_invalid_custom_triggers_are_refused_with_the_key_path(
    custom: str, path: str, reason: str
) -> None:
    with pytest.raises(RulesError) as caught:
        parse_rules(f"triggers:\n  custom:\n    {custom}\n")
    assert any(p == path and reason in r for p, r in caught.value.errors), caught.value.errors


def test_rules_without_new_triggers_keep_their_version_label() -> None:
    plain = parse_rules("version: 3\n")
    assert plain.version_label == parse_rules("version: 3\ntriggers: {custom: {}}\n").version_label
    assert (
        plain.version_label
        != parse_rules("version: 3\ntriggers: {birthday: {enabled: true}}\n").version_label
    )


def test_the_commented_custom_examples_in_rules_example_yaml_are_valid() -> None:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "rules.example.yaml").read_text()
    lines = text.splitlines()
    start = lines.index("  # custom:")
    block = []
    for line in lines[start:]:
        if not line.startswith("  # "):
            break
        block.append("  " + line[4:])
    rules = parse_rules("triggers:\n" + "\n".join(block) + "\n")
    assert set(rules.triggers.custom) == {"socks_after_shoes", "mattress_care"}
    assert rules.triggers.custom["socks_after_shoes"].enabled is True


@pytest.mark.parametrize(
    ("cooldown", "statuses"), [(None, ["sent", "suppressed"]), ("0s", ["sent", "sent"])]
)
def test_a_custom_trigger_reaches_a_shopper_at_most_once_a_day_by_default(
    cooldown: str | None, statuses: list[str]
) -> None:
    # "Mug after coffee" re-arms on every coffee order: without the built-in triggers' 24h
    # cooldown, a shopper ordering coffee twice a day heard of mugs twice a day.
    mug = {
        "enabled": True,
        "when": {"type": "order_placed", "category": ["coffee"]},
        "stages": ["1h"],
    }
    if cooldown is not None:
        mug["cooldown"] = cooldown
    t = timeline(mug=mug)
    order(t, at(0), "o1", ("beans", "coffee"))
    order(t, at(hours=5), "o2", ("beans", "coffee"))
    t.advance(at(days=1))
    decisions = t.decisions("mug")
    assert [d.status for d in decisions] == statuses
    assert [d.reason for d in decisions][1] == (None if cooldown else "cooldown")
