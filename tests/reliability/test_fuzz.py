"""Poison-pill fuzz of the two parsers at Nudge's edge (issue 6, item 6), with hypothesis.

``triggers.events.parse_event`` reads every Kafka message; ``triggers.rules.parse_rules``
reads the marketer's rules file. Each may refuse its input only with its documented
error (``InvalidEvent`` / ``RulesError``) — anything else would crash the caller — and
what it accepts must be usable:

- an accepted event satisfies the contract (aware UTC millisecond ``ts``, ids of
  1..128 characters, quantities >= 1, finite amounts >= 0, known time zones, ...),
  and the engine can apply it, store the resulting state and fire what comes due,
  as the live worker and ``nudge replay`` do;
- accepted rules are valid (positive, increasing stages, ...), survive
  ``nudge rules check``'s dump-and-reload unchanged, and an engine with them can
  process an ordinary customer's events.

Inputs: random JSON trees, event-shaped objects with random field values, mutated
valid events, random bytes and text; random YAML documents, rules-shaped documents
with random values, and mutated valid rules files.

CI runs a short, derandomized profile (well under 30 s in total). For a long run:
``NUDGE_FUZZ_EXAMPLES=20000 .venv/bin/pytest tests/reliability/test_fuzz.py``
(random seeds; failures are saved in ``.hypothesis/`` and replayed first next time).
"""

from __future__ import annotations

import copy
import json
import math
import os
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from hypothesis import HealthCheck, Phase, assume, example, given, settings
from hypothesis import strategies as st

from triggers.engine import Engine, OutsideFacts
from triggers.events import (
    MAX_ID_CHARS,
    MAX_LABEL_CHARS,
    MAX_QUERY_CHARS,
    REASONS,
    TOPIC_OF_TYPE,
    UNSET,
    CartItemAdded,
    CartItemRemoved,
    CategoryViewed,
    Event,
    InvalidEvent,
    OrderCancelled,
    OrderPlaced,
    PreferencesUpdated,
    ProductViewed,
    SearchPerformed,
    WishlistAdded,
    is_time_zone,
    parse_event,
)
from triggers.records import record_to_json
from triggers.rules import Rules, RulesError, dump_rules, parse_rules
from triggers.state import decode_state, encode_state

pytestmark = [pytest.mark.reliability, pytest.mark.unit]

ROOT = Path(__file__).resolve().parents[2]
LONG_RUN = "NUDGE_FUZZ_EXAMPLES" in os.environ
EXAMPLES = int(os.environ.get("NUDGE_FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    # CI: the same examples every run, and no shrinking, so a failing run stays short (the
    # @example cases below are the minimal reproductions of what was found). A long run
    # explores new examples, shrinks failures and keeps them in .hypothesis/ for next time.
    derandomize=not LONG_RUN,
    database=settings.default.database if LONG_RUN else None,
    phases=tuple(Phase) if LONG_RUN else (Phase.explicit, Phase.generate),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=LONG_RUN,
)
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
MAX_BYTES = 65_536

# --- strategies: JSON ------------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),  # NaN and +-inf too: json.dumps writes NaN / Infinity literals
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=25,
)


@st.composite
def encoded(draw: st.DrawFn, value: Any) -> bytes | str:
    """``value`` as wire JSON: ASCII-escaped or raw UTF-8 (lone surrogates become invalid
    UTF-8), sometimes as ``str``."""
    ascii_only = draw(st.booleans())
    text = json.dumps(value, ensure_ascii=ascii_only, allow_nan=True)
    if draw(st.integers(0, 9)) == 0:
        return text
    return text.encode("utf-8", "surrogatepass")


EVENT_TYPES = tuple(TOPIC_OF_TYPE)
ZONES = (UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5, minutes=-30)))


@st.composite
def wire_timestamps(draw: st.DrawFn) -> Any:
    """Legal and illegal ``ts`` values, from year 1 to year 9999."""
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return draw(st.integers(min_value=-(2**64), max_value=2**64))
    if kind == 1:  # epoch ms at the edges of what the parser accepts
        return draw(
            st.sampled_from(
                (0, -1, 1, 253_402_214_399_999, -62_135_510_400_000, 253_402_300_799_999)
            )
        )
    if kind in (2, 3, 4):
        moment = draw(
            st.datetimes(
                min_value=datetime(1, 1, 1),
                max_value=datetime(9999, 12, 31, 23, 59, 59),
                timezones=st.sampled_from((*ZONES, None)),
            )
        )
        text = moment.isoformat(timespec=draw(st.sampled_from(("seconds", "milliseconds", "auto"))))
        if kind == 3:
            text = text.replace("+00:00", "Z").replace("T", draw(st.sampled_from(("T", "t", " "))))
        return text
    return draw(json_values)


def ids() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.text(min_size=1, max_size=MAX_ID_CHARS),
        st.text(max_size=MAX_ID_CHARS + 3),
        st.integers(min_value=-(2**65), max_value=2**65),
        json_values,
    )


def amounts() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.floats(min_value=0, max_value=1e308),
        st.integers(min_value=0, max_value=2**70),
        st.floats(),
        json_values,
    )


def quantities() -> st.SearchStrategy[Any]:
    return st.one_of(st.integers(min_value=-2, max_value=2**66), st.floats(), json_values)


def labels() -> st.SearchStrategy[Any]:
    return st.one_of(st.text(max_size=MAX_LABEL_CHARS + 2), json_values)


order_lines = st.fixed_dictionaries(
    {},
    optional={
        "product_id": ids(),
        "quantity": quantities(),
        "unit_price": amounts(),
        "category": labels(),
    },
)

event_shaped = st.fixed_dictionaries(
    {"type": st.one_of(st.sampled_from(EVENT_TYPES), json_values)},
    optional={
        "event_id": ids(),
        "user_id": ids(),
        "ts": wire_timestamps(),
        "test": st.one_of(st.booleans(), json_values),
        "channel": labels(),
        "product_id": ids(),
        "category": labels(),
        "price": amounts(),
        "query": st.one_of(st.text(max_size=MAX_QUERY_CHARS + 2), json_values),
        "quantity": quantities(),
        "unit_price": amounts(),
        "order_id": ids(),
        "items": st.one_of(st.lists(st.one_of(order_lines, json_values), max_size=4), json_values),
        "total": amounts(),
        "marketing_opt_in": st.one_of(st.booleans(), json_values),
        "timezone": st.one_of(
            st.sampled_from(("UTC", "Asia/Shanghai", "America/New_York", "Mars/Base", "")),
            st.text(max_size=40),
        ),
        "birthday": st.one_of(
            st.sampled_from(("02-29", "02-30", "1990-13-01", "2001-02-29", "12-31", "١٢-٣١")),
            json_values,
        ),
        "extra": json_values,
    },
)


@st.composite
def valid_events(draw: st.DrawFn, user_id: str = "", *, wide: bool = False) -> dict[str, Any]:
    """An event the contract says is valid; ``wide``: with extreme but legal values
    (years 1 to 9999, amounts up to 1e308, quantities up to 2**63)."""
    kind = draw(st.sampled_from(EVENT_TYPES))
    moment = draw(
        st.datetimes(
            min_value=datetime(1, 1, 2) if wide else datetime(1970, 1, 1),
            max_value=datetime(9999, 12, 30) if wide else datetime(2100, 1, 1),
            timezones=st.sampled_from(ZONES),
        )
    )
    event: dict[str, Any] = {
        "event_id": draw(st.text(min_size=1, max_size=MAX_ID_CHARS)),
        "type": kind,
        "user_id": user_id or draw(st.text(min_size=1, max_size=MAX_ID_CHARS)),
        "ts": draw(
            st.sampled_from(
                (
                    round(moment.timestamp() * 1000),
                    moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                    moment.isoformat(),
                )
            )
        ),
    }
    name = st.text(min_size=1, max_size=40)
    price = st.floats(min_value=0, max_value=1e308 if wide else 1e6) | st.integers(
        0, 2**63 if wide else 10**6
    )
    count = st.integers(1, 2**63 if wide else 10**6)
    if kind in ("product_viewed", "wishlist_added", "cart_item_added", "cart_item_removed"):
        event["product_id"] = draw(name | st.integers(0, 2**40))
    if kind in ("product_viewed", "wishlist_added") and draw(st.booleans()):
        event["price"] = draw(price)
    if kind == "category_viewed":
        event["category"] = draw(name)
    if kind == "search":
        event["query"] = draw(name)
    if kind in ("cart_item_added", "cart_item_removed") and draw(st.booleans()):
        event["quantity"] = draw(count)
    if kind == "cart_item_added" and draw(st.booleans()):
        event["unit_price"] = draw(price)
    if kind in ("order_placed", "order_cancelled"):
        event["order_id"] = draw(name | st.integers(0, 2**40))
    if kind == "order_placed":
        line = st.fixed_dictionaries(
            {"product_id": name, "quantity": count, "unit_price": price},
            optional={"category": name},
        )
        event["items"] = draw(st.lists(line, min_size=1, max_size=4))
    if kind == "preferences_updated":
        event["marketing_opt_in"] = draw(st.none() | st.booleans())
        event["timezone"] = draw(st.sampled_from(("UTC", "Asia/Shanghai", "Europe/Paris")))
        if draw(st.booleans()):
            event["birthday"] = draw(st.sampled_from(("02-29", "12-31", "1990-01-15", None)))
    if draw(st.booleans()):
        event["channel"] = draw(name)
    return event


@st.composite
def mutated(draw: st.DrawFn, raw: bytes) -> bytes:
    """Byte-level mutations: delete, insert, replace, duplicate a slice, truncate."""
    data = bytearray(raw)
    interesting = st.sampled_from(
        [
            b"{",
            b"}",
            b"[",
            b"]",
            b'"',
            b"\\",
            b":",
            b",",
            b"\x00",
            b"\xff",
            b"\xc3",
            b"null",
            b"-",
            b"1e999",
            b"NaN",
            b"\\ud800",
            b"\xe2\x80\xae",
            b"0",
            b" ",
            b"\n",
        ]
    ) | st.binary(min_size=1, max_size=8)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.integers(0, 4))
        at = draw(st.integers(0, len(data)))
        if op == 0 and data:
            end = draw(st.integers(at, min(len(data), at + 16)))
            del data[at:end]
        elif op == 1:
            data[at:at] = draw(interesting)
        elif op == 2 and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif op == 3:
            end = draw(st.integers(at, min(len(data), at + 32)))
            data[at:at] = data[at:end]
        else:
            del data[at:]
    return bytes(data)


raw_messages = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200),
    json_values.flatmap(encoded),
    event_shaped.flatmap(encoded),
    valid_events().map(lambda e: json.dumps(e).encode()).flatmap(mutated),
)

# --- the event contract ------------------------------------------------------------------------


def _id_ok(value: object) -> bool:
    return type(value) is str and 1 <= len(value) <= MAX_ID_CHARS


def _label_ok(value: object, limit: int = MAX_LABEL_CHARS, *, optional: bool = True) -> bool:
    if value is None:
        return optional
    return type(value) is str and 1 <= len(value) <= limit


def _amount_ok(value: object, *, optional: bool = True) -> bool:
    if value is None:
        return optional
    return type(value) in (int, float) and math.isfinite(value) and value >= 0  # type: ignore[arg-type]


def contract_violations(event: Event) -> list[str]:
    """What is wrong with an accepted event, by contract section 1 (empty if nothing)."""
    problems = []
    if event.type not in TOPIC_OF_TYPE:
        problems.append(f"type {event.type!r}")
    if not _id_ok(event.event_id):
        problems.append(f"event_id {event.event_id!r}")
    if not _id_ok(event.user_id):
        problems.append(f"user_id {event.user_id!r}")
    ts = event.ts
    if type(ts) is not datetime or ts.tzinfo is None or ts.utcoffset() != timedelta(0):
        problems.append(f"ts {ts!r} is not aware UTC")
    elif ts.microsecond % 1000:
        problems.append(f"ts {ts!r} finer than a millisecond")
    if type(event.test) is not bool:
        problems.append(f"test {event.test!r}")
    if not _label_ok(event.channel):
        problems.append(f"channel {event.channel!r}")
    product = isinstance(event, ProductViewed | WishlistAdded | CartItemAdded | CartItemRemoved)
    if product and not _id_ok(event.product_id):  # type: ignore[union-attr]
        problems.append(f"product_id {event.product_id!r}")
    if isinstance(event, ProductViewed | WishlistAdded) and not (
        _label_ok(event.category) and _amount_ok(event.price)
    ):
        problems.append(f"category/price {event.category!r} {event.price!r}")
    if isinstance(event, CategoryViewed) and not _label_ok(event.category, optional=False):
        problems.append(f"category {event.category!r}")
    if isinstance(event, SearchPerformed) and not _label_ok(
        event.query, MAX_QUERY_CHARS, optional=False
    ):
        problems.append(f"query {event.query!r}")
    if isinstance(event, CartItemAdded):
        if type(event.quantity) is not int or event.quantity < 1:
            problems.append(f"quantity {event.quantity!r}")
        if not (_amount_ok(event.unit_price) and _label_ok(event.category)):
            problems.append(f"unit_price/category {event.unit_price!r} {event.category!r}")
    if (
        isinstance(event, CartItemRemoved)
        and event.quantity is not None
        and (type(event.quantity) is not int or event.quantity < 1)
    ):
        problems.append(f"quantity {event.quantity!r}")
    if isinstance(event, OrderPlaced | OrderCancelled) and not _id_ok(event.order_id):
        problems.append(f"order_id {event.order_id!r}")
    if isinstance(event, OrderPlaced):
        if not event.items:
            problems.append("no items")
        for line in event.items:
            if not (
                _id_ok(line.product_id)
                and type(line.quantity) is int
                and line.quantity >= 1
                and _amount_ok(line.unit_price, optional=False)
                and _label_ok(line.category)
            ):
                problems.append(f"line {line!r}")
        if not _amount_ok(event.total, optional=False):
            problems.append(f"total {event.total!r}")
    if isinstance(event, PreferencesUpdated):
        if event.marketing_opt_in not in (None, True, False):
            problems.append(f"marketing_opt_in {event.marketing_opt_in!r}")
        if event.timezone is not None and not is_time_zone(event.timezone):
            problems.append(f"timezone {event.timezone!r}")
        birthday = event.birthday
        if birthday is not UNSET and birthday is not None:
            year = birthday[:4] if len(birthday) == 10 else "2000"  # MM-DD: Feb 29 is one
            try:
                date.fromisoformat(f"{year}-{birthday[-5:]}")
            except (TypeError, ValueError):
                problems.append(f"birthday {birthday!r}")
            if len(birthday) not in (5, 10) or not birthday.isascii():
                problems.append(f"birthday {birthday!r}")
    return problems


def parse_or_refuse(raw: bytes | str) -> Event | None:
    """parse_event, allowing only its documented error (anything else fails the test)."""
    try:
        return parse_event(raw, max_bytes=MAX_BYTES)
    except InvalidEvent as exc:
        assert exc.reason in REASONS, exc.reason
        assert exc.detail, "an InvalidEvent without detail"
        return None


def run_engine(engine: Engine, events: list[Event]) -> None:
    """What the live worker does with accepted events of one user: apply each, store the
    state (encode, decode), fire what is due, emit the records (as JSON)."""
    state = None
    for event in events:
        step = engine.on_event(state, event, NOW)
        for record in step.records:
            record_to_json(record)
        state = decode_state(encode_state(step.state))
        assert state == step.state
        due = step.next_due
        rounds = 0
        while due is not None and due <= NOW and rounds < 20:  # fire what is due by now
            fired = engine.on_time(state, NOW, OutsideFacts())
            for record in fired.records:
                record_to_json(record)
            state, due, rounds = decode_state(encode_state(fired.state)), fired.next_due, rounds + 1
    if state is not None and (due := engine.next_due(state)) is not None:
        # ... and later, when the next stage comes due (a deadline tick).
        fired = engine.on_time(state, due, OutsideFacts())
        for record in fired.records:
            record_to_json(record)


DEFAULT_ENGINE = Engine(Rules())
ORDER = b'{"event_id":"e1","type":"order_placed","user_id":"fuzz-user","ts":0,"order_id":"o1",'

# --- event parser properties -----------------------------------------------------------------


@FUZZ
@given(raw=raw_messages)
# Found by this fuzz: the default total (sum of the lines) overflows to inf.
@example(raw=ORDER + b'"items":[{"product_id":"p","quantity":2,"unit_price":1e308}]}')
def test_parse_event_raises_only_invalid_event_and_accepts_only_contract_events(
    raw: bytes | str,
) -> None:
    event = parse_or_refuse(raw)
    if event is not None:
        assert contract_violations(event) == []


@FUZZ
@given(event=valid_events())
def test_valid_events_are_accepted_as_sent(event: dict[str, Any]) -> None:
    parsed = parse_or_refuse(json.dumps(event).encode())
    assert parsed is not None, event
    assert contract_violations(parsed) == []
    assert (parsed.event_id, parsed.user_id, parsed.type) == (
        event["event_id"],
        event["user_id"],
        event["type"],
    )


one_users_events = st.lists(
    st.one_of(
        valid_events(user_id="fuzz-user", wide=True),
        valid_events(user_id="fuzz-user"),
        event_shaped.map(lambda e: {**e, "user_id": "fuzz-user"}),
    ),
    min_size=1,
    max_size=6,
)


@FUZZ
@given(events=one_users_events)
# Found by this fuzz: a legal order in December 9999 overflows the engine's date arithmetic.
@example(
    events=[
        orjson.loads(ORDER + b'"items":[{"product_id":"p","quantity":1,"unit_price":1}]}')
        | {"ts": "9999-12-30T00:00:00Z"}
    ]
)
def test_the_engine_survives_every_event_the_parser_accepts(events: list[dict[str, Any]]) -> None:
    accepted = [
        e for e in (parse_or_refuse(json.dumps(x, allow_nan=True).encode()) for x in events) if e
    ]
    assume(accepted)
    run_engine(DEFAULT_ENGINE, accepted)


# --- rules loader: strategies ----------------------------------------------------------------

yaml_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=16),
    st.sampled_from(
        (
            "1h",
            "90s",
            "1h30m",
            "3d",
            "0s",
            "-1h",
            "1.5d",
            "21:00",
            "08:00",
            "24:00",
            "Asia/Shanghai",
            "UTC",
            "customers",
            "all",
            "FREESHIP",
            "1e999",
            "~",
        )
    ),
)
yaml_values = st.recursive(
    yaml_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.one_of(st.text(max_size=10), st.integers()), children, max_size=4)
    ),
    max_leaves=20,
)
durations = st.one_of(
    st.integers(min_value=-10, max_value=2**70),
    st.sampled_from(("1h", "24h", "90s", "1h30m", "3d", "2w", "0s", "0.5s", "1.5d")),
    st.builds(
        lambda n, unit: f"{n}{unit}",
        st.one_of(st.integers(0, 10**25), st.floats(0, 1e30).map(lambda f: f"{f:.3f}")),
        st.sampled_from("smhdw"),
    ),
    yaml_values,
)
numbers = st.one_of(
    st.integers(-5, 10**6), st.floats(), st.integers(min_value=-(2**70)), yaml_values
)


def trigger_rules(extra: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    common = {
        "enabled": st.one_of(st.booleans(), yaml_values),
        "priority": numbers,
        "cooldown": durations,
        "stages": st.one_of(st.lists(durations, max_size=12), yaml_values),
    }
    return st.fixed_dictionaries({}, optional={**common, **extra})


rules_shaped = st.fixed_dictionaries(
    {},
    optional={
        "version": st.one_of(st.integers(), st.text(max_size=8), yaml_values),
        "default_timezone": st.sampled_from(("UTC", "Asia/Shanghai", "Nowhere/City", "", "utc")),
        "triggers": st.fixed_dictionaries(
            {},
            optional={
                "cart_abandonment": trigger_rules({"min_cart_value": numbers}),
                "browse_abandonment": trigger_rules({}),
                "replenishment": trigger_rules(
                    {
                        "fire_at_fraction": numbers,
                        "products": st.dictionaries(
                            st.one_of(st.text(max_size=8), st.integers()), durations, max_size=3
                        ),
                        "categories": st.dictionaries(st.text(max_size=8), durations, max_size=3),
                        "learn_from_history": st.booleans(),
                        "min_purchases": numbers,
                    }
                ),
                "first_purchase_followup": trigger_rules({}),
                "lapsing": trigger_rules({"factor": numbers, "min_orders": numbers}),
                "dormancy": trigger_rules(
                    {"audience": st.sampled_from(("customers", "all", "everyone"))}
                ),
                "surprise": yaml_values,
            },
        ),
        "contact_policy": st.fixed_dictionaries(
            {},
            optional={
                "frequency_cap": st.fixed_dictionaries(
                    {}, optional={"max": numbers, "per": durations}
                ),
                "quiet_hours": st.one_of(
                    st.none(),
                    st.fixed_dictionaries(
                        {},
                        optional={
                            "start": st.sampled_from(("21:00", "8:00", "24:00", "21:60", 75600)),
                            "end": st.sampled_from(("08:00", "21:00", "00:00", "7", None)),
                        },
                    ),
                ),
                "max_delay": durations,
                "holdout_percent": numbers,
                "holdout_salt": st.one_of(st.text(max_size=8), yaml_values),
                "attribution_window": durations,
            },
        ),
        "segments": st.fixed_dictionaries(
            {},
            optional={
                "core_min_orders": numbers,
                "core_min_monetary": numbers,
                "dormant_after": durations,
                "churned_after": durations,
            },
        ),
        "offers": st.dictionaries(
            st.sampled_from(("cart_abandonment", "dormancy", "lapsing", "nope")),
            st.dictionaries(
                st.sampled_from(("default", "core", "dormant", "vip")),
                st.one_of(st.text(max_size=8), yaml_values),
                max_size=3,
            ),
            max_size=2,
        ),
    },
)

RULES_EXAMPLES = [
    (ROOT / "rules.example.yaml").read_text(encoding="utf-8"),
    """version: 1
default_timezone: Asia/Shanghai
triggers:
  cart_abandonment:        {enabled: true, stages: [1h, 24h], min_cart_value: 0, cooldown: 24h}
  browse_abandonment:      {enabled: true, stages: [2h], cooldown: 24h, priority: 50}
  replenishment:           {enabled: true, fire_at_fraction: 0.9, products: {}, categories: {},
                            learn_from_history: true, min_purchases: 2, priority: 80}
  first_purchase_followup: {enabled: true, stages: [3d], priority: 60}
  lapsing:                 {enabled: true, factor: 1.5, min_orders: 3, priority: 70}
  dormancy:                {enabled: true, stages: [30d, 60d, 90d], audience: customers}
contact_policy:
  frequency_cap: {max: 2, per: 24h}
  quiet_hours: {start: "21:00", end: "08:00"}
  max_delay: 6h
  holdout_percent: 0
  holdout_salt: nudge
  attribution_window: 72h
segments: {core_min_orders: 5, core_min_monetary: 500, dormant_after: 30d, churned_after: 90d}
offers:
  cart_abandonment: {default: FREESHIP, dormant: COMEBACK10}
""",
]


@st.composite
def mutated_text(draw: st.DrawFn, text: str) -> str:
    chars = list(text)
    interesting = st.sampled_from(
        [
            ":",
            "-",
            " ",
            "\t",
            "\n",
            "{",
            "}",
            "[",
            "]",
            "&a ",
            "*a",
            "!!",
            "? ",
            "|",
            ">",
            "#",
            "'",
            '"',
            "%",
            "@",
            "`",
            ",",
            "\x00",
            "\ufeff",
            "9" * 30,
            "!!python/object:os.system",
        ]
    ) | st.text(min_size=1, max_size=6)
    for _ in range(draw(st.integers(1, 5))):
        op = draw(st.integers(0, 3))
        at = draw(st.integers(0, len(chars)))
        if op == 0 and chars:
            del chars[at : draw(st.integers(at, min(len(chars), at + 20)))]
        elif op == 1:
            chars[at:at] = list(draw(interesting))
        elif op == 2 and at < len(chars):
            chars[at] = draw(st.characters())
        else:
            end = draw(st.integers(at, min(len(chars), at + 40)))
            chars[at:at] = chars[at:end]
    return "".join(chars)


def yaml_dump(data: Any) -> str:
    return yaml.safe_dump(data, allow_unicode=True, default_flow_style=None)


rules_texts = st.one_of(
    st.text(max_size=200),
    yaml_values.map(yaml_dump),
    rules_shaped.map(yaml_dump),
    st.sampled_from(RULES_EXAMPLES).flatmap(mutated_text),
)


def parse_or_refuse_rules(text: str) -> Rules | None:
    """parse_rules, allowing only RulesError (with a reason for every error)."""
    try:
        return parse_rules(text)
    except RulesError as exc:
        assert exc.errors and all(reason for _, reason in exc.errors), exc.errors
        return None


def rules_violations(rules: Rules) -> list[str]:
    problems = []
    for name in ("cart_abandonment", "browse_abandonment", "first_purchase_followup", "dormancy"):
        stages = rules.trigger(name).stages  # type: ignore[attr-defined]
        if not stages or any(s <= timedelta(0) for s in stages):
            problems.append(f"{name}: stages {stages}")
        if list(stages) != sorted(set(stages)):
            problems.append(f"{name}: stages not increasing {stages}")
    policy = rules.contact_policy
    if policy.frequency_cap.max < 1 or policy.frequency_cap.per <= timedelta(0):
        problems.append(f"frequency_cap {policy.frequency_cap}")
    quiet = policy.quiet_hours
    if quiet is not None and (not isinstance(quiet.start, time) or quiet.start == quiet.end):
        problems.append(f"quiet_hours {quiet}")
    if not 0 <= policy.holdout_percent <= 100:
        problems.append(f"holdout_percent {policy.holdout_percent}")
    for value, name in (
        (rules.triggers.lapsing.factor, "lapsing.factor"),
        (rules.triggers.replenishment.fire_at_fraction, "replenishment.fire_at_fraction"),
        (rules.triggers.cart_abandonment.min_cart_value, "cart_abandonment.min_cart_value"),
        (rules.segments.core_min_monetary, "segments.core_min_monetary"),
    ):
        if not math.isfinite(value):
            problems.append(f"{name} = {value}")
    if not is_time_zone(rules.default_timezone):
        problems.append(f"default_timezone {rules.default_timezone!r}")
    return problems


def ordinary_customer(user: str = "fuzz-customer") -> list[Event]:
    """Views, a cart, three orders, a cancellation: every trigger gets armed."""
    start = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    line = {"product_id": "coffee-1", "quantity": 1, "unit_price": 9.5, "category": "coffee"}
    raw = [
        {"type": "product_viewed", "product_id": "coffee-1", "price": 9.5},
        {"type": "cart_item_added", "product_id": "coffee-1", "unit_price": 9.5},
        {"type": "checkout_started"},
        {"type": "order_placed", "order_id": "o1", "items": [line]},
        {"type": "order_placed", "order_id": "o2", "items": [line]},
        {"type": "order_placed", "order_id": "o3", "items": [line]},
        {"type": "order_cancelled", "order_id": "o2"},
        {"type": "preferences_updated", "timezone": "Asia/Shanghai"},
    ]
    events = []
    for n, fields in enumerate(raw):
        at = start + timedelta(days=9 * n)
        wire = {"event_id": f"e{n}", "user_id": user, "ts": at.isoformat(), **fields}
        events.append(parse_event(json.dumps(wire)))
    return events


# --- rules loader properties -----------------------------------------------------------------


@FUZZ
@given(text=rules_texts)
# Found by this fuzz (and by hand): each escapes parse_rules or is accepted wrongly.
@example(text="? [a, b]\n: 1\n")  # TypeError: unhashable key
@example(text="triggers: {replenishment: {products: {[1]: 1d}}}")  # TypeError
@example(text="segments: {dormant_after: 142857143w}")  # OverflowError
@example(text="contact_policy: {max_delay: 99999999999999999999}")  # OverflowError
@example(text="triggers: {lapsing: {factor: .inf}}")  # accepted: an infinite factor
@example(text="triggers: {replenishment: {categories: {x: 72057594037929}}}")  # dump != load
@example(text='{version: "\\0"}')  # `nudge rules check` prints a file that does not load
@example(text='{version: "1\\ntriggers: {dormancy: {enabled: false}}"}')  # ... or loads other
def test_parse_rules_raises_only_rules_error_and_accepts_only_valid_rules(text: str) -> None:
    rules = parse_or_refuse_rules(text)
    if rules is not None:
        assert rules_violations(rules) == []
        # `nudge rules check` prints the effective rules; they read back the same.
        assert parse_rules(dump_rules(rules)) == rules


def accepted_part(data: dict[str, Any]) -> Rules | None:
    """The rules of ``data`` with every setting the loader refuses taken out (its default
    stands in), or None if that does not converge. Most rules-shaped drawings have some
    refused setting; repairing them instead of drawing again until one is accepted keeps
    their accepted settings and spares ~12 loads per example."""
    data = copy.deepcopy(data)  # the drawing itself stays as drawn (hypothesis reports it)
    for _ in range(8):
        try:
            return parse_rules(yaml_dump(data))
        except RulesError as exc:  # the paths of what was refused, deepest first
            assert exc.errors and all(reason for _, reason in exc.errors), exc.errors
            for path, _ in sorted(exc.errors, reverse=True):
                _take_out(data, path.split("."))
    return None


def _take_out(data: dict[str, Any], parts: list[str]) -> None:
    """Delete the deepest element of ``data`` on the dotted path (the whole, if none)."""
    node: Any = data
    parent: Any = None
    key: Any = None
    for part in parts:
        if isinstance(node, dict):
            match = next((k for k in node if str(k) == part), _MISSING)
            if match is _MISSING:
                break
            parent, key, node = node, match, node[match]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            parent, key, node = node, int(part), node[int(part)]
        else:
            break
    if parent is None:
        data.clear()
    else:
        del parent[key]


_MISSING = object()


@FUZZ
@given(data=rules_shaped)
# Found by this fuzz: accepted rules whose arithmetic overflows on an ordinary customer.
@example(data={"triggers": {"lapsing": {"factor": 1e300}}})
@example(data={"triggers": {"dormancy": {"stages": ["3000000d"]}}})
@example(
    data={
        "triggers": {"replenishment": {"fire_at_fraction": 10, "products": {"coffee-1": "500000d"}}}
    }
)
def test_accepted_rules_never_crash_the_engine(data: dict[str, Any]) -> None:
    rules = accepted_part(data)
    assume(rules is not None)
    assert rules is not None
    run_engine(Engine(rules), ordinary_customer())


def test_every_rules_example_is_accepted() -> None:
    for text in RULES_EXAMPLES:
        rules = parse_rules(text)
        assert rules_violations(rules) == []
