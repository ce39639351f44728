"""Quiet hours in the user's local time: is a moment inside them, and when do they end?

Windows are local wall-clock times ``[start, end)``; ``start > end`` crosses
midnight. A moment is quiet when its local wall clock (``zoneinfo``, so DST
is handled) reads a time inside the window. The end of quiet hours for a
quiet moment is the first later instant whose wall clock reads ``end`` or
past it:

- an ``end`` skipped by a spring-forward change maps to the instant after the
  gap (the clock jumps from before ``end`` to after it);
- an ``end`` in an hour repeated by a fall-back change is its first pass; a
  moment in the second pass whose clock is inside the window again is quiet
  until the second pass of ``end``;
- a ``start`` skipped by a gap means the window begins after the gap; a
  ``start`` in a repeated hour is entered on each pass, and a window entered
  lasts until the clock reads ``end``;
- should a gap skip every time between ``end`` and ``start`` (a window
  leaving less than the gap outside), quiet hours last until the next ``end``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

_MS = timedelta(milliseconds=1)


def quiet_until(now: datetime, zone: ZoneInfo, start: time, end: time) -> datetime | None:
    """The end of the quiet window ``now`` is in (aware UTC, > now), or None if outside."""
    local = now.astimezone(zone)
    clock = local.time().replace(tzinfo=None, fold=0)
    day = local.date()
    if start < end:
        if not start <= clock < end:
            return None
    elif clock >= start:
        day += timedelta(days=1)
    elif clock >= end:
        return None
    for candidate, result in _ends(day, zone, start, end):
        if candidate > now:
            return result
    return None


@lru_cache(maxsize=4096)
def _ends(
    day: date, zone: ZoneInfo, start: time, end: time
) -> tuple[tuple[datetime, datetime], ...]:
    """For each pass (fold 0, 1) of ``end`` on the local ``day``: (its instant, the end of
    quiet hours for a quiet moment before it). Depends on the day, never on the moment:
    cached (a night's stages, and every user in the zone that night, share it)."""
    out = []
    for fold in (0, 1):
        wall = datetime.combine(day, end, tzinfo=zone).replace(fold=fold)
        candidate = wall.astimezone(UTC)
        if candidate.astimezone(zone).replace(tzinfo=None) != wall.replace(tzinfo=None):
            after = _after_gap(zone, wall)  # ``end`` is skipped on that day
            # quiet again only if the gap skipped the whole rest of the day outside the window
            out.append((candidate, quiet_until(after, zone, start, end) or after))
        else:
            out.append((candidate, candidate))
    return tuple(out)


def _after_gap(zone: ZoneInfo, wall: datetime) -> datetime:
    """The first instant after the spring-forward gap that skips the wall time ``wall``.

    Read with the offset before the change (fold 0), ``wall`` lands after the
    gap; with the offset after it (fold 1), before. The change lies between:
    the first millisecond with the later offset.
    """
    after = wall.replace(fold=0).astimezone(UTC)
    before = wall.replace(fold=1).astimezone(UTC)
    offset = after.astimezone(zone).utcoffset()
    while after - before > _MS:
        middle = before + (after - before) / 2
        middle -= timedelta(microseconds=middle.microsecond % 1000)
        if middle <= before:
            middle = before + _MS
        if middle.astimezone(zone).utcoffset() == offset:
            after = middle
        else:
            before = middle
    return after


def longest_deferral(start: time, end: time) -> timedelta:
    """An upper bound of how long quiet hours ``[start, end)`` defer a stage past its due
    time, in any zone: the window's length on the clock, plus a day for a clock change
    during it. A fall-back overlap lengthens a night by the overlap (less than a day); a
    gap shortens it, even one that skips the whole time outside the window and so keeps
    it quiet until the next ``end`` (a day later on the clock, less the gap)."""
    length = datetime.combine(date.min, end) - datetime.combine(date.min, start)
    return length % timedelta(days=1) + timedelta(days=1)


def local_instant(day: date, clock: time, zone: ZoneInfo) -> datetime:
    """The instant (aware UTC) of the wall time ``clock`` on ``day`` in ``zone``: the first
    of the two in a fall-back overlap, and in a spring-forward gap that skips it the first
    instant whose wall clock is at or past it (the end of the gap), as for quiet hours."""
    wall = datetime.combine(day, clock, tzinfo=zone)
    instant = wall.astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) != wall.replace(tzinfo=None):
        return _after_gap(zone, wall)
    return instant
