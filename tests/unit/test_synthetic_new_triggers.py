"""Synthetic traffic for the triggers of contract 7 (``new_triggers=True``): catalog changes,
wishlists and birthdays that the project's own parsers accept, added to the default traffic
without changing it, deterministic per seed, and enough to make ``nudge replay`` decide
``birthday``, ``back_in_stock`` and ``price_drop``."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from cli.main import main
from simulation.new_triggers import birthday
from simulation.synthetic import CATALOG, event_lines, generate_events
from stream.settings import Settings
from stream.simulate import route, route_line, topic_map
from triggers.event_fields import is_birthday
from triggers.events import (
    INPUT_TOPIC_OF_TYPE,
    ProductUpdated,
    parse_catalog_event,
    parse_event,
)

pytestmark = pytest.mark.unit

START = datetime(2026, 11, 1, tzinfo=UTC)
LIST_PRICE = {p.product_id: p.price for p in CATALOG}
NEW_TRIGGER_RULES = """\
version: synthetic-new-triggers
triggers:
  birthday: {enabled: true}
  back_in_stock: {enabled: true}
  price_drop: {enabled: true}
"""


@pytest.fixture(scope="module")
def events() -> list[dict[str, Any]]:
    return list(generate_events(users=400, seed=5, start=START, days=30, new_triggers=True))


def test_every_event_is_valid_under_the_project_parsers(events: list[dict[str, Any]]) -> None:
    kinds = Counter(event["type"] for event in events)
    assert kinds["product_updated"] > 300 and kinds["wishlist_added"] > 50
    for event in events:
        raw = orjson.dumps(event)
        if event["type"] == ProductUpdated.type:
            parsed: Any = parse_catalog_event(raw)
            assert "user_id" not in event
            assert parsed.product_id == event["product_id"]
        else:
            parsed = parse_event(raw)
            assert parsed.user_id == event["user_id"]
        assert parsed.type == event["type"]


def test_birthdays_come_in_both_forms_and_are_real_dates(events: list[dict[str, Any]]) -> None:
    birthdays = [e["birthday"] for e in events if "birthday" in e]
    users = {e["user_id"] for e in events if "birthday" in e}
    assert len(users) > 60  # about a third of the shoppers, on their first visit
    assert {len(b) for b in birthdays} == {5, 10}  # "MM-DD" and "YYYY-MM-DD"
    assert all(is_birthday(b) for b in birthdays)


def test_every_drawn_birthday_is_a_real_date_feb_29_included() -> None:
    rng = random.Random(2026)
    drawn = [birthday(rng) for _ in range(20_000)]
    assert all(is_birthday(day) for day in drawn)
    leap = [day for day in drawn if day.endswith("02-29")]
    assert {len(day) for day in leap} == {5, 10}  # "02-29" and "YYYY-02-29" (a leap year)


def test_wishlists_follow_a_view_of_the_product_at_its_list_price(
    events: list[dict[str, Any]],
) -> None:
    viewed: defaultdict[str, set[str]] = defaultdict(set)
    for event in events:
        if event["type"] == "product_viewed":
            viewed[event["user_id"]].add(event["product_id"])
        elif event["type"] == "wishlist_added":
            assert event["product_id"] in viewed[event["user_id"]]
            assert event["price"] == LIST_PRICE[event["product_id"]]
            assert event["event_id"].startswith(f"{event['user_id']}-x")


def test_the_catalog_restocks_and_runs_sales_that_end(events: list[dict[str, Any]]) -> None:
    by_product: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        if event["type"] == ProductUpdated.type:
            by_product[event["product_id"]].append(event)
    assert set(by_product) == set(LIST_PRICE)  # every product is listed at the start
    restocks = sales = sale_ends = 0
    for product_id, changes in by_product.items():
        first, *rest = changes
        assert (first["price"], first["in_stock"]) == (LIST_PRICE[product_id], True)
        in_stock, price = True, first["price"]
        for change in rest:
            if "in_stock" in change:
                assert change["in_stock"] != in_stock  # every stock event changes the stock
                restocks += change["in_stock"]
                in_stock = change["in_stock"]
            else:
                if change["price"] < LIST_PRICE[product_id]:
                    assert price == LIST_PRICE[product_id]
                    assert change["price"] <= 0.91 * LIST_PRICE[product_id]  # >= 10 % off
                    sales += 1
                else:
                    assert change["price"] == LIST_PRICE[product_id] != price
                    sale_ends += 1
                price = change["price"]
    assert restocks > 30 and sales > 30 and sale_ends > 10


def test_the_default_traffic_is_kept_whole_and_in_order() -> None:
    """The extra events are only added: the default traffic is a subsequence of it."""
    default = list(event_lines(generate_events(users=200, seed=9, start=START, days=20)))
    extended = event_lines(
        generate_events(users=200, seed=9, start=START, days=20, new_triggers=True)
    )
    remaining = iter(extended)
    assert all(any(line == other for other in remaining) for line in default)


def test_same_seed_same_bytes_another_seed_differs() -> None:
    def run(seed: int, users: int = 150) -> list[bytes]:
        events = generate_events(users=users, seed=seed, start=START, days=15, new_triggers=True)
        return list(event_lines(events))

    assert run(4) == run(4)
    assert run(4) != run(5)
    # The catalog is the shop's, not the shoppers': the same for any number of them.
    catalog = [line for line in run(4) if b'"product_updated"' in line]
    assert catalog == [line for line in run(4, users=20) if b'"product_updated"' in line]


def test_simulate_keys_catalog_events_by_product_on_the_catalog_topic() -> None:
    settings = Settings(
        topic_catalog="x.catalog", topic_browse="x.browse", topic_engagement="x.engagement"
    )
    topics = topic_map(settings)
    assert set(topics) == {*INPUT_TOPIC_OF_TYPE, ProductUpdated.type}
    # Section 8's input from a file: feedback to the engagement topic, erasures to prefs.
    feedback = {"type": "message_opened", "user_id": "u2", "trigger_id": "t", "channel": "push"}
    assert route(feedback, topics) == (b"u2", "x.engagement")
    assert route({"type": "user_erased", "user_id": "u3"}, topics) == (b"u3", "shop.prefs")
    catalog = {"type": "product_updated", "product_id": "p1", "event_id": "c1", "ts": 0}
    assert route(catalog, topics) == (b"p1", "x.catalog")
    wish = {"type": "wishlist_added", "user_id": "u1", "product_id": "p1"}
    assert route(wish, topics) == (b"u1", "x.browse")
    line = orjson.dumps({**catalog, "ts": "2026-11-01T00:00:00Z"})
    key, topic, value, ts = route_line(line, topics, settings)
    assert (key, topic, value) == (b"p1", "x.catalog", line)
    assert ts == datetime(2026, 11, 1, tzinfo=UTC)


def test_nudge_replay_of_the_traffic_decides_the_new_triggers(
    events: list[dict[str, Any]], tmp_path: Path
) -> None:
    source, rules, out = tmp_path / "events.jsonl", tmp_path / "rules.yaml", tmp_path / "out"
    source.write_bytes(b"".join(event_lines(events)))
    rules.write_text(NEW_TRIGGER_RULES)
    assert main(["replay", str(source), "--rules", str(rules), "--out", str(out)]) == 0
    sent: Counter[str] = Counter()
    for line in out.read_bytes().splitlines():
        record = orjson.loads(line)
        if record["kind"] == "decision" and record["status"] == "sent":
            sent[record["trigger"]] += 1
            if record["trigger"] == "price_drop":
                context = record["context"]
                assert context["new_price"] < context["old_price"]
    assert sent["birthday"] >= 3
    assert sent["back_in_stock"] > 50 and sent["price_drop"] > 50
