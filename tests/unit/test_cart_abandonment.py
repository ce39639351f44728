"""Cart abandonment: arming, stages, re-arming, cancellation, history, context."""

from __future__ import annotations

import pytest

from tests.unit.timelines import Timeline, at, brief, iso, make_rules

pytestmark = pytest.mark.unit

CART_ONLY = ("cart_abandonment",)


def test_a_left_cart_gets_both_stages_at_their_due_times() -> None:
    tl = Timeline(make_rules(only=CART_ONLY))
    tl.add(at(), "p1", 12.5, quantity=2, category="coffee")
    assert tl.advance(at(minutes=59)) == []
    tl.advance(at(days=3))
    assert [brief(d) for d in tl.decisions()] == [
        ("cart_abandonment", 1, "sent", None, iso(at(hours=1))),
        ("cart_abandonment", 2, "sent", None, iso(at(hours=24))),
    ]
    first, second = tl.decisions()
    assert first.due_at == at(hours=1) and second.due_at == at(hours=24)
    assert first.trigger_id != second.trigger_id
    assert first.context == {
        "lines": [{"product_id": "p1", "quantity": 2, "unit_price": 12.5, "category": "coffee"}],
        "items": 2,
        "value": 25.0,
        "checkout_started": False,
        "last_cart_activity": iso(at()),
    }
    assert first.segment == "prospect" and first.offer is None
    assert first.rules_version == tl.rules.version_label


def test_new_cart_activity_re_arms_from_the_latest_activity() -> None:
    tl = Timeline(make_rules(only=CART_ONLY, triggers={"cart_abandonment": {"cooldown": 0}}))
    tl.add(at(), "p1")
    tl.add(at(minutes=50), "p2")  # before stage 1 of the first episode
    tl.advance(at(days=2))
    decisions = tl.decisions()
    assert [(d.stage, d.fired_at) for d in decisions] == [
        (1, at(minutes=110)),
        (2, at(hours=24, minutes=50)),
    ]
    assert [line["product_id"] for line in decisions[0].context["lines"]] == ["p1", "p2"]


def test_re_arming_starts_a_new_episode_with_new_ids() -> None:
    tl = Timeline(make_rules(only=CART_ONLY, triggers={"cart_abandonment": {"cooldown": 0}}))
    tl.add(at(), "p1")
    tl.advance(at(hours=2))  # stage 1 of episode 1
    tl.add(at(hours=3), "p2")  # re-arms: episode 2
    tl.advance(at(days=3))
    ids = [(d.stage, d.trigger_id) for d in tl.decisions()]
    assert [stage for stage, _ in ids] == [1, 1, 2]
    assert len({trigger_id for _, trigger_id in ids}) == 3


@pytest.mark.parametrize(
    ("kind", "fields"),
    [
        ("cart_item_removed", {"product_id": "p1"}),
        ("cart_item_removed", {"product_id": "p1", "quantity": 2}),
        ("cart_cleared", {}),
    ],
)
def test_an_emptied_cart_cancels(kind: str, fields: dict) -> None:
    tl = Timeline(make_rules(only=CART_ONLY))
    tl.add(at(), "p1", quantity=2)
    tl.send(kind, at(minutes=30), **fields)
    tl.advance(at(days=3))
    assert tl.decisions() == []
    assert tl.state().cart.lines == ()


def test_removing_part_of_the_cart_keeps_the_reminder_with_what_is_left() -> None:
    tl = Timeline(make_rules(only=CART_ONLY))
    tl.add(at(), "p1", quantity=3)
    tl.add(at(minutes=1), "p2")
    tl.send("cart_item_removed", at(minutes=2), product_id="p1", quantity=1)
    tl.send("cart_item_removed", at(minutes=3), product_id="p2")
    tl.advance(at(hours=2))
    (decision,) = tl.decisions()
    assert decision.fired_at == at(minutes=63)
    assert decision.context["lines"] == [
        {"product_id": "p1", "quantity": 2, "unit_price": 10.0, "category": None}
    ]


def test_an_order_cancels_the_episode_and_empties_the_cart() -> None:
    tl = Timeline(make_rules(only=CART_ONLY))
    tl.add(at(), "p1")
    tl.advance(at(hours=2))  # stage 1 goes
    tl.order(at(hours=5), "o1", ["p1"])
    tl.advance(at(days=3))
    assert [d.stage for d in tl.decisions()] == [1]  # stage 2 never comes
    assert tl.state().cart.lines == ()


def test_cart_events_not_later_than_the_latest_order_are_history() -> None:
    tl = Timeline(make_rules(only=CART_ONLY))
    tl.order(at(hours=1), "o1", ["p1"])
    # the cart topic lags behind the order topic: these arrive after the order
    tl.add(at(minutes=30), "p1")
    tl.add(at(hours=1), "p2")
    tl.send("checkout_started", at(minutes=55))
    tl.advance(at(days=3))
    assert tl.decisions() == []
    assert tl.state().cart.lines == ()


def test_an_order_older_than_the_cart_activity_leaves_the_cart_alone() -> None:
    tl = Timeline(make_rules(only=CART_ONLY))
    tl.add(at(hours=2), "p2")
    tl.order(at(hours=1), "o1", ["p1"])  # placed before the cart activity, delivered late
    tl.advance(at(hours=4))
    (decision,) = tl.decisions()
    assert decision.due_at == at(hours=3)
    assert [line.product_id for line in tl.state().cart.lines] == ["p2"]


def test_checkout_started_arms_even_when_the_cart_lines_are_unknown() -> None:
    tl = Timeline(make_rules(only=CART_ONLY))
    tl.send("checkout_started", at())
    tl.advance(at(hours=2))
    (decision,) = tl.decisions()
    assert decision.context["checkout_started"] is True
    assert decision.context["lines"] == []


def test_checkout_started_re_arms_a_non_empty_cart() -> None:
    tl = Timeline(make_rules(only=CART_ONLY))
    tl.add(at(), "p1")
    tl.send("checkout_started", at(minutes=40))
    tl.advance(at(hours=3))
    (decision,) = tl.decisions()
    assert decision.fired_at == at(minutes=100)
    assert decision.context["checkout_started"] is True


def test_a_cart_below_min_cart_value_does_not_arm() -> None:
    rules = make_rules(only=CART_ONLY, triggers={"cart_abandonment": {"min_cart_value": 50}})
    tl = Timeline(rules)
    tl.add(at(), "p1", 20.0)
    tl.advance(at(hours=2))
    assert tl.decisions() == []
    tl.add(at(hours=3), "p2", 30.0)  # now 50: arms
    tl.advance(at(hours=5))
    assert [d.context["value"] for d in tl.decisions()] == [50.0]


def test_a_disabled_trigger_never_arms() -> None:
    tl = Timeline(make_rules(only=()))
    tl.add(at(), "p1")
    tl.advance(at(days=200))
    assert tl.decisions() == []
    assert tl.state().pending == ()


def test_an_older_cart_event_updates_contents_but_not_the_schedule() -> None:
    tl = Timeline(make_rules(only=CART_ONLY))
    tl.add(at(minutes=10), "p1")
    tl.add(at(minutes=5), "p2")  # older, delivered late
    tl.advance(at(hours=2))
    (decision,) = tl.decisions()
    assert decision.due_at == at(minutes=70)
    assert decision.context["last_cart_activity"] == iso(at(minutes=10))
    assert [line["product_id"] for line in decision.context["lines"]] == ["p1", "p2"]


def test_repeated_adds_of_a_product_merge_into_one_line() -> None:
    tl = Timeline(make_rules(only=CART_ONLY))
    tl.add(at(), "p1", 10.0)
    tl.add(at(minutes=1), "p1", 11.0, quantity=2)
    tl.advance(at(hours=2))
    (decision,) = tl.decisions()
    assert decision.context["lines"] == [
        {"product_id": "p1", "quantity": 3, "unit_price": 11.0, "category": None}
    ]
    assert decision.context["value"] == 33.0


def test_cart_events_older_than_a_cancelled_order_stay_history() -> None:
    # The order topic delivered the order and its cancellation before the cart topic
    # delivered the cart activity that preceded them: the order still emptied that cart.
    tl = Timeline(make_rules(only=("cart_abandonment",)))
    tl.order(at(minutes=5), "o1")
    tl.send("order_cancelled", at(minutes=8), order_id="o1")
    tl.add(at(), "p1")
    tl.send("checkout_started", at(minutes=1))
    tl.advance(at(days=2))
    assert tl.decisions() == []
