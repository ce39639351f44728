"""Catalog events as shops have them (contract 9) on fakes: ``shop.catalog`` with another
partition count than the worker's, or the same count with random and null keys, each
event on a random partition; re-keyed to its product's partition through ``nudge.rekeyed``
under the sources' read-horizon marks, the live records are replay's, byte for byte."""

from __future__ import annotations

import pytest

from tests.unit.catalog_harness import CAT, REKEYED, RekeyedCatalogShell
from tests.unit.shell_fakes import TOPICS
from tests.unit.shell_harness import project
from tests.unit.test_catalog_fanout import RULES, UNTIL, _key, _replayed, outcome, run, script
from tests.unit.timelines import at, make_rules

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("count", "everything"),
    [(3, False), (2, False), (2, True), (1, False)],
    ids=["3-partitions", "misplaced-keys", "rekey-all", "1-partition"],
)
async def test_a_catalog_topic_of_any_count_and_keys_gives_replays_records(
    count: int, everything: bool
) -> None:
    shell = RekeyedCatalogShell(
        RULES, at(), catalog_partitions=count, seed=count, everything=everything
    )
    await run(shell)
    assert sorted(shell.audit(), key=_key) == sorted(_replayed(), key=_key)
    forwarded = shell.forwarded.count(CAT.catalog)
    catalog = sum(len(log) for (t, _), log in shell.inputs.items() if t == CAT.catalog)
    assert 0 < forwarded < catalog or ((everything or count != 2) and forwarded == catalog)
    assert shell.batches.waiting() == 0
    committed = shell.committed()
    for (topic, partition), log in shell.inputs.items():
        if topic in (CAT.catalog, REKEYED):  # every message acknowledged, in offset order
            assert committed[(topic, partition)] == len(log), (topic, partition)


@pytest.mark.parametrize("seed", [1, 2])  # placements where arrival order is not time order
async def test_a_backlog_of_re_keyed_catalog_events_drains_in_event_time_order(seed: int) -> None:
    """Everything at once (a restart's backlog) on a catalog topic of 3 partitions, the
    user topics read first, then a message per partition a batch: the forwarded catalog
    events wait for every source's read horizon, so they are applied in event-time order
    (p1's restock before its later price changes), and interest later than a catalog event
    still unread waits for it (u5's second view of p1, at the same price, would hide the
    first from the restock), as in replay."""
    rules = make_rules(
        only=("cart_abandonment",),
        triggers=RULES.model_dump(include={"triggers"})["triggers"],
        contact_policy={"frequency_cap": {"max": 5, "per": "24h"}, "max_delay": "2d"},
    )
    shell = RekeyedCatalogShell(rules, UNTIL, catalog_partitions=3, seed=seed)
    seen = {"product_id": "p1", "price": 100}  # u5 saw p1 before its restock and after
    again = [
        (at(hours=4), "product_viewed", "u5", seen),
        (at(hours=6), "product_viewed", "u5", seen),
    ]
    for ts, kind, who, fields in [*script(), *again]:
        if kind == "catalog":
            shell.catalog(ts, who, **fields)
        else:
            shell.user_event(kind, ts, who, **fields)
    for p in shell.partitions:
        shell.produce(TOPICS.ticks, b"", p)
    others = [t for t in shell.consumed() if t != CAT.catalog]
    for _ in range(4):  # the user topics first: their interest and marks hold nothing back
        await shell.poll(others)
    for _ in range(6):  # then the catalog topic, a message per partition a batch
        await shell.poll([CAT.catalog], limit=1)
        await shell.poll(others)
    await shell.pump(rounds=6)
    assert shell.batches.waiting() == 0
    replayed = [project(r) for r in shell.replay_json(UNTIL) if r["kind"] == "decision"]
    assert ("u5", "back_in_stock") in {(r.user, r.trigger) for r in replayed}
    assert sorted(shell.records()) == sorted(replayed)


async def test_a_crash_right_after_a_catalog_forward_loses_and_repeats_nothing() -> None:
    """A crash right after each catalog event's forward (and after every 250th effect of
    the run): the restarted worker forwards again what was not acknowledged, the product
    side applies each catalog event once, and the records are the uncrashed run's."""
    uncrashed = await run(RekeyedCatalogShell(RULES, at(), catalog_partitions=3, seed=3))
    expected = outcome(uncrashed)
    entries = uncrashed.journal.entries
    forwards = {i + 1 for i, e in enumerate(entries) if e[:2] == ("output", REKEYED) and e[2]}
    points = forwards | set(range(1, len(entries) + 1, 250))
    for point in sorted(points):
        shell = RekeyedCatalogShell(RULES, at(), catalog_partitions=3, seed=3)
        crashed = await run(shell, crash_after=point)
        assert crashed.restarts == 1, point
        assert outcome(crashed) == expected, (point, entries[point - 1])


async def test_an_invalid_catalog_message_of_another_count_is_dead_lettered_by_its_reader() -> None:
    shell = RekeyedCatalogShell(RULES, at(), catalog_partitions=3, seed=0)
    shell.produce(CAT.catalog, b'{"type": "product_updated", "ts": "2026-11-23T02:00:00Z"}', 2)
    await shell.at(at(minutes=1))
    (dead,) = shell.dead_letters()
    assert (dead["topic"], dead["partition"]) == (CAT.catalog, 2)
    assert shell.committed()[(CAT.catalog, 2)] == 1 and shell.forwarded == []
