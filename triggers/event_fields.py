"""Field readers for the event parser: each returns a clean value or raises InvalidEvent.

They name the field in the error detail, and define the error type and its
reason codes. Used by :mod:`triggers.events`, which re-exports the public names.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from triggers.timestamps import TimestampError, parse_timestamp

MAX_ID_CHARS = 128
MAX_LABEL_CHARS = 256
MAX_QUERY_CHARS = 1024

REASONS = (
    "not_json",
    "not_object",
    "oversize",
    "unknown_type",
    "missing_field",
    "wrong_type",
    "invalid_value",
    "naive_timestamp",
    "bad_encoding",
)


class InvalidEvent(ValueError):
    """An input message the engine refuses; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


# --- field readers: each raises InvalidEvent naming the field ---------------------------


def read_id(obj: dict, name: str, *, allow_int: bool = False) -> str:
    value = obj.get(name)
    if type(value) is str:
        if 0 < len(value) <= MAX_ID_CHARS:
            return value
        raise InvalidEvent("invalid_value", f"{name} must be 1..{MAX_ID_CHARS} characters")
    if value is None:
        raise InvalidEvent("missing_field", f"{name} is required")
    if allow_int and type(value) is int:
        return str(value)
    expected = "a string or an integer" if allow_int else "a string"
    raise InvalidEvent("wrong_type", f"{name} must be {expected}, got {json_type(value)}")


def read_label(
    obj: dict, name: str, *, required: bool = False, limit: int = MAX_LABEL_CHARS
) -> str | None:
    value = obj.get(name)
    if type(value) is str:
        if 0 < len(value) <= limit:
            return value
        raise InvalidEvent("invalid_value", f"{name} must be 1..{limit} characters")
    if value is None:
        if required:
            raise InvalidEvent("missing_field", f"{name} is required")
        return None
    raise InvalidEvent("wrong_type", f"{name} must be a string, got {json_type(value)}")


def read_amount(obj: dict, name: str, where: str = "") -> float | None:
    value = obj.get(name)
    kind = type(value)
    if kind is float or kind is int:
        if value >= 0:
            return value
        raise InvalidEvent("invalid_value", f"{where}{name} must be >= 0, got {value}")
    if value is None:
        return None
    raise InvalidEvent("wrong_type", f"{where}{name} must be a number, got {json_type(value)}")


def read_quantity(obj: dict, name: str, where: str = "") -> int | None:
    value = obj.get(name)
    if type(value) is int:
        if value >= 1:
            return value
        raise InvalidEvent("invalid_value", f"{where}{name} must be an integer >= 1, got {value}")
    if value is None:
        return None
    raise InvalidEvent("wrong_type", f"{where}{name} must be an integer, got {json_type(value)}")


def read_flag(obj: dict, name: str) -> bool | None:
    value = obj.get(name)
    if value is None or type(value) is bool:
        return value
    raise InvalidEvent("wrong_type", f"{name} must be true or false, got {json_type(value)}")


def json_type(value: object) -> str:
    if value is None:
        return "null"
    if type(value) is bool:
        return "boolean"
    if type(value) in (int, float):
        return "number"
    if type(value) is str:
        return "string"
    if type(value) is list:
        return "array"
    return "object"


def is_time_zone(name: str) -> bool:
    """True if ``name`` is an IANA time zone known to ``zoneinfo``."""
    try:
        ZoneInfo(name)
    except Exception:  # ZoneInfoNotFoundError, ValueError for malformed keys, OSError
        return False
    return True


_FAST_MS_LIMIT = 2**32 * 1000  # below this, ms / 1000 as a float is exact to the microsecond


def read_timestamp(value: object) -> datetime:
    if type(value) is int:
        if 0 <= value < _FAST_MS_LIMIT:
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
        and value.isascii()
    ):
        try:
            return datetime.fromisoformat(value)  # "...T10:00:00Z" / "...T10:00:00.250Z"
        except ValueError:
            pass  # the general parser reports it
    elif value is None:
        raise InvalidEvent("missing_field", "ts is required")
    try:
        return parse_timestamp(value)
    except TimestampError as exc:
        raise InvalidEvent(exc.reason, f"ts: {exc.detail}") from None


def undecodable(raw: bytes | str, exc: Exception) -> InvalidEvent:
    try:
        if type(raw) is str:
            raw.encode("utf-8")
        else:
            bytes(raw).decode("utf-8")
    except UnicodeError:
        return InvalidEvent("bad_encoding", "message is not valid UTF-8")
    return InvalidEvent("not_json", f"not valid JSON: {exc}")
