"""Each message once and in offset order (:mod:`stream.read_positions`), on a fake broker."""

from __future__ import annotations

import pytest

from stream.read_positions import ReadPositions

pytestmark = pytest.mark.unit

T = "shop.cart"


class Broker:
    def __init__(self, offsets: list[int]) -> None:
        self.offsets = offsets  # the offsets that hold a record
        self.asked: list[int] = []
        self.seeks: list[int] = []
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    async def first_offset_at(self, topic: str, partition: int, offset: int) -> int | None:
        self.asked.append(offset)
        return next((o for o in self.offsets if o >= offset), None)

    async def seek(self, topic: str, partition: int, offset: int) -> None:
        self.seeks.append(offset)


async def taken(positions: ReadPositions, offsets: list[int]) -> list[int]:
    return [o for o in offsets if await positions.take(T, 0, o)]


async def test_in_order_and_twice_delivered_messages() -> None:
    broker = Broker(list(range(10)))
    positions = ReadPositions(broker.first_offset_at, broker.seek, broker.monotonic)
    positions.assigned({(T, 0): 3})
    assert await taken(positions, [1, 3, 4, 4, 3, 5]) == [3, 4, 5]
    assert broker.asked == [] and broker.seeks == []


async def test_a_hole_is_sought_back_once_and_filled_in_order() -> None:
    broker = Broker(list(range(10)))
    positions = ReadPositions(broker.first_offset_at, broker.seek, broker.monotonic)
    positions.assigned({(T, 0): 0})
    assert await taken(positions, [4, 5, 6]) == []  # 0..3 were not delivered
    assert broker.seeks == [0] and broker.asked == [0]  # asked once, sought once
    assert await taken(positions, [0, 1, 2, 3, 4, 5, 6]) == [0, 1, 2, 3, 4, 5, 6]


async def test_offsets_missing_from_the_log_are_a_real_gap() -> None:
    broker = Broker([0, 1, 5, 6])  # 2..4: transaction markers, say
    positions = ReadPositions(broker.first_offset_at, broker.seek, broker.monotonic)
    positions.assigned({(T, 0): 0})
    assert await taken(positions, [0, 1, 5, 6]) == [0, 1, 5, 6]
    assert broker.seeks == []


async def test_unknown_start_takes_the_first_message_and_revocation_forgets() -> None:
    broker = Broker(list(range(10)))
    positions = ReadPositions(broker.first_offset_at, broker.seek, broker.monotonic)
    positions.assigned(None)
    assert await taken(positions, [7, 8]) == [7, 8]
    positions.revoked([0])
    assert await taken(positions, [2]) == [2]  # a new owner's start is unknown: taken


async def test_when_the_broker_cannot_say_the_partition_is_read_again() -> None:
    broker = Broker([0, 1, 5, 6])
    down = [True]

    async def first_offset_at(topic: str, partition: int, offset: int) -> int | None:
        if down[0]:
            raise ConnectionError("broker down")
        return await broker.first_offset_at(topic, partition, offset)

    positions = ReadPositions(first_offset_at, broker.seek, broker.monotonic)
    positions.assigned({(T, 0): 2})
    assert await taken(positions, [5]) == []  # unknown: left out, read again from 2
    assert broker.seeks == [2]
    down[0] = False
    assert await taken(positions, [5, 6]) == [5, 6]  # now known: 2..4 hold no record
    assert broker.seeks == [2]


async def test_a_lost_seek_is_sought_again_after_retry_after_until_the_offset_comes() -> None:
    broker = Broker(list(range(10)))
    positions = ReadPositions(broker.first_offset_at, broker.seek, broker.monotonic, 5.0)
    positions.assigned({(T, 0): 0})
    assert await taken(positions, [4, 5]) == []
    assert broker.seeks == [0]
    broker.now = 4.0
    await positions.retry()
    assert broker.seeks == [0]
    assert await taken(positions, [6]) == []  # more of the old fetch: no second seek for it
    broker.now = 5.0
    await positions.retry()
    assert broker.seeks == [0, 0]  # the read again never came: sought again
    broker.now = 10.0
    await positions.retry()
    assert broker.seeks == [0, 0, 0]
    assert await taken(positions, [0, 1, 2]) == [0, 1, 2]
    broker.now = 100.0
    await positions.retry()
    assert broker.seeks == [0, 0, 0]  # it came: nothing more to retry
