"""The engine API the live service relies on: outcomes, duplicates, test events, late events,
determinism across restarts, next_due."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.unit.timelines import Timeline, at, make_rules, wire
from triggers.engine import Engine, OutsideFacts
from triggers.events import parse_event
from triggers.records import Decision, record_to_json
from triggers.state import UserState, decode_state, encode_state

pytestmark = pytest.mark.unit


def event(kind: str, ts, event_id: str, user: str = "u1", **fields):
    return parse_event(wire(kind, ts, user, event_id, **fields))


def test_a_duplicate_event_changes_nothing() -> None:
    engine = Engine(make_rules())
    first = engine.on_event(None, event("cart_item_added", at(), "e1", product_id="p1"), at())
    assert first.outcome == "processed"
    again = engine.on_event(
        first.state, event("cart_item_added", at(minutes=5), "e1", product_id="p2"), at()
    )
    assert again.outcome == "duplicate"
    assert again.state is first.state and again.records == ()
    assert again.next_due == first.next_due


def test_at_least_the_256_most_recent_event_ids_are_remembered() -> None:
    engine = Engine(make_rules(only=()))
    state = None
    for n in range(300):
        state = engine.on_event(
            state, event("search", at(seconds=n), f"e{n}", query="q"), at()
        ).state
    outcomes = [
        engine.on_event(state, event("search", at(), f"e{n}", query="q"), at()).outcome
        for n in range(300)
    ]
    assert outcomes[300 - 256 :] == ["duplicate"] * 256
    assert outcomes[: 300 - 256] == ["processed"] * 44  # older ids are forgotten: bounded state
    assert len(state.seen) == 256 * 8


def test_test_events_are_ignored_entirely() -> None:
    engine = Engine(make_rules())
    state = engine.on_event(None, event("search", at(), "e1", query="q"), at()).state
    step = engine.on_event(
        state,
        event(
            "order_placed",
            at(minutes=1),
            "e2",
            order_id="o1",
            test=True,
            items=[{"product_id": "p", "quantity": 1, "unit_price": 5}],
        ),
        at(),
    )
    assert step.outcome == "test" and step.state is state and step.records == ()
    # not even remembered as seen: the same id without the flag is processed
    replay = engine.on_event(state, event("search", at(minutes=2), "e2", query="q"), at(minutes=2))
    assert replay.outcome == "processed"


def test_a_test_event_for_a_new_user_gives_an_empty_state() -> None:
    engine = Engine(make_rules())
    step = engine.on_event(None, event("search", at(), "e1", query="q", test=True), at())
    assert (step.outcome, step.state, step.next_due) == ("test", UserState("u1"), None)


def test_on_event_never_fires_a_stage_and_reports_what_is_already_due() -> None:
    engine = Engine(make_rules(only=("cart_abandonment",)))
    late = event("cart_item_added", at(), "e1", product_id="p1")
    step = engine.on_event(None, late, at(hours=3))  # processed 3 hours after it happened
    assert step.records == ()
    assert step.next_due == at(hours=1) and step.next_due <= at(hours=3)
    fired = engine.on_time(step.state, at(hours=3))
    assert [(d.stage, d.status, d.fired_at) for d in fired.records] == [(1, "sent", at(hours=3))]
    assert fired.outcome == "fired" and fired.next_due == at(hours=24)


def test_on_time_fires_in_send_time_order_then_priority() -> None:
    rules = make_rules(
        triggers={
            "cart_abandonment": {"stages": ["2h"], "priority": 10},
            "browse_abandonment": {"stages": ["2h"], "priority": 90},
            "dormancy": {"audience": "all", "stages": ["1h"]},
        },
        contact_policy={"frequency_cap": {"max": 5, "per": "1d"}},
    )
    engine = Engine(rules)
    state = engine.on_event(None, event("product_viewed", at(), "e1", product_id="a"), at()).state
    state = engine.on_event(state, event("cart_item_added", at(), "e2", product_id="b"), at()).state
    step = engine.on_time(state, at(hours=5))
    assert [d.trigger for d in step.records] == [
        "dormancy",  # due 1h
        "browse_abandonment",  # due 2h, priority 90
        "cart_abandonment",  # due 2h, priority 10
    ]


def test_an_event_for_another_user_is_refused() -> None:
    engine = Engine(make_rules())
    state = engine.on_event(None, event("search", at(), "e1", query="q"), at()).state
    with pytest.raises(ValueError, match="u2"):
        engine.on_event(state, event("search", at(), "e2", user="u2", query="q"), at())


def test_stages_of_a_trigger_disabled_after_arming_are_dropped() -> None:
    armed = Engine(make_rules(only=("cart_abandonment",)))
    state = armed.on_event(None, event("cart_item_added", at(), "e1", product_id="p"), at()).state
    disabled = Engine(make_rules(only=()))
    step = disabled.on_time(state, at(hours=2))
    assert step.records == () and step.state.pending == () and step.next_due is None


def test_a_restart_in_the_middle_gives_the_same_records() -> None:
    """Encoding the state between calls (as the live service's table does) changes nothing."""
    rules = make_rules(
        default_timezone="Asia/Shanghai",
        contact_policy={"quiet_hours": {"start": "21:00", "end": "08:00"}},
    )
    script = [
        event("product_viewed", at(), "e1", product_id="p1"),
        event("cart_item_added", at(minutes=5), "e2", product_id="p1", unit_price=9.5),
        event("preferences_updated", at(minutes=6), "e3", timezone="Europe/Paris"),
        event(
            "order_placed",
            at(hours=30),
            "e4",
            order_id="o1",
            items=[{"product_id": "p1", "quantity": 1, "unit_price": 9.5}],
        ),
        event(
            "order_placed",
            at(days=10),
            "e5",
            order_id="o2",
            items=[{"product_id": "p1", "quantity": 1, "unit_price": 9.5}],
        ),
        event("order_cancelled", at(days=11), "e6", order_id="o2"),
    ]

    def run(restart: bool) -> list[bytes]:
        engine = Engine(rules)
        state, out = None, []
        for ev in script:
            if state is not None:
                due = engine.next_due(state)
                while due is not None and due <= ev.ts:
                    step = engine.on_time(state, due)
                    state, due = step.state, step.next_due
                    out += step.records
            step = engine.on_event(state, ev, ev.ts)
            state = step.state
            out += step.records
            if restart:
                state = decode_state(encode_state(state))
        step = engine.on_time(state, at(days=200))
        return [record_to_json(r) for r in out + list(step.records)]

    plain, restarted = run(False), run(True)
    assert plain == restarted
    assert len(plain) >= 4


def test_next_due_includes_deferred_and_dormancy_stages() -> None:
    rules = make_rules(only=("dormancy",), triggers={"dormancy": {"audience": "all"}})
    engine = Engine(rules)
    step = engine.on_event(None, event("search", at(), "e1", query="q"), at())
    assert step.next_due == at(days=30)
    assert engine.next_due(step.state) == at(days=30)
    fired = engine.on_time(step.state, at(days=30))
    assert [d.stage for d in fired.records if isinstance(d, Decision)] == [1]
    assert fired.next_due == at(days=60)


def test_outside_contacts_in_the_future_are_not_counted() -> None:
    engine = Engine(make_rules(only=("browse_abandonment",)))
    state = engine.on_event(None, event("product_viewed", at(), "e1", product_id="p"), at()).state
    now = at(hours=2)
    facts = OutsideFacts(contacts=(now + timedelta(minutes=1), now + timedelta(minutes=2)))
    assert [d.status for d in engine.on_time(state, now, facts).records] == ["sent"]


def test_replay_and_live_style_calls_give_the_same_trigger_ids() -> None:
    tl = Timeline(make_rules(only=("cart_abandonment",)))
    tl.send("cart_item_added", at(), event_id="cart-1", product_id="p1")
    tl.advance(at(hours=2))
    engine = Engine(make_rules(only=("cart_abandonment",)))
    state = engine.on_event(
        None, event("cart_item_added", at(), "cart-1", product_id="p1"), at(seconds=3)
    ).state
    live = engine.on_time(state, at(hours=1, seconds=2))  # reached 2 s late on a live tick
    assert [d.trigger_id for d in live.records] == [d.trigger_id for d in tl.decisions()]


def test_on_time_until_fires_only_what_replay_would_fire_before_a_late_event() -> None:
    # The live service processes an event with time T late (after a restart): it first
    # fires the stages due by T, reached now, and leaves later ones for after the event.
    engine = Engine(make_rules(only=("cart_abandonment",)))
    added = parse_event(wire("cart_item_added", at(), "u1", "e1", product_id="p1", unit_price=5))
    state = engine.on_event(None, added, at()).state
    now = at(hours=30)
    step = engine.on_time(state, now, until=at(hours=2))
    assert [(d.stage, d.due_at, d.fired_at) for d in step.records] == [(1, at(hours=1), now)]
    assert step.next_due == at(hours=24)
