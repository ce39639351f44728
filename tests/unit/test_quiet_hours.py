"""Quiet hours: deferral of every stage due in a quiet night, staleness measured from the
send time, and the window's edges across DST changes."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.timelines import Timeline, at, brief, iso, make_rules, wire
from triggers.engine import Engine
from triggers.events import parse_event
from triggers.quiet_hours import longest_deferral, quiet_until

pytestmark = pytest.mark.unit

NEW_YORK = ZoneInfo("America/New_York")
UTC_NIGHTS = {"quiet_hours": {"start": "21:00", "end": "08:00"}}
EVENING = at(hours=18)  # 2026-11-23 20:00Z
MORNING = at(hours=30)  # 2026-11-24 08:00Z


def two_stage_cart(**policy: object):
    return make_rules(
        only=("cart_abandonment",),
        default_timezone="UTC",
        triggers={"cart_abandonment": {"stages": ["1h", "2h"]}},
        contact_policy={**UTC_NIGHTS, **policy},
    )


# --- every stage due in one quiet night waits for the morning --------------------------------


@pytest.mark.parametrize("policy", [{"max_delay": "1h"}, {}], ids=["max_delay 1h", "default 6h"])
def test_two_stages_due_in_one_quiet_night_are_both_sent_in_the_morning(policy: dict) -> None:
    tl = Timeline(two_stage_cart(**policy))
    tl.add(EVENING, "p1")  # stage 1 due 21:00, stage 2 due 22:00: both quiet
    tl.advance(MORNING + timedelta(days=1))
    assert [brief(d) for d in tl.decisions()] == [
        ("cart_abandonment", 1, "sent", None, iso(MORNING)),
        ("cart_abandonment", 2, "sent", None, iso(MORNING)),
    ]
    assert [d.due_at for d in tl.decisions()] == [at(hours=19), at(hours=20)]


def test_a_later_stage_deferred_to_the_morning_still_meets_the_frequency_cap() -> None:
    tl = Timeline(two_stage_cart(frequency_cap={"max": 1, "per": "24h"}))
    tl.add(EVENING, "p1")
    tl.advance(MORNING + timedelta(days=1))
    assert [brief(d) for d in tl.decisions()] == [
        ("cart_abandonment", 1, "sent", None, iso(MORNING)),
        ("cart_abandonment", 2, "suppressed", "frequency_cap", iso(MORNING)),
    ]


def test_a_later_stage_deferred_to_the_morning_is_dropped_if_the_episode_is_cancelled() -> None:
    tl = Timeline(two_stage_cart())
    tl.add(EVENING, "p1")
    tl.order(at(hours=27), "o1", ["p1"])  # 05:00Z, still quiet
    tl.advance(MORNING + timedelta(days=1))
    assert tl.decisions() == []


def test_a_live_outage_across_the_night_is_measured_from_the_morning() -> None:
    engine = Engine(two_stage_cart())  # max_delay 6h
    event = parse_event(wire("cart_item_added", EVENING, "u1", "e1", product_id="p1"))
    state = engine.on_event(None, event, EVENING).state
    # the worker is down all night: the stages were due in quiet hours, their send time is 08:00
    back = engine.on_time(state, MORNING + timedelta(hours=2))
    assert [(d.stage, d.status, d.fired_at) for d in back.records] == [
        (1, "sent", MORNING + timedelta(hours=2)),
        (2, "sent", MORNING + timedelta(hours=2)),
    ]
    # ... but a worker back after 08:00 + max_delay finds both truly late
    late = engine.on_time(state, MORNING + timedelta(hours=6, seconds=1))
    assert [(d.stage, d.status, d.reason) for d in late.records] == [
        (1, "suppressed", "stale"),
        (2, "suppressed", "stale"),
    ]


def test_a_backfilled_cart_from_a_past_quiet_night_is_still_stale_in_replay() -> None:
    tl = Timeline(two_stage_cart())
    tl.view(at(days=3), "p9")  # the clock is at day 3
    tl.add(EVENING, "p1")  # a cart event from the evening of day 0 arrives now
    assert [brief(d) for d in tl.decisions()] == [
        ("cart_abandonment", 1, "suppressed", "stale", iso(at(days=3))),
        ("cart_abandonment", 2, "suppressed", "stale", iso(at(days=3))),
    ]


@settings(max_examples=60, deadline=None)
@given(
    stages=st.lists(st.integers(1, 48 * 60), min_size=1, max_size=4, unique=True).map(sorted),
    added=st.integers(0, 7 * 24 * 60),
    start=st.integers(0, 23 * 60 + 59),
    length=st.integers(1, 23 * 60),
    max_delay=st.integers(0, 6 * 60),
    zone=st.sampled_from(["UTC", "America/New_York", "Asia/Shanghai"]),
)
def test_with_quiet_hours_and_no_outage_no_stage_is_ever_stale_in_replay(
    stages: list[int], added: int, start: int, length: int, max_delay: int, zone: str
) -> None:
    begin, finish = divmod(start, 60), divmod((start + length) % (24 * 60), 60)
    window = {"start": "{:02d}:{:02d}".format(*begin), "end": "{:02d}:{:02d}".format(*finish)}
    rules = make_rules(
        only=("cart_abandonment",),
        default_timezone=zone,
        triggers={"cart_abandonment": {"stages": [f"{m}m" for m in stages]}},
        contact_policy={
            "quiet_hours": window,
            "max_delay": f"{max_delay}m" if max_delay else 0,
            "frequency_cap": {"max": 10, "per": "1h"},
        },
    )
    tl = Timeline(rules)
    tl.add(at(minutes=added), "p1")
    tl.advance(at(minutes=added + stages[-1], days=3))
    decisions = tl.decisions()
    assert [d.stage for d in decisions] == list(range(1, len(stages) + 1))
    assert all(d.status == "sent" for d in decisions)
    quiet = (time(*begin), time(*finish))
    for decision in decisions:
        assert decision.fired_at >= decision.due_at
        assert quiet_until(decision.fired_at, ZoneInfo(zone), *quiet) is None


# --- DST: the window's edges in a skipped and in a repeated hour ----------------------------

# New York springs forward on 2026-03-08 at 02:00 EST (07:00Z) to 03:00 EDT and falls back on
# 2026-11-01 at 02:00 EDT (06:00Z) to 01:00 EST.


def utc(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def test_an_end_inside_the_spring_forward_gap_is_the_instant_after_the_gap() -> None:
    window = (time(0, 30), time(2, 30))  # 02:30 does not exist on 2026-03-08
    assert quiet_until(utc(3, 8, 6), NEW_YORK, *window) == utc(3, 8, 7)  # 03:00 EDT
    assert quiet_until(utc(3, 8, 6, 59), NEW_YORK, *window) == utc(3, 8, 7)
    assert quiet_until(utc(3, 8, 7), NEW_YORK, *window) is None  # 03:00 EDT: past the end
    assert quiet_until(utc(3, 9, 5), NEW_YORK, *window) == utc(3, 9, 6, 30)  # next night


def test_a_stage_due_before_an_end_inside_the_gap_is_sent_right_after_the_gap() -> None:
    rules = make_rules(
        only=("browse_abandonment",),
        default_timezone="America/New_York",
        triggers={"browse_abandonment": {"stages": ["1h"]}},
        contact_policy={"quiet_hours": {"start": "00:30", "end": "02:30"}},
    )
    tl = Timeline(rules)
    tl.view(utc(3, 8, 5), "p1")  # due 06:00Z = 01:00 EST, quiet
    tl.advance(utc(3, 9, 0))
    (decision,) = tl.decisions()
    assert (decision.due_at, decision.fired_at) == (utc(3, 8, 6), utc(3, 8, 7))


def test_a_start_inside_the_spring_forward_gap_begins_after_the_gap() -> None:
    window = (time(2, 15), time(6))  # 02:15 does not exist on 2026-03-08
    assert quiet_until(utc(3, 8, 6, 59), NEW_YORK, *window) is None  # 01:59 EST
    assert quiet_until(utc(3, 8, 7), NEW_YORK, *window) == utc(3, 8, 10)  # 03:00 -> 06:00 EDT


def test_an_end_inside_the_repeated_hour_is_its_first_pass_and_the_second_is_quiet_again() -> None:
    window = (time(0, 30), time(1, 30))
    assert quiet_until(utc(11, 1, 4, 45), NEW_YORK, *window) == utc(11, 1, 5, 30)  # 01:30 EDT
    assert quiet_until(utc(11, 1, 5, 45), NEW_YORK, *window) is None  # 01:45 EDT
    # the clock goes back to 01:00 EST: inside the window again until 01:30 EST
    assert quiet_until(utc(11, 1, 6), NEW_YORK, *window) == utc(11, 1, 6, 30)
    assert quiet_until(utc(11, 1, 6, 30), NEW_YORK, *window) is None


def test_a_start_inside_the_repeated_hour_lasts_until_the_clock_reads_the_end() -> None:
    window = (time(1, 30), time(5))
    assert quiet_until(utc(11, 1, 5, 15), NEW_YORK, *window) is None  # 01:15 EDT
    assert quiet_until(utc(11, 1, 5, 30), NEW_YORK, *window) == utc(11, 1, 10)  # -> 05:00 EST
    assert quiet_until(utc(11, 1, 6), NEW_YORK, *window) is None  # 01:00 EST: before the start
    assert quiet_until(utc(11, 1, 6, 30), NEW_YORK, *window) == utc(11, 1, 10)


# around each zone's DST changes in 2026 (Lord Howe shifts by 30 minutes)
CHANGES = [
    ("America/New_York", utc(3, 8, 7)),
    ("America/New_York", utc(11, 1, 6)),
    ("Europe/Berlin", utc(3, 29, 1)),
    ("Europe/Berlin", utc(10, 25, 1)),
    ("Australia/Lord_Howe", utc(4, 4, 15)),
    ("Australia/Lord_Howe", utc(10, 3, 15, 30)),
]


@settings(max_examples=500, deadline=None)
@given(
    change=st.sampled_from(CHANGES),
    offset=st.integers(-20 * 60, 4 * 60),
    start=st.integers(0, 24 * 4 - 1),
    length=st.integers(1, 24 * 4 - 1),
)
def test_the_end_of_quiet_hours_is_the_first_moment_past_the_window(
    change: tuple[str, datetime], offset: int, start: int, length: int
) -> None:
    tz, now = ZoneInfo(change[0]), change[1] + timedelta(minutes=offset)
    begin = time(*divmod(start * 15, 60))
    end = time(*divmod((start + length) % 96 * 15, 60))
    until = quiet_until(now, tz, begin, end)
    if until is None:
        return
    assert now < until <= now + timedelta(hours=25)
    assert until - now <= longest_deferral(begin, end)  # the catalog side relies on it
    assert quiet_until(until, tz, begin, end) is None  # the end itself is outside
    assert quiet_until(until - timedelta(milliseconds=1), tz, begin, end) is not None
