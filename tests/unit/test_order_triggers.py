"""Triggers armed by orders: replenishment, first-purchase follow-up, lapsing, and cancellations."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.unit.timelines import Timeline, at, brief, iso, make_rules

pytestmark = pytest.mark.unit


# --- replenishment ------------------------------------------------------------------------


def replenishment_rules(**settings: object):
    return make_rules(only=("replenishment",), triggers={"replenishment": settings})


def test_replenishment_from_a_catalogue_product_interval() -> None:
    tl = Timeline(replenishment_rules(products={"coffee-1": "10d"}))
    tl.order(at(), "o1", ["coffee-1", "mug"])
    tl.advance(at(days=30))
    (decision,) = tl.decisions()
    assert brief(decision) == ("replenishment", 1, "sent", None, iso(at(days=9)))
    assert decision.context == {
        "product_id": "coffee-1",
        "category": None,
        "last_purchase": iso(at()),
        "purchases": 1,
        "interval_days": 10.0,
        "interval_source": "product",
    }


def test_replenishment_from_a_category_interval() -> None:
    tl = Timeline(replenishment_rules(categories={"pet-food": "30d"}, fire_at_fraction=0.5))
    tl.order(at(), "o1", ["kibble"], category="pet-food")
    tl.advance(at(days=40))
    (decision,) = tl.decisions()
    assert decision.fired_at == at(days=15)
    assert decision.context["interval_source"] == "category"


def test_product_interval_wins_over_category() -> None:
    tl = Timeline(replenishment_rules(products={"kibble": "20d"}, categories={"pet-food": "30d"}))
    tl.order(at(), "o1", ["kibble"], category="pet-food")
    tl.advance(at(days=40))
    assert [d.fired_at for d in tl.decisions()] == [at(days=18)]


def test_replenishment_learned_from_the_users_own_rhythm() -> None:
    tl = Timeline(replenishment_rules())
    tl.order(at(), "o1", ["tea"])
    tl.order(at(days=10), "o2", ["tea"])  # one gap of 10 days: min_purchases 2 reached
    tl.advance(at(days=30))
    (decision,) = tl.decisions()
    assert decision.fired_at == at(days=19)
    assert decision.context["interval_source"] == "learned"
    assert decision.context["purchases"] == 2


def test_learning_can_be_switched_off_and_unknown_intervals_never_arm() -> None:
    tl = Timeline(replenishment_rules(learn_from_history=False))
    tl.order(at(), "o1", ["tea"])
    tl.order(at(days=10), "o2", ["tea"])
    tl.advance(at(days=60))
    assert tl.decisions() == []


def test_a_new_purchase_of_the_product_re_arms() -> None:
    tl = Timeline(replenishment_rules(products={"coffee-1": "10d"}))
    tl.order(at(), "o1", ["coffee-1"])
    tl.order(at(days=5), "o2", ["coffee-1"])
    tl.advance(at(days=30))
    (decision,) = tl.decisions()
    assert decision.fired_at == at(days=14)


def test_each_product_has_its_own_episode() -> None:
    tl = Timeline(replenishment_rules(products={"a": "10d", "b": "20d"}))
    tl.order(at(), "o1", ["a", "b"])
    tl.advance(at(days=30))
    assert [(d.context["product_id"], d.fired_at) for d in tl.decisions()] == [
        ("a", at(days=9)),
        ("b", at(days=18)),
    ]


def test_cancelling_the_latest_purchase_recomputes_from_what_remains() -> None:
    tl = Timeline(replenishment_rules(products={"coffee-1": "10d"}))
    tl.order(at(), "o1", ["coffee-1"])
    tl.order(at(days=5), "o2", ["coffee-1"])
    tl.send("order_cancelled", at(days=6), order_id="o2")
    tl.advance(at(days=30))
    (decision,) = tl.decisions()
    assert decision.fired_at == at(days=9)  # back on o1's schedule
    assert decision.context["purchases"] == 1


def test_cancelling_the_only_purchase_disarms() -> None:
    tl = Timeline(replenishment_rules(products={"coffee-1": "10d"}))
    tl.order(at(), "o1", ["coffee-1"])
    tl.send("order_cancelled", at(hours=1), order_id="o1")
    tl.advance(at(days=30))
    assert tl.decisions() == []


def test_a_fired_replenishment_is_not_re_armed_by_a_change_that_keeps_its_anchor() -> None:
    tl = Timeline(replenishment_rules())  # learned intervals
    tl.order(at(), "o1", ["tea"])
    tl.order(at(days=10), "o2", ["tea"])
    tl.advance(at(days=20))  # fired at day 19 (anchor: day 10)
    tl.order(at(days=4), "o0", ["tea"])  # an old order, delivered late: the anchor stays
    tl.advance(at(days=40))
    assert [d.fired_at for d in tl.decisions()] == [at(days=19)]


def test_cancelling_back_to_a_purchase_whose_reminder_time_has_passed_arms_nothing() -> None:
    tl = Timeline(replenishment_rules(products={"coffee-1": "10d"}))
    tl.order(at(), "o1", ["coffee-1"])
    tl.advance(at(days=9, hours=1))  # o1's reminder went at day 9
    tl.order(at(days=10), "o2", ["coffee-1"])
    tl.send("order_cancelled", at(days=11), order_id="o2")  # back to o1: due day 9, passed
    tl.advance(at(days=40))
    assert [d.fired_at for d in tl.decisions()] == [at(days=9)]
    assert tl.state().pending == ()


# --- first-purchase follow-up --------------------------------------------------------------


FIRST_ONLY = ("first_purchase_followup",)


def test_the_first_order_gets_a_follow_up() -> None:
    tl = Timeline(make_rules(only=FIRST_ONLY))
    tl.order(at(), "o1", ["p1", "p2"], price=15.0)
    tl.advance(at(days=5))
    (decision,) = tl.decisions()
    assert brief(decision) == ("first_purchase_followup", 1, "sent", None, iso(at(days=3)))
    assert decision.context == {
        "order_id": "o1",
        "order_total": 30.0,
        "ordered_at": iso(at()),
        "products": ["p1", "p2"],
    }
    assert decision.segment == "new"


def test_another_order_before_it_is_due_cancels_the_follow_up() -> None:
    tl = Timeline(make_rules(only=FIRST_ONLY))
    tl.order(at(), "o1")
    tl.order(at(days=1), "o2")
    tl.advance(at(days=10))
    assert tl.decisions() == []


def test_later_orders_do_not_get_a_follow_up() -> None:
    tl = Timeline(make_rules(only=FIRST_ONLY))
    tl.order(at(), "o1")
    tl.advance(at(days=4))
    tl.order(at(days=5), "o2")
    tl.advance(at(days=20))
    assert [d.context["order_id"] for d in tl.decisions()] == ["o1"]


def test_cancelling_the_first_order_disarms_the_follow_up() -> None:
    tl = Timeline(make_rules(only=FIRST_ONLY))
    tl.order(at(), "o1")
    tl.send("order_cancelled", at(hours=2), order_id="o1")
    tl.advance(at(days=10))
    assert tl.decisions() == []


def test_after_a_cancelled_first_order_the_next_order_is_the_first() -> None:
    tl = Timeline(make_rules(only=FIRST_ONLY))
    tl.order(at(), "o1")
    tl.send("order_cancelled", at(hours=2), order_id="o1")
    tl.order(at(days=1), "o2")
    tl.advance(at(days=10))
    assert [(d.context["order_id"], d.fired_at) for d in tl.decisions()] == [("o2", at(days=4))]


def test_an_order_placed_after_its_cancellation_arrived_is_ignored() -> None:
    tl = Timeline(make_rules(only=FIRST_ONLY))
    tl.send("order_cancelled", at(hours=2), order_id="o1")
    tl.order(at(), "o1")  # the placement message was late
    tl.advance(at(days=10))
    assert tl.decisions() == []
    assert tl.state().history.count == 0


# --- lapsing -------------------------------------------------------------------------------


LAPSING_ONLY = ("lapsing",)


def test_lapsing_after_factor_times_the_mean_gap() -> None:
    tl = Timeline(make_rules(only=LAPSING_ONLY))
    for n, day in enumerate((0, 10, 20)):
        tl.order(at(days=day), f"o{n}")
    tl.advance(at(days=60))
    (decision,) = tl.decisions()
    assert brief(decision) == ("lapsing", 1, "sent", None, iso(at(days=35)))
    assert decision.context == {
        "last_order_id": "o2",
        "last_order_at": iso(at(days=20)),
        "orders": 3,
        "mean_gap_days": 10.0,
    }
    assert decision.segment == "potential"


def test_fewer_than_min_orders_never_lapse() -> None:
    tl = Timeline(make_rules(only=LAPSING_ONLY))
    tl.order(at(), "o1")
    tl.order(at(days=10), "o2")
    tl.advance(at(days=200))
    assert tl.decisions() == []


def test_a_new_order_re_arms_lapsing() -> None:
    tl = Timeline(make_rules(only=LAPSING_ONLY))
    for n, day in enumerate((0, 10, 20, 30)):
        tl.order(at(days=day), f"o{n}")
    tl.advance(at(days=100))
    (decision,) = tl.decisions()
    assert decision.fired_at == at(days=45)


def test_cancelling_the_last_order_recomputes_lapsing() -> None:
    tl = Timeline(make_rules(only=LAPSING_ONLY))
    for n, day in enumerate((0, 10, 20, 30)):
        tl.order(at(days=day), f"o{n}")
    tl.send("order_cancelled", at(days=31), order_id="o3")
    tl.advance(at(days=100))
    (decision,) = tl.decisions()
    assert decision.fired_at == at(days=35)  # o0..o2: mean gap 10 -> 20 + 15
    assert decision.context["orders"] == 3


def test_cancelling_down_to_fewer_than_min_orders_disarms_lapsing() -> None:
    tl = Timeline(make_rules(only=LAPSING_ONLY))
    for n, day in enumerate((0, 10, 20)):
        tl.order(at(days=day), f"o{n}")
    tl.send("order_cancelled", at(days=21), order_id="o1")
    tl.advance(at(days=100))
    assert tl.decisions() == []


def test_an_order_placed_twice_counts_once() -> None:
    tl = Timeline(make_rules(only=LAPSING_ONLY))
    tl.order(at(), "o1")
    tl.order(at(minutes=1), "o1")  # same order id, different event id
    tl.order(at(days=10), "o2")
    tl.advance(at(days=100))
    assert tl.decisions() == []
    assert tl.state().history.count == 2


def test_cancelled_orders_leave_the_running_totals() -> None:
    tl = Timeline(make_rules(only=()))
    tl.order(at(), "o1", ["a", "b"], price=20.0)
    tl.order(at(days=1), "o2", ["a"], price=5.0)
    tl.send("order_cancelled", at(days=2), order_id="o1")
    history = tl.state().history
    assert (history.count, history.monetary) == (1, 5.0)
    assert [o.order_id for o in history.orders] == ["o2"]
    assert [(p.product_id, p.times) for p in history.products] == [("a", (at(days=1),))]


def test_unknown_order_cancellation_changes_nothing_but_is_remembered() -> None:
    tl = Timeline(make_rules(only=()))
    tl.order(at(), "o1")
    tl.send("order_cancelled", at(days=1), order_id="zz")
    assert tl.state().history.count == 1
    assert tl.state().history.cancelled == ("zz",)


def test_order_history_is_bounded() -> None:
    tl = Timeline(make_rules(only=()))
    for n in range(50):
        tl.order(at(hours=n), f"o{n}", [f"p{n}", "staple"], price=1.0)
    history = tl.state().history
    assert history.count == 50 and history.monetary == 100.0
    assert len(history.orders) == 32 and history.orders[-1].order_id == "o49"
    assert len(history.products) == 32
    staple = next(p for p in history.products if p.product_id == "staple")
    assert len(staple.times) == 8 and staple.times[-1] == at(hours=49)
    assert staple.times[0] == at(hours=49) - timedelta(hours=7)


def test_lapsing_uses_the_mean_gap_over_the_last_32_orders() -> None:
    tl = Timeline(make_rules(only=LAPSING_ONLY))
    days = [10 * n for n in range(9)] + [80 + 2 * n for n in range(1, 32)]  # 40 orders
    for n, day in enumerate(days):
        tl.order(at(days=day), f"o{n}")
    # the last 32 orders (o8..o39) are 2 days apart; over all 40 the mean gap is 3.64 days
    tl.advance(at(days=200))
    (decision,) = tl.decisions()
    assert decision.fired_at == at(days=days[-1] + 3)  # 1.5 x 2 days
    assert decision.context["orders"] == 40 and decision.context["mean_gap_days"] == 2.0
