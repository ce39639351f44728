"""The contact policy: stale, quiet hours, opt-out, cooldown, frequency cap, priority, holdout,
segments and offers, conversion attribution."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.unit.timelines import Timeline, at, brief, iso, make_rules, wire
from triggers.engine import Engine, OutsideFacts
from triggers.events import parse_event
from triggers.quiet_hours import quiet_until
from triggers.records import Decision

pytestmark = pytest.mark.unit

SHANGHAI_NIGHTS = {
    "default_timezone": "Asia/Shanghai",
    "contact_policy": {"quiet_hours": {"start": "21:00", "end": "08:00"}},
}


# --- stale ---------------------------------------------------------------------------------


def test_a_stage_reached_later_than_max_delay_is_suppressed_as_stale() -> None:
    engine = Engine(make_rules(only=("cart_abandonment",)))
    event = parse_event(wire("cart_item_added", at(), "u1", "e1", product_id="p1"))
    step = engine.on_event(None, event, at())
    assert step.next_due == at(hours=1)
    late = engine.on_time(step.state, at(hours=7, seconds=1))  # due + 6h + 1s: an outage
    (decision,) = late.records
    assert (decision.status, decision.reason) == ("suppressed", "stale")
    assert decision.due_at == at(hours=1) and decision.fired_at == at(hours=7, seconds=1)
    assert late.next_due == at(hours=24)  # the next stage is still ahead
    on_time = engine.on_time(late.state, at(hours=24, minutes=5))
    assert [(d.stage, d.status) for d in on_time.records] == [(2, "sent")]


def test_a_stage_reached_late_but_within_max_delay_is_sent_at_the_reach_time() -> None:
    engine = Engine(make_rules(only=("cart_abandonment",)))
    event = parse_event(wire("cart_item_added", at(), "u1", "e1", product_id="p1"))
    state = engine.on_event(None, event, at()).state
    step = engine.on_time(state, at(hours=7))  # exactly due + max_delay
    (decision,) = step.records
    assert (decision.status, decision.fired_at) == ("sent", at(hours=7))


def test_on_time_before_anything_is_due_changes_nothing() -> None:
    engine = Engine(make_rules(only=("cart_abandonment",)))
    event = parse_event(wire("cart_item_added", at(), "u1", "e1", product_id="p1"))
    state = engine.on_event(None, event, at()).state
    step = engine.on_time(state, at(minutes=59))
    assert (step.records, step.state, step.next_due) == ((), state, at(hours=1))


def test_a_backfilled_event_whose_stages_are_overdue_is_stale_in_replay() -> None:
    tl = Timeline(make_rules(only=("cart_abandonment",)))
    tl.view(at(days=5), "p9")  # the clock is at day 5
    tl.add(at(), "p1")  # a cart event from day 0 arrives now
    assert [brief(d) for d in tl.decisions()] == [
        ("cart_abandonment", 1, "suppressed", "stale", iso(at(days=5))),
        ("cart_abandonment", 2, "suppressed", "stale", iso(at(days=5))),
    ]


# --- quiet hours ---------------------------------------------------------------------------


def test_quiet_hours_across_midnight_defer_to_the_local_morning() -> None:
    tl = Timeline(make_rules(only=("cart_abandonment",), **SHANGHAI_NIGHTS))
    tl.add(at(hours=10, minutes=30), "p1")  # 20:30 in Shanghai; stage 1 due 21:30 local
    tl.advance(at(hours=21, minutes=59))
    assert tl.decisions() == []
    assert tl.replay.engine.next_due(tl.state()) == datetime(2026, 11, 24, 0, 0, tzinfo=UTC)
    tl.advance(at(hours=22))  # 08:00 in Shanghai
    (decision,) = tl.decisions()
    assert decision.due_at == at(hours=11, minutes=30)
    assert decision.fired_at == datetime(2026, 11, 24, 0, 0, tzinfo=UTC)
    assert decision.status == "sent"


def test_a_stage_due_after_midnight_inside_quiet_hours_waits_for_the_same_morning() -> None:
    rules = make_rules(
        only=("browse_abandonment",),
        triggers={"browse_abandonment": {"stages": ["8h"]}},
        **SHANGHAI_NIGHTS,
    )
    tl = Timeline(rules)
    tl.view(at(hours=12), "p1")  # 22:00 local, due 06:00 local next day (22:00Z)
    tl.advance(at(days=2))
    (decision,) = tl.decisions()
    assert (decision.due_at, decision.fired_at) == (at(hours=20), at(hours=22))


def test_deferred_stage_is_dropped_if_the_episode_is_cancelled_meanwhile() -> None:
    tl = Timeline(make_rules(only=("cart_abandonment",), **SHANGHAI_NIGHTS))
    tl.add(at(hours=11), "p1")  # 21:00 local: due 22:00 local, deferred to 08:00
    tl.advance(at(hours=15))
    tl.order(at(hours=16), "o1", ["p1"])  # 02:00 local
    tl.advance(at(days=3))
    assert tl.decisions() == []


def test_the_users_time_zone_from_preferences_decides_quiet_hours() -> None:
    tl = Timeline(make_rules(only=("cart_abandonment",), **SHANGHAI_NIGHTS))
    tl.send("preferences_updated", at(), timezone="America/New_York")
    # 12:30Z = 07:30 in New York (quiet until 08:00), 20:30 in Shanghai (not yet quiet)
    tl.add(at(hours=9, minutes=30), "p1")  # due 12:30Z
    tl.advance(at(days=1, hours=12))
    first = tl.decisions()[0]
    assert first.due_at == at(hours=10, minutes=30)
    assert first.fired_at == at(hours=11)  # 08:00 America/New_York (EST, UTC-5)


def test_a_later_time_zone_change_applies_to_pending_stages() -> None:
    tl = Timeline(make_rules(only=("cart_abandonment",), **SHANGHAI_NIGHTS))
    tl.add(at(hours=12, minutes=30), "p1")  # due 13:30Z = 21:30 Shanghai: would be quiet
    tl.send("preferences_updated", at(hours=13), timezone="Europe/London")  # 13:30 London
    tl.advance(at(hours=14))
    assert [d.fired_at for d in tl.decisions()] == [at(hours=13, minutes=30)]


def test_quiet_hours_end_is_dst_safe_on_a_fall_back_night() -> None:
    # America/New_York falls back at 2026-11-01 02:00 EDT -> 01:00 EST.
    rules = make_rules(
        only=("cart_abandonment",),
        default_timezone="America/New_York",
        contact_policy={"quiet_hours": {"start": "21:00", "end": "08:00"}},
    )
    tl = Timeline(rules)
    added = datetime(2026, 11, 1, 0, 30, tzinfo=UTC)  # Oct 31 20:30 EDT
    tl.add(added, "p1")  # due 21:30 EDT
    tl.advance(added + timedelta(days=1))
    first = tl.decisions()[0]
    assert first.fired_at == datetime(2026, 11, 1, 13, 0, tzinfo=UTC)  # 08:00 EST


def test_quiet_until_across_dst_changes_and_windows() -> None:
    berlin, new_york = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")
    night = (time(21), time(8))
    # spring forward in New York, 2026-03-08 02:00 EST -> 03:00 EDT
    assert quiet_until(datetime(2026, 3, 8, 2, 30, tzinfo=UTC), new_york, *night) == datetime(
        2026, 3, 8, 12, 0, tzinfo=UTC
    )
    # the repeated hour in Berlin (2026-10-25 03:00 CEST -> 02:00 CET): 02:15 CET, second pass
    repeated = datetime(2026, 10, 25, 1, 15, tzinfo=UTC)
    assert quiet_until(repeated, berlin, time(1), time(2, 30)) == datetime(
        2026, 10, 25, 1, 30, tzinfo=UTC
    )
    # a daytime window that does not cross midnight
    siesta = (time(13), time(15))
    assert quiet_until(datetime(2026, 6, 1, 11, 30, tzinfo=UTC), berlin, *siesta) == datetime(
        2026, 6, 1, 13, 0, tzinfo=UTC
    )
    assert quiet_until(datetime(2026, 6, 1, 13, 0, tzinfo=UTC), berlin, *siesta) is None
    assert quiet_until(datetime(2026, 6, 1, 10, 59, tzinfo=UTC), berlin, *siesta) is None
    # the end of the window itself is outside
    assert quiet_until(datetime(2026, 6, 1, 6, 0, tzinfo=UTC), berlin, *night) is None
    assert quiet_until(datetime(2026, 6, 1, 19, 0, tzinfo=UTC), berlin, *night) == datetime(
        2026, 6, 2, 6, 0, tzinfo=UTC
    )


def test_a_deferred_stage_is_judged_stale_against_the_end_of_quiet_hours() -> None:
    engine = Engine(make_rules(only=("cart_abandonment",), **SHANGHAI_NIGHTS))
    event = parse_event(wire("cart_item_added", at(hours=11), "u1", "e1", product_id="p1"))
    state = engine.on_event(None, event, at(hours=11)).state
    deferred = engine.on_time(state, at(hours=12))  # 20:00Z... 22:00 local: deferred
    assert deferred.records == () and deferred.next_due == at(hours=22)
    late = engine.on_time(deferred.state, at(hours=22 + 6, seconds=1))
    assert [(d.status, d.reason) for d in late.records] == [("suppressed", "stale")]


# --- opt-out -------------------------------------------------------------------------------


def test_opted_out_users_are_suppressed_and_opting_in_again_works() -> None:
    tl = Timeline(make_rules(only=("browse_abandonment",)))
    tl.send("preferences_updated", at(), marketing_opt_in=False)
    tl.view(at(minutes=1), "p1")
    tl.advance(at(hours=3))
    tl.send("preferences_updated", at(hours=4), marketing_opt_in=True)
    tl.view(at(hours=5), "p2")
    tl.advance(at(hours=8))
    assert [(d.status, d.reason) for d in tl.decisions()] == [
        ("suppressed", "opted_out"),
        ("sent", None),
    ]


def test_an_older_preference_update_does_not_override_a_newer_one() -> None:
    tl = Timeline(make_rules(only=("browse_abandonment",)))
    tl.send("preferences_updated", at(minutes=5), marketing_opt_in=False)
    tl.send("preferences_updated", at(), marketing_opt_in=True, timezone="Asia/Tokyo")
    assert (tl.state().prefs.opt_in, tl.state().prefs.timezone) == (False, "Asia/Tokyo")
    tl.view(at(minutes=10), "p1")
    tl.advance(at(hours=3))
    assert [d.reason for d in tl.decisions()] == ["opted_out"]


def test_the_operator_suppression_set_opts_users_out() -> None:
    tl = Timeline(make_rules(only=("browse_abandonment",)), suppressed={"u1"})
    tl.view(at(), "p1", user="u1")
    tl.send("product_viewed", at(), user="u2", product_id="p1")
    tl.advance(at(hours=3))
    assert [(d.user_id, d.status, d.reason) for d in tl.decisions()] == [
        ("u1", "suppressed", "opted_out"),
        ("u2", "sent", None),
    ]


def test_outside_facts_suppressed_opts_out_in_the_live_service() -> None:
    engine = Engine(make_rules(only=("browse_abandonment",)))
    state = engine.on_event(
        None, parse_event(wire("product_viewed", at(), "u1", "e1", product_id="p1")), at()
    ).state
    step = engine.on_time(state, at(hours=2), OutsideFacts(suppressed=True))
    assert [d.reason for d in step.records] == ["opted_out"]


# --- cooldown ------------------------------------------------------------------------------


def test_cooldown_suppresses_stage_one_of_a_new_episode_but_not_later_stages() -> None:
    tl = Timeline(make_rules(only=("cart_abandonment",)))
    tl.add(at(), "p1")
    tl.advance(at(hours=1, minutes=30))  # episode 1, stage 1 sent at 1h
    tl.add(at(hours=2), "p2")  # episode 2: stage 1 due 3h, within 24h of the last contact
    tl.advance(at(days=3))
    assert [brief(d) for d in tl.decisions()] == [
        ("cart_abandonment", 1, "sent", None, iso(at(hours=1))),
        ("cart_abandonment", 1, "suppressed", "cooldown", iso(at(hours=3))),
        ("cart_abandonment", 2, "sent", None, iso(at(hours=26))),
    ]


def test_cooldown_is_per_trigger_and_ends() -> None:
    rules = make_rules(
        only=("browse_abandonment",), triggers={"browse_abandonment": {"cooldown": "5h"}}
    )
    tl = Timeline(rules)
    tl.view(at(), "p1")  # sent at 2h
    tl.view(at(hours=2, minutes=30), "p2")  # due 4h30: within 5h of 2h -> cooldown
    tl.view(at(hours=5), "p3")  # due 7h: 5h after the last contact (p1) -> sent
    tl.advance(at(days=1))
    assert [(d.context["product_id"], d.status, d.reason) for d in tl.decisions()] == [
        ("p1", "sent", None),
        ("p2", "suppressed", "cooldown"),
        ("p3", "sent", None),
    ]
    tl.view(at(days=1), "p4")
    tl.view(at(days=1, hours=3), "p5")  # p4 sent at +2h; p5 due +5h: 3h after -> cooldown
    tl.advance(at(days=2))
    assert [(d.context["product_id"], d.reason) for d in tl.decisions()[3:]] == [
        ("p4", None),
        ("p5", "cooldown"),
    ]


# --- frequency cap and priority -------------------------------------------------------------


def test_frequency_cap_counts_contacts_across_triggers_in_a_rolling_window() -> None:
    rules = make_rules(
        only=("cart_abandonment", "browse_abandonment", "dormancy"),
        triggers={"dormancy": {"audience": "all", "stages": ["3h"]}},
    )
    tl = Timeline(rules)
    tl.view(at(), "p1")  # browse due 2h
    tl.add(at(), "p2")  # cart due 1h (and 24h)
    tl.advance(at(days=2))
    assert [brief(d) for d in tl.decisions()] == [
        ("cart_abandonment", 1, "sent", None, iso(at(hours=1))),
        ("browse_abandonment", 1, "sent", None, iso(at(hours=2))),
        ("dormancy", 1, "suppressed", "frequency_cap", iso(at(hours=3))),
        # at 24h the window (0h, 24h] still holds the contacts at 1h and 2h
        ("cart_abandonment", 2, "suppressed", "frequency_cap", iso(at(hours=24))),
    ]


def test_the_rolling_window_frees_up_once_old_contacts_leave_it() -> None:
    rules = make_rules(
        only=("cart_abandonment",),
        triggers={"cart_abandonment": {"stages": ["1h", "25h"], "cooldown": 0}},
        contact_policy={"frequency_cap": {"max": 1, "per": "24h"}},
    )
    tl = Timeline(rules)
    tl.add(at(), "p1")
    tl.advance(at(days=2))
    assert [d.status for d in tl.decisions()] == ["sent", "sent"]  # 1h and 25h: 24h apart


def test_priority_decides_under_the_frequency_cap() -> None:
    def run(cart_priority: int, browse_priority: int) -> list[tuple[str, str]]:
        rules = make_rules(
            only=("cart_abandonment", "browse_abandonment"),
            triggers={
                "cart_abandonment": {"stages": ["2h"], "priority": cart_priority},
                "browse_abandonment": {"stages": ["2h"], "priority": browse_priority},
            },
            contact_policy={"frequency_cap": {"max": 1, "per": "24h"}},
        )
        tl = Timeline(rules)
        tl.view(at(), "p1")
        tl.add(at(), "p2")
        tl.advance(at(hours=3))
        return [(d.trigger, d.status) for d in tl.decisions()]

    assert run(100, 50) == [("cart_abandonment", "sent"), ("browse_abandonment", "suppressed")]
    assert run(10, 50) == [("browse_abandonment", "sent"), ("cart_abandonment", "suppressed")]


def test_contacts_by_other_senders_count_toward_the_frequency_cap() -> None:
    engine = Engine(make_rules(only=("browse_abandonment",)))
    state = engine.on_event(
        None, parse_event(wire("product_viewed", at(), "u1", "e1", product_id="p1")), at()
    ).state
    now = at(hours=2)
    full = OutsideFacts(contacts=(now - timedelta(hours=23), now - timedelta(minutes=1)))
    assert [d.reason for d in engine.on_time(state, now, full).records] == ["frequency_cap"]
    old = OutsideFacts(contacts=(now - timedelta(hours=24), now - timedelta(minutes=1)))
    assert [d.status for d in engine.on_time(state, now, old).records] == ["sent"]


# --- holdout -------------------------------------------------------------------------------


def test_holdout_is_recorded_not_sent_and_counts_as_a_contact() -> None:
    rules = make_rules(
        only=("cart_abandonment", "browse_abandonment"),
        contact_policy={"holdout_percent": 100, "frequency_cap": {"max": 1, "per": "24h"}},
    )
    tl = Timeline(rules)
    tl.add(at(), "p1")
    tl.view(at(), "p2")
    tl.advance(at(hours=3))
    assert [(d.trigger, d.status, d.reason) for d in tl.decisions()] == [
        ("cart_abandonment", "holdout", None),
        ("browse_abandonment", "suppressed", "frequency_cap"),
    ]


def test_holdout_assignment_is_deterministic_per_user_and_trigger() -> None:
    def holdouts(salt: str) -> set[str]:
        rules = make_rules(
            only=("browse_abandonment",),
            contact_policy={"holdout_percent": 30, "holdout_salt": salt},
        )
        tl = Timeline(rules)
        for n in range(300):
            tl.send("product_viewed", at(), user=f"u{n}", product_id="p1")
        tl.advance(at(hours=3))
        return {d.user_id for d in tl.decisions() if d.status == "holdout"}

    first, again, other_salt = holdouts("nudge"), holdouts("nudge"), holdouts("pepper")
    assert first == again
    assert 60 <= len(first) <= 120  # about 30 % of 300
    assert first != other_salt


# --- segments and offers --------------------------------------------------------------------


OFFERS = {"cart_abandonment": {"default": "FREESHIP", "dormant": "COMEBACK10"}}


@pytest.mark.parametrize(
    ("orders", "segment", "offer"),
    [
        ([], "prospect", "FREESHIP"),
        ([(-1, 20.0)], "new", "FREESHIP"),
        ([(-20, 20.0), (-1, 20.0)], "potential", "FREESHIP"),
        ([(-n, 120.0) for n in range(5, 0, -1)], "core", "FREESHIP"),
        ([(-n, 20.0) for n in range(5, 0, -1)], "potential", "FREESHIP"),  # below 500
        ([(-40, 20.0)], "dormant", "COMEBACK10"),
        ([(-100, 20.0)], "churned", "FREESHIP"),
    ],
)
def test_segment_and_offer_at_decision_time(
    orders: list[tuple[int, float]], segment: str, offer: str
) -> None:
    tl = Timeline(make_rules(only=("cart_abandonment",), offers=OFFERS))
    for n, (day, price) in enumerate(orders):
        tl.order(at(days=day), f"o{n}", ["x"], price=price)
    tl.add(at(), "p1")
    tl.advance(at(hours=2))
    (decision,) = tl.decisions()
    assert (decision.segment, decision.offer) == (segment, offer)


def test_no_offer_configured_gives_null() -> None:
    tl = Timeline(make_rules(only=("browse_abandonment",), offers=OFFERS))
    tl.view(at(), "p1")
    tl.advance(at(hours=3))
    assert [d.offer for d in tl.decisions()] == [None]


def test_offer_without_default_falls_back_to_null_for_other_segments() -> None:
    rules = make_rules(only=("cart_abandonment",), offers={"cart_abandonment": {"new": "HELLO"}})
    tl = Timeline(rules)
    tl.add(at(), "p1")
    tl.advance(at(hours=2))
    assert [(d.segment, d.offer) for d in tl.decisions()] == [("prospect", None)]


# --- conversion attribution -----------------------------------------------------------------


def test_an_order_after_a_sent_reminder_converts_it() -> None:
    tl = Timeline(make_rules(only=("cart_abandonment",)))
    tl.add(at(), "p1")
    tl.advance(at(hours=2))
    (reminder,) = tl.decisions()
    out = tl.order(at(hours=5), "o1", ["p1", "p2"], price=21.5)
    (conversion,) = out
    assert conversion.trigger_id == reminder.trigger_id
    assert (conversion.trigger, conversion.user_id, conversion.arm) == (
        "cart_abandonment",
        "u1",
        "treatment",
    )
    assert (conversion.order_id, conversion.revenue, conversion.converted_at) == (
        "o1",
        43.0,
        at(hours=5),
    )


def test_conversion_goes_to_the_most_recent_decision_and_only_once() -> None:
    tl = Timeline(make_rules(only=("cart_abandonment", "browse_abandonment")))
    tl.add(at(), "p1")
    tl.view(at(), "p2")
    tl.advance(at(hours=3))  # cart at 1h, browse at 2h
    first = tl.order(at(hours=4), "o1")
    second = tl.order(at(hours=5), "o2")
    assert [c.trigger for c in first] == ["browse_abandonment"]
    assert second == []


def test_holdout_decisions_convert_in_the_holdout_arm() -> None:
    rules = make_rules(only=("cart_abandonment",), contact_policy={"holdout_percent": 100})
    tl = Timeline(rules)
    tl.add(at(), "p1")
    tl.advance(at(hours=2))
    assert [c.arm for c in tl.order(at(hours=3), "o1")] == ["holdout"]


def test_orders_outside_the_attribution_window_or_before_the_decision_do_not_convert() -> None:
    tl = Timeline(make_rules(only=("cart_abandonment",)))
    tl.add(at(), "p1")
    tl.advance(at(hours=2))
    assert tl.order(at(minutes=30), "o0") == []  # placed before the reminder, delivered late
    assert tl.order(at(hours=1, days=3, seconds=1), "o1") == []  # 72h + 1s after it
    assert tl.conversions() == []


def test_suppressed_decisions_are_not_attributed() -> None:
    tl = Timeline(make_rules(only=("cart_abandonment",)))
    tl.send("preferences_updated", at(), marketing_opt_in=False)
    tl.add(at(), "p1")
    tl.advance(at(hours=2))
    assert tl.order(at(hours=3), "o1") == []


def test_every_decision_record_is_a_decision() -> None:
    tl = Timeline()
    tl.add(at(), "p1")
    tl.advance(at(days=2))
    assert tl.records and all(isinstance(r, Decision) for r in tl.records)
