"""Parity: the same event file through ``nudge replay`` and through the live worker.

Events are produced at their own timestamps (wall clock), so the worker sees a
real shop; replay runs the file on an event-time clock. Both must reach the
same decisions (with channels, and delivery feedback on the engagement topic moving
consent). Each user's events are 1.3 s apart, so no event lands within
100 ms of one of that user's stage deadlines (delays are whole seconds): the
order between "stage due" and "next event" is never a matter of milliseconds.
"""

from __future__ import annotations

import asyncio
import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.integration.harness import WorkerGroup, produce, read_all, replay_records

pytestmark = pytest.mark.integration

RULES = """
version: 3
default_timezone: UTC
channels:
  push: {frequency_cap: {max: 2, per: 1h}}
  email: {}
  sms: {consent: opt_in}
triggers:
  cart_abandonment:        {stages: [3s, 6s], cooldown: 1h}
  browse_abandonment:      {stages: [2s], cooldown: 1h}
  replenishment:           {fire_at_fraction: 0.5, products: {p-1: 10s}, learn_from_history: false}
  first_purchase_followup: {stages: [4s]}
  lapsing:                 {enabled: false}
  dormancy:                {stages: [8s], audience: all}
contact_policy:
  frequency_cap: {max: 50, per: 1h}
  max_delay: 1h
  holdout_percent: 20
  attribution_window: 1h
"""
USERS = 40
FEEDBACK = ["message_delivered", "message_opened", "message_unsubscribed", "message_bounced"]
GAP = 1.3  # seconds between a user's events


def scripted_events(start: datetime, seed: int = 11) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    for u in range(USERS):
        user = f"shopper-{u:02d}"
        at = start + timedelta(seconds=rng.uniform(0, 1.2))
        cart: dict[str, float] = {}
        orders: list[str] = []
        for i in range(rng.randint(2, 7)):
            product = rng.choice(["p-1", "p-2", "p-3"])
            kind = rng.choices(
                [
                    "product_viewed",
                    "cart_item_added",
                    "cart_item_removed",
                    "checkout_started",
                    "order_placed",
                    "order_cancelled",
                    "preferences_updated",
                    "feedback",
                ],
                weights=[5, 5, 1, 2, 3, 1, 1, 2],
            )[0]
            fields: dict[str, Any] = {}
            if kind == "product_viewed":
                fields = {"product_id": product, "category": "coffee", "price": 9.5}
            elif kind == "cart_item_added":
                fields = {"product_id": product, "quantity": 1, "unit_price": 9.5}
                cart[product] = 9.5
            elif kind == "cart_item_removed":
                fields = {"product_id": product}
                cart.pop(product, None)
            elif kind == "order_placed":
                lines = cart or {product: 9.5}
                fields = {
                    "order_id": f"{user}-o{i}",
                    "items": [
                        {"product_id": p, "quantity": 1, "unit_price": v} for p, v in lines.items()
                    ],
                }
                orders.append(fields["order_id"])
                cart = {}
            elif kind == "order_cancelled":
                if not orders:
                    continue
                fields = {"order_id": orders.pop()}
            elif kind == "preferences_updated":
                fields = {"marketing_opt_in": rng.random() < 0.7}
                if rng.random() < 0.5:
                    fields["channels"] = {"sms": True, "push": rng.random() < 0.5}
            elif kind == "feedback":  # delivery feedback (contract 8.3), some withdrawing consent
                kind = rng.choice(FEEDBACK)
                fields = {"trigger_id": f"t-{user}-{i}", "channel": rng.choice(["push", "email"])}
                if kind == "message_bounced":
                    fields["bounce"] = rng.choice(["hard", "soft"])
            events.append(
                {
                    "event_id": f"{user}-e{i}",
                    "type": kind,
                    "user_id": user,
                    "ts": at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                    **fields,
                }
            )
            at += timedelta(seconds=GAP)
    events.sort(key=lambda e: (e["ts"], e["user_id"]))
    return events


async def produce_on_time(group: WorkerGroup, events: list[dict[str, Any]]) -> None:
    for event in events:
        due = datetime.fromisoformat(event["ts"])
        wait = (due - datetime.now(UTC)).total_seconds()
        if wait > 0:
            await asyncio.sleep(wait)
        await produce(group, [event])


def decision_keys(records: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
    return {
        (r["trigger_id"], r["trigger"], r["stage"], r["user_id"], r["status"], r["channel"])
        for r in records
        if r["kind"] == "decision"
    } | {
        (r["kind"], r["type"], r["user_id"], r["channel"], r["at"])
        for r in records
        if r["kind"] == "engagement"
    }


async def test_live_worker_matches_replay(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    group = WorkerGroup(kafka_bootstrap, redis_url, rules, tmp_path)
    try:
        group.start()
        start = datetime.now(UTC) + timedelta(seconds=1)
        events = scripted_events(start)
        events_file = tmp_path / "events.jsonl"
        events_file.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
        await produce_on_time(group, events)
        last = datetime.fromisoformat(events[-1]["ts"])
        until = last + timedelta(seconds=12)  # past every stage the last events can arm
        await asyncio.sleep(max(0.0, (until - datetime.now(UTC)).total_seconds()) + 2)
        audit = await read_all(group, "audit")
    finally:
        group.stop_all()

    expected = replay_records(events_file, rules, until)
    live, oracle = decision_keys(audit), decision_keys(expected)
    assert len(oracle) >= USERS  # the script really exercises the engine
    assert {k[4] for k in oracle if len(k) == 6} >= {"sent", "suppressed"}
    assert {k[5] for k in oracle if len(k) == 6} >= {"push", "email", None}  # channels moved
    assert sum(k[0] == "engagement" for k in oracle) >= 10
    print(f"parity: {len(oracle)} decisions", file=sys.stderr)
    assert live - oracle == set(), "live decisions replay did not make"
    assert oracle - live == set(), "replay decisions the live worker did not make"
