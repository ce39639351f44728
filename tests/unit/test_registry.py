"""The trigger registry: every registered trigger has its rules section, offers table,
stored-state code and decision schema, derived from the one list."""

from __future__ import annotations

import pytest

from triggers.registry import KINDS, TRIGGER_NAMES
from triggers.rules import Rules
from triggers.schemas import DECISIONS
from triggers.state import TRIGGER_CODES

pytestmark = pytest.mark.unit


def test_every_registered_trigger_is_wired_everywhere() -> None:
    rules = Rules()
    assert tuple(kind.name for kind in KINDS) == TRIGGER_NAMES
    for kind in KINDS:
        assert isinstance(rules.trigger(kind.name), kind.rules)
        assert rules.offers_of(kind.name) == {}
        assert kind.name in TRIGGER_CODES
        assert kind.name in DECISIONS
    assert list(Rules.model_fields["triggers"].annotation.model_fields) == [
        *TRIGGER_NAMES,
        "custom",
    ]


def test_triggers_added_by_section_7_are_off_by_default_the_others_on() -> None:
    rules = Rules()
    assert (
        {kind.name for kind in KINDS if not rules.trigger(kind.name).enabled}
        == {kind.name for kind in KINDS if kind.added}
        == {"birthday", "back_in_stock", "price_drop"}
    )
