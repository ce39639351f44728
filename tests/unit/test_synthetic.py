"""The synthetic shop traffic generator: contract-valid, sorted, deterministic, realistic."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from simulation.synthetic import (
    CATALOG,
    CONSUMABLE_DAYS,
    TOPIC_FOR_TYPE,
    event_lines,
    generate_events,
    write_event_file,
)
from triggers.events import parse_event

pytestmark = pytest.mark.unit

START = datetime(2026, 11, 1, tzinfo=UTC)
START_MS = int(START.timestamp() * 1000)
DAY_MS = 86_400_000
ALL_TYPES = {
    "product_viewed",
    "category_viewed",
    "search",
    "cart_item_added",
    "cart_item_removed",
    "cart_cleared",
    "checkout_started",
    "order_placed",
    "order_cancelled",
    "preferences_updated",
}
PRICES = {p.product_id: p.price for p in CATALOG}


def ts_ms(event: dict[str, Any]) -> int:
    ts = event["ts"]
    if isinstance(ts, int):
        return ts
    assert ts.endswith("Z") and len(ts) == len("2026-11-01T00:00:00.000Z"), ts
    return int(datetime.fromisoformat(ts).timestamp() * 1000)


@pytest.fixture(scope="module")
def events() -> list[dict[str, Any]]:
    return list(generate_events(users=600, seed=11, start=START, days=60))


def per_user(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Each user's events in file order, without re-delivered duplicates."""
    seen: set[tuple[str, str]] = set()
    users: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        key = (event["user_id"], event["event_id"])
        if key not in seen:
            seen.add(key)
            users[event["user_id"]].append(event)
    return users


def test_every_event_is_valid_under_the_contract(events: list[dict[str, Any]]) -> None:
    assert len(events) > 5000
    for event in events:
        parsed = parse_event(orjson.dumps(event))  # raises on anything the contract rejects
        assert parsed.type == event["type"]
        assert (parsed.user_id, parsed.event_id) == (event["user_id"], event["event_id"])
        assert parsed.ts == datetime.fromtimestamp(ts_ms(event) / 1000, UTC)
        assert parsed.test is event.get("test", False)
        assert event["type"] in TOPIC_FOR_TYPE
        assert 1 <= len(event["event_id"]) <= 128
        assert 1 <= len(event["user_id"]) <= 128


def test_events_are_sorted_and_inside_the_window(events: list[dict[str, Any]]) -> None:
    times = [ts_ms(e) for e in events]
    assert times == sorted(times)
    assert times[0] >= START_MS
    assert times[-1] < START_MS + 60 * DAY_MS


def test_same_arguments_give_identical_bytes_and_another_seed_differs() -> None:
    def run(seed: int) -> bytes:
        return b"".join(event_lines(generate_events(users=200, seed=seed, start=START, days=20)))

    assert run(5) == run(5)
    assert run(5) != run(6)


def test_a_users_timeline_does_not_depend_on_the_population_size() -> None:
    small = per_user(list(generate_events(users=50, seed=3, start=START, days=30)))
    large = per_user(list(generate_events(users=400, seed=3, start=START, days=30)))
    assert set(small) <= set(large)
    for user, timeline in small.items():
        assert large[user] == timeline


def test_time_scale_compresses_timestamps_only() -> None:
    normal = list(generate_events(users=100, seed=2, start=START, days=10))
    fast = list(generate_events(users=100, seed=2, start=START, days=10, time_scale=1 / 3600))
    assert len(fast) == len(normal)

    def without_ts(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return sorted(
            ({k: v for k, v in e.items() if k != "ts"} for e in events),
            key=lambda e: (e["user_id"], e["event_id"]),
        )

    assert without_ts(fast) == without_ts(normal)
    times = [ts_ms(e) for e in fast]
    assert times == sorted(times)
    # ten days of shop time in ten days / 3600 = 240 s
    assert times[0] >= START_MS and times[-1] < START_MS + 240_000


def test_start_in_another_offset_is_the_same_instant() -> None:
    shanghai = START.astimezone(timezone(timedelta(hours=8)))
    a = list(generate_events(users=30, seed=1, start=START, days=5))
    b = list(generate_events(users=30, seed=1, start=shanghai, days=5))
    assert a == b


def test_naive_start_and_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        generate_events(users=1, seed=1, start=datetime(2026, 11, 1))
    with pytest.raises(ValueError):
        generate_events(users=1, seed=1, start=START, days=0)
    with pytest.raises(ValueError):
        generate_events(users=1, seed=1, start=START, time_scale=0)


def test_traffic_has_every_type_in_a_plausible_mix(events: list[dict[str, Any]]) -> None:
    types = Counter(e["type"] for e in events)
    assert set(types) == ALL_TYPES
    assert types.most_common(1)[0][0] == "product_viewed"
    browse = types["product_viewed"] + types["category_viewed"] + types["search"]
    assert browse > 0.5 * len(events)
    assert types["order_placed"] < types["cart_item_added"]
    assert 0 < types["order_cancelled"] < 0.1 * types["order_placed"]
    forms = Counter(type(e["ts"]) for e in events)
    assert forms[int] > 0.1 * len(events) and forms[str] > 0.1 * len(events)
    channels = Counter(e.get("channel") for e in events)
    assert channels["web"] and channels["app"] and channels["store"] and channels[None]
    tests = sum(1 for e in events if e.get("test") is True)
    assert 0 < tests < 0.05 * len(events)


def test_users_behave_differently(events: list[dict[str, Any]]) -> None:
    users = per_user(events)
    orders = {u: sum(e["type"] == "order_placed" for e in evs) for u, evs in users.items()}
    carts = {u: sum(e["type"] == "cart_item_added" for e in evs) for u, evs in users.items()}
    never_carted = [u for u in users if carts[u] == 0]
    never_ordered = [u for u in users if carts[u] >= 1 and orders[u] == 0]
    repeat = [u for u in users if orders[u] >= 3]
    assert len(never_carted) > 0.2 * len(users)
    assert len(never_ordered) > 0.03 * len(users)
    assert len(repeat) > 0.05 * len(users)
    # many carts are abandoned: no order (nor clearing) within a day of the last addition
    adds = abandoned = 0
    for timeline in users.values():
        for i, event in enumerate(timeline):
            if event["type"] != "cart_item_added":
                continue
            later = timeline[i + 1 :]
            if any(e["type"] == "cart_item_added" for e in later[:1]):
                continue  # not the last addition of this visit
            adds += 1
            horizon = ts_ms(event) + DAY_MS
            closed = ("order_placed", "cart_cleared", "cart_item_removed")
            if not any(e["type"] in closed and ts_ms(e) <= horizon for e in later):
                abandoned += 1
    assert 0.2 * adds < abandoned < 0.8 * adds
    # some users go quiet: their last activity is well before the end of the window
    last = [ts_ms(evs[-1]) for evs in users.values()]
    quiet = sum(t < START_MS + 30 * DAY_MS for t in last)
    assert quiet > 0.1 * len(users)


def test_redelivered_duplicates_repeat_the_whole_event(events: list[dict[str, Any]]) -> None:
    by_id: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        by_id[(event["user_id"], event["event_id"])].append(event)
    repeated = [copies for copies in by_id.values() if len(copies) > 1]
    assert 0.002 * len(by_id) < len(repeated) < 0.03 * len(by_id)
    for copies in repeated:
        assert all(c == copies[0] for c in copies)


def test_orders_contain_exactly_what_was_in_the_cart(events: list[dict[str, Any]]) -> None:
    checked = 0
    for timeline in per_user(events).values():
        cart: dict[str, int] = {}
        placed: set[str] = set()
        for event in timeline:
            kind = event["type"]
            if kind == "cart_item_added":
                pid = event["product_id"]
                assert event.get("unit_price", PRICES[pid]) == PRICES[pid]
                cart[pid] = cart.get(pid, 0) + event.get("quantity", 1)
            elif kind == "cart_item_removed":
                pid = event["product_id"]
                assert pid in cart
                if "quantity" in event and event["quantity"] < cart[pid]:
                    cart[pid] -= event["quantity"]
                else:
                    del cart[pid]
            elif kind == "cart_cleared":
                cart.clear()
            elif kind == "checkout_started":
                assert cart, "checkout of an empty cart"
            elif kind == "order_placed":
                items = event["items"]
                lines = {i["product_id"]: i["quantity"] for i in items}
                if event.get("channel") == "store":
                    assert not cart  # in-store purchase, no online cart
                else:
                    assert lines == cart
                    checked += 1
                for item in items:
                    assert item["unit_price"] == PRICES[item["product_id"]]
                if "total" in event:
                    expected = sum(i["unit_price"] * i["quantity"] for i in items)
                    assert event["total"] == pytest.approx(expected, abs=0.005)
                placed.add(event["order_id"])
                cart.clear()
            elif kind == "order_cancelled":
                assert event["order_id"] in placed
    assert checked > 100


def test_consumables_are_bought_again_on_their_rhythm(events: list[dict[str, Any]]) -> None:
    gaps: dict[str, list[float]] = defaultdict(list)
    for timeline in per_user(events).values():
        last_bought: dict[str, int] = {}
        for event in timeline:
            if event["type"] != "order_placed":
                continue
            for item in event["items"]:
                category = item.get("category")
                if category in CONSUMABLE_DAYS:
                    pid = item["product_id"]
                    if pid in last_bought:
                        gaps[category].append((ts_ms(event) - last_bought[pid]) / DAY_MS)
                    last_bought[pid] = ts_ms(event)
    rhythmic = [c for c in ("coffee", "pet_food", "diapers") if len(gaps[c]) >= 3]
    assert rhythmic
    for category in rhythmic:
        typical = sorted(gaps[category])[len(gaps[category]) // 2]  # median gap
        assert 0.7 * CONSUMABLE_DAYS[category] <= typical <= 1.4 * CONSUMABLE_DAYS[category]


def test_preferences_include_opt_outs_and_real_time_zones(events: list[dict[str, Any]]) -> None:
    prefs = [e for e in events if e["type"] == "preferences_updated"]
    assert any(e.get("marketing_opt_in") is False for e in prefs)
    zones = {e["timezone"] for e in prefs if "timezone" in e}
    assert len(zones) >= 2
    for zone in zones:
        ZoneInfo(zone)  # a real IANA name


def test_write_event_file_writes_the_same_lines(tmp_path: Path) -> None:
    path = tmp_path / "out" / "events.jsonl"
    count = write_event_file(path, users=80, seed=4, start=START, days=15)
    expected = list(event_lines(generate_events(users=80, seed=4, start=START, days=15)))
    data = path.read_bytes()
    assert count == len(expected) > 0
    assert data == b"".join(expected)
    assert data.count(b"\n") == count
    assert not list(path.parent.glob("*.tmp"))


def test_topics_follow_the_contract() -> None:
    assert {t for t, topic in TOPIC_FOR_TYPE.items() if topic == "shop.cart"} == {
        "cart_item_added",
        "cart_item_removed",
        "cart_cleared",
        "checkout_started",
    }
    assert TOPIC_FOR_TYPE["preferences_updated"] == "shop.prefs"
    assert set(TOPIC_FOR_TYPE) >= ALL_TYPES  # every type generated has its contract topic
