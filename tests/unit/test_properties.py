"""Hypothesis properties of the engine under replay, on random shop timelines.

Timelines are generated per user (each user's events in time order, with
re-deliveries and test events mixed in) and merged into one time-sorted file.
"""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.timelines import T0, iso, make_rules
from triggers.records import Conversion, Decision, record_to_json
from triggers.replay import replay_lines
from triggers.rules import Rules
from triggers.schemas import decode_output_record
from triggers.state import encode_state

pytestmark = pytest.mark.unit

STEPS_MINUTES = [
    0,
    1,
    5,
    30,
    59,
    60,
    61,
    119,
    120,
    300,
    600,
    1439,
    1440,
    2000,
    4400,
    10_000,
    40_000,
]
KINDS = [
    "view",
    "view",
    "add",
    "add",
    "remove",
    "clear",
    "checkout",
    "order",
    "order",
    "cancel",
    "prefs",
    "search",
]
PRODUCTS = ["p1", "p2", "p3"]
ZONES = ["Asia/Shanghai", "America/New_York", "Europe/Berlin", "UTC"]

RULE_SETS: list[dict[str, Any]] = [
    {},
    {
        "default_timezone": "Asia/Shanghai",
        "contact_policy": {"quiet_hours": {"start": "21:00", "end": "08:00"}},
    },
    {"contact_policy": {"holdout_percent": 50, "frequency_cap": {"max": 1, "per": "12h"}}},
    {
        "triggers": {
            "cart_abandonment": {"stages": ["1h", "3h", "5h"], "cooldown": 0},
            "browse_abandonment": {"stages": ["30m", "2h"], "cooldown": "1h"},
            "dormancy": {"audience": "all", "stages": ["1d", "2d"]},
            "lapsing": {"min_orders": 2},
            "replenishment": {"products": {"p1": "3d"}, "categories": {"c2": "5d"}},
        },
        "contact_policy": {"frequency_cap": {"max": 3, "per": "6h"}, "max_delay": "1h"},
    },
]


@st.composite
def user_events(draw: st.DrawFn, user: str) -> list[dict[str, Any]]:
    minute = draw(st.integers(min_value=0, max_value=600))
    events: list[dict[str, Any]] = []
    orders: list[str] = []
    for n in range(draw(st.integers(min_value=1, max_value=14))):
        minute += draw(st.sampled_from(STEPS_MINUTES))
        kind = draw(st.sampled_from(KINDS))
        product = draw(st.sampled_from(PRODUCTS))
        base = {
            "event_id": f"{user}-{n}",
            "user_id": user,
            "ts": iso(T0 + timedelta(minutes=minute)),
        }
        if kind == "view":
            event = {"type": "product_viewed", "product_id": product, "price": 5.0}
        elif kind == "add":
            event = {
                "type": "cart_item_added",
                "product_id": product,
                "unit_price": 7.5,
                "category": "c2" if product == "p2" else None,
            }
        elif kind == "remove":
            event = {"type": "cart_item_removed", "product_id": product}
        elif kind == "clear":
            event = {"type": "cart_cleared"}
        elif kind == "checkout":
            event = {"type": "checkout_started"}
        elif kind == "order":
            order_id = f"{user}-o{n}"
            orders.append(order_id)
            items = [
                {
                    "product_id": p,
                    "quantity": 1,
                    "unit_price": 30.0,
                    "category": "c2" if p == "p2" else None,
                }
                for p in draw(st.sets(st.sampled_from(PRODUCTS), min_size=1))
            ]
            event = {"type": "order_placed", "order_id": order_id, "items": items}
        elif kind == "cancel" and orders:
            event = {"type": "order_cancelled", "order_id": draw(st.sampled_from(orders))}
        elif kind == "prefs":
            event = {
                "type": "preferences_updated",
                "marketing_opt_in": draw(st.booleans()),
                "timezone": draw(st.sampled_from(ZONES)),
            }
        else:
            event = {"type": "search", "query": "q"}
        event = {**base, **event}
        if draw(st.integers(min_value=0, max_value=19)) == 0:
            event["test"] = True
        events.append(event)
        if draw(st.integers(min_value=0, max_value=9)) == 0:
            events.append(dict(event))  # a re-delivery: same event id
    return events


@st.composite
def shop(draw: st.DrawFn) -> tuple[Rules, dict[str, list[dict[str, Any]]]]:
    rules = make_rules(**draw(st.sampled_from(RULE_SETS)))
    users = draw(st.integers(min_value=1, max_value=4))
    return rules, {f"u{n}": draw(user_events(f"u{n}")) for n in range(users)}


def merged(timelines: dict[str, list[dict[str, Any]]], seed: int) -> list[bytes]:
    """One time-sorted file; events of different users at the same time in a random order."""
    rng = random.Random(seed)
    queues = {user: list(events) for user, events in timelines.items()}
    interleaved = []
    while queues:
        user = rng.choice(sorted(queues))
        interleaved.append(queues[user].pop(0))
        if not queues[user]:
            del queues[user]
    interleaved.sort(key=lambda event: event["ts"])  # stable: each user's order is kept
    return [orjson.dumps(event) for event in interleaved]


def end_of(timelines: dict[str, list[dict[str, Any]]]) -> Any:
    from triggers.timestamps import parse_timestamp

    last = max(event["ts"] for events in timelines.values() for event in events)
    return parse_timestamp(last) + timedelta(days=100)


def by_user(records: list[Decision | Conversion]) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = defaultdict(list)
    for record in records:
        out[record.user_id].append(record_to_json(record))
    return dict(out)


PROPERTY_SETTINGS = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@PROPERTY_SETTINGS
@given(shop())
def test_no_cart_reminder_is_sent_after_an_order_that_followed_the_cart_activity(
    world: tuple[Rules, dict[str, list[dict[str, Any]]]],
) -> None:
    rules, timelines = world
    result = replay_lines(merged(timelines, 0), rules, end_of(timelines))
    for decision in result.records:
        if not (
            isinstance(decision, Decision)
            and decision.trigger == "cart_abandonment"
            and decision.status == "sent"
        ):
            continue
        activity = decision.context["last_cart_activity"]
        fired = iso(decision.fired_at)
        orders = [
            event["ts"]
            for event in timelines[decision.user_id]
            if event["type"] == "order_placed" and not event.get("test")
        ]
        assert not [ts for ts in orders if activity <= ts < fired], (decision, orders)


@PROPERTY_SETTINGS
@given(shop())
def test_never_more_than_the_frequency_cap_in_any_rolling_window(
    world: tuple[Rules, dict[str, list[dict[str, Any]]]],
) -> None:
    rules, timelines = world
    result = replay_lines(merged(timelines, 0), rules, end_of(timelines))
    cap = rules.contact_policy.frequency_cap
    contacts: dict[str, list] = defaultdict(list)
    for record in result.records:
        if isinstance(record, Decision) and record.status in ("sent", "holdout"):
            contacts[record.user_id].append(record.fired_at)
    for times in contacts.values():
        times.sort()
        for end in times:
            assert sum(1 for t in times if end - cap.per < t <= end) <= cap.max


@PROPERTY_SETTINGS
@given(shop(), st.integers(min_value=1, max_value=10**6))
def test_replay_is_deterministic_and_users_do_not_influence_each_other(
    world: tuple[Rules, dict[str, list[dict[str, Any]]]], seed: int
) -> None:
    rules, timelines = world
    until = end_of(timelines)
    lines = merged(timelines, 0)
    first = replay_lines(lines, rules, until)
    second = replay_lines(lines, rules, until)
    assert [record_to_json(r) for r in first.records] == [record_to_json(r) for r in second.records]
    assert {u: encode_state(s) for u, s in first.states.items()} == {
        u: encode_state(s) for u, s in second.states.items()
    }
    # another interleaving of the users' events (each user's order kept, file still sorted)
    shuffled = replay_lines(merged(timelines, seed), rules, until)
    assert by_user(shuffled.records) == by_user(first.records)
    # and each user alone
    for user, events in timelines.items():
        alone = replay_lines([orjson.dumps(e) for e in events], rules, until)
        assert by_user(alone.records).get(user, []) == by_user(first.records).get(user, [])


@PROPERTY_SETTINGS
@given(shop())
def test_records_are_valid_chronological_and_ids_are_unique(
    world: tuple[Rules, dict[str, list[dict[str, Any]]]],
) -> None:
    rules, timelines = world
    result = replay_lines(merged(timelines, 0), rules, end_of(timelines))
    assert result.invalid == []
    times = []
    ids = []
    for record in result.records:
        decode_output_record(record_to_json(record))
        if isinstance(record, Decision):
            times.append(record.fired_at)
            ids.append(record.trigger_id)
            assert record.fired_at >= record.due_at
            assert (record.reason is None) == (record.status != "suppressed")
        else:
            times.append(record.converted_at)
    assert times == sorted(times)
    assert len(ids) == len(set(ids))
    summary = result.summary
    assert summary.events_read == sum(len(events) for events in timelines.values())
    assert summary.processed + summary.test + summary.duplicate == summary.events_read
