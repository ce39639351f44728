"""frozen_record: the engine's records behave exactly like frozen, slotted dataclasses."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from triggers.frozen import frozen_record

pytestmark = pytest.mark.unit


@frozen_record
class Point:
    x: int
    y: int = 0
    label: str | None = None


def test_construction_defaults_equality_and_hashing() -> None:
    assert Point(1) == Point(1, 0, None) == Point(x=1, label=None)
    assert Point(1, 2) != Point(2, 1)
    assert hash(Point(1, 2)) == hash(Point(1, 2))
    assert repr(Point(1, 2, "a")) == "Point(x=1, y=2, label='a')"
    with pytest.raises(TypeError):
        Point()  # type: ignore[call-arg]


def test_it_is_a_frozen_slotted_dataclass() -> None:
    point = Point(1, 2)
    assert dataclasses.is_dataclass(point)
    assert [f.name for f in dataclasses.fields(Point)] == ["x", "y", "label"]
    assert not hasattr(point, "__dict__")
    with pytest.raises(dataclasses.FrozenInstanceError):
        point.x = 5  # type: ignore[misc]
    assert dataclasses.replace(point, y=7) == Point(1, 7)
    assert pickle.loads(pickle.dumps(point)) == point


def test_unsupported_field_kinds_are_refused() -> None:
    with pytest.raises(TypeError, match="plain defaults"):

        @frozen_record
        class Bad:
            items: list = dataclasses.field(default_factory=list)
