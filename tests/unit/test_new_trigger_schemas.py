"""Decisions of the section 7.3 triggers match the published decision schema (typed
contexts), and custom trigger names are accepted while unknown contexts are not."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import orjson
import pytest

from tests.unit.test_catalog_triggers import catalog
from tests.unit.timelines import Timeline, at, make_rules
from triggers.records import Decision, record_to_json
from triggers.schemas import decode_output_record

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def _records() -> list[bytes]:
    rules = make_rules(
        only=(),
        triggers={
            "birthday": {"enabled": True, "days_before": "1d"},
            "back_in_stock": {"enabled": True},
            "price_drop": {"enabled": True},
            "custom": {
                "socks": {
                    "enabled": True,
                    "when": {"type": "order_placed", "category": ["running_shoes"]},
                    "stages": ["1d"],
                }
            },
        },
    )
    t = Timeline(rules)
    t.send("preferences_updated", at(0), birthday="11-26")
    catalog(t, at(0), "c0", in_stock=False, price=100)
    t.view(at(hours=1), "p1", price=100)
    catalog(t, at(hours=2), "c1", in_stock=True, price=70)
    t.order(at(hours=3), "o1", ["shoe"], category="running_shoes")
    t.advance(at(days=3))
    return [record_to_json(r) for r in t.records if isinstance(r, Decision)]


def test_new_trigger_decisions_match_the_decision_schema() -> None:
    schema = json.loads((ROOT / "schemas" / "decision.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    lines = _records()
    seen = set()
    for line in lines:
        validator.validate(orjson.loads(line))
        decode_output_record(line)
        seen.add(orjson.loads(line)["trigger"])
    assert seen == {"birthday", "back_in_stock", "price_drop", "socks"}


def test_a_custom_decision_with_a_foreign_context_or_a_builtin_name_is_refused() -> None:
    schema = json.loads((ROOT / "schemas" / "decision.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    custom = next(orjson.loads(line) for line in _records() if b'"socks"' in line)
    assert validator.is_valid(custom)
    assert not validator.is_valid(custom | {"context": {"lines": []}})
    assert not validator.is_valid(custom | {"trigger": "lapsing"})
    assert not validator.is_valid(custom | {"trigger": "Not-A-Name"})
