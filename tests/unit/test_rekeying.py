"""Re-keying on fakes (``stream.rekeying``, contract section 9): input topics of any counts,
messages on any partition; live records equal replay's, nothing lost or applied twice,
also across a crash after any single effect of the checkpoint."""

from __future__ import annotations

import random

import pytest

from stream.catalog_wire import partition_of
from tests.unit.rekey_harness import REKEYED, Planned, RekeyShell
from tests.unit.shell_fakes import BROWSE, CART, ORDER, PREFS
from tests.unit.shell_harness import by_user
from tests.unit.timelines import at, make_rules

pytestmark = pytest.mark.unit

CART_ONLY = make_rules(only=("cart_abandonment",))
SHOP = make_rules(
    only=("cart_abandonment", "browse_abandonment", "first_purchase_followup", "dormancy")
)
MIXED = {BROWSE: 3, CART: 2, ORDER: 1, PREFS: 5}
UNTIL = at(days=3)


def other(user: str, partitions: int = 2) -> int:
    """A partition that is not the user's."""
    return (partition_of(user.encode(), partitions) + 1) % partitions


async def test_a_shopper_split_across_two_partitions_gets_no_reminder_after_buying() -> None:
    # The report: the cart add on one partition, the order 1 s later on the other.
    shell = RekeyShell(CART_ONLY, at(), counts={})
    for n in range(20):
        user = f"u{n}"
        shell.on(other(user), "cart_item_added", at(seconds=n), user, product_id="p1")
        items = [{"product_id": "p1", "quantity": 1, "unit_price": 10.0}]
        own = 1 - other(user)
        shell.on(own, "order_placed", at(seconds=n + 1), user, order_id=f"o{n}", items=items)
    shell.clock.set(at(seconds=30))
    await shell.tick()
    await shell.settle(UNTIL)
    assert [r for r in shell.records() if r.trigger == "cart_abandonment"] == []
    assert shell.records() == shell.replay(UNTIL)
    assert shell.forwarded == [CART] * 20  # only the misplaced ones crossed
    assert shell.all_acked()


def shop_plan(counts: dict[str, int], seed: int, users: int = 12) -> list[Planned]:
    """Random shoppers on random partitions of topics with other counts."""
    rng = random.Random(seed)
    topic = {"product_viewed": BROWSE, "cart_item_added": CART, "order_placed": ORDER}
    plan = []
    for n in range(users):
        user = f"s{n}"
        t = rng.randint(0, 600)
        for step in range(rng.randint(2, 6)):
            t += rng.randint(1, 3_000)
            kind = rng.choice(
                ["product_viewed", "cart_item_added", "cart_item_added", "order_placed"]
            )
            fields: dict = {"product_id": f"p{rng.randint(1, 3)}"}
            if kind == "order_placed":
                items = [{"product_id": fields["product_id"], "quantity": 1, "unit_price": 20.0}]
                fields = {"order_id": f"o{n}-{step}", "items": items}
            partition = rng.randrange(counts[topic[kind]])
            plan.append(Planned(at(seconds=t), kind, user, partition, fields))
    return plan


@pytest.mark.parametrize("everything", [False, True])
async def test_topics_of_other_counts_and_random_keys_give_replays_records(
    everything: bool,
) -> None:
    shell = RekeyShell(SHOP, at(), counts=MIXED, everything=everything)
    await shell.play(shop_plan(shell.counts, seed=7), UNTIL)
    await shell.settle(UNTIL)
    assert shell.audit() and by_user(shell.records()) == by_user(shell.replay(UNTIL))
    assert shell.all_acked() and shell.batches.waiting() == 0
    total = len(shell.events)
    assert len(shell.forwarded) == total if everything else 0 < len(shell.forwarded) < total


async def test_a_backlog_read_at_once_is_applied_in_event_time_order() -> None:
    # A worker assigned after it all happened (a restart's backlog): every decision as
    # replay's, fired late (records compared as sets per user: conversions need the
    # send time, and fired_at is the late live time, so they are left out here).
    shell = RekeyShell(SHOP, at(hours=6), counts=MIXED)
    for e in shop_plan(shell.counts, seed=8):
        shell.on(e.partition, e.kind, e.ts, e.user, **e.fields)
    await shell.tick()
    await shell.settle(UNTIL)
    decisions = sorted(r for r in shell.records() if r.kind == "decision")
    assert decisions == sorted(r for r in shell.replay(UNTIL) if r.kind == "decision")


async def test_a_deadline_never_fires_ahead_of_a_forwarded_event_on_its_way() -> None:
    shell = RekeyShell(CART_ONLY, at(), counts={CART: 2, ORDER: 1})
    user = "u1"
    mine = partition_of(user.encode(), 2)
    shell.on(mine, "cart_item_added", at(), user, product_id="p1")
    await shell.tick()
    items = [{"product_id": "p1", "quantity": 1, "unit_price": 10.0}]
    shell.on(0, "order_placed", at(minutes=59), user, order_id="o1", items=items)
    shell.clock.set(at(hours=1, minutes=1))
    # Only the user's partition and the order topic are read: the order is forwarded, and
    # the cart stage (due at 1 h) waits for its mark instead of firing first.
    await shell.poll([CART, ORDER])
    assert shell.triggers() == []
    await shell.tick()
    await shell.settle(UNTIL)
    assert shell.records() == shell.replay(UNTIL) == []


async def run_crashing(crash_after: int | None) -> RekeyShell:
    shell = RekeyShell(SHOP, at(), counts=MIXED)
    if crash_after is not None:
        shell.journal.crash_after = crash_after
    await shell.play(shop_plan(shell.counts, seed=3, users=6), UNTIL)
    await shell.settle(UNTIL)
    return shell


def outcome(shell: RekeyShell) -> tuple[list, list[str]]:
    """Audit records may repeat after a crash (same id); sent ones never."""
    return sorted(set(shell.records())), sorted(shell.sent_ids())


async def test_a_crash_after_any_single_effect_loses_and_repeats_nothing() -> None:
    clean = await run_crashing(None)
    expected = outcome(clean)
    assert expected[0] == sorted(set(by_user(clean.replay(UNTIL))))
    assert expected[1] and len(set(expected[1])) == len(expected[1])
    total = len(clean.journal.entries)
    for point in range(1, total + 1, max(1, total // 60)):
        crashed = await run_crashing(point)
        assert crashed.restarts == 1, point
        assert outcome(crashed) == expected, (point, clean.journal.entries[point - 1])


async def test_marks_cross_the_rekeyed_topic_once_per_interval_with_every_source() -> None:
    shell = RekeyShell(CART_ONLY, at(), counts=MIXED)
    await shell.tick()
    marks = [s for s in shell.broker.sends if s.topic == REKEYED]
    # One record per re-keyed partition and batch (interval 0 here), whatever the sources.
    assert marks and {s.partition for s in marks} == {0, 1}
    assert all(len(s.value) < 200 for s in marks)


def test_sources_are_numbered_topic_by_topic() -> None:
    from stream.rekeying import Sources

    sources = Sources({BROWSE: 3, CART: 2})
    assert sources.total == 5
    assert [sources.id(BROWSE, 2), sources.id(CART, 0), sources.id(CART, 1)] == [2, 3, 4]
