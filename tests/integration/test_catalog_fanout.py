"""The live catalog fan-out on real Kafka and Redis: a mixed stream of user and catalog
events, produced at their own times to a worker subprocess, gives replay's decisions —
every field but ``fired_at`` (live sends at the wall clock's tick, replay exactly when
due; the unit tests on fakes compare that too, in step with replay's clock).

The catalog topic has 3 partitions, the worker 4: catalog events are re-keyed by product
(``nudge.rekeyed``) to the product side. The stream: a restock of p1 with three interested
users, of whom one orders after the
restock and one is interested only after it; a price drop, a price that rises back (the
drop is cancelled), a second drop; carts of other users meanwhile (cart abandonment). A
fourth user interested in p1 is erased before the restock (contract 8.5): no record, and
the products table's changelog keeps nothing of them but tombstones and the erasure memory.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream.catalog_wire import SEP, decode_forget
from tests.integration.harness import (
    WorkerGroup,
    changelog_records,
    produce,
    read_all,
    replay_records,
)

pytestmark = pytest.mark.integration

RULES = """
version: 1
default_timezone: UTC
triggers:
  cart_abandonment:        {stages: [3s], cooldown: 1h}
  browse_abandonment:      {enabled: false}
  replenishment:           {enabled: false}
  first_purchase_followup: {enabled: false}
  lapsing:                 {enabled: false}
  dormancy:                {enabled: false}
  back_in_stock:           {enabled: true, stages: [2s], interest_window: 1h}
  price_drop:              {enabled: true, stages: [2s], interest_window: 1h, min_drop_percent: 10}
contact_policy:
  frequency_cap: {max: 50, per: 1h}
  max_delay: 1h
"""


def stream(start: datetime) -> list[dict[str, Any]]:
    def ts(seconds: float) -> str:
        moment = start + timedelta(seconds=seconds)
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def catalog(at: float, event_id: str, product: str, **fields: Any) -> dict[str, Any]:
        body = {"event_id": event_id, "type": "product_updated", "ts": ts(at)}
        return body | {"product_id": product} | fields

    def user(at: float, event_id: str, kind: str, user_id: str, **fields: Any) -> dict[str, Any]:
        return {"event_id": event_id, "type": kind, "user_id": user_id, "ts": ts(at)} | fields

    line = {"product_id": "p1", "quantity": 1, "unit_price": 100}
    events = [
        catalog(0.0, "c0", "p1", in_stock=False, price=100, category="shoes"),
        catalog(0.1, "c1", "p2", in_stock=True, price=50),
        user(0.5, "e1", "cart_item_added", "u9", product_id="p2", unit_price=50),
        user(1.0, "e2", "product_viewed", "u1", product_id="p1", price=100),
        user(1.6, "e3", "wishlist_added", "u2", product_id="p1", price=100),
        user(2.2, "e4", "cart_item_added", "u3", product_id="p1", unit_price=100),
        user(2.5, "e8", "wishlist_added", "u5", product_id="p1", price=100),
        user(3.0, "e9", "user_erased", "u5"),  # before the restock: no recipient
        catalog(4.0, "c2", "p1", in_stock=True),  # restock: u1, u2, u3 (due 6.0)
        user(4.6, "e5", "product_viewed", "u4", product_id="p1", price=100),  # after: no
        user(5.2, "e6", "order_placed", "u1", order_id="o1", items=[line]),  # cancels u1
        user(5.5, "e7", "cart_item_added", "u8", product_id="p2", unit_price=50),
        catalog(7.0, "c3", "p1", price=80),  # drop: u2, u3, u4 (due 9.0)
        catalog(8.0, "c4", "p1", price=100),  # rises back: cancelled
        catalog(10.0, "c5", "p1", price=85),  # drop again (due 12.0)
        catalog(10.5, "c6", "p2", price=40),  # u8's and u9's cart price was 50 (due 12.5)
    ]
    return events


async def produce_on_time(group: WorkerGroup, events: list[dict[str, Any]]) -> None:
    for event in events:
        due = datetime.fromisoformat(event["ts"])
        wait = (due - datetime.now(UTC)).total_seconds()
        if wait > 0:
            await asyncio.sleep(wait)
        await produce(group, [event])


def without_fired_at(records: list[dict[str, Any]]) -> list[bytes]:
    return sorted(
        orjson.dumps({k: v for k, v in r.items() if k != "fired_at"}, option=orjson.OPT_SORT_KEYS)
        for r in records
        if r["kind"] == "decision"
    )


async def product_rows(group: WorkerGroup, user: str) -> dict[bytes, list[bytes | None]]:
    """The products changelog's records of the user's rows, per key in offset order."""
    suffix = (SEP + user).encode()
    return await changelog_records(group, "products", lambda key: key.endswith(suffix))


async def test_live_fan_out_matches_replay(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    # The catalog topic as a shop may have it (contract 9): 3 partitions against the
    # worker's 4, so most catalog events are re-keyed to their product's partition.
    group = WorkerGroup(
        kafka_bootstrap, redis_url, rules, tmp_path, catalog=True, input_counts={"catalog": 3}
    )
    try:
        group.start()
        start = datetime.now(UTC) + timedelta(seconds=2)
        events = stream(start)
        events_file = tmp_path / "events.jsonl"
        events_file.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
        await produce_on_time(group, events)
        until = start + timedelta(seconds=16)
        await asyncio.sleep(max(0.0, (until - datetime.now(UTC)).total_seconds()) + 3)
        audit = await read_all(group, "audit")
        erased = await product_rows(group, "u5")
        metrics = group.workers[0].metrics()
        log = group.workers[0].log_tail(200)
    finally:
        group.stop_all()

    expected = replay_records(events_file, rules, until)
    decided = sorted(
        (r["trigger"], r["user_id"], (r["context"] or {}).get("new_price"))
        for r in expected
        if r["kind"] == "decision" and r["trigger"] in ("back_in_stock", "price_drop")
    )
    assert decided == [
        ("back_in_stock", "u2", None),
        ("back_in_stock", "u3", None),
        ("price_drop", "u2", 85),
        ("price_drop", "u3", 85),
        ("price_drop", "u4", 85),
        ("price_drop", "u8", 40),
        ("price_drop", "u9", 40),
    ]
    print(f"catalog parity: {len(expected)} decisions", file=sys.stderr)
    rekeyed = [
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("nudge_input_rekeyed_messages_total{") and ".catalog" in line
    ]
    assert rekeyed == [float(sum(e["type"] == "product_updated" for e in events))], metrics
    assert without_fired_at(audit) == without_fired_at(expected), log
    # u5's interest row is deleted: its last changelog record is a tombstone (the row itself
    # is on the changelog first unless it was written and deleted within one batch, which
    # a loaded machine's bigger batches do); what is left is the erasure memory (one row
    # per partition: the user id and the erasure time, as in the users table).
    interest = [k for k in erased if k.startswith(b"i")]
    assert interest and all(erased[k][-1] is None for k in interest), erased
    kept = {k: v[-1] for k, v in erased.items() if v[-1] is not None}
    assert all(k.startswith(b"e") for k in kept) and len(kept) == group.partitions, erased
    assert {decode_forget(v).ts for v in kept.values() if v} == {
        datetime.fromisoformat(next(e["ts"] for e in events if e["event_id"] == "e9"))
    }
