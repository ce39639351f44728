"""A partition's messages from four topics leave in event-time order, never stalling."""

from __future__ import annotations

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


def order(**kwargs: float) -> EventTimeOrder[str]:
    """A merge whose partitions 0 and 1 are read from their first offsets."""
    merge: EventTimeOrder[str] = EventTimeOrder(TOPICS, **kwargs)  # type: ignore[arg-type]
    merge.assigned({(topic, p): 0 for topic in TOPICS for p in (0, 1)})
    return merge


def test_caught_up_topics_let_each_message_through_at_once() -> None:
    merge = order()
    merge.add("cart", 0, 0, 1_000, "add", now=0.0)
    assert list(merge.release(0, 0.0, Ends(cart=1))) == ["add"]
    assert len(merge) == 0


def test_a_backlog_is_applied_in_event_time_order_across_topics() -> None:
    merge = order()
    ends = Ends(browse=2, cart=1, order=1)
    # Fetched round-robin: the order arrives before the cart add that preceded it.
    merge.add("order", 0, 0, 3_000, "order@3s", now=0.0)
    assert list(merge.release(0, 0.0, ends)) == []  # browse and cart still unread
    merge.add("browse", 0, 0, 1_000, "view@1s", now=0.0)
    merge.add("browse", 0, 1, 4_000, "view@4s", now=0.0)
    assert list(merge.release(0, 0.0, ends)) == []  # cart still unread
    merge.add("cart", 0, 0, 2_000, "add@2s", now=0.0)
    assert list(merge.release(0, 0.0, ends)) == ["view@1s", "add@2s", "order@3s", "view@4s"]


def test_reading_starts_at_the_assigned_offsets() -> None:
    merge = order()
    merge.assigned({("cart", 0): 5, ("browse", 0): 0})
    merge.add("browse", 0, 0, 1_000, "view", now=0.0)
    # cart's committed offset is its end: nothing to wait for there.
    assert list(merge.release(0, 0.0, Ends(browse=1, cart=5))) == ["view"]
    merge.add("browse", 0, 1, 2_000, "view2", now=0.0)
    assert list(merge.release(0, 0.0, Ends(browse=2, cart=6))) == []  # a new cart record


def test_a_topic_with_an_unknown_read_position_does_not_hold_others() -> None:
    merge: EventTimeOrder[str] = EventTimeOrder(TOPICS)
    merge.assigned(None)  # start offsets could not be read
    merge.add("browse", 0, 0, 1_000, "view", now=0.0)
    assert list(merge.release(0, 0.0, Ends(browse=1, cart=5))) == ["view"]


def test_a_topic_that_never_delivers_delays_for_max_hold_only() -> None:
    merge = order(max_hold=2.0)
    ends = Ends(browse=1, cart=10)  # cart claims records that never come
    merge.add("browse", 0, 0, 1_000, "view", now=100.0)
    assert list(merge.release(0, 101.9, ends)) == []
    assert list(merge.release(0, 102.0, ends)) == ["view"]


def test_too_many_waiting_messages_are_let_through() -> None:
    merge = order(max_waiting=3)
    ends = Ends(browse=100, cart=10)
    for i in range(3):
        merge.add("browse", 0, i, i, f"v{i}", now=0.0)
    assert list(merge.release(0, 0.0, ends)) == []
    merge.add("browse", 0, 3, 3, "v3", now=0.0)
    assert list(merge.release(0, 0.0, ends)) == ["v0"]  # back to the bound


def test_one_topic_keeps_its_offset_order_even_if_event_times_go_back() -> None:
    merge = order()
    ends = Ends(browse=2, cart=1)
    merge.add("browse", 0, 0, 5_000, "late-stamped", now=0.0)
    merge.add("browse", 0, 1, 1_000, "early-stamped", now=0.0)
    merge.add("cart", 0, 0, 3_000, "add", now=0.0)
    assert list(merge.release(0, 0.0, ends)) == ["add", "late-stamped", "early-stamped"]


def test_an_unparseable_message_leaves_once_at_the_head_of_its_queue() -> None:
    merge = order()
    ends = Ends(browse=2, cart=1)
    merge.add("browse", 0, 0, 2_000, "view", now=0.0)
    merge.add("browse", 0, 1, UNORDERED, "garbage", now=0.0)
    merge.add("cart", 0, 0, 1_000, "add", now=0.0)
    assert list(merge.release(0, 0.0, ends)) == ["add", "view", "garbage"]


def test_partitions_are_independent() -> None:
    merge = order()
    merge.add("cart", 1, 0, 1_000, "p1", now=0.0)
    merge.add("cart", 0, 0, 2_000, "p0", now=0.0)
    ends = Ends(cart=1, browse=1)  # browse of both partitions has an unread record
    assert list(merge.release(0, 0.0, ends)) == []
    assert merge.partitions() == {0, 1}


def test_a_new_assignment_drops_what_waited() -> None:
    merge = order()
    merge.add("order", 0, 0, 3_000, "order", now=0.0)
    assert merge.assigned({("order", 0): 0}) == ["order"]
    assert len(merge) == 0
    assert list(merge.release(0, 0.0, Ends())) == []


@st.composite
def topic_streams(draw: st.DrawFn) -> dict[str, list[int]]:
    """Per topic, nondecreasing event times (as each topic is produced in time order)."""
    streams = {}
    for topic in TOPICS:
        times = draw(st.lists(st.integers(0, 50), max_size=8))
        streams[topic] = sorted(times)
    return streams


@given(topic_streams(), st.randoms(use_true_random=False))
def test_any_arrival_interleaving_yields_the_event_time_merge(
    streams: dict[str, list[int]], rng: object
) -> None:
    import random

    assert isinstance(rng, random.Random)
    merge = order()
    ends = Ends(**{t: len(ts) for t, ts in streams.items()})
    # Each topic arrives in offset order; the topics interleave at random.
    labels = [t for t, ts in streams.items() for _ in ts]
    rng.shuffle(labels)
    arrivals = [(t, labels[: n + 1].count(t) - 1) for n, t in enumerate(labels)]
    out: list[tuple[int, str, int]] = []
    for topic, i in arrivals:
        merge.add(topic, 0, i, streams[topic][i], (streams[topic][i], topic, i), now=0.0)  # type: ignore[arg-type]
        out.extend(merge.release(0, 0.0, ends))  # type: ignore[arg-type]
    expected = sorted(
        ((ts, t, i) for t, times in streams.items() for i, ts in enumerate(times)),
        key=lambda x: x[0],
    )
    assert sorted(out) == sorted(expected)  # nothing lost, nothing twice
    assert [ts for ts, _, _ in out] == [ts for ts, _, _ in expected]  # event-time order
    for topic in TOPICS:
        assert [i for _, t, i in out if t == topic] == sorted(i for _, t, i in out if t == topic)
