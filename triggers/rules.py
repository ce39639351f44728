"""The rules file (contract section 5): pydantic model and parsing.

Every key has a default, so an empty file is valid. Unknown keys are refused
(a typo must not silently fall back to a default). Errors carry the key path,
e.g. ``triggers.cart_abandonment.stages[1]``. Durations are integer seconds or
``90s`` / ``1h30m`` / ``3d`` strings and become ``timedelta``; quiet-hours
times are ``"HH:MM"`` strings and become ``datetime.time``.

``Rules.version_label`` is what decisions carry as ``rules_version``: the
file's ``version`` plus a short hash of the *effective* rules, so two files
that mean the same thing have the same label and any change shows.

Bounds, so that every rules file that loads is one the engine can run (event
times are bounded too, see :mod:`triggers.timestamps`):

- every duration (``stages``, ``cooldown``, replenishment ``products`` and
  ``categories`` intervals, ``frequency_cap.per``, ``max_delay``,
  ``attribution_window``, ``segments.dormant_after`` / ``churned_after``) is at
  most 3650d (about ten years), read exactly to the millisecond;
- every number is finite (no ``.inf`` / ``.nan``);
- ``lapsing.factor``: greater than 0, at most 100;
  ``replenishment.fire_at_fraction``: greater than 0, at most 10;
- integers (``priority``, ``frequency_cap.max``, ``min_orders``,
  ``core_min_orders``) are within -1e9..1e9 besides their own lower bounds;
- ``variants`` (any trigger): 1..100 names of 1..32 printable characters (not
  ``default`` nor a segment name) with integer weights 1..1,000,000; an ``offers``
  key names a segment, ``default`` or one of that trigger's variants;
- ``version``: an integer (64-bit) or a string of 1..64 printable characters
  (no control, format or line-separator characters: it is printed in the
  header comment of ``nudge rules check``);
- mapping keys are scalars, unique, also after integer keys become strings;
  strings hold no lone surrogates.

``parse_rules`` raises :class:`RulesError` and nothing else, whatever the input.
"""

from __future__ import annotations

import hashlib
import re
from datetime import time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from triggers.durations import MAX_DURATION, format_duration, parse_duration
from triggers.events import is_time_zone
from triggers.rules_source import YamlProblem, dump_yaml, load_yaml, locate, suggest
from triggers.variants import OfferKey, VariantTable, check_offer_keys, offer_for

__all__ = [
    "MAX_DURATION",
    "Rules",
    "RulesError",
    "format_duration",
    "load_rules",
    "parse_duration",
    "parse_rules",
]


MAX_INT = 10**9  # the bound of the rules' integers (priority, counts)


def _show(value: object) -> str:
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
            f"not a duration: {_show(value)} (use integer seconds or a string like 90s, 1h30m, 3d)"
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
    raise ValueError(f'expected a time of day "HH:MM" (00:00 to 23:59), got {_show(value)}')


def _string_keys(value: object) -> object:
    if isinstance(value, dict):
        keys = [str(key) if isinstance(key, int) else key for key in value]
        if len(set(keys)) < len(keys):
            seen: set = set()
            twice = next(key for key in keys if key in seen or seen.add(key))
            raise ValueError(f"duplicate key {_show(twice)} (an integer key is read as a string)")
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
                f"got {_show(value)}"
            )
        return value
    raise ValueError(f"must be an integer or a string, got {_show(value)}")


Duration = Annotated[
    timedelta, BeforeValidator(_to_duration), PlainSerializer(format_duration, return_type=str)
]
PositiveDuration = Annotated[Duration, AfterValidator(_positive)]
TimeOfDay = Annotated[
    time, BeforeValidator(_to_time), PlainSerializer(lambda t: t.strftime("%H:%M"), return_type=str)
]
Stages = Annotated[tuple[PositiveDuration, ...], Field(min_length=1, max_length=10)]
IntervalTable = Annotated[dict[str, PositiveDuration], BeforeValidator(_string_keys)]
Int = Annotated[int, Field(ge=-MAX_INT, le=MAX_INT)]
Version = Annotated[int | str, BeforeValidator(_to_version)]
# segment, variant or "default" -> offer code; the keys are checked against the variants by Rules
OfferTable = Annotated[dict[OfferKey, str], BeforeValidator(_string_keys)]
Variants = Annotated[VariantTable, BeforeValidator(_string_keys)]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


def _check_increasing(stages: tuple[timedelta, ...]) -> tuple[timedelta, ...]:
    for index in range(1, len(stages)):
        if stages[index] <= stages[index - 1]:
            raise ValueError(
                f"stages must be increasing: stages[{index}] ({format_duration(stages[index])}) "
                f"is not after stages[{index - 1}] ({format_duration(stages[index - 1])})"
            )
    return stages


class TriggerRules(_Strict):
    """Keys every trigger has. ``cooldown`` applies to stage 1 of a new episode;
    ``variants`` are A/B variants, name -> weight (:mod:`triggers.variants`)."""

    enabled: bool = True
    priority: Int = 0
    cooldown: Duration = timedelta(0)
    variants: Variants = Field(default_factory=dict)


class CartAbandonmentRules(TriggerRules):
    stages: Stages = (timedelta(hours=1), timedelta(hours=24))
    min_cart_value: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    cooldown: Duration = timedelta(hours=24)
    priority: Int = 100
    _increasing = field_validator("stages")(_check_increasing)


class BrowseAbandonmentRules(TriggerRules):
    stages: Stages = (timedelta(hours=2),)
    cooldown: Duration = timedelta(hours=24)
    priority: Int = 50
    _increasing = field_validator("stages")(_check_increasing)


class ReplenishmentRules(TriggerRules):
    fire_at_fraction: float = Field(default=0.9, gt=0, le=10, allow_inf_nan=False)
    products: IntervalTable = Field(default_factory=dict)
    categories: IntervalTable = Field(default_factory=dict)
    learn_from_history: bool = True
    min_purchases: int = Field(default=2, ge=2, le=8)  # the state keeps 8 purchases per product
    priority: Int = 80


class FirstPurchaseFollowupRules(TriggerRules):
    stages: Stages = (timedelta(days=3),)
    priority: Int = 60
    _increasing = field_validator("stages")(_check_increasing)


class LapsingRules(TriggerRules):
    factor: float = Field(default=1.5, gt=0, le=100, allow_inf_nan=False)
    min_orders: int = Field(default=3, ge=2, le=MAX_INT)  # a mean gap needs two orders
    priority: Int = 70


class DormancyRules(TriggerRules):
    stages: Stages = (timedelta(days=30), timedelta(days=60), timedelta(days=90))
    audience: Literal["customers", "all"] = "customers"
    priority: Int = 40
    _increasing = field_validator("stages")(_check_increasing)


class TriggersRules(_Strict):
    cart_abandonment: CartAbandonmentRules = CartAbandonmentRules()
    browse_abandonment: BrowseAbandonmentRules = BrowseAbandonmentRules()
    replenishment: ReplenishmentRules = ReplenishmentRules()
    first_purchase_followup: FirstPurchaseFollowupRules = FirstPurchaseFollowupRules()
    lapsing: LapsingRules = LapsingRules()
    dormancy: DormancyRules = DormancyRules()


class FrequencyCapRules(_Strict):
    max: int = Field(default=2, ge=1, le=MAX_INT)
    per: PositiveDuration = timedelta(hours=24)


class QuietHoursRules(_Strict):
    """Local times in the user's zone; ``start > end`` crosses midnight."""

    start: TimeOfDay
    end: TimeOfDay

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHoursRules:
        if self.start == self.end:
            raise ValueError("quiet_hours start and end must differ (omit quiet_hours for none)")
        return self


class ContactPolicyRules(_Strict):
    frequency_cap: FrequencyCapRules = FrequencyCapRules()
    quiet_hours: QuietHoursRules | None = None
    max_delay: Duration = timedelta(hours=6)
    holdout_percent: float = Field(default=0.0, ge=0, le=100, allow_inf_nan=False)
    holdout_salt: str = "nudge"
    attribution_window: PositiveDuration = timedelta(hours=72)


class SegmentRules(_Strict):
    core_min_orders: int = Field(default=5, ge=1, le=MAX_INT)
    core_min_monetary: float = Field(default=500.0, ge=0, allow_inf_nan=False)
    dormant_after: PositiveDuration = timedelta(days=30)
    churned_after: PositiveDuration = timedelta(days=90)

    @model_validator(mode="after")
    def _ordered(self) -> SegmentRules:
        if self.churned_after <= self.dormant_after:
            raise ValueError("churned_after must be longer than dormant_after")
        return self


class OffersRules(_Strict):
    """trigger -> variant, segment or ``default`` -> offer code."""

    cart_abandonment: OfferTable = Field(default_factory=dict)
    browse_abandonment: OfferTable = Field(default_factory=dict)
    replenishment: OfferTable = Field(default_factory=dict)
    first_purchase_followup: OfferTable = Field(default_factory=dict)
    lapsing: OfferTable = Field(default_factory=dict)
    dormancy: OfferTable = Field(default_factory=dict)

    def offer(self, trigger: str, segment: str, variant: str | None = None) -> str | None:
        return offer_for(getattr(self, trigger), variant, segment)


class Rules(_Strict):
    """The effective rules; ``Rules()`` is the built-in default."""

    version: Version = 1
    default_timezone: str = "UTC"
    triggers: TriggersRules = TriggersRules()
    contact_policy: ContactPolicyRules = ContactPolicyRules()
    segments: SegmentRules = SegmentRules()
    offers: OffersRules = OffersRules()
    _version_label: str = PrivateAttr(default="")

    @field_validator("default_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if not is_time_zone(value):
            raise ValueError(f"not a known IANA time zone: {_show(value)}")
        return value

    @model_validator(mode="after")
    def _offers_name_variants(self) -> Rules:
        tables = {name: getattr(self.offers, name) for name in OffersRules.model_fields}
        check_offer_keys(tables, {name: self.trigger(name).variants for name in tables})
        return self

    def model_post_init(self, context: Any, /) -> None:
        data = self.model_dump(mode="json")
        for section in data["triggers"].values():  # no variants means what it meant before
            if isinstance(section, dict) and section.get("variants") == {}:
                del section["variants"]
        canonical = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
        digest = hashlib.blake2b(canonical, digest_size=4).hexdigest()
        self._version_label = f"{self.version}+{digest}"

    @property
    def version_label(self) -> str:
        """``rules_version`` in decisions: ``"<version>+<8 hex of the effective rules>"``."""
        return self._version_label

    def trigger(self, name: str) -> TriggerRules:
        return getattr(self.triggers, name)


class RulesError(ValueError):
    """An invalid rules file.

    ``errors`` is a list of (key path, reason); ``lines`` the line of each in the file
    (None when unknown); ``source`` the file name, if any. ``str()`` gives one line per
    error: ``rules.yaml:4: triggers.cart_abandonment.cooldwn: unknown key (did you mean
    `cooldown`?)``.
    """

    def __init__(
        self,
        errors: list[tuple[str, str]],
        lines: list[int | None] | None = None,
        source: str | None = None,
    ) -> None:
        self.errors = errors
        self.lines = lines if lines is not None else [None] * len(errors)
        self.source = source
        super().__init__("\n".join(self.messages()))

    def messages(self) -> list[str]:
        return [
            _error_line(self.source, line, path, reason)
            for (path, reason), line in zip(self.errors, self.lines, strict=True)
        ]


def _error_line(source: str | None, line: int | None, path: str, reason: str) -> str:
    where = source or ""
    if line is not None:
        where = f"{where}:{line}" if where else f"line {line}"
    return ": ".join(part for part in (where, path, reason) if part)


def _key_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part == "[key]":
            continue
        else:
            path += f".{part}" if path else str(part)
    return path


def _reason(error: dict) -> str:
    message = str(error["msg"])
    if error["type"] == "extra_forbidden":
        return "unknown key"
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message


def parse_rules(text: str, source: str | None = None) -> Rules:
    """Parse rules YAML 1.2; empty text (or only comments) gives the defaults.

    Raises RulesError (and nothing else), each error with its line in ``text``;
    ``source`` names the file in the messages."""
    try:
        data, lines = load_yaml(text)
    except YamlProblem as exc:
        raise RulesError([("", exc.message)], [exc.line], source) from None
    except RecursionError:
        raise RulesError([("", "not valid YAML: nested too deeply")], None, source) from None
    except Exception as exc:  # e.g. ValueError: an integer of more than 4300 digits
        raise RulesError([("", f"not valid YAML: {_show(str(exc))}")], None, source) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RulesError(
            [("", "the rules file must be a mapping of keys, see rules.example.yaml")],
            [1],
            source,
        )
    try:
        return Rules.model_validate(data)
    except ValidationError as exc:
        errors, where = [], []
        for error in exc.errors():
            loc = tuple(part for part in error["loc"] if part != "[key]")
            reason = _reason(error)
            if error["type"] == "extra_forbidden":
                reason += suggest(Rules, loc)
            errors.append((_key_path(error["loc"]), reason))
            where.append(locate(lines, loc))
        raise RulesError(errors, where, source) from None
    except RecursionError:
        raise RulesError([("", "the rules are nested too deeply")], None, source) from None
    except Exception as exc:  # defensive: "RulesError and nothing else"
        raise RulesError(
            [("", f"unusable rules: {type(exc).__name__}: {_show(str(exc))}")], None, source
        ) from None


def load_rules(path: str | Path | None) -> Rules:
    """Read and parse a rules file; ``None`` gives the built-in defaults. Raises RulesError."""
    if path is None:
        return Rules()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RulesError([("", f"cannot read {path}: {exc}")]) from None
    return parse_rules(text, str(path))


def dump_rules(rules: Rules) -> str:
    """The effective rules as YAML that :func:`parse_rules` reads back to the same rules."""
    label = rules.version_label
    if not label.isprintable():  # refused at load; kept safe for Rules built in code
        label = label.encode("unicode_escape").decode("ascii")
    header = f"# effective rules; rules_version: {label}\n"
    return header + dump_yaml(rules.model_dump(mode="json"))
