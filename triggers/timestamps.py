"""Timestamps at the edge: RFC 3339 / epoch-millisecond parsing and ``...Z`` formatting.

Inside the engine every time is a timezone-aware UTC ``datetime`` kept to the
millisecond (finer fractions are truncated when parsed), so a timestamp
survives state encoding and output formatting unchanged.

Accepted range: :data:`MIN_TIMESTAMP` (1900-01-01T00:00:00Z) to
:data:`MAX_TIMESTAMP` (2999-12-31T23:59:59.999Z), in both forms (epoch
milliseconds -2208988800000 to 32503679999999). The engine adds durations
(at most 3650 days each, see :mod:`triggers.durations`) and scaled gaps
(at most :data:`MAX_SCALED`) to event times; with this range every result
stays far inside ``datetime``'s years 1..9999, so date arithmetic never
overflows. Anything outside is refused as ``invalid_value``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import orjson

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MILLISECOND = timedelta(milliseconds=1)

# RFC 3339 date-time: the separator may be T, t or a space; the offset is required.
_RFC3339 = re.compile(
    r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(Z|[+-]\d\d:\d\d)?",
    re.ASCII | re.IGNORECASE,
)
MIN_TIMESTAMP = datetime(1900, 1, 1, tzinfo=UTC)
MAX_TIMESTAMP = datetime(2999, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC)
MIN_MILLIS = -2_208_988_800_000  # MIN_TIMESTAMP in epoch milliseconds
MAX_MILLIS = 32_503_679_999_999  # MAX_TIMESTAMP in epoch milliseconds
_RANGE = "1900-01-01T00:00:00Z .. 2999-12-31T23:59:59.999Z"
# ``scaled`` results are capped here: a due time 1000 years out never comes, and the cap
# keeps ``time + scaled(...)`` inside datetime's range for any gap and factor.
MAX_SCALED = timedelta(days=365_250)
_MAX_SCALED_MS = MAX_SCALED // MILLISECOND


class TimestampError(ValueError):
    """A timestamp that is not RFC 3339 with an offset, nor integer epoch milliseconds."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason  # "naive_timestamp" | "invalid_value" | "wrong_type"
        self.detail = detail


def parse_timestamp(value: object) -> datetime:
    """Parse an RFC 3339 string with offset or integer epoch milliseconds to aware UTC.

    Raises :class:`TimestampError`; sub-millisecond digits are truncated.
    """
    if type(value) is str:
        match = _RFC3339.fullmatch(value.replace(" ", "T", 1) if " " in value else value)
        if match is None:
            raise TimestampError("invalid_value", f"not an RFC 3339 date-time: {value[:64]!r}")
        if match.group(1) is None:
            raise TimestampError("naive_timestamp", f"timestamp has no UTC offset: {value!r}")
        text = match.group(0)
        if not text.isupper():
            text = text.upper()
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError as exc:
            raise TimestampError("invalid_value", f"{exc}: {value!r}") from None
        if parsed.tzinfo is not UTC:
            try:
                parsed = parsed.astimezone(UTC)
            except OverflowError:
                raise TimestampError("invalid_value", f"out of range: {value!r}") from None
        micro = parsed.microsecond
        if micro % 1000:
            parsed = parsed.replace(microsecond=micro - micro % 1000)
        if not MIN_TIMESTAMP <= parsed <= MAX_TIMESTAMP:
            raise TimestampError("invalid_value", f"out of range ({_RANGE}): {value[:64]!r}")
        return parsed
    if type(value) is int:
        if not MIN_MILLIS <= value <= MAX_MILLIS:
            raise TimestampError(
                "invalid_value",
                f"epoch milliseconds out of range ({MIN_MILLIS}..{MAX_MILLIS}): {value}",
            )
        return EPOCH + timedelta(milliseconds=value)
    raise TimestampError(
        "wrong_type",
        f"expected an RFC 3339 string or integer epoch milliseconds, got {type(value).__name__}",
    )


FAST_MS_LIMIT = 2**32 * 1000  # below this, ms / 1000 as a float is exact to the microsecond
assert FAST_MS_LIMIT <= MAX_MILLIS  # the fast path stays inside the accepted range


def event_time(value: object) -> datetime:
    """:func:`parse_timestamp` with fast paths for the common wire forms (epoch ms after
    1970, ``...T10:00:00Z`` and ``...T10:00:00.250Z``); the same results and errors."""
    if type(value) is int:
        if 0 <= value < FAST_MS_LIMIT:
            return datetime.fromtimestamp(value / 1000, UTC)
    elif (
        type(value) is str
        and len(value) in (20, 24)
        and value[-1] == "Z"
        and value[4] == "-"
        and value[7] == "-"
        and value[10] == "T"
        and value[13] == ":"
        and value[16] == ":"
        and (len(value) == 20 or value[19] == ".")
        and "1900" <= value[:4] <= "2999"  # the accepted range, in UTC
        and value.isascii()
    ):
        try:
            return datetime.fromisoformat(value)  # "...T10:00:00Z" / "...T10:00:00.250Z"
        except ValueError:
            pass  # the general parser reports it
    return parse_timestamp(value)


def format_timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with ``Z``; milliseconds only when non-zero (``...T10:00:00.250Z``)."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    # orjson formats datetimes several times faster than isoformat():
    # '"2026-11-23T10:00:00Z"' or '"2026-11-23T10:00:00.250000Z"'
    text = orjson.dumps(moment, option=orjson.OPT_UTC_Z).decode()
    return text[1:24] + "Z" if moment.microsecond >= 1000 else text[1:20] + "Z"


def scaled(duration: timedelta, factor: float) -> timedelta:
    """``duration * factor`` rounded to whole milliseconds (times stay millisecond-exact),
    at most :data:`MAX_SCALED` (a learned gap of centuries times a large factor)."""
    millis = duration / MILLISECOND * factor
    if not millis <= _MAX_SCALED_MS:  # also NaN
        return MAX_SCALED
    return timedelta(milliseconds=round(millis))


def to_millis(moment: datetime) -> int:
    """Epoch milliseconds of an aware datetime (rounded down)."""
    span = moment - EPOCH  # days, seconds and microseconds, the last two never negative
    return span.days * 86_400_000 + span.seconds * 1000 + span.microseconds // 1000


def from_millis(millis: int) -> datetime:
    """Aware UTC datetime from epoch milliseconds."""
    return EPOCH + timedelta(milliseconds=millis)
