"""Start-up topic checks with a catalog trigger on (stream.topics): shop.catalog is an input
topic (never created, any partition count: re-keyed), the fan-out's internal topics are
created and checked like the tick topic; with the catalog triggers off nothing changes."""

from __future__ import annotations

import re

import pytest

from stream.catalog_fanout import enabled
from stream.settings import Settings
from stream.topics import (
    MissingInputTopics,
    TopicLayoutError,
    check_ticks,
    to_create,
    worker_partitions,
)
from tests.unit.timelines import make_rules

pytestmark = pytest.mark.unit

SETTINGS = Settings()
INPUTS = {"shop.browse": 4, "shop.cart": 4, "shop.order": 4, "shop.prefs": 4}


def test_the_catalog_topic_is_required_only_with_a_catalog_trigger_on() -> None:
    assert worker_partitions(SETTINGS, INPUTS) == 4
    with pytest.raises(MissingInputTopics, match=re.escape("shop.catalog (NUDGE_TOPIC_CATALOG)")):
        worker_partitions(SETTINGS, INPUTS, catalog=True)
    # Any count (contract 9: catalog events are re-keyed), and it does not decide N.
    for count in (1, 4, 12):
        counts = INPUTS | {"shop.catalog": count}
        assert worker_partitions(SETTINGS, counts, catalog=True) == 4


def test_the_internal_topics_are_created_with_the_input_partition_count() -> None:
    plain = {t.name for t in to_create(SETTINGS, INPUTS, 4)}
    assert "nudge.interest" not in plain and "nudge.catalog-fanout" not in plain
    created = {t.name: t.num_partitions for t in to_create(SETTINGS, INPUTS, 4, catalog=True)}
    assert created["nudge.interest"] == created["nudge.catalog-fanout"] == 4
    assert "shop.catalog" not in created  # the shop's: never created


def test_an_internal_topic_with_another_partition_count_stops_the_start() -> None:
    counts = INPUTS | {"nudge.catalog-fanout": 8}
    check_ticks(SETTINGS, counts, 4)  # not checked while the catalog triggers are off
    with pytest.raises(
        TopicLayoutError, match=re.escape("nudge.catalog-fanout (NUDGE_TOPIC_FANOUT)")
    ):
        check_ticks(SETTINGS, counts, 4, catalog=True)


def test_the_fan_out_is_on_with_either_catalog_trigger() -> None:
    assert not enabled(make_rules())
    assert enabled(make_rules(triggers={"back_in_stock": {"enabled": True}}))
    assert enabled(make_rules(triggers={"price_drop": {"enabled": True}}))
