"""The building blocks of the rules model (:mod:`triggers.rules`): value types with their
bounds and messages, and :class:`TriggerRules`, the keys every trigger's section has.

Each trigger module defines its own section model on top of these (e.g.
``triggers.cart_abandonment.CartAbandonmentRules``); :mod:`triggers.registry` lists
them and :mod:`triggers.rules` assembles the ``triggers`` and ``offers`` sections
from that list.
"""

from __future__ import annotations

import re
from datetime import time, timedelta
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    model_validator,
)

from triggers.durations import format_duration, parse_duration
from triggers.variants import OfferKey, VariantTable

MAX_INT = 10**9  # the bound of the rules' integers (priority, counts)


def show(value: object) -> str:
    """A short, safe rendering of a value for an error message (never a huge repr)."""
    if isinstance(value, bool | float | str) or value is None:
        text = repr(value)
    elif isinstance(value, int):
        text = repr(value) if value.bit_length() <= 200 else "a very large integer"
    else:
        text = f"a {type(value).__name__}"
    return text if len(text) <= 64 else text[:60] + "..."


def _to_duration(value: object) -> timedelta:
    if isinstance(value, bool) or not isinstance(value, int | str | timedelta):
        raise ValueError(
            f"not a duration: {show(value)} (use integer seconds or a string like 90s, 1h30m, 3d)"
        )
    return parse_duration(value)  # type: ignore[arg-type]


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be longer than zero")
    return value


def _to_time(value: object) -> time:
    if isinstance(value, time):
        return value
    if isinstance(value, str) and re.fullmatch(r"\d?\d:\d\d", value):
        hours, minutes = (int(part) for part in value.split(":"))
        if hours < 24 and minutes < 60:
            return time(hours, minutes)
    raise ValueError(f'expected a time of day "HH:MM" (00:00 to 23:59), got {show(value)}')


def string_keys(value: object) -> object:
    if isinstance(value, dict):
        keys = [str(key) if isinstance(key, int) else key for key in value]
        if len(set(keys)) < len(keys):
            seen: set = set()
            twice = next(key for key in keys if key in seen or seen.add(key))
            raise ValueError(f"duplicate key {show(twice)} (an integer key is read as a string)")
        return dict(zip(keys, value.values(), strict=True))
    return value


def _to_version(value: object) -> object:
    if type(value) is int:
        if -(2**63) <= value < 2**63:
            return value
        raise ValueError("an integer version must fit in 64 bits")
    if type(value) is str:
        if not 0 < len(value) <= 64:
            raise ValueError("a version string must be 1..64 characters")
        if not value.isprintable():
            raise ValueError(
                f"a version string cannot hold control, format or line-separator characters, "
                f"got {show(value)}"
            )
        return value
    raise ValueError(f"must be an integer or a string, got {show(value)}")


Duration = Annotated[
    timedelta, BeforeValidator(_to_duration), PlainSerializer(format_duration, return_type=str)
]
PositiveDuration = Annotated[Duration, AfterValidator(_positive)]
TimeOfDay = Annotated[
    time, BeforeValidator(_to_time), PlainSerializer(lambda t: t.strftime("%H:%M"), return_type=str)
]
Stages = Annotated[tuple[PositiveDuration, ...], Field(min_length=1, max_length=10)]
IntervalTable = Annotated[dict[str, PositiveDuration], BeforeValidator(string_keys)]
Int = Annotated[int, Field(ge=-MAX_INT, le=MAX_INT)]
Version = Annotated[int | str, BeforeValidator(_to_version)]
# segment, variant or "default" -> offer code; the keys are checked against the variants by Rules
OfferTable = Annotated[dict[OfferKey, str], BeforeValidator(string_keys)]
Variants = Annotated[VariantTable, BeforeValidator(string_keys)]


class Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class FrequencyCapRules(Strict):
    max: int = Field(default=2, ge=1, le=MAX_INT)
    per: PositiveDuration = timedelta(hours=24)


class QuietHoursRules(Strict):
    """Local times in the user's zone; ``start > end`` crosses midnight."""

    start: TimeOfDay
    end: TimeOfDay

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHoursRules:
        if self.start == self.end:
            raise ValueError("quiet_hours start and end must differ (omit quiet_hours for none)")
        return self


CHANNEL_NAME = re.compile(r"[a-z0-9_]{1,32}")


def _channel_name(value: str) -> str:
    if not CHANNEL_NAME.fullmatch(value):
        raise ValueError(f"channel name {show(value)}: use 1..32 of a-z, 0-9 and _")
    return value


def _distinct(names: tuple[str, ...]) -> tuple[str, ...]:
    repeated = [name for n, name in enumerate(names) if name in names[:n]]
    if repeated:
        raise ValueError(f"channel {repeated[0]!r} is listed twice")
    return names


ChannelName = Annotated[str, AfterValidator(_channel_name)]
#: A trigger's channels (contract 8.1): its ordered preference, non-empty, no repeats.
ChannelList = Annotated[
    tuple[ChannelName, ...], Field(min_length=1, max_length=32), AfterValidator(_distinct)
]


def check_increasing(stages: tuple[timedelta, ...]) -> tuple[timedelta, ...]:
    for index in range(1, len(stages)):
        if stages[index] <= stages[index - 1]:
            raise ValueError(
                f"stages must be increasing: stages[{index}] ({format_duration(stages[index])}) "
                f"is not after stages[{index - 1}] ({format_duration(stages[index - 1])})"
            )
    return stages


class TriggerRules(Strict):
    """Keys every trigger has. ``cooldown`` applies to stage 1 of a new episode;
    ``variants`` are A/B variants, name -> weight (:mod:`triggers.variants`); ``channels``
    the trigger's channel preference (None: every channel of the rules, in file order)."""

    enabled: bool = True
    priority: Int = 0
    cooldown: Duration = timedelta(0)
    variants: Variants = Field(default_factory=dict)
    channels: ChannelList | None = None
