"""parse_event: every event type, both timestamp forms, every class of invalid input."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from triggers.events import (
    REASONS,
    TOPIC_OF_TYPE,
    UNSET,
    CartCleared,
    CartItemAdded,
    CartItemRemoved,
    CategoryViewed,
    CheckoutStarted,
    InvalidEvent,
    OrderCancelled,
    OrderLine,
    OrderPlaced,
    PreferencesUpdated,
    ProductUpdated,
    ProductViewed,
    SearchPerformed,
    WishlistAdded,
    parse_catalog_event,
    parse_event,
)

pytestmark = pytest.mark.unit

TS = "2026-11-23T10:00:00Z"
WHEN = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
BASE = {"event_id": "e1", "user_id": "u1", "ts": TS}

VALID: list[tuple[dict[str, Any], object]] = [
    (
        {"type": "product_viewed", "product_id": "p1", "category": "shoes", "price": 59.9},
        ProductViewed("e1", "u1", WHEN, "p1", "shoes", 59.9),
    ),
    ({"type": "product_viewed", "product_id": 42}, ProductViewed("e1", "u1", WHEN, "42")),
    ({"type": "category_viewed", "category": "shoes"}, CategoryViewed("e1", "u1", WHEN, "shoes")),
    ({"type": "search", "query": "red shoes"}, SearchPerformed("e1", "u1", WHEN, "red shoes")),
    (
        {
            "type": "cart_item_added",
            "product_id": "p1",
            "quantity": 2,
            "unit_price": 5,
            "category": "c",
        },
        CartItemAdded("e1", "u1", WHEN, "p1", 2, 5, "c"),
    ),
    ({"type": "cart_item_added", "product_id": "p1"}, CartItemAdded("e1", "u1", WHEN, "p1", 1)),
    (
        {"type": "cart_item_removed", "product_id": "p1", "quantity": 1},
        CartItemRemoved("e1", "u1", WHEN, "p1", 1),
    ),
    ({"type": "cart_item_removed", "product_id": "p1"}, CartItemRemoved("e1", "u1", WHEN, "p1")),
    ({"type": "cart_cleared"}, CartCleared("e1", "u1", WHEN)),
    ({"type": "checkout_started"}, CheckoutStarted("e1", "u1", WHEN)),
    (
        {
            "type": "order_placed",
            "order_id": "o1",
            "items": [
                {"product_id": "p1", "quantity": 2, "unit_price": 0.1, "category": "c"},
                {"product_id": "p2", "quantity": 1, "unit_price": 0.1},
            ],
        },
        OrderPlaced(
            "e1",
            "u1",
            WHEN,
            "o1",
            (OrderLine("p1", 2, 0.1, "c"), OrderLine("p2", 1, 0.1)),
            0.30000000000000004,
        ),
    ),
    (
        {
            "type": "order_placed",
            "order_id": 7,
            "total": 99,
            "items": [{"product_id": "p1", "quantity": 1, "unit_price": 120}],
        },
        OrderPlaced("e1", "u1", WHEN, "7", (OrderLine("p1", 1, 120),), 99),
    ),
    ({"type": "order_cancelled", "order_id": "o1"}, OrderCancelled("e1", "u1", WHEN, "o1")),
    (
        {"type": "preferences_updated", "marketing_opt_in": False, "timezone": "Asia/Shanghai"},
        PreferencesUpdated("e1", "u1", WHEN, False, "Asia/Shanghai"),
    ),
    ({"type": "preferences_updated"}, PreferencesUpdated("e1", "u1", WHEN)),
    (
        {"type": "preferences_updated", "birthday": "02-29"},
        PreferencesUpdated("e1", "u1", WHEN, birthday="02-29"),
    ),
    (
        {"type": "preferences_updated", "birthday": "1990-12-31"},
        PreferencesUpdated("e1", "u1", WHEN, birthday="1990-12-31"),
    ),
    (
        {"type": "preferences_updated", "birthday": None},
        PreferencesUpdated("e1", "u1", WHEN, birthday=None),
    ),
    (
        {"type": "wishlist_added", "product_id": 7, "category": "tea", "price": 4},
        WishlistAdded("e1", "u1", WHEN, "7", "tea", 4),
    ),
]


@pytest.mark.parametrize(("fields", "expected"), VALID, ids=lambda v: getattr(v, "type", ""))
def test_every_event_type_parses(fields: dict[str, Any], expected: object) -> None:
    raw = orjson.dumps({**BASE, **fields})
    assert parse_event(raw) == expected
    assert parse_event(raw.decode()) == expected
    assert expected.type == fields["type"]


def test_every_type_has_a_default_topic() -> None:
    assert TOPIC_OF_TYPE == {
        "product_viewed": "shop.browse",
        "category_viewed": "shop.browse",
        "search": "shop.browse",
        "wishlist_added": "shop.browse",
        "cart_item_added": "shop.cart",
        "cart_item_removed": "shop.cart",
        "cart_cleared": "shop.cart",
        "checkout_started": "shop.cart",
        "order_placed": "shop.order",
        "order_cancelled": "shop.order",
        "preferences_updated": "shop.prefs",
    }


def test_common_optional_fields_and_unknown_extras() -> None:
    raw = {**BASE, "type": "search", "query": "q", "test": True, "channel": "app", "extra": [1]}
    parsed = parse_event(orjson.dumps(raw))
    assert (parsed.test, parsed.channel) == (True, "app")
    nulls = {**BASE, "type": "product_viewed", "product_id": "p", "category": None, "test": None}
    assert parse_event(orjson.dumps(nulls)) == ProductViewed("e1", "u1", WHEN, "p")


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        ("2026-11-23T10:00:00Z", datetime(2026, 11, 23, 10, 0, tzinfo=UTC)),
        ("2026-11-23T18:00:00+08:00", datetime(2026, 11, 23, 10, 0, tzinfo=UTC)),
        ("2026-11-23T05:00:00.5-05:00", datetime(2026, 11, 23, 10, 0, 0, 500000, tzinfo=UTC)),
        ("2026-11-23t10:00:00.123456789z", datetime(2026, 11, 23, 10, 0, 0, 123000, tzinfo=UTC)),
        # truncated, not rounded: never into the next second
        ("2026-11-23T10:00:00.9999999Z", datetime(2026, 11, 23, 10, 0, 0, 999000, tzinfo=UTC)),
        ("2026-11-23 10:00:00.250Z", datetime(2026, 11, 23, 10, 0, 0, 250000, tzinfo=UTC)),
        ("2026-11-23T10:00:00.999Z", datetime(2026, 11, 23, 10, 0, 0, 999000, tzinfo=UTC)),
        (1795428000000, datetime(2026, 11, 23, 10, 0, tzinfo=UTC)),
        (1795428000123, datetime(2026, 11, 23, 10, 0, 0, 123000, tzinfo=UTC)),
        (0, datetime(1970, 1, 1, tzinfo=UTC)),
        (-1000, datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC)),
        # the accepted range: 1900-01-01T00:00:00Z .. 2999-12-31T23:59:59.999Z, both forms
        (-2_208_988_800_000, datetime(1900, 1, 1, tzinfo=UTC)),
        (32_503_679_999_999, datetime(2999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)),
        ("1900-01-01T00:00:00Z", datetime(1900, 1, 1, tzinfo=UTC)),
        ("1900-01-01T08:00:00+08:00", datetime(1900, 1, 1, tzinfo=UTC)),
        ("2999-12-31T23:59:59.999Z", datetime(2999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)),
        ("3000-01-01T07:59:59.999+08:00", datetime(2999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)),
    ],
)
def test_both_timestamp_forms_become_aware_utc_milliseconds(ts: object, expected: datetime) -> None:
    parsed = parse_event(orjson.dumps({**BASE, "ts": ts, "type": "cart_cleared"}))
    assert parsed.ts == expected
    assert parsed.ts.tzinfo is UTC


INVALID: list[tuple[bytes | str, str, str]] = [
    (b"{not json", "not_json", "JSON"),
    (b"", "not_json", "JSON"),
    ("[1, 2]", "not_object", "array"),
    (b'"text"', "not_object", "string"),
    (b"\xff\xfe{}", "bad_encoding", "UTF-8"),
    ('{"event_id": "\ud800"}', "bad_encoding", "UTF-8"),
    (b'{"event_id": "e1", "user_id": "u1", "ts": 1}', "missing_field", "type"),
    (b'{"type": 5}', "wrong_type", "type"),
    (b'{"type": "page_viewed"}', "unknown_type", "page_viewed"),
    (b'{"type": "search", "user_id": "u1", "ts": 1, "query": "q"}', "missing_field", "event_id"),
    (b'{"type": "search", "event_id": "e1", "ts": 1, "query": "q"}', "missing_field", "user_id"),
    (b'{"type": "search", "event_id": "e1", "user_id": "u1", "query": "q"}', "missing_field", "ts"),
    (b'{"type": "search", "event_id": "e1", "user_id": "u1", "ts": 1}', "missing_field", "query"),
    (
        b'{"type": "search", "event_id": 1, "user_id": "u1", "ts": 1, "query": "q"}',
        "wrong_type",
        "event_id",
    ),
    (
        b'{"type": "search", "event_id": "", "user_id": "u1", "ts": 1, "query": "q"}',
        "invalid_value",
        "event_id",
    ),
]


def _event(**fields: Any) -> bytes:
    return orjson.dumps({**BASE, **fields})


INVALID += [
    (_event(type="search", query="q", user_id="u" * 129), "invalid_value", "user_id"),
    (_event(type="search", query="q", ts="2026-11-23T10:00:00"), "naive_timestamp", "offset"),
    (_event(type="search", query="q", ts="2026-11-23"), "invalid_value", "ts"),
    (_event(type="search", query="q", ts="2026-13-23T10:00:00Z"), "invalid_value", "ts"),
    (_event(type="search", query="q", ts="yesterday"), "invalid_value", "ts"),
    (_event(type="search", query="q", ts=1.5e12), "wrong_type", "ts"),
    (_event(type="search", query="q", ts=True), "wrong_type", "ts"),
    (_event(type="search", query="q", ts=10**17), "invalid_value", "ts"),
    # outside 1900-01-01T00:00:00Z .. 2999-12-31T23:59:59.999Z: the engine's dates would overflow
    (_event(type="search", query="q", ts=32_503_680_000_000), "invalid_value", "ts"),
    (_event(type="search", query="q", ts=-2_208_988_800_001), "invalid_value", "ts"),
    (_event(type="search", query="q", ts=253_402_214_399_999), "invalid_value", "ts"),
    (_event(type="search", query="q", ts="3000-01-01T00:00:00Z"), "invalid_value", "ts"),
    (_event(type="search", query="q", ts="9999-12-30T00:00:00Z"), "invalid_value", "ts"),
    (_event(type="search", query="q", ts="9999-12-31T23:59:59.999Z"), "invalid_value", "ts"),
    (_event(type="search", query="q", ts="2999-12-31T23:00:00-01:00"), "invalid_value", "ts"),
    (_event(type="search", query="q", ts="1899-12-31T23:59:59.999Z"), "invalid_value", "ts"),
    (_event(type="search", query="q", ts="1900-01-01T07:59:59+08:00"), "invalid_value", "ts"),
    (_event(type="search", query="q", ts="0001-01-01T00:00:00Z"), "invalid_value", "ts"),
    (_event(type="search", query="q", ts="0001-01-01T00:00:00+01:00"), "invalid_value", "ts"),
    (_event(type="search", query="q", test="yes"), "wrong_type", "test"),
    (_event(type="search", query="q", channel=7), "wrong_type", "channel"),
    (_event(type="search", query=""), "invalid_value", "query"),
    (_event(type="product_viewed"), "missing_field", "product_id"),
    (_event(type="product_viewed", product_id=True), "wrong_type", "product_id"),
    (_event(type="product_viewed", product_id="p", price=-1), "invalid_value", "price"),
    (_event(type="product_viewed", product_id="p", price="1"), "wrong_type", "price"),
    (_event(type="product_viewed", product_id="p", price=1e15 * 1.01), "invalid_value", "price"),
    (_event(type="product_viewed", product_id="p", price=10**15 + 1), "invalid_value", "price"),
    (_event(type="product_viewed", product_id="p", price=1e308), "invalid_value", "price"),
    (
        _event(type="cart_item_added", product_id="p", quantity=10**9 + 1),
        "invalid_value",
        "quantity",
    ),
    (
        _event(type="cart_item_added", product_id="p", quantity=2**63),
        "invalid_value",
        "quantity",
    ),
    (
        _event(type="cart_item_added", product_id="p", unit_price=1e16),
        "invalid_value",
        "unit_price",
    ),
    (_event(type="category_viewed"), "missing_field", "category"),
    (_event(type="cart_item_added", product_id="p", quantity=0), "invalid_value", "quantity"),
    (_event(type="cart_item_added", product_id="p", quantity=1.0), "wrong_type", "quantity"),
    (_event(type="cart_item_added", product_id="p", quantity=True), "wrong_type", "quantity"),
    (_event(type="cart_item_removed"), "missing_field", "product_id"),
    (
        _event(type="order_placed", items=[{"product_id": "p", "quantity": 1, "unit_price": 1}]),
        "missing_field",
        "order_id",
    ),
    (_event(type="order_placed", order_id="o"), "missing_field", "items"),
    (_event(type="order_placed", order_id="o", items={}), "wrong_type", "items"),
    (_event(type="order_placed", order_id="o", items=[]), "invalid_value", "items"),
    (_event(type="order_placed", order_id="o", items=[5]), "wrong_type", "items[0]"),
    (
        _event(type="order_placed", order_id="o", items=[{"quantity": 1, "unit_price": 1}]),
        "missing_field",
        "items[0].product_id",
    ),
    (
        _event(type="order_placed", order_id="o", items=[{"product_id": "p", "unit_price": 1}]),
        "missing_field",
        "items[0].quantity",
    ),
    (
        _event(type="order_placed", order_id="o", items=[{"product_id": "p", "quantity": 1}]),
        "missing_field",
        "items[0].unit_price",
    ),
    (
        _event(
            type="order_placed",
            order_id="o",
            total=-5,
            items=[{"product_id": "p", "quantity": 1, "unit_price": 1}],
        ),
        "invalid_value",
        "total",
    ),
    (
        _event(
            type="order_placed",
            order_id="o",
            total=1e300,
            items=[{"product_id": "p", "quantity": 1, "unit_price": 1}],
        ),
        "invalid_value",
        "total",
    ),
    (  # the default total, the sum of the lines, overflows: 2 x 1e308 is inf
        b'{"event_id": "e1", "user_id": "u1", "ts": 0, "type": "order_placed", "order_id": "o",'
        b' "items": [{"product_id": "p", "quantity": 2, "unit_price": 1e308}]}',
        "invalid_value",
        "unit_price",
    ),
    (  # each line in range, their sum is not
        _event(
            type="order_placed",
            order_id="o",
            items=[{"product_id": "p", "quantity": 10**9, "unit_price": 10**15}],
        ),
        "invalid_value",
        "total",
    ),
    (
        _event(
            type="order_placed",
            order_id="o",
            items=[{"product_id": "p", "quantity": 1, "unit_price": 10**15}] * 2,
        ),
        "invalid_value",
        "total",
    ),
    (_event(type="order_cancelled"), "missing_field", "order_id"),
    (_event(type="preferences_updated", timezone="Mars/Olympus"), "invalid_value", "timezone"),
    (_event(type="preferences_updated", timezone="../etc/passwd"), "invalid_value", "timezone"),
    (_event(type="preferences_updated", marketing_opt_in="no"), "wrong_type", "marketing_opt_in"),
]


@pytest.mark.parametrize(("raw", "reason", "named"), INVALID)
def test_invalid_input_raises_invalid_event_with_reason_and_field(
    raw: bytes | str, reason: str, named: str
) -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_event(raw)
    assert caught.value.reason == reason
    assert named in caught.value.detail
    assert str(caught.value).startswith(f"{reason}: ")


def test_every_reason_code_is_reachable() -> None:
    seen = set()
    for raw, reason, _ in INVALID:
        with pytest.raises(InvalidEvent):
            parse_event(raw)
        seen.add(reason)
    oversize = _event(type="search", query="q" * 600)
    with pytest.raises(InvalidEvent) as caught:
        parse_event(oversize, max_bytes=512)
    seen.add(caught.value.reason)
    assert seen == set(REASONS)


def test_oversize_is_checked_in_bytes_for_text_too() -> None:
    text = _event(type="search", query="é" * 300).decode()  # 300 chars, 600 bytes of query
    assert len(text) < 512 < len(text.encode())
    with pytest.raises(InvalidEvent) as caught:
        parse_event(text, max_bytes=512)
    assert caught.value.reason == "oversize"
    assert parse_event(text, max_bytes=1024).query == "é" * 300


def test_non_text_input_is_refused_cleanly() -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_event(12345)  # type: ignore[arg-type]
    assert caught.value.reason == "not_json"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=20,
)
field_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**15), max_value=10**16),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "p1", "x" * 200, TS, "2026-11-23T10:00:00", "Asia/Tokyo", "Nowhere/X"]),
    st.lists(
        st.fixed_dictionaries(
            {},
            optional={
                "product_id": st.sampled_from(["p", 3, None, True]),
                "quantity": st.sampled_from([1, 0, 2.0, None]),
                "unit_price": st.sampled_from([1.5, -1, "1", None]),
                "category": st.sampled_from(["c", "", None]),
            },
        ),
        max_size=2,
    ),
)
near_valid_events = st.builds(
    lambda kind, fields: {"type": kind, **fields},
    st.sampled_from([*TOPIC_OF_TYPE, "nope"]),
    st.dictionaries(
        st.sampled_from(
            [
                "event_id",
                "user_id",
                "ts",
                "test",
                "channel",
                "product_id",
                "category",
                "price",
                "query",
                "quantity",
                "unit_price",
                "order_id",
                "items",
                "total",
                "marketing_opt_in",
                "birthday",
                "timezone",
            ]
        ),
        field_values,
        max_size=9,
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(json_values, near_valid_events))
def test_parse_event_raises_only_invalid_event(value: object) -> None:
    raw = json.dumps(value).encode()  # stdlib: big integers and Infinity too
    try:
        parsed = parse_event(raw)
    except InvalidEvent as exc:
        assert exc.reason in REASONS
    else:
        assert parsed.type in TOPIC_OF_TYPE


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_raise_only_invalid_event(raw: bytes) -> None:
    with pytest.raises(InvalidEvent):
        parse_event(raw)


FIELD_NAMES = sorted({key for fields, _ in VALID for key in fields} | {*BASE, "test", "channel"})


@st.composite
def mutated_events(draw: st.DrawFn) -> dict:
    """A valid example with zero to two fields removed or replaced: about half stay valid."""
    fields, _ = draw(st.sampled_from(VALID))
    event = {**BASE, **fields}
    for _ in range(draw(st.integers(min_value=0, max_value=2))):
        key = draw(st.sampled_from(FIELD_NAMES))
        if draw(st.booleans()):
            event.pop(key, None)
        else:
            event[key] = draw(field_values)
    return event


def test_birthday_absent_is_unset_and_null_removes_it() -> None:
    absent = parse_event(_event(type="preferences_updated"))
    assert absent.birthday is UNSET and not absent.birthday
    assert parse_event(_event(type="preferences_updated", birthday=None)).birthday is None


@pytest.mark.parametrize(
    ("birthday", "reason"),
    [
        ("02-30", "invalid_value"),
        ("13-01", "invalid_value"),
        ("2001-02-29", "invalid_value"),
        ("12/31", "invalid_value"),
        ("1-2", "invalid_value"),
        ("١٢-٣١", "invalid_value"),  # Arabic-Indic digits
        (1231, "wrong_type"),
    ],
)
def test_an_impossible_birthday_is_refused(birthday: object, reason: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_event(_event(type="preferences_updated", birthday=birthday))
    assert (caught.value.reason, "$.birthday") == (reason, caught.value.detail[:10])


def test_details_name_the_field_by_json_path() -> None:
    line = {"product_id": "p", "quantity": 0, "unit_price": 1}
    with pytest.raises(InvalidEvent) as caught:
        parse_event(_event(type="order_placed", order_id="o", items=[line]))
    assert caught.value.detail == "$.items[0].quantity: expected `int` >= 1, got 0"
    with pytest.raises(InvalidEvent) as caught:
        parse_event(_event(type="search", query=None))
    assert (caught.value.reason, caught.value.detail) == (
        "missing_field",
        "$.query is required (got null)",
    )


def test_catalog_events_are_not_user_events() -> None:
    raw = orjson.dumps(
        {"event_id": "c1", "type": "product_updated", "ts": TS, "product_id": 9, "in_stock": True}
    )
    with pytest.raises(InvalidEvent) as caught:
        parse_event(raw)
    assert caught.value.reason == "unknown_type"
    assert "catalog topic" in caught.value.detail
    assert parse_catalog_event(raw) == ProductUpdated("c1", WHEN, "9", None, True)
    assert parse_catalog_event(raw).type == "product_updated"
    with pytest.raises(InvalidEvent) as caught:
        parse_catalog_event(_event(type="search", query="q"))
    assert caught.value.reason == "unknown_type"


@pytest.mark.parametrize(
    ("fields", "reason", "named"),
    [
        ({"price": -1}, "invalid_value", "$.price"),
        ({"in_stock": "yes"}, "wrong_type", "$.in_stock"),
        ({"product_id": None}, "missing_field", "$.product_id"),
        ({"ts": "2026-11-23T10:00:00"}, "naive_timestamp", "$.ts"),
        ({"type": None}, "missing_field", "$.type"),
        ({"type": "teleported"}, "unknown_type", "teleported"),
    ],
)
def test_catalog_events_are_validated_like_user_events(
    fields: dict[str, Any], reason: str, named: str
) -> None:
    event = {"event_id": "c1", "type": "product_updated", "ts": TS, "product_id": "p", **fields}
    with pytest.raises(InvalidEvent) as caught:
        parse_catalog_event(orjson.dumps(event), max_bytes=1024)
    assert caught.value.reason == reason
    assert named in caught.value.detail
    with pytest.raises(InvalidEvent) as caught:
        parse_catalog_event(orjson.dumps(event) + b" " * 1024, max_bytes=1024)
    assert caught.value.reason == "oversize"


SEARCH = b'{"event_id": "e1", "user_id": "u1", "ts": 0, "type": "search", "query": "q"'


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (SEARCH + b', "extra": "x\xc3\x28y"}', "bad_encoding"),  # invalid UTF-8, unknown field
        (SEARCH + b', "extra": "\\ud800x"}', "not_json"),  # a lone surrogate escape
        (SEARCH + b', "extra": ' + b"[" * 2000 + b"]" * 2000 + b"}", "not_json"),  # too deep
        (SEARCH + b', "extra": NaN}', "not_json"),
        (SEARCH + b"} trailing", "not_json"),
        (b"\xef\xbb\xbf" + SEARCH + b"}", "not_json"),  # a byte order mark
    ],
)
def test_json_faults_anywhere_are_refused_like_orjson_does(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_event(raw)
    assert caught.value.reason == reason


def test_legal_but_unusual_shapes_are_accepted() -> None:
    nested = parse_event(SEARCH + b', "nest": ' + b"[" * 500 + b"]" * 500 + b"}")
    assert nested == SearchPerformed("e1", "u1", datetime(1970, 1, 1, tzinfo=UTC), "q")
    last_wins = parse_event(SEARCH + b', "type": "category_viewed", "category": "c"}')
    assert type(last_wins) is CategoryViewed  # a repeated key: the last one counts
    assert parse_event(SEARCH + b', "user_id": "u2"}').user_id == "u2"
    assert parse_event(bytearray(SEARCH + b"}")).query == "q"
    assert parse_event(memoryview(SEARCH + b"}")).query == "q"


@pytest.mark.parametrize(
    "raw",
    [
        b"\xff\xfe",  # bad_encoding
        b"{not json",  # not_json
        b"[1]",  # not_object
        SEARCH + b', "ts": "2026-01-01T00:00:00"}',  # naive_timestamp
        b'{"event_id": "e1", "user_id": "u1", "ts": 0, "type": "search"}',  # missing_field
        b'{"event_id": "e1", "user_id": "u1", "ts": 0, "type": "no_such_type"}',
        b"x" * 70_000,  # oversize
    ],
)
def test_a_refusal_keeps_no_error_behind_it_and_no_parser_frame(raw: bytes) -> None:
    # The live service keeps a batch's refusals until its checkpoint: each must be only
    # a reason and a detail, not a chain to the msgspec/orjson error whose traceback holds
    # the parser's frames and the message (the frames outlived the young generation and a
    # malformed flood grew the worker by ~0.9 GiB before a full collection).
    with pytest.raises(InvalidEvent) as caught:
        parse_event(raw)
    error = caught.value
    assert error.__context__ is None and error.__cause__ is None
    frames = []
    tb = error.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    assert "_decode_message" not in frames and "_reread" not in frames, frames
