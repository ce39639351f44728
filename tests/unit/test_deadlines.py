"""The deadline index's millisecond keys: exact rounding (down for event times, up for due
times), before and after the epoch, at microsecond precision."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from triggers.deadlines import Deadlines, due_millis
from triggers.timestamps import EPOCH, to_millis

_MS = timedelta(milliseconds=1)
moments = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2999, 12, 31), timezones=st.just(UTC)
)


@given(moments)
def test_to_millis_rounds_down(moment: datetime) -> None:
    assert to_millis(moment) == (moment - EPOCH) // _MS
    assert EPOCH + to_millis(moment) * _MS <= moment < EPOCH + (to_millis(moment) + 1) * _MS


@given(moments)
def test_due_millis_rounds_up(moment: datetime) -> None:
    millis = due_millis(moment)
    assert millis is not None
    assert EPOCH + (millis - 1) * _MS < moment <= EPOCH + millis * _MS


def test_due_millis_of_nothing_is_nothing() -> None:
    assert due_millis(None) is None


def test_a_due_time_is_popped_by_the_event_time_it_falls_at() -> None:
    due = datetime(2026, 11, 3, 10, 0, 0, 250_001, tzinfo=UTC)
    index = Deadlines()
    index.set("u1", due_millis(due))
    assert index.pop_due(to_millis(due)) == []
    assert index.pop_due(to_millis(due + timedelta(microseconds=999))) == [("u1", due_millis(due))]
