"""Browse abandonment: a viewed product, re-armed by newer views, cancelled by cart or order."""

from __future__ import annotations

import pytest

from tests.unit.timelines import Timeline, at, brief, iso, make_rules

pytestmark = pytest.mark.unit

BROWSE_ONLY = ("browse_abandonment",)


def test_a_viewed_product_is_reminded_after_the_delay() -> None:
    tl = Timeline(make_rules(only=BROWSE_ONLY))
    tl.view(at(), "p1", category="shoes", price=59.9)
    tl.advance(at(days=1))
    (decision,) = tl.decisions()
    assert brief(decision) == ("browse_abandonment", 1, "sent", None, iso(at(hours=2)))
    assert decision.context == {
        "product_id": "p1",
        "category": "shoes",
        "price": 59.9,
        "viewed_at": iso(at()),
    }


def test_a_newer_view_re_arms_about_the_newer_product() -> None:
    tl = Timeline(make_rules(only=BROWSE_ONLY))
    tl.view(at(), "p1")
    tl.view(at(minutes=90), "p2")
    tl.advance(at(days=1))
    (decision,) = tl.decisions()
    assert decision.fired_at == at(minutes=210)
    assert decision.context["product_id"] == "p2"


def test_an_older_view_changes_nothing() -> None:
    tl = Timeline(make_rules(only=BROWSE_ONLY))
    tl.view(at(minutes=30), "p2")
    tl.view(at(), "p1")  # delivered late
    tl.advance(at(days=1))
    (decision,) = tl.decisions()
    assert decision.due_at == at(minutes=150)
    assert decision.context["product_id"] == "p2"


def test_adding_the_viewed_product_to_the_cart_cancels() -> None:
    tl = Timeline(make_rules(only=BROWSE_ONLY))
    tl.view(at(), "p1")
    tl.add(at(minutes=10), "p1")
    tl.advance(at(days=1))
    assert tl.decisions() == []


def test_adding_another_product_to_the_cart_does_not_cancel() -> None:
    tl = Timeline(make_rules(only=BROWSE_ONLY))
    tl.view(at(), "p1")
    tl.add(at(minutes=10), "p9")
    tl.advance(at(days=1))
    assert [d.context["product_id"] for d in tl.decisions()] == ["p1"]


def test_any_order_cancels() -> None:
    tl = Timeline(make_rules(only=BROWSE_ONLY))
    tl.view(at(), "p1")
    tl.order(at(minutes=10), "o1", ["p7"])
    tl.advance(at(days=1))
    assert tl.decisions() == []


def test_a_view_not_later_than_the_latest_order_does_not_arm() -> None:
    tl = Timeline(make_rules(only=BROWSE_ONLY))
    tl.order(at(minutes=10), "o1", ["p7"])
    tl.view(at(minutes=5), "p1")  # delivered after the order
    tl.advance(at(days=1))
    assert tl.decisions() == []


def test_viewing_a_product_already_in_the_cart_does_not_arm() -> None:
    tl = Timeline(make_rules(only=BROWSE_ONLY))
    tl.add(at(), "p1")
    tl.view(at(minutes=5), "p1")
    tl.advance(at(days=1))
    assert tl.decisions() == []


def test_several_stages() -> None:
    rules = make_rules(only=BROWSE_ONLY, triggers={"browse_abandonment": {"stages": ["2h", "1d"]}})
    tl = Timeline(rules)
    tl.view(at(), "p1")
    tl.advance(at(days=2))
    assert [(d.stage, d.fired_at) for d in tl.decisions()] == [(1, at(hours=2)), (2, at(days=1))]


def test_a_view_delivered_after_the_add_that_cancels_it_arms_nothing() -> None:
    # Topics are not ordered relative to each other: the cart topic may deliver first.
    tl = Timeline(make_rules(only=BROWSE_ONLY))
    tl.add(at(minutes=10), "p1")
    tl.send("cart_item_removed", at(minutes=11), product_id="p1")
    tl.view(at(), "p1")  # the view came before the add, but arrives after it
    tl.advance(at(days=1))
    assert tl.decisions() == []


def test_a_view_after_an_earlier_add_and_removal_still_arms() -> None:
    tl = Timeline(make_rules(only=BROWSE_ONLY))
    tl.add(at(), "p1")
    tl.send("cart_item_removed", at(minutes=1), product_id="p1")
    tl.view(at(minutes=5), "p1")
    tl.advance(at(days=1))
    (decision,) = tl.decisions()
    assert decision.due_at == at(minutes=125)
