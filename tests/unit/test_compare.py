"""``nudge replay --compare``: two rules on the same history, decisions joined on trigger_id.

Rules A: cart stages 1h/24h, browse 2h, at most 2 contacts a day. Rules B: the
first cart stage at 30 min, at most 1 contact a day. The shoppers:

- alice leaves a cart: stage 1 moves from +1h to +30m (re-timed); stage 2 at
  +24h now falls within a day of stage 1 and is capped (re-judged);
- bob orders at +45m: under A his stage 1 (+1h) never comes, under B (+30m) it
  is sent (added) and the order converts it;
- dave views p2 and carts p1: his cart stage 1 moves earlier (re-timed) and his
  browse reminder at +2h is capped under B (re-judged).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import orjson
import pytest

from cli.compare import Comparison, compare_command, compare_lines, render_comparison
from tests.unit.timelines import at, make_rules, wire
from triggers.rules import Rules

ORDER = {"order_id": "o1", "items": [{"product_id": "p1", "quantity": 1, "unit_price": 25}]}
LINES = [
    wire("cart_item_added", at(), "alice", "a1", product_id="p1", unit_price=25),
    wire("cart_item_added", at(), "bob", "b1", product_id="p1", unit_price=25),
    wire("order_placed", at(minutes=45), "bob", "b2", **ORDER),
    wire("product_viewed", at(), "dave", "d1", product_id="p2", category="tea"),
    wire("cart_item_added", at(), "dave", "d2", product_id="p1", unit_price=25),
    b"{not json",
    wire("search", at(days=3), "zed", "z1", query="x"),
]
A_YAML = """
triggers:
  cart_abandonment: {stages: [1h, 24h]}
  browse_abandonment: {stages: [2h]}
  replenishment: {enabled: false}
  first_purchase_followup: {enabled: false}
  lapsing: {enabled: false}
  dormancy: {enabled: false}
contact_policy: {frequency_cap: {max: 2, per: 24h}}
"""
B_YAML = A_YAML.replace("[1h, 24h]", "[30m, 24h]").replace("max: 2", "max: 1")


def rules(stage1: str, cap: int) -> Rules:
    return make_rules(
        only=["cart_abandonment", "browse_abandonment"],
        triggers={"cart_abandonment": {"stages": [stage1, "24h"]}},
        contact_policy={"frequency_cap": {"max": cap, "per": "24h"}},
    )


A, B = rules("1h", 2), rules("30m", 1)


def table(c: Comparison) -> dict[tuple[str, int], dict[str, int]]:
    changes = ("kept", "retimed", "rejudged", "added", "removed")
    return {
        (t, s): {change: c.counts[t, s, change] for change in changes if c.counts[t, s, change]}
        for t, s in c.groups()
    }


def test_decisions_are_classified_per_trigger_and_stage() -> None:
    c = compare_lines(LINES, A, B)
    assert table(c) == {
        ("browse_abandonment", 1): {"rejudged": 1},  # dave
        ("cart_abandonment", 1): {"retimed": 2, "added": 1},  # alice, dave; bob
        ("cart_abandonment", 2): {"kept": 1, "rejudged": 1},  # dave; alice
    }
    assert c.transitions == {
        ("cart_abandonment", "sent", "suppressed:frequency_cap"): 1,
        ("browse_abandonment", "sent", "suppressed:frequency_cap"): 1,
    }
    assert c.conversions == {("b", "treatment"): 1}
    assert (c.lines, c.invalid) == (7, 1)
    assert all(shift < 0 for shift in c.shift_seconds["cart_abandonment"])


def test_every_decision_is_counted_once_on_each_side() -> None:
    c = compare_lines(LINES, A, B)
    for t, s in c.groups():
        both = sum(c.counts[t, s, k] for k in ("kept", "retimed", "rejudged"))
        assert c.totals[t, s, "a"] == both + c.counts[t, s, "removed"]
        assert c.totals[t, s, "b"] == both + c.counts[t, s, "added"]


def test_swapping_the_rules_swaps_added_and_removed_and_the_transitions() -> None:
    c = compare_lines(LINES, B, A)
    assert table(c)["cart_abandonment", 1] == {"retimed": 2, "removed": 1}
    assert c.transitions[("cart_abandonment", "suppressed:frequency_cap", "sent")] == 1


def test_the_same_rules_keep_everything() -> None:
    c = compare_lines(LINES, A, A, with_diff=True)
    assert c.diff == []
    assert {k for _, _, k in c.counts} == {"kept"}
    assert sum(c.counts.values()) == c.totals.total() // 2 == 5


def test_the_diff_holds_both_records_of_each_change() -> None:
    c = compare_lines(LINES, A, B, with_diff=True)
    diff: list[dict[str, Any]] = orjson.loads(orjson.dumps(c.diff))
    assert sorted((d["change"], d["user_id"], d["trigger"], d["stage"]) for d in diff) == [
        ("added", "bob", "cart_abandonment", 1),
        ("rejudged", "alice", "cart_abandonment", 2),
        ("rejudged", "dave", "browse_abandonment", 1),
        ("retimed", "alice", "cart_abandonment", 1),
        ("retimed", "dave", "cart_abandonment", 1),
    ]
    assert [d["at"] for d in diff] == sorted(d["at"] for d in diff)  # by the earlier fired_at
    by = {(d["user_id"], d["trigger"], d["stage"]): d for d in diff}
    added = by["bob", "cart_abandonment", 1]
    assert added["a"] is None and added["b"]["status"] == "sent"
    retimed = by["alice", "cart_abandonment", 1]
    assert retimed["a"]["fired_at"] == "2026-11-23T03:00:00Z"
    assert retimed["b"]["fired_at"] == retimed["at"] == "2026-11-23T02:30:00Z"
    rejudged = by["alice", "cart_abandonment", 2]
    assert (rejudged["a"]["status"], rejudged["b"]["reason"]) == ("sent", "frequency_cap")
    assert all(d["trigger_id"] == (d["a"] or d["b"])["trigger_id"] for d in diff)


def test_the_table_reads_as_a_summary() -> None:
    text = render_comparison(compare_lines(LINES, A, B), ("a.yaml", "b.yaml"))
    assert "re-timed" in text and "re-judged" in text
    assert "cart_abandonment          sent -> suppressed:frequency_cap" in text
    (shift,) = [line.split() for line in text.splitlines() if "decisions)" in line]
    assert shift[0] == "cart_abandonment" and shift[1].startswith("-") and shift[2] == "(2"
    (all_row,) = [line for line in text.splitlines() if line.startswith("all ")]
    assert all_row.split() == ["all", "5", "6", "1", "2", "2", "1", "0"]
    # Right under the conversions by arm, one line says they are not a forecast of B.
    lines = text.splitlines()
    holdout = next(i for i, line in enumerate(lines) if line.startswith("  holdout "))
    assert lines[holdout + 1] == (
        "  replayed shoppers do not react to B's messages: conversions under B are not a prediction"
    )


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path, Path]:
    events, a, b = tmp_path / "events.jsonl", tmp_path / "a.yaml", tmp_path / "b.yaml"
    events.write_bytes(b"\n".join(LINES) + b"\n")
    a.write_text(A_YAML)
    b.write_text(B_YAML)
    return events, a, b


def test_the_command_writes_the_table_and_the_diff_file(
    files: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    events, a, b = files
    out, diff = io.StringIO(), tmp_path / "diff.jsonl"
    code = compare_command(str(events), rules=str(a), compare=str(b), diff=str(diff), out=out)
    assert code == 0
    assert "cart_abandonment" in out.getvalue()
    changes = [orjson.loads(line)["change"] for line in diff.read_bytes().splitlines()]
    assert sorted(changes) == ["added", "rejudged", "rejudged", "retimed", "retimed"]


def test_the_command_refuses_bad_rules_and_missing_input(
    files: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    events, a, _ = files
    bad = tmp_path / "bad.yaml"
    bad.write_text("contact_policy: {frequency_cap: {max: -1}}\n")
    assert compare_command(str(events), rules=str(a), compare=str(bad), out=io.StringIO()) == 1
    missing = str(tmp_path / "missing.jsonl")
    assert compare_command(missing, rules=str(a), compare=str(a), out=io.StringIO()) == 2
