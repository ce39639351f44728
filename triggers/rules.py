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
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import orjson
from pydantic import (
    AfterValidator,
    Field,
    PrivateAttr,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from triggers.channel_rules import ChannelTable, check_trigger_channels
from triggers.custom import CustomRules, check_name
from triggers.durations import MAX_DURATION, format_duration, parse_duration
from triggers.events import is_time_zone
from triggers.registry import KIND_BY_NAME, KINDS, TRIGGER_NAMES
from triggers.rules_source import (
    EXAMPLE_FILE,
    YamlProblem,
    dump_yaml,
    load_yaml,
    locate,
    suggest,
)
from triggers.rules_types import (
    MAX_INT,
    Duration,
    FrequencyCapRules,
    OfferTable,
    PositiveDuration,
    QuietHoursRules,
    TriggerRules,
    Version,
)
from triggers.rules_types import (
    Strict as _Strict,
)
from triggers.rules_types import (
    show as _show,
)
from triggers.variants import check_offer_keys, offer_for

__all__ = [
    "MAX_DURATION",
    "FrequencyCapRules",
    "QuietHoursRules",
    "Rules",
    "RulesError",
    "format_duration",
    "load_rules",
    "parse_duration",
    "parse_rules",
]


ERASURE_MEMORY = timedelta(days=30)  # contract 8.5's default

CustomName = Annotated[str, AfterValidator(lambda name: check_name(name, TRIGGER_NAMES))]

# The ``triggers`` section: one key per registered trigger (triggers.registry), in order,
# then ``custom``: the rules file's own triggers (triggers.custom), by name.
TriggersRules = create_model(
    "TriggersRules",
    __base__=_Strict,
    **{kind.name: (kind.rules, kind.rules()) for kind in KINDS},  # type: ignore[call-overload]
    custom=(dict[CustomName, CustomRules], Field(default_factory=dict, max_length=100)),
)


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


class _OffersBase(_Strict):
    """trigger -> variant, segment or ``default`` -> offer code."""

    def offer(self, trigger: str, segment: str, variant: str | None = None) -> str | None:
        return offer_for(self.table(trigger), variant, segment)

    def table(self, trigger: str) -> dict[str, str]:
        """The offers of a trigger: variant, segment or ``default`` -> offer code."""
        return getattr(self, trigger)


OffersRules = create_model(
    "OffersRules",
    __base__=_OffersBase,
    **{kind.name: (OfferTable, Field(default_factory=dict)) for kind in KINDS},  # type: ignore[call-overload]
)


class Rules(_Strict):
    """The effective rules; ``Rules()`` is the built-in default."""

    version: Version = 1
    default_timezone: str = "UTC"
    triggers: TriggersRules = TriggersRules()
    contact_policy: ContactPolicyRules = ContactPolicyRules()
    segments: SegmentRules = SegmentRules()
    offers: OffersRules = OffersRules()
    channels: ChannelTable = Field(default_factory=dict)  # contract 8.1, file order kept
    retention: Duration = timedelta(0)  # 0: forever (contract 8.5)
    erasure_memory: Duration = ERASURE_MEMORY
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
        for name, section in self.triggers.custom.items():  # type: ignore[attr-defined]
            check_offer_keys(
                {name: section.offers}, {name: section.variants}, ("triggers", "custom")
            )
        sections = {("triggers", kind.name): self.trigger(kind.name) for kind in KINDS}
        for name, section in self.triggers.custom.items():  # type: ignore[attr-defined]
            sections["triggers", "custom", name] = section
        check_trigger_channels(self.channels, sections)
        return self

    def model_post_init(self, context: Any, /) -> None:
        data = self.model_dump(mode="json")
        for section in data["triggers"].values():  # no variants means what it meant before
            if isinstance(section, dict) and section.get("variants") == {}:
                del section["variants"]
        for kind in KINDS:  # triggers added later, left at their defaults, mean what they did
            if kind.added and self.trigger(kind.name) == kind.rules():
                del data["triggers"][kind.name]
            if kind.added and not data["offers"][kind.name]:
                del data["offers"][kind.name]
        if not data["triggers"]["custom"]:
            del data["triggers"]["custom"]
        _drop_unused_channel_keys(data)
        canonical = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
        digest = hashlib.blake2b(canonical, digest_size=4).hexdigest()
        self._version_label = f"{self.version}+{digest}"

    @property
    def version_label(self) -> str:
        """``rules_version`` in decisions: ``"<version>+<8 hex of the effective rules>"``."""
        return self._version_label

    def trigger(self, name: str) -> TriggerRules:
        """The rules section of a registered or custom trigger (KeyError if none)."""
        if name in KIND_BY_NAME:
            return getattr(self.triggers, name)
        return self.triggers.custom[name]  # type: ignore[attr-defined]

    def trigger_names(self) -> tuple[str, ...]:
        """Every trigger the rules know: the registered ones, then the custom ones."""
        return (*TRIGGER_NAMES, *self.triggers.custom)  # type: ignore[attr-defined]

    def offers_of(self, name: str) -> dict[str, str]:
        """A trigger's offers: ``offers.NAME``, or a custom trigger's own ``offers``."""
        if name in KIND_BY_NAME:
            return self.offers.table(name)
        return self.triggers.custom[name].offers  # type: ignore[attr-defined]


_SECTION_8_DEFAULTS = {"channels": {}, "retention": "0s", "erasure_memory": "30d"}


def _drop_unused_channel_keys(data: dict[str, Any]) -> None:
    """Contract section 8 left unused means what the rules meant before it: its keys at
    their defaults are left out of the content hash (``rules_version`` unchanged)."""
    for key, default in _SECTION_8_DEFAULTS.items():
        if data.get(key) == default:
            del data[key]
    sections = [*data["triggers"].values(), *data["triggers"].get("custom", {}).values()]
    for section in sections:
        if isinstance(section, dict) and section.get("channels", ()) is None:
            del section["channels"]


class RulesError(ValueError):
    """An invalid rules file.

    ``errors`` is a list of (key path, reason); ``lines`` the line of each in the file
    (None when unknown); ``columns`` the column where it is known (a YAML syntax error);
    ``source`` the file name, if any. ``str()`` gives one line per error: ``rules.yaml:4:
    triggers.cart_abandonment.cooldwn: unknown key (did you mean `cooldown`?)``,
    ``rules.yaml:3:9: not valid YAML: ...``.
    """

    def __init__(
        self,
        errors: list[tuple[str, str]],
        lines: list[int | None] | None = None,
        source: str | None = None,
        columns: list[int | None] | None = None,
    ) -> None:
        self.errors = errors
        self.lines = lines if lines is not None else [None] * len(errors)
        self.columns = columns if columns is not None else [None] * len(errors)
        self.source = source
        super().__init__("\n".join(self.messages()))

    def messages(self) -> list[str]:
        return [
            _error_line(self.source, line, column, path, reason)
            for (path, reason), line, column in zip(
                self.errors, self.lines, self.columns, strict=True
            )
        ]


def _error_line(
    source: str | None, line: int | None, column: int | None, path: str, reason: str
) -> str:
    where = source or ""
    if line is not None and where:
        where += f":{line}" if column is None else f":{line}:{column}"
    elif line is not None:
        where = f"line {line}" if column is None else f"line {line}, column {column}"
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
    if error["type"] in ("tuple_type", "list_type"):  # pydantic: "Input should be a valid tuple"
        what = "durations like [1h] or [1h, 24h]" if error["loc"][-1:] == ("stages",) else "items"
        return f"expected a list of {what}, got {_show(error['input'])}"
    if error["type"] in ("dict_type", "model_type", "model_attributes_type"):
        return f"expected a mapping of keys (key: value), got {_show(error['input'])}"
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
        raise RulesError([("", exc.message)], [exc.line], source, [exc.column]) from None
    except RecursionError:
        raise RulesError([("", "not valid YAML: nested too deeply")], None, source) from None
    except Exception as exc:  # e.g. ValueError: an integer of more than 4300 digits
        raise RulesError([("", f"not valid YAML: {_show(str(exc))}")], None, source) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RulesError(
            [("", f"the rules file must be a mapping of keys, see {EXAMPLE_FILE}")],
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
    data = rules.model_dump(mode="json")
    for section in [*data["triggers"].values(), *data["triggers"]["custom"].values()]:
        if isinstance(section, dict) and section.get("channels", ()) is None:
            del section["channels"]  # no channels of its own: every channel of the rules
    return header + dump_yaml(data)
