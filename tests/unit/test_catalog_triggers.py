"""Back in stock and price drop (contract 7.3) in replay: a mixed JSON Lines stream of user
and catalog events; event time decides who is a recipient; an order of the product or the
product going back (out of stock, price up) cancels."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.timelines import Timeline, at, iso, make_rules
from triggers.records import Decision, record_to_json
from triggers.replay import replay_lines

pytestmark = pytest.mark.unit

BOTH = {
    "back_in_stock": {"enabled": True, "stages": ["2h"]},
    "price_drop": {"enabled": True, "stages": ["1h"], "min_drop_percent": 10},
}


def catalog(t: Timeline, ts: Any, event_id: str, product: str = "p1", **fields: Any) -> list:
    line = orjson.dumps(
        {"event_id": event_id, "type": "product_updated", "ts": iso(ts), "product_id": product}
        | fields
    )
    out = t.replay.feed_line(line)
    t.records += out
    return out


def timeline(**triggers: Any) -> Timeline:
    return Timeline(make_rules(only=(), triggers=triggers or BOTH))


def test_a_restock_with_three_interested_users() -> None:
    t = timeline()
    catalog(t, at(0), "c0", in_stock=False, price=100, category="shoes")
    t.view(at(hours=1), "p1", user="u1", price=100)
    t.send("wishlist_added", at(hours=2), user="u2", product_id="p1", price=100)
    t.add(at(hours=3), "p1", price=100.0, user="u3")
    catalog(t, at(hours=5), "c1", in_stock=True)
    t.order(at(hours=6), "o1", ["p1"], user="u1")  # ordered after the restock: cancelled
    t.view(at(hours=5, minutes=30), "p1", user="u4")  # viewed after the restock: not a recipient
    t.advance(at(days=1))
    decisions = t.decisions("back_in_stock")
    assert [(d.user_id, iso(d.due_at), d.status) for d in decisions] == [
        ("u2", "2026-11-23T09:00:00Z", "sent"),
        ("u3", "2026-11-23T09:00:00Z", "sent"),
    ]
    assert decisions[0].context == {"product_id": "p1", "category": "shoes"}
    assert decisions[0].trigger_id != decisions[1].trigger_id


def test_interest_outside_the_window_or_a_product_out_of_stock_again() -> None:
    t = timeline(back_in_stock={"enabled": True, "stages": ["2h"], "interest_window": "1d"})
    catalog(t, at(0), "c0", in_stock=False)
    t.view(at(0), "p1", user="old")
    t.view(at(days=2), "p1", user="u1")
    catalog(t, at(days=2, hours=1), "c1", in_stock=True)
    assert sorted(p.trigger for p in t.state("u1").pending) == ["back_in_stock"]
    assert t.state("old").pending == ()
    catalog(t, at(days=2, hours=2), "c2", in_stock=False)  # gone again before the stage
    t.advance(at(days=4))
    assert t.decisions("back_in_stock") == []


def test_first_stock_event_of_a_product_is_no_restock_and_duplicates_change_nothing() -> None:
    t = timeline()
    t.view(at(0), "p1", user="u1")
    catalog(t, at(hours=1), "c1", in_stock=True)  # stock was unknown
    assert t.state("u1").pending == ()
    catalog(t, at(hours=2), "c2", in_stock=False)
    catalog(t, at(hours=3), "c3", in_stock=True)
    catalog(t, at(hours=3), "c3", in_stock=True)  # re-sent
    t.advance(at(days=1))
    assert len(t.decisions("back_in_stock")) == 1
    assert t.replay.summary.duplicate == 1


def test_a_price_drop_and_a_price_that_rises_back() -> None:
    t = timeline()
    catalog(t, at(0), "c0", price=100, in_stock=True, category="coats")
    t.view(at(hours=1), "p1", user="u1", price=100)
    t.view(at(hours=1), "p1", user="u2", price=95)
    catalog(t, at(hours=2), "c1", price=88)  # 12% below 100, 7.4% below 95
    assert [p.trigger for p in t.state("u1").pending] == ["price_drop"]
    assert t.state("u2").pending == ()
    catalog(t, at(hours=2, minutes=30), "c2", price=100)  # back up before the 1h stage
    t.advance(at(days=1))
    assert t.decisions("price_drop") == []
    catalog(t, at(days=1), "c3", price=80)  # 20% below what u1 saw, 15.8% below u2's
    t.advance(at(days=2))
    decision, other = t.decisions("price_drop")
    assert (decision.user_id, other.user_id) == ("u1", "u2")
    assert other.context["old_price"] == 95
    assert decision.context == {
        "product_id": "p1",
        "category": "coats",
        "old_price": 100,
        "new_price": 80,
    }
    assert iso(decision.due_at) == iso(at(days=1, hours=1))


def test_a_price_rise_that_stays_below_the_price_seen_keeps_the_drop() -> None:
    t = timeline()
    catalog(t, at(0), "c0", price=100)
    t.view(at(hours=1), "p1", user="u1", price=100)
    catalog(t, at(hours=2), "c1", price=70)
    catalog(t, at(hours=2, minutes=10), "c2", price=80)
    t.advance(at(days=1))
    assert [d.user_id for d in t.decisions("price_drop")] == ["u1"]


QUIET = {"quiet_hours": {"start": "20:00", "end": "08:00"}}  # UTC; T0 is 02:00


@pytest.mark.parametrize("stages", [BOTH, {name: {"enabled": True} for name in BOTH}])
def test_a_stage_deferred_by_quiet_hours_is_cancelled_by_an_out_of_stock_or_a_rise_meanwhile(
    stages: dict[str, Any],
) -> None:
    t = Timeline(make_rules(only=(), triggers=stages, contact_policy=QUIET))
    for product in ("p1", "p2"):
        catalog(t, at(0), f"c0{product}", product, in_stock=False, price=100)
        t.view(at(minutes=10), product, price=100)
        catalog(t, at(hours=1), f"c1{product}", product, in_stock=True, price=80)
    t.advance(at(hours=3, minutes=30))  # every stage due (at most 2h), deferred to 08:00
    assert t.decisions() == []
    assert {iso(p.send_at) for p in t.state().pending} == {"2026-11-23T08:00:00Z"}
    catalog(t, at(hours=4), "c2", "p1", in_stock=False)  # p1's restock is over
    catalog(t, at(hours=4, minutes=10), "c3", "p1", price=100)  # and its drop
    t.advance(at(days=1))
    assert [(d.trigger, d.context["product_id"], iso(d.fired_at)) for d in t.decisions()] == [
        ("back_in_stock", "p2", "2026-11-23T08:00:00Z"),
        ("price_drop", "p2", "2026-11-23T08:00:00Z"),
    ]


def test_off_by_default_catalog_lines_are_read_and_change_nothing() -> None:
    t = Timeline(make_rules())
    catalog(t, at(0), "c0", in_stock=False)
    t.view(at(hours=1), "p1", user="u1")
    catalog(t, at(hours=2), "c1", in_stock=True)
    assert t.replay.summary.processed == 3 and t.replay.summary.invalid == 0
    assert [p.trigger for p in t.state("u1").pending] == ["browse_abandonment"]


def test_a_catalog_line_with_a_bad_field_is_reported_as_the_catalog_parser_says() -> None:
    result = replay_lines(
        [
            b'{"event_id":"c","type":"product_updated","ts":"2026-01-01T00:00:00Z","price":-1,'
            b'"product_id":"p"}'
        ],
        make_rules(),
    )
    assert [reason for _, reason, _ in result.invalid] == ["invalid_value"]


EVENT = st.tuples(
    st.sampled_from(["view", "order", "restock", "unstock", "price"]),
    st.integers(0, 72),  # tens of minutes: within 12h, so orders fall between arming and due
    st.sampled_from(["u1", "u2"]),
    st.sampled_from(["p1", "p1", "p2"]),
    st.integers(50, 120),
)


def _lines(script: list[tuple[str, int, str, str, int]]) -> list[bytes]:
    lines = []
    for n, (kind, hours, user, product, price) in enumerate(script):
        ts = iso(at(minutes=10 * hours))
        base = {"event_id": f"e{n}", "ts": ts}
        if kind == "view":
            body = {
                "type": "product_viewed",
                "user_id": user,
                "product_id": product,
                "price": price,
            }
        elif kind == "order":
            items = [{"product_id": product, "quantity": 1, "unit_price": price}]
            body = {"type": "order_placed", "user_id": user, "order_id": f"o{n}", "items": items}
        else:
            body = {"type": "product_updated", "product_id": product}
            body |= {"in_stock": kind == "restock"} if kind != "price" else {"price": price}
        lines.append(orjson.dumps(base | body))
    return lines


@settings(max_examples=150, deadline=None)
@given(st.lists(EVENT, min_size=10, max_size=40))
def test_no_reminder_after_an_order_of_the_product_and_same_input_same_output(
    script: list[tuple[str, int, str, str, int]],
) -> None:
    rules = make_rules(only=(), triggers=BOTH)
    # every product starts out of stock at a known price: restocks and drops can happen
    start = [("unstock", 0, "u1", p, 0) for p in ("p1", "p2")]
    start += [("price", 0, "u1", p, 120) for p in ("p1", "p2")]
    script = start + sorted(script, key=lambda e: e[1])
    lines = _lines(script)
    first = replay_lines(lines, rules, until=at(days=2))
    again = replay_lines(lines, rules, until=at(days=2))
    assert [record_to_json(r) for r in first.records] == [record_to_json(r) for r in again.records]
    orders: dict[tuple[str, str], list] = {}
    for kind, hours, user, product, _ in script:
        if kind == "order":
            orders.setdefault((user, product), []).append(at(minutes=10 * hours))
    for record in first.records:
        if isinstance(record, Decision) and record.status == "sent":
            product = record.context["product_id"]
            armed = record.due_at - (
                timedelta(hours=2) if record.trigger == "back_in_stock" else timedelta(hours=1)
            )
            for ordered in orders.get((record.user_id, product), []):
                # (an order at the due time itself comes after: stages due by T fire first)
                assert not armed < ordered < record.fired_at, (record, ordered)


def test_states_with_catalog_and_custom_stages_round_trip() -> None:
    from triggers.state import decode_state, encode_state

    rules = make_rules(
        only=(),
        triggers=BOTH
        | {
            "birthday": {"enabled": True},
            "custom": {"x": {"enabled": True, "when": {"type": "product_viewed"}}},
        },
    )
    t = Timeline(rules)
    t.send("preferences_updated", at(0), birthday="02-29")
    catalog(t, at(0), "c0", in_stock=False, price=100)
    t.view(at(hours=1), "p1", price=100)
    catalog(t, at(hours=1), "c1", in_stock=True, price=50)
    state = t.state()
    assert sorted(p.trigger for p in state.pending) == [
        "back_in_stock",
        "birthday",
        "price_drop",
        "x",
    ]
    assert decode_state(encode_state(state)) == state
