"""Dormancy: stages after the last activity, re-armed by any activity, audience."""

from __future__ import annotations

import pytest

from tests.unit.timelines import Timeline, at, brief, iso, make_rules

pytestmark = pytest.mark.unit


def dormancy_rules(**settings: object):
    return make_rules(only=("dormancy",), triggers={"dormancy": settings})


def test_a_customer_gone_quiet_gets_every_stage() -> None:
    tl = Timeline(dormancy_rules())
    tl.order(at(), "o1")
    tl.advance(at(days=200))
    assert [brief(d) for d in tl.decisions()] == [
        ("dormancy", 1, "sent", None, iso(at(days=30))),
        ("dormancy", 2, "sent", None, iso(at(days=60))),
        ("dormancy", 3, "sent", None, iso(at(days=90))),
    ]
    first, second, third = tl.decisions()
    assert first.context == {"last_activity": iso(at()), "days_inactive": 30}
    assert third.context["days_inactive"] == 90
    assert len({first.trigger_id, second.trigger_id, third.trigger_id}) == 3
    # day 30 is not older than dormant_after (30d), day 90 not older than churned_after
    assert [d.segment for d in tl.decisions()] == ["new", "dormant", "dormant"]


def test_any_activity_re_arms_from_the_latest_activity() -> None:
    tl = Timeline(dormancy_rules())
    tl.order(at(), "o1")
    tl.advance(at(days=31))  # stage 1 at day 30
    tl.send("search", at(days=40), query="socks")
    tl.advance(at(days=75))
    assert [(d.stage, d.fired_at) for d in tl.decisions()] == [(1, at(days=30)), (1, at(days=70))]
    assert tl.decisions()[0].trigger_id != tl.decisions()[1].trigger_id


def test_an_older_event_does_not_move_the_last_activity() -> None:
    tl = Timeline(dormancy_rules())
    tl.order(at(days=1), "o1")
    tl.send("category_viewed", at(), category="shoes")  # delivered late
    assert tl.state().last_activity == at(days=1)
    tl.advance(at(days=40))
    assert [d.fired_at for d in tl.decisions()] == [at(days=31)]


def test_prospects_are_not_in_the_customers_audience() -> None:
    tl = Timeline(dormancy_rules())
    tl.view(at(), "p1")
    tl.advance(at(days=200))
    assert tl.decisions() == []


def test_audience_all_includes_prospects() -> None:
    tl = Timeline(dormancy_rules(audience="all", stages=["7d"]))
    tl.view(at(), "p1")
    tl.advance(at(days=200))
    (decision,) = tl.decisions()
    assert (decision.fired_at, decision.segment) == (at(days=7), "prospect")


def test_becoming_a_customer_through_a_late_order_arms_from_the_last_activity() -> None:
    tl = Timeline(dormancy_rules(stages=["10d"]))
    tl.view(at(days=2), "p1")
    tl.order(at(days=1), "o1")  # older than the view, delivered late
    tl.advance(at(days=30))
    assert [d.fired_at for d in tl.decisions()] == [at(days=12)]


def test_cancelling_the_only_order_leaves_the_audience() -> None:
    tl = Timeline(dormancy_rules())
    tl.order(at(), "o1")
    tl.send("order_cancelled", at(days=1), order_id="o1")
    tl.advance(at(days=200))
    assert tl.decisions() == []


def test_a_dormancy_stage_in_quiet_hours_waits_for_the_morning() -> None:
    rules = make_rules(
        only=("dormancy",),
        triggers={"dormancy": {"audience": "all", "stages": ["12h", "2d"]}},
        default_timezone="Asia/Shanghai",
        contact_policy={"quiet_hours": {"start": "21:00", "end": "08:00"}},
    )
    tl = Timeline(rules)
    tl.send("search", at(), query="q")  # 10:00 local: stage 1 due 22:00 local
    tl.advance(at(days=3))
    assert [(d.stage, d.due_at, d.fired_at) for d in tl.decisions()] == [
        (1, at(hours=12), at(hours=22)),  # 08:00 local the next morning
        (2, at(days=2), at(days=2)),  # 10:00 local: not quiet
    ]
