"""The ``nudge`` summaries list the rules file's custom triggers (``triggers.custom.NAME``)
beside the built-in ones: the replay summary (text and ``--summary-json``, zeros included)
and ``nudge inspect`` (pending stages, variants)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from cli.main import main
from tests.unit.timelines import at, wire

pytestmark = pytest.mark.unit

RULES = """\
version: custom-cli
triggers:
  custom:
    care_guide:
      enabled: true
      when: {type: product_viewed, category: [mattress]}
      unless: [{type: order_placed}]
      stages: [10m, 1d]
      variants: {pillow: 1, plain: 1}
    socks_after_shoes:
      enabled: true
      when: {type: order_placed, category: [running_shoes]}
      stages: [3d]
"""


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    rules, events = tmp_path / "rules.yaml", tmp_path / "events.jsonl"
    rules.write_text(RULES)
    events.write_bytes(
        wire("product_viewed", at(), "u1", "e1", product_id="m1", category="mattress", price=900)
        + b"\n"
        + wire("search", at(minutes=30), "u2", "e2", query="pillow")
        + b"\n"
    )
    return rules, events


def test_the_replay_summary_lists_custom_triggers_even_without_decisions(
    files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules, events = files
    summary = tmp_path / "summary.json"
    argv = ["replay", str(events), "--rules", str(rules), "--summary-json", str(summary)]
    assert main([*argv, "--out", str(tmp_path / "out.jsonl")]) == 0
    text = capsys.readouterr().err
    rows = {line.split()[1]: line.split()[2:] for line in text.splitlines() if "  " in line[7:9]}
    assert rows["care_guide"] == ["1", "0", "0"]  # sent, holdout, suppressed
    assert rows["socks_after_shoes"] == ["0", "0", "0"]
    assert list(rows)[-2:] == ["care_guide", "socks_after_shoes"]  # after the built-in ones
    decisions = orjson.loads(summary.read_bytes())["decisions"]
    assert decisions["care_guide"]["sent"] == 1
    assert decisions["socks_after_shoes"] == {"sent": 0, "holdout": 0, "suppressed": 0}
    assert "cart_abandonment" in decisions


def test_inspect_shows_a_custom_triggers_stages_and_variant(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    rules, events = files
    until = "2026-11-23T10:20:00Z"  # stage 1 (10 min) sent, stage 2 (1 d) pending
    argv = ["inspect", "u1", "--events", str(events), "--rules", str(rules), "--until", until]
    assert main([*argv, "--json"]) == 0
    view = orjson.loads(capsys.readouterr().out)
    (pending,) = [p for p in view["pending"] if p["trigger"] == "care_guide"]
    assert (pending["stage"], pending["stages"]) == (2, 2)
    assert view["variants"]["care_guide"] in {"pillow", "plain"}
    assert main(argv) == 0
    assert "care_guide" in capsys.readouterr().out
