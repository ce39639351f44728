"""The input bounds (timestamps, amounts, quantities, rules) keep the engine's arithmetic in range:
at the extremes of what the parsers accept, events apply, states encode, stages fire, records
serialize."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from tests.unit.timelines import wire
from triggers.engine import Engine, OutsideFacts
from triggers.events import MAX_AMOUNT, MAX_QUANTITY, parse_event
from triggers.records import record_to_json
from triggers.rules import Rules, parse_rules
from triggers.state import decode_state, encode_state
from triggers.timestamps import (
    MAX_SCALED,
    MAX_TIMESTAMP,
    MIN_TIMESTAMP,
    format_timestamp,
    scaled,
)

pytestmark = pytest.mark.unit

EXTREME_RULES = parse_rules(
    """
default_timezone: Pacific/Kiritimati
triggers:
  cart_abandonment: {stages: [3649d, 3650d], cooldown: 3650d}
  browse_abandonment: {stages: [3650d], cooldown: 3650d}
  replenishment: {fire_at_fraction: 10, min_purchases: 2, categories: {c: 3650d}}
  first_purchase_followup: {stages: [3650d]}
  lapsing: {factor: 100, min_orders: 2}
  dormancy: {stages: [3650d], audience: all}
contact_policy:
  frequency_cap: {max: 1, per: 3650d}
  quiet_hours: {start: "00:01", end: "00:00"}
  max_delay: 3650d
  attribution_window: 3650d
segments: {dormant_after: 3649d, churned_after: 3650d}
"""
)


def _events(user: str) -> list:
    line = {"product_id": "p", "quantity": MAX_QUANTITY, "unit_price": 1.0, "category": "c"}
    raw = [
        ("order_placed", MIN_TIMESTAMP, {"order_id": "o1", "items": [line]}),
        ("order_placed", MAX_TIMESTAMP, {"order_id": "o2", "items": [line], "total": MAX_AMOUNT}),
        ("cart_item_added", MAX_TIMESTAMP, {"product_id": "p", "quantity": MAX_QUANTITY,
                                            "unit_price": MAX_AMOUNT}),
        ("cart_item_added", MAX_TIMESTAMP, {"product_id": "p", "quantity": MAX_QUANTITY,
                                            "unit_price": MAX_AMOUNT}),
        ("product_viewed", MAX_TIMESTAMP, {"product_id": "q", "price": MAX_AMOUNT}),
        ("preferences_updated", MIN_TIMESTAMP, {"timezone": "Etc/GMT+12"}),
        ("order_placed", MAX_TIMESTAMP, {"order_id": "o3", "items": [line] * 3}),
    ]  # fmt: skip
    return [
        parse_event(wire(kind, format_timestamp(ts), user, f"e{n}", **fields))
        for n, (kind, ts, fields) in enumerate(raw)
    ]


@pytest.mark.parametrize("rules", [Rules(), EXTREME_RULES], ids=["default", "extreme"])
@pytest.mark.parametrize("now", [MIN_TIMESTAMP, MAX_TIMESTAMP])
def test_the_engine_computes_with_the_extremes_the_parsers_accept(
    rules: Rules, now: datetime
) -> None:
    engine = Engine(rules)
    state, fired = None, 0
    for event in _events("extreme-user"):
        step = engine.on_event(state, event, now)
        for record in step.records:
            record_to_json(record)
        state = decode_state(encode_state(step.state))
        assert state == step.state
    due = engine.next_due(state)
    while due is not None and fired < 50:  # every stage, to the last one
        step = engine.on_time(state, due, OutsideFacts())
        for record in step.records:
            record_to_json(record)
        fired += len(step.records)
        state = decode_state(encode_state(step.state))
        assert state == step.state
        due = step.next_due
    assert fired > 0


def test_scaled_durations_are_capped() -> None:
    assert scaled(timedelta(days=10), 1.5) == timedelta(days=15)
    assert scaled(timedelta(milliseconds=3), 0.5) == timedelta(milliseconds=2)
    century = MAX_TIMESTAMP - MIN_TIMESTAMP
    assert scaled(century, 100) == MAX_SCALED
    assert scaled(century, float("inf")) == MAX_SCALED
    assert MAX_TIMESTAMP + MAX_SCALED + 4 * timedelta(days=3650) < datetime.max.replace(
        tzinfo=MAX_TIMESTAMP.tzinfo
    )
