"""Quiet hours in the user's local time: is a moment inside them, and when do they end?

Windows are local wall-clock times; ``start > end`` crosses midnight. The
local time is taken with ``zoneinfo``, so DST changes are handled: the end of
a window is the first instant after ``now`` at which the local clock reads
``end`` (for an end time skipped by a spring-forward change, the instant the
skipped wall time maps to under the pre-transition offset).
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo


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
    for fold in (0, 1):
        candidate = datetime.combine(day, end, tzinfo=zone).replace(fold=fold).astimezone(UTC)
        if candidate > now:
            return candidate
    return None
