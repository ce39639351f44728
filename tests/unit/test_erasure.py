"""Erasure and retention (contract 8.5): ``user_erased`` deletes everything of the user in
the engine and leaves an erasure memory; late events older than it are ignored; later
ones start a new shopper; retention deletes idle users without a record. Scripted
timelines through replay, and the driver's API for the live shell."""

from __future__ import annotations

from datetime import timedelta

import orjson
import pytest

from tests.unit.timelines import Timeline, at, brief, iso, make_rules, wire
from triggers.driver import Driver
from triggers.events import parse_event
from triggers.records import Erasure, record_to_json
from triggers.replay import replay_lines
from triggers.state import UserState, decode_state, encode_state
from triggers.steps import BEFORE_ERASURE, ERASED, NO_FACTS

pytestmark = pytest.mark.unit


def cart_rules(**top: object):
    return make_rules(
        only=("cart_abandonment",),
        default_timezone="UTC",
        triggers={"cart_abandonment": {"stages": ["1h", "2h"], "cooldown": 0}},
        **top,
    )


def test_an_erasure_mid_episode_ends_it_and_leaves_only_the_memory() -> None:
    tl = Timeline(cart_rules())
    tl.add(at())
    tl.send("preferences_updated", at(minutes=1), channels={"sms": True}, timezone="UTC")
    tl.advance(at(hours=1, minutes=30))  # stage 1 sent
    tl.send("user_erased", at(hours=1, minutes=45))
    tl.advance(at(days=3))
    assert [brief(d)[1:3] for d in tl.decisions()] == [(1, "sent")]  # no stage 2
    erasure = tl.records[-1]
    assert isinstance(erasure, Erasure)
    assert orjson.loads(record_to_json(erasure)) == {
        "kind": "erasure",
        "user_id": "u1",
        "erased_at": iso(at(hours=1, minutes=45)),
    }
    assert tl.state() == UserState("u1", erased_at=at(hours=1, minutes=45))
    assert decode_state(encode_state(tl.state())) == tl.state()
    assert tl.replay.summary.erasures == 1


def test_a_stage_deferred_by_quiet_hours_is_erased_with_the_rest() -> None:
    rules = cart_rules(contact_policy={"quiet_hours": {"start": "21:00", "end": "08:00"}})
    tl = Timeline(rules)
    tl.add(at(hours=19, minutes=30))  # 21:30Z: both stages deferred to 08:00
    tl.send("user_erased", at(hours=23))
    tl.advance(at(days=2))
    assert tl.decisions() == []


def test_stages_due_before_the_erasure_are_decided_before_it() -> None:
    tl = Timeline(cart_rules())
    tl.add(at())
    out = tl.send("user_erased", at(hours=1))  # stage 1 due at the erasure's own time
    assert [type(r).__name__ for r in out] == ["Decision", "Erasure"]


def test_held_decisions_are_erased_and_never_released() -> None:
    driver = Driver(cart_rules())
    add = parse_event(wire("cart_item_added", at(), "u1", "e1", product_id="p1"))
    state = driver.event(None, add, at(), NO_FACTS, at()).state
    held = driver.time(state, at(hours=1), at(hours=1), None)  # Redis unknown: held
    assert held.records == () and len(held.state.held) == 1
    erase = parse_event(wire("user_erased", at(hours=1, minutes=5), "u1", "e2"))
    erased = driver.event(held.state, erase, at(hours=1, minutes=5), NO_FACTS, at(hours=2))
    assert erased.outcome == ERASED and erased.changed
    assert [type(r) for r in erased.records][-1] is Erasure
    assert erased.state == UserState("u1", erased_at=at(hours=1, minutes=5))
    assert erased.wake is None


def test_late_events_older_than_the_erasure_are_ignored_later_ones_start_a_new_shopper() -> None:
    tl = Timeline(cart_rules())
    tl.add(at())
    tl.send("user_erased", at(minutes=30))
    tl.add(at(minutes=10), "p2")  # older than the erasure, delivered late: ignored
    tl.send("message_unsubscribed", at(minutes=20), trigger_id="t", channel="push")
    tl.send("user_erased", at(minutes=30), event_id="again")  # a re-sent erasure too
    assert tl.state() == UserState("u1", erased_at=at(minutes=30))
    assert tl.replay.summary.before_erasure == 3
    tl.add(at(hours=5), "p3")  # a new shopper
    tl.advance(at(hours=8))
    decisions = tl.decisions()
    assert [(d.stage, d.context["lines"][0]["product_id"]) for d in decisions] == [
        (1, "p3"),
        (2, "p3"),
    ]
    assert tl.state().erased_at == at(minutes=30)  # still remembered for late events


def test_the_erasure_memory_ends_after_erasure_memory() -> None:
    tl = Timeline(cart_rules(erasure_memory="2d"))
    tl.send("user_erased", at())
    tl.advance(at(days=1))
    assert "u1" in tl.replay.states
    tl.advance(at(days=2, seconds=1))
    assert "u1" not in tl.replay.states  # nothing else was kept: deleted without a record
    assert [type(r) for r in tl.records] == [Erasure]
    assert tl.replay.summary.expired == 1
    tl.add(at(minutes=-5))  # memory over: an old event is a new shopper's
    assert tl.state().cart.lines[0].product_id == "p1"


def test_a_new_shopper_forgets_the_memory_once_it_is_over() -> None:
    tl = Timeline(cart_rules(erasure_memory="1d"))
    tl.send("user_erased", at())
    tl.send("search", at(hours=1), query="socks")
    tl.send("search", at(days=2), query="shoes")
    assert tl.state().erased_at is None


def test_an_erasure_of_an_unknown_user_is_recorded_and_remembered() -> None:
    result = replay_lines(
        [
            wire("user_erased", at(), "ghost", "e1"),
            wire("cart_item_added", at(minutes=-1), "ghost", "e2", product_id="p1"),
        ],
        cart_rules(),
        until=at(days=1),
    )
    assert [orjson.loads(record_to_json(r))["kind"] for r in result.records] == ["erasure"]
    assert result.summary.before_erasure == 1


def test_an_erasure_removes_the_users_catalog_interest() -> None:
    rules = make_rules(only=("back_in_stock",), triggers={"back_in_stock": {"enabled": True}})
    lines = [
        wire("product_viewed", at(), "u1", "v1", product_id="p1"),
        wire("product_viewed", at(), "u2", "v2", product_id="p1"),
        wire("user_erased", at(minutes=5), "u1", "x1"),
        orjson.dumps(
            {"event_id": "c1", "type": "product_updated", "ts": iso(at(minutes=6)),
             "product_id": "p1", "in_stock": False}
        ),
        orjson.dumps(
            {"event_id": "c2", "type": "product_updated", "ts": iso(at(minutes=7)),
             "product_id": "p1", "in_stock": True}
        ),
    ]  # fmt: skip
    result = replay_lines(lines, rules, until=at(days=1))
    decisions = [r for r in result.records if type(r).__name__ == "Decision"]
    assert [d.user_id for d in decisions] == ["u2"]


# --- retention -------------------------------------------------------------------------------


def test_retention_deletes_an_idle_user_without_a_record() -> None:
    tl = Timeline(cart_rules(retention="10d"))
    tl.add(at())
    tl.send("message_opened", at(days=1), trigger_id="t", channel="push")  # an event too
    tl.advance(at(days=11) - timedelta(seconds=1))
    assert "u1" in tl.replay.states
    tl.advance(at(days=11))
    assert "u1" not in tl.replay.states
    assert [type(r).__name__ for r in tl.records] == ["Decision", "Decision", "Engagement"]
    assert tl.replay.summary.expired == 1
    tl.add(at(days=12))  # a new shopper, nothing remembered (no erasure memory either)
    assert tl.state().erased_at is None and tl.state().contacts.recent == ()


def test_retention_counts_from_the_last_decision_and_waits_for_pending_stages() -> None:
    rules = make_rules(
        only=("cart_abandonment",),
        triggers={"cart_abandonment": {"stages": ["1h", "5d"], "cooldown": 0}},
        retention="2d",
    )
    tl = Timeline(rules)
    tl.add(at())
    tl.advance(at(days=4))
    assert "u1" in tl.replay.states  # stage 2 still pending
    tl.advance(at(days=7) - timedelta(seconds=1))  # stage 2 decided at 5d (+ 0s)
    assert "u1" in tl.replay.states
    tl.advance(at(days=7, hours=1))
    assert "u1" not in tl.replay.states
    assert len(tl.decisions()) == 2


def test_the_driver_tells_the_shell_when_a_user_expires() -> None:
    driver = Driver(cart_rules(retention="3d"))
    add = parse_event(wire("cart_item_added", at(), "u1", "e1", product_id="p1"))
    advance = driver.event(None, add, at(), NO_FACTS, at())
    assert driver.expires_at(advance.state) is None  # a stage is pending
    fired = driver.time(advance.state, at(hours=2), at(hours=2), NO_FACTS)
    assert driver.expires_at(fired.state) == at(hours=2, days=3)
    assert not driver.expired(fired.state, at(days=3))
    assert driver.expired(fired.state, at(hours=2, days=3))
    erase = parse_event(wire("user_erased", at(days=1), "u1", "e2"))
    erased = driver.event(fired.state, erase, at(days=1), NO_FACTS, at(days=1))
    assert driver.expires_at(erased.state) == at(days=31)  # the default erasure memory
    old = parse_event(wire("search", at(hours=3), "u1", "e3", query="q"))
    ignored = driver.event(erased.state, old, at(days=2), NO_FACTS, at(days=2))
    assert ignored.outcome == BEFORE_ERASURE and not ignored.changed


def test_without_retention_nobody_expires() -> None:
    driver = Driver(cart_rules())
    state = UserState("u1", last_activity=at())
    assert driver.expires_at(state) is None
    assert encode_state(state)[1:2] == b"\x9d"  # no section 8 field: stored as before
