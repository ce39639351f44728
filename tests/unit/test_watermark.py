"""The per-partition event-time watermark (:mod:`stream.watermark`): release order and horizon.

Each test scripts one partition's input: messages read per topic (offset, event time),
the end offsets the consumer knows, monotonic and wall-clock time; and reads back what
is released, in which order, and how far deadlines may fire.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.watermark import FOREVER, NEVER, UNORDERED, Watermark

pytestmark = pytest.mark.unit

A, B, C = "shop.browse", "shop.cart", "shop.order"
TOPICS = (A, B, C)
T0 = 1_764_000_000_000  # epoch ms of the assignment
MIN = 60_000


class Input:
    """One partition's topics: what was produced (end offsets) and what was read."""

    def __init__(self, starts: dict[str, int] | None = None, **kwargs: int | float) -> None:
        self.ends: dict[str, int] = dict.fromkeys(TOPICS, 0)
        self.read: dict[str, int] = dict(starts or dict.fromkeys(TOPICS, 0))
        self.known: dict[str, int | None] | None = None  # the consumer's highwaters, if stale
        self.mono = 0.0
        self.wm = Watermark(
            TOPICS,
            0,
            self.read,
            T0,
            max_hold=float(kwargs.pop("max_hold", 2.0)),
            unknown_grace_ms=int(kwargs.pop("unknown_grace_ms", 10_000)),
        )

    def end_offset(self, topic: str, partition: int) -> int | None:
        assert partition == 0
        if self.known is not None:
            return self.known.get(topic)
        return self.ends[topic]

    def produce(self, topic: str, count: int = 1) -> None:
        self.ends[topic] += count

    def read_one(self, topic: str, ts_ms: int) -> None:
        """The next message of ``topic`` (produced if need be) with event time ``ts_ms``."""
        offset = self.read[topic]
        self.ends[topic] = max(self.ends[topic], offset + 1)
        self.wm.add(topic, offset, ts_ms, (topic, offset), self.mono)
        self.read[topic] = offset + 1

    def release(self, now_ms: int = T0) -> list[tuple[str, int]]:
        return self.wm.release(self.end_offset, self.mono, now_ms)

    def horizon(self, now_ms: int = T0) -> int:
        return self.wm.horizon(now_ms, self.end_offset)


def test_messages_leave_in_event_time_order_across_topics() -> None:
    part = Input()
    part.read_one(A, T0 + 3 * MIN)
    part.read_one(A, T0 + 5 * MIN)
    part.read_one(B, T0 + 1 * MIN)
    part.read_one(B, T0 + 4 * MIN)
    part.read_one(C, T0 + 2 * MIN)
    assert part.release() == [(B, 0), (C, 0), (A, 0), (B, 1), (A, 1)]
    assert part.wm.waiting == 0
    assert part.horizon(T0 + 9 * MIN) == T0 + 9 * MIN  # all read to their ends


def test_nothing_leaves_ahead_of_a_topic_that_is_behind() -> None:
    part = Input()
    part.read_one(C, T0 + 10 * MIN)
    part.produce(C, 2)  # two more orders, not read yet: none earlier than 00:10
    part.read_one(B, T0 + 5 * MIN)
    part.read_one(B, T0 + 15 * MIN)
    assert part.release() == [(B, 0), (C, 0)]  # (B, 1) could follow an unread order
    assert part.wm.waiting == 1
    assert part.horizon(T0 + 60 * MIN) == T0 + 10 * MIN  # deadlines wait for the orders
    part.read_one(C, T0 + 12 * MIN)
    assert part.release() == [(C, 1)]  # the last order is still unread
    part.read_one(C, T0 + 20 * MIN)
    assert part.release() == [(B, 1), (C, 2)]


def test_a_message_waits_at_most_max_hold_for_a_behind_topic() -> None:
    part = Input(max_hold=2.0)
    part.read_one(C, T0)
    part.produce(C)
    part.read_one(B, T0 + MIN)
    assert part.release() == [(C, 0)]
    part.mono = 1.999
    assert part.release() == []
    part.mono = 2.0
    assert part.release() == [(B, 0)]
    # The horizon still does not pass the behind topic.
    assert part.horizon(T0 + 60 * MIN) == T0


def test_unknown_offsets_hold_for_a_short_grace_after_the_assignment_only() -> None:
    part = Input(starts={}, unknown_grace_ms=10_000)  # no committed offsets known
    part.known = {}  # and no end offsets fetched yet
    part.read_one(B, T0 - MIN)
    assert part.release(T0 + 9_999) == []
    assert part.horizon(T0 + 9_999) == NEVER
    assert part.release(T0 + 10_000) == [(B, 0)]  # never for good
    assert part.horizon(T0 + 10_000) == T0 + 10_000


def test_a_behind_topic_with_nothing_read_holds_for_the_grace() -> None:
    part = Input(unknown_grace_ms=10_000)
    part.produce(C)  # an order produced, not fetched yet: its time is unknown
    part.read_one(B, T0 + 5_000)
    assert part.release(T0 + 5_000) == []
    assert part.horizon(T0 + 5_000) == NEVER


def test_a_topic_read_to_its_end_holds_nothing() -> None:
    part = Input()
    part.read_one(B, T0 + MIN)
    assert part.release() == [(B, 0)]
    assert part.horizon(T0 + 5 * MIN) == T0 + 5 * MIN


def test_an_unparseable_message_leaves_when_it_heads_its_topic() -> None:
    part = Input()
    part.read_one(C, T0 + 10 * MIN)
    part.produce(C)
    part.read_one(B, T0 + 20 * MIN)
    part.read_one(B, UNORDERED)
    part.read_one(A, UNORDERED)
    part.read_one(A, T0 + MIN)
    # A's bad message leaves at once; B's waits behind B's 00:20 (offset order).
    assert part.release() == [(A, 0), (A, 1), (C, 0)]
    part.read_one(C, T0 + 30 * MIN)
    assert part.release() == [(B, 0), (B, 1), (C, 1)]


def test_an_unparseable_message_does_not_move_the_topics_bound() -> None:
    part = Input()
    part.read_one(C, T0 + 10 * MIN)
    part.read_one(C, UNORDERED)
    part.produce(C)
    assert part.release() == [(C, 0), (C, 1)]
    assert part.horizon(T0 + 60 * MIN) == T0 + 10 * MIN


def test_an_empty_partition_fires_up_to_now() -> None:
    part = Input()
    assert part.release() == []
    assert part.horizon(T0 + 7) == T0 + 7
    assert FOREVER > T0 + 7


@given(
    st.lists(
        st.tuples(st.sampled_from(TOPICS), st.integers(0, 50)),
        min_size=1,
        max_size=40,
    ),
    st.lists(st.integers(0, 40), max_size=6),
)
def test_every_message_leaves_once_in_offset_order_and_in_time_order_when_read_in_time(
    messages: list[tuple[str, int]], cuts: list[int]
) -> None:
    """Messages produced in event-time order to random topics, read in random chunks
    (``cuts``: how many to read before each release): each leaves exactly once, in its
    topic's offset order; once all are read, the release order is the event-time order."""
    part = Input()
    timeline = [(topic, T0 + minute * MIN + i) for i, (topic, minute) in enumerate(messages)]
    timeline.sort(key=lambda m: m[1])
    per_topic: dict[str, list[int]] = {t: [] for t in TOPICS}
    for topic, ts in timeline:
        per_topic[topic].append(ts)
        part.produce(topic)
    released: list[tuple[str, int]] = []
    queues = {t: list(ts) for t, ts in per_topic.items()}
    for cut in [*cuts, len(timeline)]:
        for _ in range(cut):
            topic = next((t for t in TOPICS if queues[t]), None)
            if topic is None:
                break
            part.read_one(topic, queues[topic].pop(0))
        released += part.release()
    assert sorted(released) == sorted((t, i) for t in TOPICS for i in range(len(per_topic[t])))
    for topic in TOPICS:
        assert [o for t, o in released if t == topic] == list(range(len(per_topic[topic])))
    times = [per_topic[t][o] for t, o in released]
    assert times == sorted(times)


def test_a_topic_found_behind_long_after_the_assignment_holds_until_read() -> None:
    """A topic quiet since the assignment and then found behind (an order produced, not yet
    fetched) bounds everything until it is read, however long after the assignment."""
    hour = 60 * MIN
    part = Input(unknown_grace_ms=10_000)
    assert part.horizon(T0 + hour) == T0 + hour  # the order topic is quiet: read to its end
    part.produce(C)  # an order at 01:00, fetched after the cart event below
    part.read_one(B, T0 + hour + 500)
    assert part.release(T0 + hour + 600) == []  # it may be later than the unread order
    assert part.horizon(T0 + hour + 600) == NEVER
    part.read_one(C, T0 + hour)
    assert part.release(T0 + hour + 700) == [(C, 0), (B, 0)]


@given(
    st.lists(
        st.tuples(st.sampled_from(TOPICS), st.integers(min_value=0, max_value=20)),
        max_size=30,
    ),
    st.integers(min_value=1, max_value=5),
)
def test_a_bounded_release_is_the_unbounded_one_in_pieces_and_holds_the_horizon(
    messages: list[tuple[str, int]], limit: int
) -> None:
    whole, pieces = Input(), Input()
    for topic, minutes in messages:
        whole.read_one(topic, T0 + minutes * MIN)
        pieces.read_one(topic, T0 + minutes * MIN)
    now_ms = T0 + 30 * MIN
    expected = whole.wm.release(whole.end_offset, whole.mono, now_ms)
    got: list[tuple[str, int]] = []
    while True:
        piece = pieces.wm.release(pieces.end_offset, pieces.mono, now_ms, limit=limit)
        assert len(piece) <= limit
        got += piece
        rest = expected[len(got) :]
        if rest:  # deadlines wait for the first message still to be applied
            topic, offset = rest[0]
            assert pieces.horizon(now_ms) <= T0 + dict(messages_at(messages))[topic, offset]
        if len(piece) < limit:
            break
    assert got == expected
    assert pieces.horizon(now_ms) == whole.horizon(now_ms)


def messages_at(messages: list[tuple[str, int]]) -> list[tuple[tuple[str, int], int]]:
    """Each message's (topic, offset) and its event time offset from T0."""
    offsets = dict.fromkeys(TOPICS, 0)
    out = []
    for topic, minutes in messages:
        out.append(((topic, offsets[topic]), minutes * MIN))
        offsets[topic] += 1
    return out
