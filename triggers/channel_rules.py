"""Channels in the rules (contract 8.1): the top-level ``channels`` section and its checks.

``channels`` maps a name (1..32 chars of ``[a-z0-9_]``) to :class:`ChannelRules`; the
file order is the default preference. A trigger's own ``channels`` (built-in and custom
alike, :class:`~triggers.rules_types.TriggerRules`) is its ordered preference and may
only name channels of this section: :func:`check_trigger_channels` refuses an unknown
one with a pydantic error located at ``triggers.NAME.channels[i]`` (or
``triggers.custom.NAME.channels[i]``), so the rules' error reporting gives it its line.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from triggers.rules_types import (
    ChannelName,
    FrequencyCapRules,
    QuietHoursRules,
    Strict,
    TriggerRules,
    string_keys,
)

OPT_OUT = "opt_out"
OPT_IN = "opt_in"
MAX_CHANNELS = 32


class ChannelRules(Strict):
    """One channel: who may be contacted on it, its own cap and quiet hours, its cost."""

    consent: Literal["opt_out", "opt_in"] = OPT_OUT
    frequency_cap: FrequencyCapRules | None = None  # counts this channel's contacts only
    quiet_hours: QuietHoursRules | None = None  # in the user's time zone, besides the global
    cost: float = Field(default=0.0, ge=0, le=10**9, allow_inf_nan=False)  # report only


ChannelTable = Annotated[
    dict[ChannelName, ChannelRules],
    BeforeValidator(string_keys),
    Field(max_length=MAX_CHANNELS),
]


def check_trigger_channels(
    channels: Mapping[str, ChannelRules], sections: Mapping[tuple[str, ...], TriggerRules]
) -> None:
    """Refuse a trigger's channel that the rules' ``channels`` do not define.

    ``sections``: the key path of each trigger's section (``("triggers", "lapsing")``)."""
    known = ", ".join(channels) or "none: the rules define no channels"
    errors = [
        InitErrorDetails(
            type=PydanticCustomError("value_error", "{reason}", {"reason": reason}),
            loc=(*path, "channels", index),
            input=name,
        )
        for path, section in sections.items()
        for index, name in enumerate(section.channels or ())
        if name not in channels
        for reason in (f"unknown channel {name!r} (channels: {known})",)
    ]
    if errors:
        raise ValidationError.from_exception_data("Rules", errors)


def trigger_channels(
    channels: Mapping[str, ChannelRules], section: TriggerRules
) -> tuple[str, ...]:
    """A trigger's channels in preference order: its own list, else every channel in file
    order (empty: the rules define no channels, the channel step is skipped)."""
    if not channels:
        return ()
    return section.channels if section.channels is not None else tuple(channels)
