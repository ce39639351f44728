"""Birthday (contract 7.3): a greeting ``days_before`` the user's next birthday.

Armed by a known ``birthday`` (``preferences_updated``, ``"MM-DD"`` or
``"YYYY-MM-DD"``; the year is ignored). The one stage of a year is due on the
birthday minus ``days_before`` (whole days), at ``send_time`` local time in the
user's time zone (else ``default_timezone``); Feb 29 is Feb 28 in other years. A
send time skipped by a spring-forward gap is the end of the gap, one repeated by a
fall-back overlap its first occurrence (as for quiet hours).

The episode is the birthday of one year: its key is that year's date
(``YYYY-MM-DD``), so every year has its own trigger id. A newly known birthday arms
the first year whose send time is after the event; after the stage is decided
(sent, held out or suppressed) the next year is armed. A changed birthday or time
zone re-arms (moves the pending year), a removed one (``null``) disarms. An update
older than the one that set the birthday changes nothing.

The birthday is kept in the pending stage only (``subject`` = ``MM-DD``, ``anchor``
= when it was set): a birthday set while the trigger was disabled is not
remembered, and arms once it is sent again with the trigger enabled.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from msgspec import UNSET
from pydantic import field_validator

from triggers.episodes import find_trigger, open_episode, replace, without
from triggers.events import PreferencesUpdated
from triggers.quiet_hours import local_instant
from triggers.rules_types import Duration, Int, TimeOfDay, TriggerRules
from triggers.state import Pending, UserState

NAME = "birthday"
MAX_DAYS_BEFORE = 365


def _whole_days(value: timedelta) -> timedelta:
    if value < timedelta(0) or value % timedelta(days=1) or value.days > MAX_DAYS_BEFORE:
        raise ValueError(f"must be a whole number of days from 0d to {MAX_DAYS_BEFORE}d")
    return value


class BirthdayRules(TriggerRules):
    enabled: bool = False
    days_before: Duration = timedelta(days=7)
    send_time: TimeOfDay = time(10, 0)
    priority: Int = 60
    _whole_days = field_validator("days_before")(_whole_days)


def month_day(birthday: str) -> str:
    """``MM-DD`` of a ``MM-DD`` or ``YYYY-MM-DD`` birthday."""
    return birthday[-5:]


def occurrence(birthday: str, year: int) -> date:
    """The birthday in ``year``: Feb 29 is Feb 28 in a year that is not a leap year."""
    month, day = int(birthday[-5:-3]), int(birthday[-2:])
    try:
        return date(year, month, day)
    except ValueError:  # Feb 29 in a common year
        return date(year, month, day - 1)


def send_moment(birthday: str, year: int, rules: BirthdayRules, zone: ZoneInfo) -> datetime:
    """When the greeting for the birthday of ``year`` is due (aware UTC)."""
    day = occurrence(birthday, year) - rules.days_before
    return local_instant(day, rules.send_time, zone)


def _zone(state: UserState, default_zone: str) -> ZoneInfo:
    prefs = state.prefs
    return ZoneInfo(prefs.timezone if prefs is not None and prefs.timezone else default_zone)


def next_year(
    birthday: str, after: datetime, rules: BirthdayRules, zone: ZoneInfo
) -> tuple[int, datetime]:
    """The first year whose send time is later than ``after``, and that send time."""
    for year in range(after.year - 1, after.year + 3):
        moment = send_moment(birthday, year, rules, zone)
        if moment > after:
            return year, moment
    raise ValueError("no birthday within three years")  # unreachable: days_before <= 365d


def _episode(birthday: str, year: int, due: datetime, anchor: datetime) -> Pending:
    key = occurrence(birthday, year).isoformat()
    return open_episode(NAME, key, anchor, due, birthday)


def react(
    before: UserState, after: UserState, event: object, rules: BirthdayRules, default_zone: str
) -> tuple[Pending, ...]:
    """Arm, move or disarm on a ``preferences_updated``; nothing else concerns it."""
    pending = after.pending
    if type(event) is not PreferencesUpdated:
        return pending
    current = find_trigger(pending, NAME)
    given = event.birthday
    if given is UNSET:
        if current is None or event.timezone is None:
            return pending
        birthday, anchor = current.subject or "", current.anchor  # the zone may have moved
    elif current is not None and event.ts < current.anchor:
        return pending  # older than the update that set the birthday
    elif given is None:
        return without(pending, current)
    else:
        birthday, anchor = month_day(given), event.ts  # type: ignore[arg-type]
    year, due = next_year(birthday, event.ts, rules, _zone(after, default_zone))
    if current is not None and current.subject == birthday and current.due == due:
        return pending
    return replace(pending, current, _episode(birthday, year, due, anchor))


def follow(
    state: UserState, item: Pending, rules: BirthdayRules, default_zone: str
) -> Pending | None:
    """After this year's stage is decided: next year's."""
    birthday = item.subject or ""
    year = int(item.key[:4]) + 1
    due = send_moment(birthday, year, rules, _zone(state, default_zone))
    return _episode(birthday, year, due, item.anchor)


def context(state: UserState, item: Pending, now: datetime, rules: BirthdayRules) -> dict:
    return {"birthday": item.subject, "days_before": rules.days_before.days}
