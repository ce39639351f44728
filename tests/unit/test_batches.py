"""The live shell (:mod:`stream.batches`) on fakes: the checkpoint protocol, a crash after each
of its steps, the watermark in a batch, revocation.

Scripted partition timelines (``tests.unit.shell_harness.Shell``): events are produced
to input topic logs, the clock is stepped, and each ``poll`` hands the unread messages
to ``Batches.process`` as one batch. What comes out — output records, changelog
records, the local store and acknowledged offsets — is read from the fakes' journal.
Parity with replay and Redis outages: ``test_batches_replay.py``.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime
from typing import Any

import pytest

from stream.read_positions import RETRY_SEEK_AFTER
from stream.user_rows import unpack_row
from tests.unit.shell_fakes import CART, ORDER, TOPICS, Crash
from tests.unit.shell_harness import Rec, Shell, Step
from tests.unit.timelines import at, make_rules

pytestmark = pytest.mark.unit

CART_ONLY = make_rules(only=("cart_abandonment",))
SHOP = make_rules(
    only=("cart_abandonment", "browse_abandonment", "first_purchase_followup"),
    contact_policy={"holdout_percent": 30},
)
SHOP_NO_HOLDOUT = make_rules(
    only=("cart_abandonment", "browse_abandonment", "first_purchase_followup")
)


def batches_of(kinds: list[str]) -> list[list[str]]:
    """Journal kinds split into batches (a batch ends with its acks)."""
    out: list[list[str]] = [[]]
    for kind in kinds:
        if kind != "ack" and out[-1] and out[-1][-1] == "ack":
            out.append([])
        out[-1].append(kind)
    return out


def assert_checkpoint_order(shell: Shell) -> None:
    """Within each batch: outputs, ledger, changelog, store, acks — never out of this order."""
    rank = {"output": 0, "ledger": 1, "changelog": 2, "store": 3, "ack": 4}
    for batch in batches_of(shell.journal.kinds()):
        ranks = [rank[kind] for kind in batch]
        assert ranks == sorted(ranks), batch


# --- the checkpoint protocol -------------------------------------------------------------


async def test_a_batch_writes_outputs_then_ledger_then_changelog_then_store_then_acks() -> None:
    shell = Shell(SHOP_NO_HOLDOUT, at())
    shell.add(at(), "u1")
    shell.add(at(minutes=1), "u2")
    shell.event("product_viewed", at(minutes=2), "u3", product_id="p7")
    await shell.poll()
    shell.clock.set(at(hours=1, minutes=1))
    await shell.tick()  # both carts' stage 1 fire in this batch
    shell.order(at(hours=1, minutes=30), "o1", "u1")
    shell.clock.set(at(hours=1, minutes=30))
    await shell.poll()  # a conversion and a first-purchase stage armed
    firing = batches_of(shell.journal.kinds())[1]
    assert firing == ["output"] * 4 + ["ledger", "changelog", "changelog", "store", "ack"]
    assert_checkpoint_order(shell)
    assert [(r.kind, r.arm, r.user) for r in shell.records()][-1] == (
        "conversion",
        "treatment",
        "u1",
    )
    assert shell.committed()[(CART, 0)] == 2 and shell.committed()[(ORDER, 0)] == 1


async def test_no_changelog_record_is_sent_before_every_output_is_delivered() -> None:
    shell = Shell(CART_ONLY, at(), auto=False)
    shell.add(at(), "u1")
    shell.add(at(minutes=1), "u2")
    first = asyncio.create_task(shell.poll())
    await _idle()
    assert [s.topic for s in shell.broker.sends] == [TOPICS.changelog] * 2
    assert shell.store.rows == {} and shell.acked == {}  # the changelog is not delivered yet
    shell.broker.resolve_all()
    await first
    assert set(shell.store.rows) == {b"u1", b"u2"} and shell.committed()[(CART, 0)] == 2

    shell.clock.set(at(hours=2))
    task = asyncio.create_task(shell.tick())
    await _idle()
    outputs = [s.topic for s in shell.broker.sends[2:]]
    assert outputs == [TOPICS.audit, TOPICS.triggers, TOPICS.audit, TOPICS.triggers]
    assert shell.ledger.sent == set()  # the ledger waits for the outputs' delivery
    shell.broker.resolve_all()
    await _idle()
    assert len(shell.ledger.sent) == 2
    assert [s.topic for s in shell.broker.sends[6:]] == [TOPICS.changelog] * 2
    assert shell.journal.kinds()[-1] == "changelog"  # store and acks wait for the changelog
    shell.broker.resolve_all()
    await task
    assert shell.journal.kinds()[-2:] == ["store", "ack"]


async def _idle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_exactly_one_changelog_record_per_dirty_user_per_batch() -> None:
    shell = Shell(SHOP, at())
    for minute in range(5):
        shell.add(at(minutes=minute), "u1", product=f"p{minute}")
    shell.event("product_viewed", at(minutes=6), "u2", product_id="p9")
    shell.event("product_viewed", at(minutes=7), "u2", product_id="p8")
    shell.add(at(minutes=8), "u3")
    await shell.poll()
    assert sorted(e[2] for e in shell.journal.entries if e[0] == "changelog") == [
        b"u1",
        b"u2",
        b"u3",
    ]
    assert shell.state("u1") is not None and len(shell.state("u1").cart.lines) == 5  # type: ignore[union-attr]
    # A batch that changes nobody (a re-delivered duplicate, a tick) writes no changelog record.
    before = len(shell.broker.log(TOPICS.changelog))
    shell.event("cart_item_added", at(minutes=9), "u3", event_id="e8", product_id="p1")
    await shell.poll()
    await shell.tick()
    assert len(shell.broker.log(TOPICS.changelog)) == before
    assert shell.committed()[(CART, 0)] == 7  # the duplicate is acknowledged all the same


async def test_the_local_store_is_never_ahead_of_the_changelog() -> None:
    shell = Shell(SHOP, at())
    checks = 0

    async def step(shell: Shell) -> None:
        nonlocal checks
        await shell.poll()
        for key, (partition, value, offset) in shell.store.rows.items():
            record = shell.broker.log(TOPICS.changelog)[offset]
            assert (record.key, record.value, record.partition) == (key, value, partition)
            checks += 1

    for minute in range(0, 180, 7):
        shell.add(at(minutes=minute), f"u{minute % 3}", product=f"p{minute}")
        shell.clock.set(at(minutes=minute))
        await step(shell)
    assert checks > 50


async def test_nothing_is_acked_for_messages_still_waiting_in_the_watermark() -> None:
    shell = Shell(CART_ONLY, at(hours=3))
    shell.order(at(minutes=50), "o1", "u1")
    shell.order(at(hours=1, minutes=10), "o2", "u1")
    shell.add(at(), "u1")
    shell.add(at(minutes=55), "u1", product="p2")
    await shell.poll([ORDER], limit=1)  # the order topic is behind its end, read to 00:50
    await shell.poll([CART])
    assert shell.acked.get((CART, 0)) == {0}  # 00:00 applied; 00:55 waits for the orders
    assert shell.batches.waiting() == 1
    assert shell.committed()[(CART, 0)] == 1
    await shell.poll([ORDER])
    assert shell.committed()[(CART, 0)] == 2 and shell.batches.waiting() == 0
    # The second cart's stage (due 01:55) was not reached before the order at 01:10 in
    # replay; live, the order was applied first too.
    assert shell.records() == shell.replay(at(hours=3))


async def test_a_backlog_batch_fires_every_stage_it_made_due_up_to_the_horizon() -> None:
    shell = Shell(CART_ONLY, at(hours=2))
    for minute, user in enumerate(("u1", "u2", "u3")):
        shell.add(at(minutes=minute), user)
    await shell.poll()  # one batch, no tick after it
    # Each add's stage was cut at the next add's time while the batch was applied; all
    # are due by the horizon (now), so all fire in this batch, not at the next tick.
    assert sorted(s.key for s in shell.triggers()) == [b"u1", b"u2", b"u3"]
    assert shell.batches.pending(0) == 3  # stage 2 each


async def test_a_tick_fires_nothing_beyond_the_watermark_of_a_behind_topic() -> None:
    shell = Shell(CART_ONLY, at(hours=1, minutes=10))
    shell.add(at(), "u1")
    shell.order(at(minutes=30), "o0", "u9")  # another user's order, read
    shell.order(at(minutes=50), "o1", "u1")  # not read yet: it cancels u1's cart
    await shell.poll([CART])
    await shell.poll([ORDER], limit=1)
    shell.produce(TOPICS.ticks, b"")
    await shell.poll([TOPICS.ticks])
    assert shell.triggers() == []  # stage 1 is due 01:00, the order topic is at 00:30
    held_back = shell.registry.get_sample_value(
        "nudge_deadlines_held_back_seconds", {"partition": "0"}
    )
    assert held_back == 40 * 60
    await shell.poll()
    await shell.settle(at(hours=30))
    assert shell.records() == shell.replay(at(hours=30)) == []


# --- crashes -----------------------------------------------------------------------------


def crash_script() -> list[Step]:
    """Several users; stages fired by ticks, a conversion, a holdout, a dead letter."""

    async def produce_first(shell: Shell) -> None:
        shell.add(at(), "u1")
        shell.add(at(minutes=1), "u2")
        shell.add(at(minutes=2), "u3")
        shell.event("product_viewed", at(minutes=3), "u4", product_id="p7")
        shell.add(at(minutes=4), "u5")
        shell.produce(CART, b"{not json", 0, b"u9")

    async def poll(shell: Shell) -> None:
        await shell.poll()

    def clock(moment: datetime) -> Step:
        async def step(shell: Shell) -> None:
            shell.clock.set(moment)

        return step

    async def tick(shell: Shell) -> None:
        await shell.tick()

    async def produce_orders(shell: Shell) -> None:
        shell.order(at(hours=1, minutes=30), "o1", "u1")
        shell.add(at(hours=1, minutes=31), "u3", product="p2")

    return [
        produce_first,
        poll,
        clock(at(hours=1, minutes=5)),
        tick,
        produce_orders,
        clock(at(hours=1, minutes=31)),
        poll,
        clock(at(hours=2, minutes=5)),
        tick,
    ]


SETTLE = at(hours=26)


async def run_crash_script(crash_after: int | None, *, from_changelog: bool = True) -> Shell:
    shell = Shell(SHOP, at())
    shell.journal.crash_after = crash_after
    for step in crash_script():
        try:
            await step(shell)
        except Crash:
            # The new worker reads its backlog at once (the clock has not moved).
            shell.restart(from_changelog=from_changelog)
            await shell.tick()
    await shell.settle(SETTLE)
    return shell


Outcome = tuple[Counter[str], set[Rec], list[tuple[str, int, int, str]]]


def outcome(shell: Shell) -> Outcome:
    """Sent trigger ids (with multiplicity), the audit's distinct records, the messages
    dead-lettered (the audit and dead letters are at-least-once: a decision that was not
    sent, a conversion or a dead letter may be written again after a crash)."""
    letters = [(d["topic"], d["partition"], d["offset"], d["reason"]) for d in shell.dead_letters()]
    return Counter(shell.sent_ids()), set(shell.records()), sorted(set(letters))


@pytest.fixture(scope="module")
def uncrashed() -> tuple[Shell, Outcome]:
    shell = asyncio.run(run_crash_script(None))
    return shell, outcome(shell)


def test_the_crash_script_sends_and_converts_as_replay(uncrashed: tuple[Shell, Any]) -> None:
    shell, (sent, records, letters) = uncrashed
    assert set(shell.records()) == set(shell.replay(SETTLE))
    assert len(shell.records()) == len(shell.replay(SETTLE))
    assert sorted(sent.values()) == [1] * len(sent) and len(sent) >= 4
    assert {r.status for r in records if r.kind == "decision"} == {"sent", "holdout", "suppressed"}
    assert any(r.kind == "conversion" for r in records)
    assert [offset for _, _, offset, _ in letters] == [4]
    assert_checkpoint_order(shell)


@pytest.mark.parametrize("kind", ["output", "ledger", "changelog", "store", "ack"])
@pytest.mark.parametrize("from_changelog", [True, False], ids=["changelog", "local-store"])
async def test_a_crash_right_after_each_checkpoint_step_loses_and_repeats_nothing(
    uncrashed: tuple[Shell, Any], kind: str, from_changelog: bool
) -> None:
    shell, expected = uncrashed
    entries = shell.journal.entries
    # The batch that fires the first reminders: crash after its last entry of `kind`.
    first_send = next(i for i, e in enumerate(entries) if e[:2] == ("output", TOPICS.triggers))
    end = next(i for i in range(first_send, len(entries)) if entries[i][0] == "ack")
    if kind == "ack":
        point = end + 1  # after the first ack (a commit may trail it: the rest is re-read)
    else:
        point = max(i for i in range(first_send, end) if entries[i][0] == kind) + 1
    crashed = await run_crash_script(point, from_changelog=from_changelog)
    assert crashed.restarts == 1
    assert outcome(crashed) == expected


async def test_a_crash_after_any_single_effect_loses_and_repeats_nothing(
    uncrashed: tuple[Shell, Any],
) -> None:
    shell, expected = uncrashed
    total = len(shell.journal.entries)
    for point in range(1, total + 1):
        crashed = await run_crash_script(point)
        assert crashed.restarts == 1, point
        assert outcome(crashed) == expected, (point, shell.journal.entries[point - 1])


async def test_a_failed_delivery_stops_the_batch_before_its_state_and_offsets() -> None:
    shell = Shell(CART_ONLY, at())
    shell.add(at(), "u1")
    await shell.poll()
    changelog_before = len(shell.broker.log(TOPICS.changelog))
    shell.clock.set(at(hours=1, minutes=1))
    shell.broker.fail_next(ConnectionError("broker gone"), topic=TOPICS.triggers)
    with pytest.raises(ConnectionError):
        await shell.tick()
    # The reminder's audit record went out, the reminder did not: no state says it was sent,
    # no mark in Redis, the tick is not acknowledged.
    assert shell.triggers() == [] and shell.ledger.sent == set()
    assert len(shell.broker.log(TOPICS.changelog)) == changelog_before
    assert shell.committed()[(TOPICS.ticks, 0)] == 0
    shell.restart()
    await shell.settle(at(hours=2))
    assert len(shell.sent_ids()) == 1


async def test_a_failed_changelog_write_leaves_the_store_and_offsets_alone() -> None:
    shell = Shell(CART_ONLY, at())
    shell.add(at(), "u1")
    shell.broker.fail_next(ConnectionError("changelog gone"), topic=TOPICS.changelog)
    with pytest.raises(ConnectionError):
        await shell.poll()
    assert shell.store.rows == {} and shell.acked == {}
    shell.restart()
    await shell.settle(at(hours=1, minutes=1))
    assert len(shell.sent_ids()) == 1


async def test_lost_sent_marks_are_covered_by_the_output_topic_after_a_restart() -> None:
    shell = Shell(CART_ONLY, at())
    shell.add(at(), "u1")
    await shell.poll()
    shell.clock.set(at(hours=1, minutes=1))
    shell.ledger.failing.add("record")  # the reminder is out; its mark is lost
    shell.journal.crash_after = len(shell.journal.entries) + 2  # audit, trigger: then killed
    with pytest.raises(Crash):
        await shell.tick()
    assert shell.ledger.sent == set()
    shell.ledger.failing.clear()
    shell.restart()
    await shell.settle(at(hours=1, minutes=2))
    assert len(shell.sent_ids()) == 1


async def test_sent_marks_in_redis_alone_prevent_a_second_send() -> None:
    shell = Shell(CART_ONLY, at())
    shell.add(at(), "u1")
    await shell.poll()
    shell.clock.set(at(hours=1, minutes=1))
    shell.journal.crash_after = len(shell.journal.entries) + 3  # audit, trigger, ledger
    with pytest.raises(Crash):
        await shell.tick()
    shell.restart()
    shell.batches.checkpoint.recently_sent = set()  # the output topic could not be read back
    await shell.settle(at(hours=1, minutes=2))
    assert len(shell.sent_ids()) == 1


# --- the watermark through the shell --------------------------------------------------------


async def test_unparseable_messages_are_dead_lettered_in_offset_order_and_acked() -> None:
    shell = Shell(CART_ONLY, at(hours=1))
    shell.add(at(minutes=20), "u1")
    shell.produce(CART, b"{broken", 0, b"u1")
    shell.add(at(minutes=21), "u2")
    shell.produce(ORDER, b"\xff\xfe", 0, b"u3")
    shell.order(at(minutes=10), "o1", "u4")
    shell.order(at(minutes=30), "o2", "u5")  # unread: the order topic stays behind
    await shell.poll([CART])
    await shell.poll([ORDER], limit=2)
    # The bad order heads its topic: dead-lettered at once. The cart topic waits for the
    # orders (read to 00:10), its broken message in its offset turn.
    assert [(d["topic"], d["offset"]) for d in shell.dead_letters()] == [(ORDER, 0)]
    assert shell.committed()[(CART, 0)] == 0 and shell.committed()[(ORDER, 0)] == 2
    assert shell.batches.waiting() == 3
    await shell.poll()
    assert [(d["topic"], d["offset"]) for d in shell.dead_letters()] == [(ORDER, 0), (CART, 1)]
    assert shell.committed()[(CART, 0)] == 3 and shell.batches.waiting() == 0
    assert [d["reason"] for d in shell.dead_letters()] == ["bad_encoding", "not_json"]


# --- revocation --------------------------------------------------------------------------


async def test_a_revoked_partitions_messages_are_ignored_and_its_series_removed() -> None:
    shell = Shell(CART_ONLY, at(), partitions=(0, 1))
    shell.add(at(), "u1", partition=0)
    shell.add(at(), "u2", partition=1)
    await shell.poll()
    shell.metrics.partitions(shell.batches.partition_gauges())
    sample = shell.registry.get_sample_value
    assert sample("nudge_pending_deadlines", {"partition": "1"}) == 1
    shell.batches.revoked([1])
    assert sample("nudge_pending_deadlines", {"partition": "1"}) is None
    assert sample("nudge_held_decisions", {"partition": "1"}) is None
    assert sample("nudge_deadlines_held_back_seconds", {"partition": "1"}) is None
    assert sample("nudge_pending_deadlines", {"partition": "0"}) == 1
    shell.add(at(minutes=5), "u2", partition=1, product="p2")
    shell.clock.set(at(hours=2))
    changelog = len(shell.broker.log(TOPICS.changelog))
    shell.produce(TOPICS.ticks, b"", 1)
    await shell.tick(0)
    assert [s.key for s in shell.triggers()] == [b"u1"]  # u2's deadline is its new owner's
    assert [r.key for r in shell.broker.log(TOPICS.changelog)[changelog:]] == [b"u1"]
    assert 1 not in {p for (_, p) in shell.acked if shell.acked[(_, p)] - {0}}
    assert shell.acked.get((CART, 1)) == {0} and shell.acked.get((TOPICS.ticks, 1)) is None
    assert shell.batches.owned == {0}
    state = unpack_row(shell.store.get(b"u2") or b"")[0]
    assert len(state.cart.lines) == 1  # type: ignore[union-attr]


# --- what Faust delivers around a rebalance (stream.read_positions) -----------------------


async def test_a_message_delivered_twice_is_applied_and_acknowledged_once() -> None:
    # Buffered before a rebalance and read again from the committed offset after it.
    shell = Shell(CART_ONLY, at(hours=3))
    shell.add(at(), "u1")
    shell.add(at(minutes=5), "u1", product="p2")
    first = shell.unread([CART])
    await shell.batches.process(first)
    again = [type(e)(e.message) for e in first]  # the same messages, new Faust events
    await shell.batches.process(again)
    assert [e.acked for e in first] == [True, True]
    assert [e.acked for e in again] == [False, False]
    await shell.settle(at(hours=3))
    assert shell.records() == shell.replay(at(hours=3))


async def test_messages_delivered_beyond_undelivered_ones_wait_for_them_in_order() -> None:
    # A fetch from before the seek to the committed offsets comes back after it: offsets 2
    # and 3 arrive while 0 and 1 were never delivered (Faust's read offset is past them).
    # Taking 2 and 3 would apply the checkout before the adds and never see the adds.
    shell = Shell(CART_ONLY, at(hours=3))
    shell.add(at(), "u1")
    shell.add(at(minutes=1), "u1", product="p2")
    shell.event("checkout_started", at(minutes=2), "u1")
    shell.add(at(minutes=3), "u1", product="p3")
    shell.positions[(CART, 0)] = 2
    await shell.poll([CART])
    assert shell.seeks == [(CART, 0, 0)]  # sought back, once
    assert shell.acked.get((CART, 0)) is None  # nothing taken out of order
    await shell.poll([CART])  # read again from offset 0
    assert shell.acked[(CART, 0)] == {0, 1, 2, 3}
    await shell.settle(at(hours=3))
    assert shell.records() == shell.replay(at(hours=3))


async def test_a_seek_back_lost_in_the_fetcher_is_sought_again_and_nothing_stalls() -> None:
    # The fetch Faust is still handing over when the consumer is sought back moves Faust's
    # read offset past the expected one again: the records read again are dropped before
    # the shell sees them. Without a second seek the partition waits forever.
    shell = Shell(CART_ONLY, at(hours=3))
    shell.add(at(), "u1")
    shell.add(at(minutes=1), "u1", product="p2")
    shell.event("checkout_started", at(minutes=2), "u1")
    shell.positions[(CART, 0)] = 2
    await shell.poll([CART])
    assert shell.seeks == [(CART, 0, 0)]
    shell.positions[(CART, 0)] = 3  # the seek is lost: 0..2 are dropped by Faust
    await shell.tick()
    shell.clock.advance(RETRY_SEEK_AFTER - 0.1)
    await shell.tick()
    assert shell.seeks == [(CART, 0, 0)]  # not yet
    shell.clock.advance(0.1)
    await shell.tick()  # RETRY_SEEK_AFTER after the seek, still at offset 0: sought again
    assert shell.seeks == [(CART, 0, 0), (CART, 0, 0)]
    await shell.poll([CART])
    assert shell.acked[(CART, 0)] == {0, 1, 2}
    shell.clock.advance(60)
    await shell.tick()
    assert len(shell.seeks) == 2  # read on: no more seeks
    await shell.settle(at(hours=3))
    assert shell.records() == shell.replay(at(hours=3))


async def test_a_real_gap_in_the_offsets_is_taken_without_seeking() -> None:
    # Offsets missing from the log itself (a transaction marker, retention): the broker's
    # first offset from the expected one is the message's own.
    shell = Shell(CART_ONLY, at(hours=3))
    shell.add(at(), "u1")
    shell.add(at(minutes=1), "u1", product="p2")
    shell.add(at(minutes=2), "u1", product="p3")
    del shell.inputs[(CART, 0)][1]  # offset 1 does not exist
    await shell.poll([CART])
    assert shell.seeks == []
    assert shell.acked[(CART, 0)] == {0, 2}


async def test_held_back_counts_from_the_assignment_while_nothing_is_read() -> None:
    # A topic behind its end with nothing read holds every deadline back; the gauge says
    # for how long since the assignment, not 4.6e15 seconds "since the start of time".
    shell = Shell(CART_ONLY, at(hours=1))
    shell.add(at(), "u1")
    shell.order(at(minutes=1), "o1", "u1")
    shell.clock.advance(3)
    await shell.poll([CART])  # the order topic is behind, nothing read from it
    held_back = shell.registry.get_sample_value(
        "nudge_deadlines_held_back_seconds", {"partition": "0"}
    )
    assert held_back == 3


async def test_while_end_offsets_cannot_be_read_deadlines_wait_for_the_input_read() -> None:
    # Broker unreachable for the end offsets: the last answers are older (lower) and would
    # make the order topic look read to its end; an order produced meanwhile (the shop's
    # producer buffering) must still cancel the reminder it precedes.
    shell = Shell(CART_ONLY, at(minutes=10))
    shell.add(at(), "u1")
    await shell.poll()  # every topic read to its end
    shell.broker_down = True
    shell.order(at(minutes=59), "o1", "u1")  # written, not yet delivered
    shell.clock.set(at(hours=1, minutes=30))
    shell.produce(TOPICS.ticks, b"")
    await shell.poll([TOPICS.ticks])  # 01:30: stage 1 (due 01:00) must not fire yet
    assert shell.triggers() == []
    shell.broker_down = False
    await shell.settle(at(hours=30))
    assert shell.records() == shell.replay(at(hours=30)) == []


async def test_a_batch_applies_at_most_max_release_messages_and_the_rest_hold_the_horizon() -> None:
    shell = Shell(CART_ONLY, at(), max_release=2)
    for i in range(5):
        shell.add(at(minutes=i), f"u{i}")
    shell.clock.set(at(hours=2))  # every cart's first stage is due by now
    await shell.poll()
    assert shell.committed()[(CART, 0)] == 2 and shell.batches.waiting() == 3
    assert shell.records() == []  # u2's cart (minute 2) is not applied: nothing fires past it
    await shell.tick()
    assert shell.committed()[(CART, 0)] == 4 and shell.records() == []
    await shell.tick()  # the last one: now the horizon is the clock's
    assert shell.committed()[(CART, 0)] == 5 and shell.batches.waiting() == 0
    assert sorted(r.user for r in shell.records()) == ["u0", "u1", "u2", "u3", "u4"]
    await shell.settle(at(hours=30))
    assert shell.records() == shell.replay(at(hours=30))
