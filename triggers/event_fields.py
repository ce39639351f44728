"""Field readers for the event parser: each returns a clean value or raises InvalidEvent.

They name the field in the error detail, and define the error type and its
reason codes. Used by :mod:`triggers.events`, which re-exports the public names.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from triggers.timestamps import MAX_MILLIS, TimestampError, parse_timestamp

MAX_ID_CHARS = 128
MAX_LABEL_CHARS = 256
MAX_QUERY_CHARS = 1024
# Amounts (price, unit_price, total, and a default total: the sum of the lines) are finite
# and at most a quadrillion, no real price in any currency; integers up to it are exact
# as floats. Quantities are at most a billion. With both bounds every sum and product the
# engine forms (cart value, order totals, a user's monetary value, cart quantities) stays
# finite and fits the 64-bit integers of the state encoding.
MAX_AMOUNT = 10**15
MAX_QUANTITY = 10**9

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
    """A finite number in 0..MAX_AMOUNT (an integer stays an integer)."""
    value = obj.get(name)
    kind = type(value)
    if kind is float or kind is int:
        if 0 <= value <= MAX_AMOUNT:  # False for NaN and infinities too
            return value
        raise InvalidEvent(
            "invalid_value", f"{where}{name} must be a number from 0 to 1e15, got {value}"
        )
    if value is None:
        return None
    raise InvalidEvent("wrong_type", f"{where}{name} must be a number, got {json_type(value)}")


def read_unit_price(obj: dict, name: str, where: str = "") -> float | None:
    """:func:`read_amount` as a float: a unit price is multiplied by (summed) quantities,
    and float products stay finite where integer ones could outgrow 64 bits."""
    value = read_amount(obj, name, where)
    return value if value is None or type(value) is float else float(value)


def read_quantity(obj: dict, name: str, where: str = "") -> int | None:
    value = obj.get(name)
    if type(value) is int:
        if 1 <= value <= MAX_QUANTITY:
            return value
        raise InvalidEvent(
            "invalid_value", f"{where}{name} must be an integer from 1 to 1e9, got {value}"
        )
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
assert _FAST_MS_LIMIT <= MAX_MILLIS  # the fast path stays inside the accepted range


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
        and "1900" <= value[:4] <= "2999"  # the accepted range, in UTC (see timestamps)
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
