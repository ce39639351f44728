"""State encoding: exact round trip, compact for typical users, bounded for heavy ones."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from simulation.synthetic import event_lines, generate_events
from tests.unit.timelines import Timeline, at, make_rules
from triggers.replay import replay_lines
from triggers.rules import Rules
from triggers.state import UserState, decode_state, encode_state

pytestmark = pytest.mark.unit


def typical_user() -> UserState:
    """About ten events: browsing, a cart, an order, preferences."""
    rules = make_rules(
        default_timezone="Asia/Shanghai",
        contact_policy={"quiet_hours": {"start": "21:00", "end": "08:00"}},
    )
    tl = Timeline(rules)
    tl.send("preferences_updated", at(), timezone="Europe/Berlin", marketing_opt_in=True)
    tl.view(at(minutes=1), "sku-10293", category="coffee", price=12.9)
    tl.view(at(minutes=3), "sku-20931", category="coffee", price=14.5)
    tl.send("search", at(minutes=4), query="espresso beans")
    tl.add(at(minutes=5), "sku-20931", 14.5, category="coffee")
    tl.add(at(minutes=6), "sku-55555", 3.2, quantity=2, category="filters")
    tl.advance(at(hours=2))
    tl.send("checkout_started", at(hours=3))
    tl.order(at(hours=3, minutes=5), "ord-881923", ["sku-20931", "sku-55555"], price=14.5)
    tl.view(at(days=2), "sku-10293", category="coffee", price=12.9)
    tl.advance(at(days=2, hours=1))
    return tl.state()


def test_a_typical_state_round_trips_and_is_small() -> None:
    state = typical_user()
    data = encode_state(state)
    assert decode_state(data) == state
    assert encode_state(decode_state(data)) == data
    assert len(data) < 700, len(data)
    assert state.pending and state.history.orders and state.prefs and state.viewed


def test_a_new_user_state_round_trips() -> None:
    state = UserState("u1")
    assert decode_state(encode_state(state)) == state
    assert len(encode_state(state)) < 60


def test_deferred_stages_round_trip() -> None:
    rules = make_rules(
        default_timezone="Asia/Shanghai",
        contact_policy={"quiet_hours": {"start": "21:00", "end": "08:00"}},
        triggers={"dormancy": {"audience": "all", "stages": ["2h"]}},
    )
    tl = Timeline(rules)
    tl.add(at(hours=11), "p1")  # 21:00 local: cart (22:00) and dormancy (23:00) are deferred
    tl.advance(at(hours=13))
    state = tl.state()
    assert state.dormancy_send_at is not None
    assert any(p.send_at != p.due for p in state.pending)
    assert decode_state(encode_state(state)) == state


def test_synthetic_users_round_trip_and_stay_compact() -> None:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    lines = list(event_lines(generate_events(users=300, seed=7, start=start, days=20)))
    result = replay_lines(lines, Rules())
    sizes = []
    for state in result.states.values():
        data = encode_state(state)
        assert decode_state(data) == state
        sizes.append(len(data))
    assert sum(sizes) / len(sizes) < 1024


def test_a_heavy_user_state_is_bounded() -> None:
    tl = Timeline(make_rules())
    for n in range(400):
        tl.view(at(minutes=10 * n), f"product-{n % 60}", category=f"cat-{n % 7}", price=9.99)
        if n % 5 == 0:
            tl.add(at(minutes=10 * n + 1), f"product-{n % 60}", 9.99)
        if n % 10 == 0:
            tl.order(at(minutes=10 * n + 2), f"order-{n}", [f"product-{n % 60}", "staple"])
    data = encode_state(tl.state())
    assert decode_state(data) == tl.state()
    assert len(tl.state().seen) == 256 * 8
    assert len(data) < 12 * 1024, len(data)


@pytest.mark.parametrize(
    "data",
    [b"", b"not json", b'[2, "u"]', b'[1, "u"]', b"{}", b"[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]"],
)
def test_corrupt_state_raises_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):
        decode_state(data)
