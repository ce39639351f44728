"""The published JSON Schemas: current with the models, and true of real output."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import orjson
import pytest

from simulation.synthetic import generate_events
from stream.dead_letters import dead_letter_record
from tests.unit.timelines import at, wire
from triggers.events import INPUT_TOPIC_OF_TYPE, InvalidEvent, parse_event
from triggers.records import record_to_json
from triggers.registry import TRIGGER_NAMES
from triggers.replay import replay_lines
from triggers.rules import parse_rules
from triggers.schemas import (
    DECISIONS,
    SCHEMAS,
    DeadLetter,
    decode_output_record,
    schema_command,
    schema_document,
    schema_files,
)

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
START = datetime(2026, 11, 1, tzinfo=UTC)
#: Every trigger on, short delays: a small synthetic month fires each of them.
RULES = parse_rules(
    """
triggers:
  cart_abandonment: {stages: [1h, 24h]}
  browse_abandonment: {stages: [30m]}
  replenishment: {categories: {coffee: 10d, pet_food: 10d, tea: 10d}, min_purchases: 2}
  first_purchase_followup: {stages: [2d]}
  lapsing: {factor: 1.2, min_orders: 2}
  dormancy: {stages: [7d], audience: all}
contact_policy:
  frequency_cap: {max: 20, per: 1d}
"""
)


def validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((ROOT / "schemas" / f"{name}.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_the_checked_in_schemas_are_current() -> None:
    on_disk = {path.name: path.read_bytes() for path in (ROOT / "schemas").glob("*.json")}
    assert on_disk == schema_files(), "regenerate: python -m triggers.schemas --out schemas"


def test_every_trigger_has_a_decision_model_and_every_event_type_a_schema() -> None:
    assert set(DECISIONS) == set(TRIGGER_NAMES)
    decision = schema_document("decision")
    assert set(decision["discriminator"]["mapping"]) == set(TRIGGER_NAMES)
    events = schema_document("input-event")
    assert set(events["discriminator"]["mapping"]) == set(INPUT_TOPIC_OF_TYPE)
    catalog = schema_document("catalog-event")
    assert "user_id" not in catalog["$defs"]["ProductUpdated"]["properties"]
    for name in SCHEMAS:
        assert schema_document(name)["$schema"].endswith("/draft/2020-12/schema")


@pytest.fixture(scope="module")
def replayed() -> list[bytes]:
    lines = [orjson.dumps(event) for event in generate_events(users=300, seed=5, start=START)]
    result = replay_lines(lines, RULES)
    assert result.invalid == []
    return [record_to_json(record) for record in result.records]


def test_real_replay_records_match_the_output_schemas(replayed: list[bytes]) -> None:
    decisions, conversions = validator("decision"), validator("conversion")
    seen: set[str] = set()
    for line in replayed:
        record = orjson.loads(line)
        if record["kind"] == "decision":
            decisions.validate(record)
            seen.add(record["trigger"])
        else:
            conversions.validate(record)
            seen.add("conversion")
        decode_output_record(line)  # the models, unknown fields forbidden
    enabled = {name for name in TRIGGER_NAMES if RULES.trigger(name).enabled}
    assert seen == {*enabled, "conversion"}


@pytest.mark.parametrize(
    "change",
    [
        {"stage": 0},
        {"status": "maybe"},
        {"context": {"lines": "none"}},
        {"surprise": 1},
        {"trigger": "teleport"},
        {"due_at": "2026-11-23T10:00:00+01:00"},
    ],
)
def test_the_decision_schema_refuses_a_broken_record(
    replayed: list[bytes], change: dict[str, Any]
) -> None:
    cart = next(
        orjson.loads(line)
        for line in replayed
        if b'"cart_abandonment"' in line and b'"decision"' in line
    )
    broken = {**cart, **change}
    assert not validator("decision").is_valid(broken)
    with pytest.raises(msgspec.ValidationError):
        decode_output_record(orjson.dumps(broken))


def test_valid_and_invalid_input_events_against_the_input_schema() -> None:
    schema = validator("input-event")
    good = [
        wire("product_viewed", at(), "u1", "e1", product_id="p1", price=5),
        wire("wishlist_added", at(), "u1", "e2", product_id=42, category="tea"),
        wire(
            "order_placed",
            at(),
            "u1",
            "e3",
            order_id="o",
            items=[{"product_id": "p", "quantity": 2, "unit_price": 1.5}],
        ),
        wire("preferences_updated", at(), "u1", "e4", birthday="02-29", timezone="UTC"),
    ]
    for raw in good:
        parse_event(raw)
        schema.validate(orjson.loads(raw))
    bad = [
        wire("product_viewed", at(), "u1", "e1"),
        wire("cart_item_added", at(), "u1", "e2", product_id="p", quantity=0),
        wire("search", at(), "", "e3", query="q"),
        wire("teleported", at(), "u1", "e4"),
    ]
    for raw in bad:
        with pytest.raises(InvalidEvent):
            parse_event(raw)
        assert not schema.is_valid(orjson.loads(raw))


def test_dead_letters_match_their_schema() -> None:
    schema = validator("dead-letter")
    for raw in (b'{"type": "search"}', b"\xff\xfe", b"x" * 300_000, None):
        letter = dead_letter_record(
            reason="missing_field",
            detail="$.event_id is required",
            topic="shop.browse",
            partition=3,
            offset=17,
            raw=raw,
            at=datetime(2026, 11, 23, 10, 0, 0, 123456, tzinfo=UTC),
        )
        schema.validate(orjson.loads(letter))
        msgspec.json.decode(letter, type=DeadLetter)
    assert not schema.is_valid({**orjson.loads(letter), "reason": "bored"})


def test_schema_command_prints_one_or_all_and_writes_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert schema_command("conversion", None) == 0
    assert json.loads(capsys.readouterr().out) == schema_document("conversion")
    assert schema_command(None, None) == 0
    assert set(json.loads(capsys.readouterr().out)) == set(SCHEMAS)
    assert schema_command("decision.json", str(tmp_path)) == 0
    assert (tmp_path / "decision.json").read_bytes() == schema_files()["decision.json"]
    assert schema_command("nonsense", None) == 2
    assert "unknown schema" in capsys.readouterr().err
