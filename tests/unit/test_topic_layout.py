"""The worker's partition count N with input topics of any counts (contract section 9)."""

from __future__ import annotations

import re

import pytest

from stream.settings import Settings
from stream.topics import TopicLayoutError, check_ticks, to_create, worker_partitions

pytestmark = pytest.mark.unit

MIXED = {"shop.browse": 12, "shop.cart": 6, "shop.order": 3, "shop.prefs": 6}


def test_n_is_the_largest_input_count_by_default() -> None:
    assert worker_partitions(Settings(), MIXED) == 12
    created = {t.name: t.num_partitions for t in to_create(Settings(), MIXED, 12)}
    assert created["nudge.ticks"] == created["nudge.rekeyed"] == 12
    assert not set(MIXED) & set(created)  # the shop's topics: never created


def test_n_is_the_internal_topics_count_once_they_exist_or_the_setting() -> None:
    assert worker_partitions(Settings(), MIXED | {"nudge.ticks": 6, "nudge.rekeyed": 6}) == 6
    assert worker_partitions(Settings(partitions=4), MIXED) == 4


def test_an_internal_topic_with_another_count_than_n_stops_the_start_with_the_fix() -> None:
    counts = MIXED | {"nudge.rekeyed": 6}
    with pytest.raises(TopicLayoutError, match=re.escape("nudge.rekeyed (NUDGE_TOPIC_REKEYED)")):
        check_ticks(Settings(partitions=12), counts, 12)
    check_ticks(Settings(), counts, 6)
