"""Birthday (contract 7.3): due days_before the birthday at send_time local time, re-armed
each year; DST and Feb 29 handled; a changed or removed birthday re-arms or disarms."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.unit.timelines import Timeline, iso, make_rules
from triggers.birthday import BirthdayRules, next_year, occurrence, send_moment
from triggers.rules import RulesError, parse_rules

pytestmark = pytest.mark.unit

NY = ZoneInfo("America/New_York")


def rules(**birthday: object) -> object:
    return make_rules(only=(), triggers={"birthday": {"enabled": True, **birthday}})


def test_off_unless_enabled() -> None:
    timeline = Timeline(make_rules(only=()))
    timeline.send("preferences_updated", datetime(2026, 1, 1, tzinfo=UTC), birthday="01-20")
    timeline.advance(datetime(2027, 3, 1, tzinfo=UTC))
    assert timeline.decisions() == []
    assert BirthdayRules().enabled is False


def test_due_days_before_at_local_send_time_and_rearmed_each_year() -> None:
    timeline = Timeline(rules(days_before="7d", send_time="09:30"))
    timeline.send(
        "preferences_updated",
        datetime(2026, 1, 1, tzinfo=UTC),
        timezone="Asia/Shanghai",
        birthday="1990-03-20",
    )
    timeline.advance(datetime(2028, 1, 1, tzinfo=UTC))
    decisions = timeline.decisions("birthday")
    # Mar 13, 09:30 in Shanghai (UTC+8) = 01:30Z, in 2026 and 2027
    assert [d.due_at for d in decisions] == [
        datetime(2026, 3, 13, 1, 30, tzinfo=UTC),
        datetime(2027, 3, 13, 1, 30, tzinfo=UTC),
    ]
    assert [d.status for d in decisions] == ["sent", "sent"]
    assert decisions[0].context == {"birthday": "03-20", "days_before": 7}
    assert decisions[0].trigger_id != decisions[1].trigger_id  # one episode a year


def test_a_birthday_already_past_this_year_arms_next_year() -> None:
    timeline = Timeline(rules())
    timeline.send("preferences_updated", datetime(2026, 5, 1, tzinfo=UTC), birthday="05-03")
    timeline.advance(datetime(2027, 6, 1, tzinfo=UTC))
    # May 3 minus 7 days = Apr 26 10:00 UTC (default zone): 2026 had passed
    assert [d.due_at for d in timeline.decisions("birthday")] == [
        datetime(2027, 4, 26, 10, tzinfo=UTC)
    ]


def test_feb_29_is_feb_28_in_common_years() -> None:
    assert occurrence("02-29", 2027) == datetime(2027, 2, 28).date()
    assert occurrence("2000-02-29", 2028) == datetime(2028, 2, 29).date()
    timeline = Timeline(rules(days_before="0d"))
    timeline.send("preferences_updated", datetime(2026, 12, 1, tzinfo=UTC), birthday="02-29")
    timeline.advance(datetime(2029, 3, 1, tzinfo=UTC))
    assert [iso(d.due_at) for d in timeline.decisions("birthday")] == [
        "2027-02-28T10:00:00Z",
        "2028-02-29T10:00:00Z",
        "2029-02-28T10:00:00Z",
    ]


def test_send_time_follows_dst_and_a_skipped_time_is_the_end_of_the_gap() -> None:
    section = BirthdayRules(enabled=True, days_before=timedelta(days=0), send_time=time(10))
    # 10:00 New York: EST (UTC-5) in January, EDT (UTC-4) in July
    assert send_moment("01-15", 2026, section, NY) == datetime(2026, 1, 15, 15, tzinfo=UTC)
    assert send_moment("07-15", 2026, section, NY) == datetime(2026, 7, 15, 14, tzinfo=UTC)
    # 02:30 does not exist on 2026-03-08 in New York: the first instant at or past it, 03:00 EDT
    gap = BirthdayRules(enabled=True, days_before=timedelta(days=7), send_time=time(2, 30))
    assert send_moment("03-15", 2026, gap, NY) == datetime(2026, 3, 8, 7, tzinfo=UTC)
    # 01:30 happens twice on 2026-11-01: the first one (EDT)
    twice = BirthdayRules(enabled=True, days_before=timedelta(days=0), send_time=time(1, 30))
    assert send_moment("11-01", 2026, twice, NY) == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)


def test_user_time_zone_and_a_zone_change_moves_the_pending_year() -> None:
    timeline = Timeline(rules(days_before="1d"))
    start = datetime(2026, 6, 1, tzinfo=UTC)
    timeline.send("preferences_updated", start, timezone="America/New_York", birthday="07-15")
    (pending,) = [p for p in timeline.state().pending if p.trigger == "birthday"]
    assert pending.due == datetime(2026, 7, 14, 14, tzinfo=UTC)
    timeline.send("preferences_updated", start + timedelta(days=1), timezone="Asia/Tokyo")
    (pending,) = [p for p in timeline.state().pending if p.trigger == "birthday"]
    assert pending.due == datetime(2026, 7, 14, 1, tzinfo=UTC)  # 10:00 JST


def test_changed_birthday_rearms_removed_disarms_older_update_ignored() -> None:
    timeline = Timeline(rules())
    t = datetime(2026, 1, 1, tzinfo=UTC)
    timeline.send("preferences_updated", t, birthday="04-10")
    timeline.send("preferences_updated", t + timedelta(days=1), birthday="05-10")
    timeline.send("preferences_updated", t - timedelta(days=1), birthday="06-10")  # older: ignored
    (pending,) = [p for p in timeline.state().pending if p.trigger == "birthday"]
    assert (pending.subject, pending.due) == ("05-10", datetime(2026, 5, 3, 10, tzinfo=UTC))
    timeline.send("preferences_updated", t + timedelta(days=2), birthday=None)
    assert [p for p in timeline.state().pending if p.trigger == "birthday"] == []
    timeline.advance(datetime(2027, 6, 1, tzinfo=UTC))
    assert timeline.decisions("birthday") == []


def test_contact_policy_applies_opted_out_is_suppressed_and_next_year_still_armed() -> None:
    timeline = Timeline(rules())
    t = datetime(2026, 1, 1, tzinfo=UTC)
    timeline.send("preferences_updated", t, birthday="03-01", marketing_opt_in=False)
    timeline.advance(datetime(2026, 3, 1, tzinfo=UTC))
    (decision,) = timeline.decisions("birthday")
    assert (decision.status, decision.reason) == ("suppressed", "opted_out")
    assert [p.key for p in timeline.state().pending if p.trigger == "birthday"] == ["2027-03-01"]


def test_next_year_is_the_first_send_time_after_the_event() -> None:
    section = BirthdayRules(enabled=True)
    zone = ZoneInfo("UTC")
    # the birthday of Jan 3 2027 is greeted on Dec 27 2026: the year is the birthday's
    assert next_year("01-03", datetime(2026, 12, 27, 10, tzinfo=UTC), section, zone) == (
        2028,
        datetime(2027, 12, 27, 10, tzinfo=UTC),
    )
    assert next_year("01-03", datetime(2026, 12, 27, 9, tzinfo=UTC), section, zone) == (
        2027,
        datetime(2026, 12, 27, 10, tzinfo=UTC),
    )


@pytest.mark.parametrize("days", ["36h", "-1d", "366d"])
def test_days_before_must_be_whole_days(days: str) -> None:
    with pytest.raises(RulesError, match=r"triggers\.birthday\.days_before"):
        parse_rules(f"triggers:\n  birthday: {{days_before: {days}}}\n")
