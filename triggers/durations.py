"""Rules-file durations: integer seconds, or number+unit parts like ``90s``, ``1h30m``, ``3d``.

A duration is kept to the millisecond (engine times are millisecond-exact) and
is at most :data:`MAX_DURATION` (3650 days, about ten years): every duration
the engine adds to an event time stays inside ``datetime``'s range, and what
:func:`format_duration` prints reads back exactly.
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import ROUND_HALF_EVEN, Decimal, localcontext

MAX_DURATION = timedelta(days=3650)
_MAX_MS = MAX_DURATION // timedelta(milliseconds=1)
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+")


def parse_duration(value: int | str | timedelta) -> timedelta:
    """``3600`` -> 1 hour, ``"1h30m"`` -> 90 minutes, ``"1.5d"`` -> 36 hours (to the ms).

    Raises ``ValueError`` (with a message fit for a rules-file error) for anything
    else, including negative numbers, floats, booleans, unknown units and
    durations longer than :data:`MAX_DURATION`. Strings are read exactly (decimal
    arithmetic, then rounded half-even to the millisecond).
    """
    if isinstance(value, timedelta):
        if value < timedelta(0):
            raise ValueError("a duration cannot be negative")
        return _bounded(Decimal(value // timedelta(microseconds=1)) / 1000, value)
    if type(value) is int:
        if value < 0:
            raise ValueError(f"a duration cannot be negative, got {_show(value)}")
        return _bounded(Decimal(value) * 1000, value)
    if type(value) is str:
        text = value.strip()
        if text and text.isascii():
            with localcontext() as context:
                context.prec = len(text) + 20  # enough digits for exact sums and products
                if text.isdigit():
                    return _bounded(Decimal(text) * 1000, text)
                if _WHOLE.fullmatch(text):
                    millis = sum(
                        (Decimal(number) * _UNIT_MS[unit] for number, unit in _PART.findall(text)),
                        Decimal(0),
                    )
                    return _bounded(millis, text)
    raise ValueError(
        f"not a duration: {_show(value)} (use integer seconds or number+unit parts with "
        "units s m h d w, e.g. 90s, 1h30m, 3d)"
    )


def _bounded(millis: Decimal, value: object) -> timedelta:
    if millis > _MAX_MS:
        raise ValueError(f"a duration can be at most 3650d (about ten years), got {_show(value)}")
    return timedelta(milliseconds=int(millis.to_integral_value(ROUND_HALF_EVEN)))


def _show(value: object) -> str:
    if type(value) is int and value.bit_length() > 200:
        return "a very large integer"
    text = repr(value) if isinstance(value, str | int | timedelta) else type(value).__name__
    return text if len(text) <= 64 else text[:60] + "..."


def format_duration(duration: timedelta) -> str:
    """The shortest ``d h m s`` spelling that :func:`parse_duration` reads back exactly."""
    micros = duration // timedelta(microseconds=1)
    if micros == 0:
        return "0s"
    seconds, fraction = divmod(micros, 1_000_000)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    if seconds or fraction:
        text = f"{seconds}.{fraction:06d}".rstrip("0").rstrip(".") if fraction else str(seconds)
        parts.append(f"{text}s")
    return "".join(parts)
