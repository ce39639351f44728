"""The live shell (stream.batches) gives replay's records, fired_at included, with the
section 7.3 triggers that need no catalog fan-out: birthday and custom triggers."""

from __future__ import annotations

import pytest

from tests.unit.shell_harness import Ev, Shell
from tests.unit.timelines import at, make_rules

pytestmark = pytest.mark.unit

RULES = make_rules(
    only=("cart_abandonment",),
    triggers={
        "birthday": {"enabled": True, "days_before": "1d", "send_time": "09:00"},
        "custom": {
            "socks": {
                "enabled": True,
                "when": {"type": "order_placed", "category": ["running_shoes"]},
                "unless": [{"type": "order_placed", "category": ["socks"]}],
                "stages": ["1d", "2d"],
            }
        },
    },
    contact_policy={"frequency_cap": {"max": 5, "per": "24h"}},
)


def _order(order_id: str, product: str, category: str) -> dict:
    line = {"product_id": product, "quantity": 1, "unit_price": 30, "category": category}
    return {"order_id": order_id, "items": [line]}


def _order_key(record: dict) -> tuple[str, str]:
    return record["user_id"], record.get("fired_at") or record["converted_at"]


async def test_birthday_and_custom_triggers_live_equal_replay() -> None:
    shell = Shell(RULES, at())
    await shell.follow(
        [
            Ev(at(), "preferences_updated", "u1", {"birthday": "11-25", "timezone": "Asia/Tokyo"}),
            Ev(at(minutes=5), "order_placed", "u1", _order("o1", "shoe", "running_shoes")),
            Ev(at(minutes=6), "order_placed", "u2", _order("o2", "shoe", "running_shoes")),
            Ev(at(hours=30), "order_placed", "u2", _order("o3", "sock", "socks")),
            Ev(at(hours=31), "cart_item_added", "u3", {"product_id": "p1", "unit_price": 9}),
        ],
        at(days=4),
    )
    live = sorted(shell.audit(), key=_order_key)
    replayed = sorted(shell.replay_json(at(days=4)), key=_order_key)
    assert live == replayed
    decided = {
        (r["trigger"], r["user_id"], r.get("stage")) for r in live if r["kind"] == "decision"
    }
    assert decided >= {("birthday", "u1", 1), ("socks", "u1", 1), ("socks", "u1", 2)}
    assert ("socks", "u2", 2) not in decided  # the socks order cancelled stage 2
