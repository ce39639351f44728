"""Rules-file durations: integer seconds, or number+unit parts like ``90s``, ``1h30m``, ``3d``."""

from __future__ import annotations

import re
from datetime import timedelta

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+")


def parse_duration(value: int | str) -> timedelta:
    """``3600`` -> 1 hour, ``"1h30m"`` -> 90 minutes, ``"1.5d"`` -> 36 hours (to the ms).

    Raises ``ValueError`` (with a message fit for a rules-file error) for anything
    else, including negative numbers, floats, booleans and unknown units.
    """
    if isinstance(value, timedelta):
        if value < timedelta(0):
            raise ValueError("a duration cannot be negative")
        return timedelta(milliseconds=round(value / timedelta(milliseconds=1)))
    if type(value) is int:
        if value < 0:
            raise ValueError(f"a duration cannot be negative, got {value}")
        return timedelta(seconds=value)
    if type(value) is str:
        text = value.strip()
        if text.isdigit():
            return timedelta(seconds=int(text))
        if text and _WHOLE.fullmatch(text):
            seconds = sum(
                float(number) * _UNIT_SECONDS[unit] for number, unit in _PART.findall(text)
            )
            return timedelta(milliseconds=round(seconds * 1000))  # engine times are in ms
    raise ValueError(
        f"not a duration: {value!r} (use integer seconds or number+unit parts with "
        "units s m h d w, e.g. 90s, 1h30m, 3d)"
    )


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
