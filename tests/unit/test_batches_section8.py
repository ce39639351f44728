"""The live shell with channels, feedback and erasure (contract 8): replay's records, and
an erased or expired user gone from everything the worker keeps — the changelog (a
tombstone at the end of the erasure memory), the local store, the Redis ledger."""

from __future__ import annotations

import pytest

from tests.unit.shell_fakes import ENGAGEMENT, PREFS, TOPICS
from tests.unit.shell_harness import Shell, by_user
from tests.unit.timelines import at, make_rules
from triggers.rules import Rules
from triggers.state import UserState

pytestmark = pytest.mark.unit


def channel_rules(**top: object) -> Rules:
    return make_rules(
        only=("cart_abandonment",),
        default_timezone="UTC",
        channels={"push": {}, "email": {"cost": 0.001}, "sms": {"consent": "opt_in"}},
        triggers={
            "cart_abandonment": {
                "stages": ["1h", "2h"],
                "cooldown": 0,
                "channels": ["push", "email", "sms"],
            }
        },
        **top,
    )


def metric(shell: Shell, name: str, **labels: str) -> float:
    return shell.registry.get_sample_value(name, labels) or 0.0


def changelog_values(shell: Shell, user: str) -> list[bytes | None]:
    return [s.value for s in shell.broker.log(TOPICS.changelog) if s.key == user.encode()]


async def test_feedback_moves_the_channel_and_is_recorded_as_in_replay() -> None:
    shell = Shell(channel_rules(), at())
    shell.add(at(), "u1")
    shell.add(at(), "u2")
    await shell.poll()
    shell.clock.set(at(hours=1))
    await shell.tick()  # stage 1 to both on push
    sent = {s.json()["user_id"]: s.json() for s in shell.triggers()}
    assert {u: d["channel"] for u, d in sent.items()} == {"u1": "push", "u2": "push"}
    fields = {"trigger_id": sent["u1"]["trigger_id"], "channel": "push"}
    shell.event("message_delivered", at(hours=1, minutes=1), "u1", **fields)
    shell.event("message_unsubscribed", at(hours=1, minutes=2), "u1", **fields)
    shell.event("message_opened", at(hours=1, minutes=3), "u2", trigger_id="x", channel="fax")
    shell.clock.set(at(hours=1, minutes=5))
    await shell.poll()
    await shell.settle(at(hours=5))
    assert by_user(shell.records()) == by_user(shell.replay(at(hours=5)))
    stage2 = {s.json()["user_id"]: s.json()["channel"] for s in shell.triggers()[2:]}
    assert stage2 == {"u1": "email", "u2": "push"}  # u1 unsubscribed from push
    feedback = "nudge_engagement_events_total"
    assert metric(shell, feedback, type="message_delivered", channel="push") == 1
    assert metric(shell, feedback, type="message_opened", channel="other") == 1
    assert shell.committed()[(ENGAGEMENT, 0)] == 3


async def test_an_erased_user_leaves_only_the_memory_then_a_tombstone() -> None:
    shell = Shell(channel_rules(erasure_memory="1d"), at())
    shell.add(at(), "u1")
    shell.add(at(), "u2")
    await shell.poll()
    shell.clock.set(at(hours=1))
    await shell.tick()
    assert shell.ledger.keys_of("u1") and shell.ledger.keys_of("u2")
    shell.event("user_erased", at(hours=1, minutes=30), "u1")
    shell.clock.set(at(hours=1, minutes=31))
    await shell.poll()
    assert shell.ledger.keys_of("u1") == [] and shell.ledger.keys_of("u2")
    assert shell.state("u1") == UserState("u1", erased_at=at(hours=1, minutes=30))
    assert metric(shell, "nudge_erasures_total", cause="user_erased") == 1
    # A late event older than the erasure is ignored; the memory ends after a day.
    shell.add(at(hours=1, minutes=10), "u1", product="p9")
    await shell.settle(at(days=2))
    assert shell.state("u1") is None and changelog_values(shell, "u1")[-1] is None
    assert shell.store.get(b"u1") is None
    assert by_user(shell.records()) == by_user(shell.replay(at(days=2)))
    kinds = [(r.kind, r.stage) for r in by_user(shell.records()) if r.user == "u1"]
    assert kinds == [("decision", 1), ("erasure", None)]
    assert metric(shell, "nudge_erasures_total", cause="retention") == 0  # a memory's end


async def test_retention_deletes_an_idle_user_at_its_time_and_a_later_event_starts_anew() -> None:
    shell = Shell(channel_rules(retention="3d"), at())
    shell.add(at(), "u1")
    await shell.poll()
    await shell.settle(at(days=3, hours=1, minutes=59))  # the last decision at 2h: 3d later
    assert shell.state("u1") is not None
    await shell.settle(at(days=3, hours=2, minutes=30))
    assert shell.state("u1") is None and changelog_values(shell, "u1")[-1] is None
    assert metric(shell, "nudge_erasures_total", cause="retention") == 1
    shell.add(at(days=4), "u1", product="p2")
    shell.clock.set(at(days=4))
    await shell.poll()
    await shell.settle(at(days=5))
    assert by_user(shell.records()) == by_user(shell.replay(at(days=5)))
    assert [r.stage for r in shell.records()] == [1, 2, 1, 2]


async def test_an_event_after_the_expiry_but_before_any_tick_sees_a_new_shopper() -> None:
    rules = channel_rules(retention="1d")
    shell = Shell(rules, at())
    shell.add(at(), "u1")
    await shell.settle(at(hours=3))
    # No tick between the expiry (1d after the last decision) and this event: the
    # event itself finds the user expired, as replay does.
    shell.event("preferences_updated", at(days=2), "u1", channels={"push": False})
    shell.add(at(days=2, minutes=1), "u1", product="p2")
    shell.clock.set(at(days=2, minutes=1))
    await shell.poll()
    await shell.settle(at(days=3))
    assert by_user(shell.records()) == by_user(shell.replay(at(days=3)))
    assert [r.stage for r in shell.records()] == [1, 2, 1, 2]
    assert {s.json()["channel"] for s in shell.triggers()[2:]} == {"email"}


async def test_an_erasure_while_redis_is_down_is_done_when_it_is_back() -> None:
    shell = Shell(channel_rules(), at())
    shell.add(at(), "u1")
    await shell.poll()
    shell.clock.set(at(hours=1))
    await shell.tick()
    shell.ledger.down = True
    shell.event("user_erased", at(hours=1, minutes=30), "u1")
    shell.clock.set(at(hours=1, minutes=31))
    await shell.poll()
    assert shell.ledger.keys_of("u1") and shell.committed()[(PREFS, 0)] == 1
    shell.ledger.down = False
    shell.clock.set(at(hours=1, minutes=40))
    await shell.tick()
    assert shell.ledger.keys_of("u1") == []
