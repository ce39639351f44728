"""Seeded shop timelines (no hypothesis, no engine imports): the same seed gives the same
JSON Lines on any version of the code, so outputs can be compared across versions
(tests/unit/test_channel_properties.py pins what the engine gave before contract 8)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

START = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
PRODUCTS = ("p1", "p2", "p3")
ZONES = ("Asia/Shanghai", "America/New_York", "UTC")
STEPS_MINUTES = (0, 1, 30, 59, 60, 61, 120, 600, 1439, 1440, 4400, 10_000)
#: Rules sets the pinned outputs were made with (none uses contract 8).
RULE_SETS: tuple[dict[str, Any], ...] = (
    {},
    {
        "default_timezone": "Asia/Shanghai",
        "contact_policy": {"quiet_hours": {"start": "21:00", "end": "08:00"}},
    },
    {"contact_policy": {"holdout_percent": 50, "frequency_cap": {"max": 1, "per": "12h"}}},
    {
        "triggers": {
            "cart_abandonment": {"stages": ["1h", "3h", "5h"], "cooldown": 0},
            "dormancy": {"audience": "all", "stages": ["1d", "2d"]},
            "lapsing": {"min_orders": 2},
            "replenishment": {"products": {"p1": "3d"}},
            "browse_abandonment": {"variants": {"a": 1, "b": 1}},
        },
        "contact_policy": {"frequency_cap": {"max": 3, "per": "6h"}, "max_delay": "1h"},
    },
)


def _stamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def seeded_shop(seed: int, users: int = 25) -> list[bytes]:
    """A time-sorted JSON Lines file of ``users`` shoppers' events."""
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    for n in range(users):
        user = f"u{n}"
        minute = rng.randrange(600)
        orders: list[str] = []
        for k in range(rng.randrange(1, 16)):
            minute += rng.choice(STEPS_MINUTES)
            ts = _stamp(START + timedelta(minutes=minute))
            base = {"event_id": f"{user}-{k}", "user_id": user, "ts": ts}
            product = rng.choice(PRODUCTS)
            kind = rng.choice("vvaarcooxps")
            if kind == "v":
                event = {"type": "product_viewed", "product_id": product, "price": 5.0}
            elif kind == "a":
                event = {"type": "cart_item_added", "product_id": product, "unit_price": 7.5}
            elif kind == "r":
                event = {"type": "cart_item_removed", "product_id": product}
            elif kind == "c":
                event = {"type": "checkout_started"}
            elif kind == "o":
                orders.append(f"{user}-o{k}")
                items = [{"product_id": product, "quantity": 1, "unit_price": 30.0}]
                event = {"type": "order_placed", "order_id": orders[-1], "items": items}
            elif kind == "x" and orders:
                event = {"type": "order_cancelled", "order_id": rng.choice(orders)}
            elif kind == "p":
                event = {
                    "type": "preferences_updated",
                    "marketing_opt_in": rng.random() < 0.8,
                    "timezone": rng.choice(ZONES),
                }
            else:
                event = {"type": "search", "query": "q"}
            events.append({**base, **event})
    events.sort(key=lambda event: (event["ts"], event["user_id"]))
    return [orjson.dumps(event) for event in events]
