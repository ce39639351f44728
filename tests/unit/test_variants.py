"""A/B variants (contract 7.2): rules, assignment, decisions, offers, conversions, state."""

from __future__ import annotations

from collections import Counter

import orjson
import pytest
from scipy.stats import chi2_contingency

from triggers.contact_policy import in_holdout
from triggers.held import hold, release
from triggers.records import record_to_json
from triggers.rules import Rules, RulesError, parse_rules
from triggers.state import decode_state, encode_state
from triggers.variants import variant_of, weighted

from .timelines import Timeline, at, make_rules

CART = "cart_abandonment"
SPLIT = {"A": 70, "B": 30}
USERS = [f"user-{n}" for n in range(10_000)]


def users_in(variant: str, count: int, variants: dict[str, int] = SPLIT) -> list[str]:
    table = weighted(variants)
    found = [u for u in USERS if variant_of(u, CART, "nudge", table) == variant]
    return found[:count]


def cart_rules(**sections: object) -> Rules:
    cart = {"variants": SPLIT, "stages": ["1h"], "cooldown": 0}
    return make_rules(only=(CART,), **{"triggers": {CART: cart}, **sections})


# --- assignment -------------------------------------------------------------------------------


def test_assignment_follows_the_weights() -> None:
    table = weighted(SPLIT)
    counts = Counter(variant_of(u, CART, "nudge", table) for u in USERS)
    assert set(counts) == {"A", "B"}
    assert counts["A"] / len(USERS) == pytest.approx(0.70, abs=0.015)
    three = weighted({"x": 1, "y": 1, "z": 2})
    counts = Counter(variant_of(u, CART, "nudge", three) for u in USERS)
    assert [counts[n] / len(USERS) for n in "xyz"] == pytest.approx([0.25, 0.25, 0.5], abs=0.015)


def test_assignment_is_deterministic_and_ignores_the_file_order() -> None:
    forward, backward = weighted({"A": 70, "B": 30}), weighted({"B": 30, "A": 70})
    picks = [variant_of(u, CART, "nudge", forward) for u in USERS[:500]]
    assert picks == [variant_of(u, CART, "nudge", backward) for u in USERS[:500]]
    assert picks == [variant_of(u, CART, "nudge", forward) for u in USERS[:500]]


def test_assignment_depends_on_the_trigger_and_the_salt() -> None:
    table = weighted({"A": 1, "B": 1})
    base = [variant_of(u, CART, "nudge", table) for u in USERS[:1000]]
    other_trigger = [variant_of(u, "lapsing", "nudge", table) for u in USERS[:1000]]
    other_salt = [variant_of(u, CART, "spring", table) for u in USERS[:1000]]
    for other in (other_trigger, other_salt):
        same = sum(a == b for a, b in zip(base, other, strict=True))
        assert 400 < same < 600  # unrelated draws agree about half the time


def test_no_variants_gives_none_and_one_variant_gives_it() -> None:
    assert variant_of("u1", CART, "nudge", ()) is None
    assert {variant_of(u, CART, "nudge", (("only", 5),)) for u in USERS[:100]} == {"only"}


def test_the_holdout_does_not_thin_one_variant_more() -> None:
    """Variant and holdout draws are independent: the holdout rate is the same in each
    variant, and the variant split is the same inside and outside the holdout."""
    table = weighted(SPLIT)
    cells = Counter(
        (variant_of(u, CART, "nudge", table), in_holdout(u, CART, "nudge", 20.0)) for u in USERS
    )
    for name in SPLIT:
        in_arm = cells[(name, True)] + cells[(name, False)]
        assert cells[(name, True)] / in_arm == pytest.approx(0.20, abs=0.02)
    table_2x2 = [[cells[(n, True)], cells[(n, False)]] for n in SPLIT]
    assert chi2_contingency(table_2x2).pvalue > 0.01


# --- decisions, offers, conversions -------------------------------------------------------------


def test_a_user_keeps_the_variant_across_episodes() -> None:
    tl = Timeline(cart_rules())
    (user,) = users_in("B", 1)
    for day in range(4):
        tl.add(at(days=day), f"p{day}", user=user)
        tl.advance(at(days=day, hours=2))
        tl.order(at(days=day, hours=3), f"o{day}", [f"p{day}"], user=user)
    decisions = tl.decisions(CART)
    assert len(decisions) == 4 and len({d.trigger_id for d in decisions}) == 4
    assert {d.variant for d in decisions} == {"B"}
    assert [c.variant for c in tl.conversions()] == ["B"] * 4


def test_decisions_carry_the_assigned_variant_and_triggers_without_variants_none() -> None:
    rules = make_rules(
        only=(CART, "browse_abandonment"),
        triggers={CART: {"variants": SPLIT}, "browse_abandonment": {"stages": ["2h"]}},
        contact_policy={"frequency_cap": {"max": 10}},
    )
    tl = Timeline(rules)
    users = users_in("A", 3) + users_in("B", 3)
    for user in users:
        tl.add(at(), "p1", user=user)
        tl.view(at(), "p2", user=user)
    tl.advance(at(hours=3))
    got = {d.user_id: d.variant for d in tl.decisions(CART) if d.stage == 1}
    assert got == {u: ("A" if n < 3 else "B") for n, u in enumerate(users)}
    assert {d.variant for d in tl.decisions("browse_abandonment")} == {None}


def test_a_holdout_decision_has_no_variant_and_converts_without_one() -> None:
    tl = Timeline(cart_rules(contact_policy={"holdout_percent": 100}))
    (user,) = users_in("A", 1)
    tl.add(at(), "p1", user=user)
    tl.advance(at(hours=2))
    (decision,) = tl.decisions()
    assert (decision.status, decision.variant) == ("holdout", None)
    (conversion,) = tl.order(at(hours=3), "o1", ["p1"], user=user)
    assert (conversion.arm, conversion.variant) == ("holdout", None)


def test_suppressed_decisions_keep_the_variant() -> None:
    tl = Timeline(cart_rules(), suppressed=users_in("A", 1))
    tl.add(at(), "p1", user=users_in("A", 1)[0])
    tl.advance(at(hours=2))
    (decision,) = tl.decisions()
    assert (decision.status, decision.reason, decision.variant) == ("suppressed", "opted_out", "A")


def test_offers_per_variant_come_before_segment_and_default() -> None:
    offers = {CART: {"A": "TENOFF", "dormant": "COMEBACK", "default": "FREESHIP"}}
    tl = Timeline(cart_rules(offers=offers))
    a_users, b_users = users_in("A", 2), users_in("B", 2)
    for user in (a_users[1], b_users[1]):  # dormant: one order 40 days ago
        tl.order(at(days=-40), f"old-{user}", ["x"], user=user)
    for user in a_users + b_users:
        tl.add(at(), "p1", user=user)
    tl.advance(at(hours=2))
    got = {d.user_id: (d.segment, d.offer) for d in tl.decisions()}
    assert got == {
        a_users[0]: ("prospect", "TENOFF"),
        a_users[1]: ("dormant", "TENOFF"),  # the variant's offer wins over the segment's
        b_users[0]: ("prospect", "FREESHIP"),
        b_users[1]: ("dormant", "COMEBACK"),
    }
    assert (
        Rules.model_validate(
            {"triggers": {CART: {"variants": SPLIT}}, "offers": offers}
        ).offers.offer(CART, "core", "A")
        == "TENOFF"
    )


def test_conversions_carry_the_variant_and_the_record_shows_it() -> None:
    tl = Timeline(cart_rules())
    (user,) = users_in("B", 1)
    tl.add(at(), "p1", user=user)
    tl.advance(at(hours=2))
    (conversion,) = tl.order(at(hours=3), "o1", ["p1"], user=user)
    assert (conversion.arm, conversion.variant) == ("treatment", "B")
    decision = orjson.loads(record_to_json(tl.decisions()[0]))
    assert list(decision)[-2:] == ["variant", "channel"] and decision["variant"] == "B"
    converted = orjson.loads(record_to_json(conversion))
    assert list(converted)[-2:] == ["variant", "channel"] and converted["variant"] == "B"


def test_records_without_variants_say_null() -> None:
    tl = Timeline(make_rules(only=(CART,)))
    tl.add(at(), "p1")
    tl.advance(at(hours=2))
    tl.order(at(hours=3), "o1", ["p1"])
    assert [orjson.loads(record_to_json(r))["variant"] for r in tl.records] == [None, None]


def test_the_variant_survives_the_stored_state_and_a_held_release() -> None:
    tl = Timeline(cart_rules())
    (user,) = users_in("A", 1)
    tl.add(at(), "p1", user=user)
    state = tl.state(user)
    before = state.contacts
    tl.advance(at(hours=2))
    (decision,) = tl.decisions()
    after = tl.state(user)
    assert after.contacts.attributable is not None and after.contacts.attributable.variant == "A"
    assert decode_state(encode_state(after)) == after
    held_state, out = hold(before, after, (decision,))
    assert out == () and decode_state(encode_state(held_state)) == held_state
    released_state, (released,) = release(held_state, at(hours=2, minutes=5), False, rules_delay())
    assert (released.status, released.variant) == ("sent", "A")
    attributable = released_state.contacts.attributable
    assert attributable is not None and attributable.variant == "A"


def rules_delay():  # the default max_delay
    return Rules().contact_policy.max_delay


def test_replay_with_variants_is_byte_identical_run_to_run() -> None:
    def run() -> bytes:
        tl = Timeline(cart_rules(contact_policy={"holdout_percent": 30}))
        for n, user in enumerate(USERS[:60]):
            tl.add(at(minutes=n), "p1", user=user)
        tl.advance(at(hours=3))
        for n, user in enumerate(USERS[:60:3]):
            tl.order(at(hours=4, minutes=n), f"o{n}", ["p1"], user=user)
        return b"\n".join(record_to_json(r) for r in tl.records)

    first = run()
    assert first == run()
    variants = Counter(orjson.loads(line)["variant"] for line in first.splitlines())
    assert set(variants) == {"A", "B", None}


# --- the rules file ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "path", "line", "message"),
    [
        (
            "triggers:\n  lapsing:\n    variants: {A: 0}\n",
            "triggers.lapsing.variants.A",
            3,
            "greater than or equal to 1",
        ),
        (
            "triggers:\n  lapsing:\n    variants:\n      A: 2.5\n",
            "triggers.lapsing.variants.A",
            4,
            "integer",
        ),
        ("triggers: {lapsing: {variants: {A: '3'}}}", "triggers.lapsing.variants.A", 1, "integer"),
        ("triggers: {lapsing: {variants: {A: true}}}", "triggers.lapsing.variants.A", 1, "integer"),
        (
            "triggers: {lapsing: {variants: {A: 1000001}}}",
            "triggers.lapsing.variants.A",
            1,
            "1000000",
        ),
        (
            f"triggers: {{lapsing: {{variants: {{{'x' * 33}: 1}}}}}}",
            "triggers.lapsing.variants.",
            1,
            "32",
        ),
        (
            "triggers: {lapsing: {variants: {core: 1}}}",
            "triggers.lapsing.variants.core",
            1,
            "segment",
        ),
        (
            "triggers: {lapsing: {variants: {default: 1}}}",
            "triggers.lapsing.variants.default",
            1,
            "default",
        ),
        ("triggers: {lapsing: {variants: [A, B]}}", "triggers.lapsing.variants", 1, "a mapping"),
        (
            "triggers: {lapsing: {variants: {A: 1}}}\noffers:\n  lapsing: {B: X}\n",
            "offers.lapsing.B",
            3,
            "variants: 'A'",
        ),
        ("offers:\n  dormancy:\n    A: X\n", "offers.dormancy.A", 3, "variants: none"),
    ],
)
def test_invalid_variants_are_refused_with_the_key_path_and_line(
    text: str, path: str, line: int, message: str
) -> None:
    with pytest.raises(RulesError) as caught:
        parse_rules(text, "rules.yaml")
    (error,) = caught.value.messages()
    assert error.startswith(f"rules.yaml:{line}: {path}")
    assert message in error


def test_variant_names_may_be_integers_in_yaml_and_offers_may_name_them() -> None:
    rules = parse_rules(
        "triggers: {dormancy: {variants: {1: 1, 2: 3}}}\noffers: {dormancy: {2: TWO}}"
    )
    assert rules.triggers.dormancy.variants == {"1": 1, "2": 3}
    assert rules.offers.offer("dormancy", "core", "2") == "TWO"


def test_an_empty_variant_table_keeps_the_rules_version() -> None:
    assert parse_rules("triggers: {lapsing: {variants: {}}}").version_label == Rules().version_label
    assert (
        parse_rules("triggers: {lapsing: {variants: {A: 1}}}").version_label
        != Rules().version_label
    )
