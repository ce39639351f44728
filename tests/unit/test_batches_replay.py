"""The live shell (:mod:`stream.batches`) against ``nudge replay`` on the same events, and
while Redis is down (held decisions, the issue's quiet-hours example).

Live reaches a stage at ``now`` (a tick, a batch) and replay exactly when it is due, so
records are compared without ``fired_at`` (``Rec``) — or whole, when the clock ticks
at replay's due times (``Shell.follow``) — and per user (across users, live emits in
batch order, replay in due-time order).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.shell_fakes import BROWSE, CART, ORDER, PREFS, TOPICS
from tests.unit.shell_harness import Ev, Shell, by_user
from tests.unit.timelines import at, iso, make_rules
from triggers.rules import Rules

pytestmark = pytest.mark.unit

CART_ONLY = make_rules(only=("cart_abandonment",))


# --- live equals replay --------------------------------------------------------------------


async def test_an_order_read_in_a_later_batch_than_a_later_cart_event_is_applied_first() -> None:
    shell = Shell(CART_ONLY, at())
    shell.order(at(minutes=-10), "o0", "u9")  # the order topic has been read before
    shell.add(at(), "u1")
    await shell.poll()
    shell.clock.set(at(hours=1))
    await shell.tick()  # stage 1 sent at its due time
    shell.order(at(hours=1, minutes=30), "o1", "u1")
    shell.add(at(hours=1, minutes=30, seconds=20), "u1", product="p2")  # a new cart
    shell.clock.set(at(hours=1, minutes=30, seconds=21))
    await shell.poll([CART])  # the cart event is fetched first: it waits for the order
    assert shell.batches.waiting() == 1 and shell.committed()[(CART, 0)] == 1
    await shell.poll([ORDER])
    await shell.settle(at(hours=30))
    assert shell.records() == shell.replay(at(hours=30))
    kinds = [(r.kind, r.stage or r.arm) for r in shell.records()]
    assert kinds == [("decision", 1), ("conversion", "treatment"), ("decision", 1), ("decision", 2)]


async def test_a_cancelling_order_read_late_cancels_as_in_replay() -> None:
    shell = Shell(CART_ONLY, at(hours=3))
    shell.add(at(), "u1")
    shell.order(at(minutes=30), "o1", "u1")
    await shell.poll([CART])
    shell.produce(TOPICS.ticks, b"")
    await shell.poll([TOPICS.ticks])  # the horizon does not pass the unread order topic
    await shell.poll([ORDER])
    await shell.settle(at(hours=30))
    assert shell.records() == shell.replay(at(hours=30)) == []


def backlog(shell: Shell) -> None:
    """Two hours of a few users' shopping on every topic, read after the fact."""
    shell.event("preferences_updated", at(minutes=1), "u3", marketing_opt_in=False)
    for index, user in enumerate(("u1", "u2", "u3", "u4")):
        shell.event("product_viewed", at(minutes=2 + index), user, product_id="p1")
        shell.add(at(minutes=10 + index), user)
    shell.event("product_viewed", at(minutes=20), "u5", product_id="p5")
    shell.order(at(minutes=40), "o1", "u1")  # before its reminder: cancels it
    shell.event("cart_item_removed", at(hours=1, minutes=5), "u4", product_id="p1")
    shell.event("preferences_updated", at(hours=1, minutes=50), "u4", marketing_opt_in=False)


@pytest.mark.parametrize(
    "order", [(BROWSE, CART, ORDER, PREFS), (PREFS, ORDER, CART, BROWSE), (ORDER, BROWSE)]
)
async def test_a_backlog_delivered_topic_by_topic_gives_replays_records(
    order: tuple[str, ...],
) -> None:
    rules = make_rules(only=("cart_abandonment", "browse_abandonment"))
    shell = Shell(rules, at(hours=2))
    backlog(shell)
    for topic in order:
        await shell.poll([topic])
    await shell.tick()
    assert shell.batches.waiting() == 0
    # Reminders due during the backlog went out as it was read (fired_at: now); an order
    # placed after that converts, live as in replay.
    shell.order(at(hours=2, minutes=30), "o2", "u2")
    await shell.settle(at(hours=30))
    assert by_user(shell.records()) == by_user(shell.replay(at(hours=30)))
    reasons = [(r.trigger, r.user, r.status, r.reason) for r in shell.records()]
    assert ("cart_abandonment", "u2", "sent", None) in reasons
    assert ("cart_abandonment", "u3", "suppressed", "opted_out") in reasons
    assert any(r.kind == "conversion" and r.user == "u2" for r in shell.records())


async def test_ticks_at_due_times_give_replays_records_fired_at_included() -> None:
    rules = make_rules(
        only=("cart_abandonment", "browse_abandonment", "first_purchase_followup"),
        contact_policy={"frequency_cap": {"max": 2, "per": "24h"}},
    )
    shell = Shell(rules, at())
    order = {"order_id": "o1", "items": [{"product_id": "p1", "quantity": 1, "unit_price": 9}]}
    await shell.follow(
        [
            Ev(at(), "cart_item_added", "u1", {"product_id": "p1", "unit_price": 9}),
            Ev(at(minutes=3), "product_viewed", "u2", {"product_id": "p1"}),
            Ev(at(minutes=89), "order_placed", "u1", order),
            Ev(at(minutes=119), "cart_item_added", "u2", {"product_id": "p3"}),
            Ev(at(hours=20), "product_viewed", "u2", {"product_id": "p4"}),
        ],
        at(hours=40),
    )
    live = sorted(shell.audit(), key=lambda r: r["user_id"])
    assert live == sorted(shell.replay_json(at(hours=40)), key=lambda r: r["user_id"])
    assert {(r["kind"], r.get("status"), r.get("reason")) for r in live} == {
        ("decision", "sent", None),
        ("decision", "suppressed", "cooldown"),
        ("decision", "suppressed", "frequency_cap"),
        ("conversion", None, None),
    }


# --- Redis down --------------------------------------------------------------------------


async def test_decisions_are_held_while_redis_is_down_and_released_when_it_is_back() -> None:
    shell = Shell(CART_ONLY, at())
    shell.add(at(), "u1")
    shell.add(at(minutes=1), "u2")
    await shell.poll()
    shell.ledger.down = True
    shell.clock.set(at(hours=1, minutes=5))
    await shell.tick()
    assert shell.triggers() == [] and shell.audit() == []  # nothing sent unchecked
    held = shell.state("u1")
    assert held is not None and [d.fired_at for d in held.held] == [at(hours=1, minutes=5)]
    assert shell.batches.partition_gauges()[0] == (2, 2)
    shell.clock.set(at(hours=3))
    await shell.tick()  # still down: still held, asked again (after the backoff)
    assert shell.triggers() == []
    shell.ledger.down = False
    shell.clock.set(at(hours=4))
    await shell.tick()
    assert len(shell.sent_ids()) == 2
    released = shell.audit()
    assert {r["fired_at"] for r in released} == {iso(at(hours=4))}
    assert {r["due_at"] for r in released} == {iso(at(hours=1)), iso(at(hours=1, minutes=1))}
    assert shell.ledger.sent == set(shell.sent_ids())
    assert shell.batches.partition_gauges()[0] == (2, 0)  # stage 2 pending, nothing held
    assert by_user(shell.records()) == by_user(shell.replay(at(hours=4)))


async def test_a_held_decision_is_stale_after_max_delay_from_its_send_time() -> None:
    shell = Shell(CART_ONLY, at())
    shell.add(at(), "u1")
    await shell.poll()
    shell.ledger.down = True
    shell.clock.set(at(hours=2))  # reached an hour late, within max_delay (6h)
    await shell.tick()
    shell.clock.set(at(hours=8, seconds=1))  # 6h and 1s after the send time
    shell.ledger.down = False
    await shell.tick()
    (decision,) = shell.audit()
    assert (decision["status"], decision["reason"]) == ("suppressed", "stale")
    assert shell.triggers() == []


async def test_users_suppressed_meanwhile_are_opted_out_on_release() -> None:
    shell = Shell(CART_ONLY, at())
    shell.add(at(), "u1")
    await shell.poll()
    shell.ledger.down = True
    shell.clock.set(at(hours=1, minutes=1))
    await shell.tick()
    shell.ledger.suppressed.add("u1")
    shell.ledger.down = False
    shell.clock.set(at(hours=1, minutes=10))
    await shell.tick()
    (decision,) = shell.audit()
    assert (decision["status"], decision["reason"]) == ("suppressed", "opted_out")
    assert shell.records() == shell.replay(at(hours=1, minutes=10))


SHANGHAI = make_rules(
    only=("cart_abandonment",),
    default_timezone="Asia/Shanghai",
    contact_policy={"quiet_hours": {"start": "21:00", "end": "08:00"}},
)
#: 08:00 in Shanghai on the night after T0.
MORNING = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)


async def run_quiet_night(rules: Rules, *, order_at: datetime, suppressed: bool) -> Shell:
    """The issue's example: a cart stage deferred by quiet hours to 08:00, Redis down
    08:00-08:05, ticks every minute; then an order."""
    shell = Shell(rules, at(hours=10, minutes=30), grace_ms=250)
    shell.add(at(hours=10, minutes=30), "u1")  # 20:30 local; stage 1 due 21:30, quiet
    if suppressed:
        shell.ledger.suppressed.add("u1")
    await shell.poll()
    shell.clock.set(MORNING - timedelta(minutes=1))
    await shell.tick()
    for minute in range(0, 11):
        shell.ledger.down = minute < 5
        moment = MORNING + timedelta(minutes=minute)
        if moment - timedelta(minutes=1) < order_at <= moment:
            shell.order(order_at, "o1", "u1")
        shell.clock.set(moment + timedelta(seconds=1))
        await shell.tick()
    if order_at > MORNING + timedelta(minutes=10):
        shell.clock.set(order_at + timedelta(seconds=1))
        shell.order(order_at, "o1", "u1")
    await shell.settle(MORNING + timedelta(hours=2))
    return shell


@pytest.mark.parametrize("suppressed", [False, True], ids=["sent", "opted-out"])
@pytest.mark.parametrize(
    "order_at",
    [MORNING + timedelta(minutes=30), MORNING + timedelta(minutes=2, seconds=30)],
    ids=["order-after-release", "order-while-held"],
)
async def test_a_quiet_hours_stage_reached_while_redis_is_down(
    order_at: datetime, suppressed: bool
) -> None:
    shell = await run_quiet_night(SHANGHAI, order_at=order_at, suppressed=suppressed)
    decisions = [r for r in shell.audit() if r["kind"] == "decision"]
    assert [(d["stage"], d["due_at"]) for d in decisions] == [(1, iso(at(hours=11, minutes=30)))]
    (decision,) = decisions
    conversions = [r for r in shell.audit() if r["kind"] == "conversion"]
    if suppressed:
        assert (decision["status"], decision["reason"]) == ("suppressed", "opted_out")
    else:  # stale neither from the due time (10.5h ago) nor because Redis was down
        assert (decision["status"], decision["reason"]) == ("sent", None)
        assert decision["fired_at"] == iso(MORNING + timedelta(minutes=5, seconds=1))
    if suppressed or order_at < MORNING + timedelta(minutes=5):
        # Only a decision that was sent is converted: not one suppressed, nor one held
        # when the order came.
        assert conversions == []
    else:
        assert [(c["trigger_id"], c["arm"]) for c in conversions] == [
            (decision["trigger_id"], "treatment")
        ]
    if order_at > MORNING + timedelta(minutes=5):
        # The same records as replay (status, trigger id; fired_at is the send time).
        assert shell.records() == shell.replay(MORNING + timedelta(hours=2))
    assert shell.sent_ids() == ([] if suppressed else [decision["trigger_id"]])


# --- random interleavings ------------------------------------------------------------------

USERS = ("u1", "u2")
POLL = st.tuples(st.sets(st.sampled_from(TOPICS.inputs), min_size=1), st.integers(1, 3))


def shop_event(second: int, user: str, kind: str) -> Ev:
    moment = at(seconds=second)
    if kind == "view":
        return Ev(moment, "product_viewed", user, {"product_id": "p1"})
    if kind == "add":
        return Ev(moment, "cart_item_added", user, {"product_id": f"p{second % 3}"})
    if kind == "remove":
        return Ev(moment, "cart_item_removed", user, {"product_id": "p1"})
    if kind == "order":
        items = [{"product_id": p, "quantity": 1, "unit_price": 5} for p in ("p1", "p2")]
        return Ev(moment, "order_placed", user, {"order_id": f"o{second}", "items": items})
    return Ev(moment, "preferences_updated", user, {"marketing_opt_in": second % 2 == 0})


@st.composite
def timelines(draw: st.DrawFn) -> tuple[list[Ev], list[bool], list[list[Any]]]:
    """Events of two users at distinct seconds over three hours, where the groups they
    are produced in end, and the batches each group is read in."""
    seconds = draw(st.lists(st.integers(0, 3 * 3600), min_size=1, max_size=14, unique=True))
    kinds = st.sampled_from(("view", "add", "add", "remove", "order", "prefs"))
    events = [shop_event(s, draw(st.sampled_from(USERS)), draw(kinds)) for s in seconds]
    cuts = draw(st.lists(st.booleans(), min_size=len(events), max_size=len(events)))
    polls = draw(st.lists(st.lists(POLL, max_size=4), max_size=len(events)))
    return events, cuts, polls


async def follow_timeline(
    events: list[Ev], cuts: list[bool], polls: list[list[Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rules = make_rules(
        only=("cart_abandonment", "browse_abandonment", "first_purchase_followup"),
        contact_policy={"holdout_percent": 20},
    )
    shell = Shell(rules, at())
    await shell.follow(events, at(hours=40), cuts=cuts, polls=polls)
    assert shell.batches.waiting() == 0 and shell.all_acked()

    def users(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return sorted(records, key=lambda r: r["user_id"])

    return users(shell.audit()), users(shell.replay_json(at(hours=40)))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(timelines())
def test_any_interleaving_of_topics_and_batches_gives_replays_records(
    timeline: tuple[list[Ev], list[bool], list[list[Any]]],
) -> None:
    """Whatever the groups and batches a user's events arrive in over the four topics,
    with the clock ticking when replay reaches a stage: replay's records, byte for byte."""
    live, replayed = asyncio.run(follow_timeline(*timeline))
    assert live == replayed
