"""A partition's messages from four topics leave in event-time order, never stalling."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from stream.event_order import UNORDERED, EventTimeOrder

TOPICS = ("browse", "cart", "order", "prefs")


class Ends:
    """End offsets of the topic partitions, as the consumer would report them."""

    def __init__(self, **ends: int) -> None:
        self.ends = ends

    def __call__(self, topic: str, partition: int) -> int | None:
        return self.ends.get(topic)


class Partition:
    """Partition 0 of a merge read from the first offsets, with its topics' end offsets."""

    def __init__(self, merge: EventTimeOrder[str] | None = None, **ends: int) -> None:
        self.merge = merge if merge is not None else EventTimeOrder(TOPICS)
        if merge is None:
            self.merge.assigned({(topic, p): 0 for topic in TOPICS for p in (0, 1)})
        self.ends = Ends(**ends)
        self.offsets = dict.fromkeys(TOPICS, 0)

    def arrive(self, topic: str, ts_ms: int, item: str, now: float = 0.0) -> None:
        self.merge.add(topic, 0, self.offsets[topic], ts_ms, item, now=now, end_offset=self.ends)
        self.offsets[topic] += 1

    def release(self, now: float = 0.0) -> list[str]:
        return list(self.merge.release(0, now))


def test_caught_up_topics_let_each_message_through_at_once() -> None:
    p = Partition(cart=1)
    p.arrive("cart", 1_000, "add")
    assert p.release() == ["add"]
    assert len(p.merge) == 0


def test_a_backlog_is_applied_in_event_time_order_across_topics() -> None:
    p = Partition(browse=2, cart=1, order=1)
    # Fetched round-robin: the order arrives before the cart add that preceded it.
    p.arrive("order", 3_000, "order@3s")
    assert p.release() == []  # browse and cart still unread
    p.arrive("browse", 1_000, "view@1s")
    p.arrive("browse", 4_000, "view@4s")
    assert p.release() == []  # cart still unread
    p.arrive("cart", 2_000, "add@2s")
    assert p.release() == ["view@1s", "add@2s", "order@3s", "view@4s"]


def test_live_traffic_written_after_a_message_arrived_does_not_hold_it() -> None:
    p = Partition(browse=1, cart=0)
    p.arrive("browse", 1_000, "view")
    p.ends.ends["cart"] = 1  # a cart event produced after the view was read
    assert p.release() == ["view"]


def test_a_topic_that_delivered_up_to_about_this_time_does_not_hold_it() -> None:
    p = Partition(cart=5)
    p.arrive("cart", 9_500, "add@9.5s")
    assert p.release() == ["add@9.5s"]
    p.ends.ends["browse"] = 2
    # cart holds 3 more records, but it delivered events up to 9.5 s: what it holds is
    # later than a view at 10 s minus the slack (1 s).
    p.arrive("browse", 10_000, "view@10s")
    assert p.release() == ["view@10s"]
    p.arrive("browse", 11_000, "view@11s")
    assert p.release() == []  # 1.5 s ahead of cart: that is a backlog, wait for it


def test_reading_starts_at_the_assigned_offsets() -> None:
    merge: EventTimeOrder[str] = EventTimeOrder(TOPICS)
    merge.assigned({("cart", 0): 5, ("browse", 0): 0})
    merge.add("browse", 0, 0, 1_000, "view", now=0.0, end_offset=Ends(browse=1, cart=5))
    # cart's committed offset is its end: nothing to wait for there.
    assert list(merge.release(0, 0.0)) == ["view"]
    merge.add("browse", 0, 1, 2_000, "view2", now=0.0, end_offset=Ends(browse=2, cart=6))
    assert list(merge.release(0, 0.0)) == []  # cart has an unread record


def test_a_topic_with_an_unknown_read_position_does_not_hold_others() -> None:
    merge: EventTimeOrder[str] = EventTimeOrder(TOPICS)
    merge.assigned(None)  # start offsets could not be read
    merge.add("browse", 0, 0, 1_000, "view", now=0.0, end_offset=Ends(browse=1, cart=5))
    assert list(merge.release(0, 0.0)) == ["view"]


def test_a_topic_that_never_delivers_delays_for_max_hold_only() -> None:
    p = Partition(EventTimeOrder(TOPICS, max_hold=2.0), browse=1, cart=10)
    p.merge.assigned({(t, 0): 0 for t in TOPICS})  # cart claims records that never come
    p.arrive("browse", 1_000, "view", now=100.0)
    assert p.release(now=101.9) == []
    assert p.release(now=102.0) == ["view"]


def test_too_many_waiting_messages_are_let_through() -> None:
    p = Partition(EventTimeOrder(TOPICS, max_waiting=3), browse=100, cart=10)
    p.merge.assigned({(t, 0): 0 for t in TOPICS})
    for i in range(3):
        p.arrive("browse", i, f"v{i}")
    assert p.release() == []
    p.arrive("browse", 3, "v3")
    assert p.release() == ["v0"]  # back to the bound


def test_one_topic_keeps_its_offset_order_even_if_event_times_go_back() -> None:
    p = Partition(browse=2, cart=1)
    p.arrive("browse", 5_000, "late-stamped")
    p.arrive("browse", 1_000, "early-stamped")
    p.arrive("cart", 3_000, "add")
    assert p.release() == ["add", "late-stamped", "early-stamped"]


def test_an_unparseable_message_leaves_once_at_the_head_of_its_queue() -> None:
    p = Partition(browse=2, cart=1)
    p.arrive("browse", 2_000, "view")
    p.arrive("browse", UNORDERED, "garbage")
    p.arrive("cart", 1_000, "add")
    assert p.release() == ["add", "view", "garbage"]


def test_partitions_are_independent() -> None:
    merge: EventTimeOrder[str] = EventTimeOrder(TOPICS)
    merge.assigned({(t, p): 0 for t in TOPICS for p in (0, 1)})
    ends = Ends(cart=1, browse=1)  # browse of both partitions has an unread record
    merge.add("cart", 1, 0, 1_000, "p1", now=0.0, end_offset=ends)
    merge.add("cart", 0, 0, 2_000, "p0", now=0.0, end_offset=ends)
    assert list(merge.release(0, 0.0)) == []
    assert merge.partitions() == {0, 1}


def test_a_new_assignment_drops_what_waited() -> None:
    p = Partition(order=1, browse=1)
    p.arrive("order", 3_000, "order")
    assert p.merge.assigned({("order", 0): 0}) == ["order"]
    assert len(p.merge) == 0
    assert p.release() == []


@st.composite
def topic_streams(draw: st.DrawFn) -> dict[str, list[int]]:
    """Per topic, nondecreasing event times (as each topic is produced in time order)."""
    return {t: sorted(draw(st.lists(st.integers(0, 50), max_size=8))) for t in TOPICS}


@given(topic_streams(), st.randoms(use_true_random=False), st.sampled_from([0, 10]))
def test_any_arrival_interleaving_of_a_backlog_is_merged_by_event_time(
    streams: dict[str, list[int]], rng: random.Random, slack_ms: int
) -> None:
    merge: EventTimeOrder[tuple[int, str, int]] = EventTimeOrder(TOPICS, slack_ms=slack_ms)
    merge.assigned({(t, 0): 0 for t in TOPICS})
    ends = Ends(**{t: len(ts) for t, ts in streams.items()})  # the whole backlog written
    # Each topic arrives in offset order; the topics interleave at random.
    labels = [t for t, ts in streams.items() for _ in ts]
    rng.shuffle(labels)
    offsets = dict.fromkeys(TOPICS, 0)
    out: list[tuple[int, str, int]] = []
    for topic in labels:
        i = offsets[topic]
        offsets[topic] += 1
        ts = streams[topic][i]
        merge.add(topic, 0, i, ts, (ts, topic, i), now=0.0, end_offset=ends)
        out.extend(merge.release(0, 0.0))
    expected = sorted((ts, t, i) for t, times in streams.items() for i, ts in enumerate(times))
    assert sorted(out) == expected  # nothing lost, nothing twice
    for n, (ts, _, _) in enumerate(out):  # event-time order, to within the slack
        assert all(later >= ts - slack_ms for later, _, _ in out[n + 1 :])
    for topic in TOPICS:
        mine = [i for _, t, i in out if t == topic]
        assert mine == sorted(mine)  # offset order within a topic
