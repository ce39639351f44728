"""Field types of the input events, and the parser's error: reasons and field-path details.

The annotated types below carry the contract's bounds as msgspec constraints, so the
same declaration validates a message and documents it in the published JSON Schema.
:func:`refusal` turns a msgspec ``ValidationError`` into an :class:`InvalidEvent` with
one of the stable :data:`REASONS` and a detail naming the field by its JSON path
(``$.items[0].quantity``). Used by :mod:`triggers.events`, which re-exports the names.

Bounds beyond the contract's types, so that the engine's arithmetic never overflows:
amounts finite and at most 1e15 (a default ``total`` too), quantities at most 1e9,
``ts`` from 1900-01-01T00:00:00Z to 2999-12-31T23:59:59.999Z (see
:mod:`triggers.timestamps`). Outside them: ``invalid_value``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated, Any
from zoneinfo import ZoneInfo

import msgspec
import orjson
from msgspec import Meta

from triggers.timestamps import MAX_MILLIS, MIN_MILLIS

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


# --- field types -------------------------------------------------------------------------

Id = Annotated[str, Meta(min_length=1, max_length=MAX_ID_CHARS)]
Label = Annotated[str, Meta(min_length=1, max_length=MAX_LABEL_CHARS)]
Query = Annotated[str, Meta(min_length=1, max_length=MAX_QUERY_CHARS)]
Quantity = Annotated[int, Meta(ge=1, le=MAX_QUANTITY)]
#: A price or total: an integer stays an integer, a float a float.
Amount = Annotated[int, Meta(ge=0, le=MAX_AMOUNT)] | Annotated[float, Meta(ge=0, le=MAX_AMOUNT)]
#: A unit price is always a float: it is multiplied by (summed) quantities, and float
#: products stay finite where integer ones could outgrow 64 bits.
UnitPrice = Annotated[float, Meta(ge=0, le=MAX_AMOUNT)]
MAX_CHANNEL_ANSWERS = 64
#: ``preferences_updated.channels`` (contract 8.1): channel name -> consent, at most 64.
ChannelAnswers = Annotated[
    dict[Annotated[str, Meta(min_length=1, max_length=MAX_ID_CHARS)], bool],
    Meta(max_length=MAX_CHANNEL_ANSWERS),
]
Birthday = Annotated[
    str,
    Meta(
        pattern=r"^([0-9]{4}-)?[0-9]{2}-[0-9]{2}$",
        description='"MM-DD" or "YYYY-MM-DD", a real date (02-29 is one)',
    ),
]
TimeZoneName = Annotated[
    str,
    Meta(min_length=1, max_length=MAX_LABEL_CHARS, description="an IANA time zone name"),
]

if TYPE_CHECKING:
    # What the attributes hold once an event is built: ``__post_init__`` normalises the
    # wire forms below (a string id or an integer, a timestamp string or epoch ms).
    ObjectId = str
    Timestamp = datetime
else:
    ObjectId = Annotated[
        Id | int,
        Meta(description="a string, or an integer (kept as its decimal string)"),
    ]
    Timestamp = Annotated[
        Annotated[
            str,
            Meta(
                description="RFC 3339 date-time with an offset (Z or +-HH:MM); T, t or a space "
                "between date and time; fractions past the millisecond are truncated",
                extra_json_schema={"format": "date-time"},
            ),
        ]
        | Annotated[
            int,
            Meta(  # the range is checked with the string form's, in __post_init__
                description="epoch milliseconds",
                extra_json_schema={"minimum": MIN_MILLIS, "maximum": MAX_MILLIS},
            ),
        ],
        Meta(description="event time, 1900-01-01T00:00:00Z .. 2999-12-31T23:59:59.999Z"),
    ]


def is_time_zone(name: str) -> bool:
    """True if ``name`` is an IANA time zone known to ``zoneinfo``."""
    try:
        ZoneInfo(name)
    except Exception:  # ZoneInfoNotFoundError, ValueError for malformed keys, OSError
        return False
    return True


def is_birthday(text: str) -> bool:
    """True for a real ``MM-DD`` (Feb 29 included) or ``YYYY-MM-DD`` date."""
    year = int(text[:4]) if len(text) == 10 else 2000  # 2000: a leap year
    try:
        date(year, int(text[-5:-3]), int(text[-2:]))
    except ValueError:
        return False
    return True


# --- errors --------------------------------------------------------------------------------

_MISSING = re.compile(r"Object missing required field `(.+)`")
_WRONG_TYPE = re.compile(r"Expected `(.+)`, got `(.+)`")
_STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]")


def refusal(error: msgspec.ValidationError, obj: Any) -> InvalidEvent:
    """The :class:`InvalidEvent` for msgspec's ``error`` on the decoded message ``obj``."""
    message, _, at = str(error).rpartition(" - at `")
    path = at[:-1] if message else "$"
    message = message or str(error)
    cause = error.__cause__
    if isinstance(cause, InvalidEvent):  # raised by an event's __post_init__
        return InvalidEvent(cause.reason, f"{path}.{cause.detail}")
    if match := _MISSING.fullmatch(message):
        return InvalidEvent("missing_field", f"{path}.{match.group(1)} is required")
    if match := _WRONG_TYPE.fullmatch(message):
        expected, got = match.groups()
        if got == "null":  # null for a required field: absent
            return InvalidEvent("missing_field", f"{path} is required (got null)")
        return InvalidEvent("wrong_type", f"{path}: expected {expected}, got {got}")
    found, value = _value_at(obj, path)
    got = f", got {_shown(value)}" if found else ""
    return InvalidEvent("invalid_value", f"{path}: {message[0].lower()}{message[1:]}{got}")


def _value_at(obj: Any, path: str) -> tuple[bool, Any]:
    for name, index in _STEP.findall(path):
        if name and type(obj) is dict and name in obj:
            obj = obj[name]
        elif index and type(obj) is list and int(index) < len(obj):
            obj = obj[int(index)]
        else:
            return False, None
    return True, obj


def _shown(value: object) -> str:
    try:
        text = orjson.dumps(value).decode()
    except TypeError:  # an integer past 64 bits
        text = repr(value)
    return text if len(text) <= 64 else text[:61] + "..."


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


def undecodable(raw: bytes | str, exc: Exception) -> InvalidEvent:
    try:
        if type(raw) is str:
            raw.encode("utf-8")
        else:
            bytes(raw).decode("utf-8")
    except UnicodeError:
        return InvalidEvent("bad_encoding", "message is not valid UTF-8")
    return InvalidEvent("not_json", f"not valid JSON: {exc}")


# --- the general path of a parser ------------------------------------------------------


def decode_message(
    raw: bytes | str, max_bytes: int, decoder: msgspec.json.Decoder, others: Mapping[str, str]
) -> Any:
    """Decode ``raw`` with ``decoder``, or raise the :class:`InvalidEvent` that tells why
    not (and nothing else). ``others``: event types that ``decoder`` does not read, each
    with why (read from another topic).

    The error raised is a fresh one, raised outside any handler: it carries no context
    (the msgspec or orjson error behind it, whose traceback holds the parser's frames
    and the message) and no frame of the parser. A caller that keeps it — the live
    service keeps a batch's dead letters until its checkpoint — keeps only the reason
    and the detail, not a reference cycle that outlives the young generation."""
    try:
        return _decode_message(raw, max_bytes, decoder, others)
    except InvalidEvent as exc:
        error = InvalidEvent(exc.reason, exc.detail)
    except Exception as exc:  # defensive: the contract is "InvalidEvent or an Event"
        error = InvalidEvent("invalid_value", f"unreadable event: {exc}")
    try:
        raise error
    finally:
        del error  # this frame does not keep the error (whose traceback keeps this frame)


def _decode_message(
    raw: bytes | str, max_bytes: int, decoder: msgspec.json.Decoder, others: Mapping[str, str]
) -> Any:
    if type(raw) is bytes:
        if len(raw) > max_bytes:
            raise InvalidEvent("oversize", f"message of {len(raw)} bytes, limit {max_bytes}")
    elif type(raw) is str:
        if len(raw) > max_bytes or (
            len(raw) * 4 > max_bytes and len(raw.encode("utf-8", "surrogatepass")) > max_bytes
        ):
            raise InvalidEvent("oversize", f"message larger than {max_bytes} bytes")
    elif isinstance(raw, bytearray | memoryview):
        raw = bytes(raw)
        if len(raw) > max_bytes:
            raise InvalidEvent("oversize", f"message of {len(raw)} bytes, limit {max_bytes}")
    else:
        raise InvalidEvent("not_json", f"expected bytes or str, got {type(raw).__name__}")
    try:
        event = decoder.decode(raw)
    except (msgspec.MsgspecError, RecursionError, UnicodeError):
        return _reread(raw, decoder, others)
    if type(raw) is bytes and not raw.isascii():  # skipped (unknown) strings are UTF-8 too
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidEvent("bad_encoding", "message is not valid UTF-8") from None
    return event


def _reread(raw: bytes | str, decoder: msgspec.json.Decoder, others: Mapping[str, str]) -> Any:
    """A message msgspec refused, read again with orjson to tell which reason applies."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise undecodable(raw, exc) from None
    if type(obj) is not dict:
        raise InvalidEvent("not_object", f"expected a JSON object, got {json_type(obj)}")
    kind = obj.get("type")
    if kind is None:
        raise InvalidEvent("missing_field", "$.type is required")
    if type(kind) is not str:
        raise InvalidEvent("wrong_type", f"$.type: expected str, got {json_type(kind)}")
    if kind in others:
        raise InvalidEvent("unknown_type", f"type {kind!r} is {others[kind]}")
    try:
        # orjson's reading may be valid where msgspec's was not (a nesting too deep for
        # msgspec in an unknown field; a repeated key: the last one counts).
        return msgspec.convert(obj, decoder.type)
    except msgspec.ValidationError as exc:
        if str(exc).startswith("Invalid value ") and str(exc).endswith(" - at `$.type`"):
            raise InvalidEvent(
                "unknown_type", f"type {kind[:64]!r} is not a known event type"
            ) from None
        raise refusal(exc, obj) from None
