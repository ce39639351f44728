"""`nudge replay` on small files: output, invalid lines, summary, determinism, options."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from tests.unit.timelines import at, iso, wire
from triggers.records import Conversion, Decision
from triggers.replay import Replay, replay_lines
from triggers.rules import Rules
from triggers.wire import OUTPUT_RECORD

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
NUDGE = [sys.executable, "-m", "stream.cli"]


def events_file(tmp_path: Path) -> Path:
    order = {"order_id": "o1", "items": [{"product_id": "p1", "quantity": 1, "unit_price": 25}]}
    lines = [
        wire("product_viewed", at(), "alice", "a1", product_id="p1", category="tea"),
        wire("cart_item_added", at(minutes=5), "alice", "a2", product_id="p1", unit_price=25),
        b"{this is not json",
        b"",
        wire("cart_item_added", at(minutes=5), "alice", "a2", product_id="p1", unit_price=25),
        wire("search", at(minutes=6), "bob", "b1", query="tea", test=True),
        wire("product_viewed", at(minutes=7), "bob", "b2", product_id="p9"),
        orjson.dumps({"event_id": "x", "type": "teleported", "user_id": "bob", "ts": 0}),
        wire("order_placed", at(hours=2), "alice", "a3", **order),
        wire("search", at(hours=3), "carol", "c1", query="x", ts_extra=1),
    ]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def run_nudge(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*NUDGE, *args], input=stdin, capture_output=True, cwd=ROOT, timeout=60, check=False
    )


def test_replay_writes_records_and_reports_invalid_lines_and_a_summary(tmp_path: Path) -> None:
    done = run_nudge("replay", str(events_file(tmp_path)))
    assert done.returncode == 0, done.stderr
    records = [orjson.loads(line) for line in done.stdout.splitlines()]
    for line in done.stdout.splitlines():
        OUTPUT_RECORD.validate_json(line)
    assert [(r["kind"], r.get("trigger"), r.get("status"), r["user_id"]) for r in records] == [
        ("decision", "cart_abandonment", "sent", "alice"),  # due 1h05
        ("conversion", "cart_abandonment", None, "alice"),  # the order at 2h
        ("decision", "browse_abandonment", "sent", "bob"),  # due 2h07
    ]
    assert records[0]["fired_at"] == iso(at(hours=1, minutes=5))
    assert records[1]["arm"] == "treatment" and records[1]["revenue"] == 25
    stderr = done.stderr.decode()
    assert "line 3: not_json: not valid JSON" in stderr
    assert "line 8: unknown_type: type 'teleported' is not a known event type" in stderr
    assert "line 4" not in stderr  # blank lines are skipped silently
    assert "replay: events read  9" in stderr
    assert "replay: invalid      2 (not_json 1, unknown_type 1)" in stderr
    assert "replay: ignored      2 (duplicate 1, test 1)" in stderr
    assert "replay: processed    5" in stderr
    assert "replay: users        3" in stderr
    assert "replay: conversions  1 (treatment 1)" in stderr
    assert f"replay: clock        {iso(at(hours=3))}" in stderr
    assert "\r" not in stderr  # no progress indicator when stderr is not a terminal


def test_replay_output_is_byte_identical_across_runs_and_input_modes(tmp_path: Path) -> None:
    path = events_file(tmp_path)
    first = run_nudge("replay", str(path))
    second = run_nudge("replay", str(path))
    from_stdin = run_nudge("replay", "-", stdin=path.read_bytes())
    out = tmp_path / "out.jsonl"
    to_file = run_nudge("replay", str(path), "--out", str(out))
    assert first.stdout and first.stdout == second.stdout == from_stdin.stdout
    assert to_file.returncode == 0 and to_file.stdout == b""
    assert out.read_bytes() == first.stdout


def test_until_advances_the_clock_past_the_last_event(tmp_path: Path) -> None:
    path = events_file(tmp_path)
    short = run_nudge("replay", str(path))
    longer = run_nudge("replay", str(path), "--until", iso(at(days=40)))
    records = [orjson.loads(line) for line in longer.stdout.splitlines()]
    assert longer.stdout.startswith(short.stdout)
    later = [(r["trigger"], r["user_id"], r["fired_at"]) for r in records[3:]]
    assert later == [
        ("first_purchase_followup", "alice", iso(at(days=3, hours=2))),
        ("dormancy", "alice", iso(at(days=30, hours=2))),
    ]
    assert f"clock        {iso(at(days=40))}" in longer.stderr.decode()
    epoch_ms = run_nudge("replay", str(path), "--until", str(int(at(days=40).timestamp() * 1000)))
    assert epoch_ms.stdout == longer.stdout


def test_rules_change_the_replay(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("triggers: {cart_abandonment: {enabled: false}}\n")
    done = run_nudge("replay", str(events_file(tmp_path)), "--rules", str(rules))
    triggers = [orjson.loads(line)["trigger"] for line in done.stdout.splitlines()]
    assert triggers == ["browse_abandonment"]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--rules", "RULES"], 1, "rules: colour: unknown key"),
        (["--until", "tomorrow"], 2, "--until: not an RFC 3339 date-time"),
        (["--until", "2026-11-30T00:00:00"], 2, "--until: timestamp has no UTC offset"),
        (["--out", "/nonexistent/dir/out.jsonl"], 2, "cannot write /nonexistent/dir/out.jsonl"),
    ],
)
def test_replay_refuses_bad_options(
    tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("colour: blue\n")
    args = [str(rules) if a == "RULES" else a for a in args]
    done = run_nudge("replay", str(events_file(tmp_path)), *args)
    assert done.returncode == code
    assert message in done.stderr.decode()
    assert done.stdout == b""


def test_replay_of_a_missing_file_fails() -> None:
    done = run_nudge("replay", "/nonexistent/events.jsonl")
    assert done.returncode == 2
    assert b"cannot read /nonexistent/events.jsonl" in done.stderr


def test_replay_lines_api(tmp_path: Path) -> None:
    lines = events_file(tmp_path).read_bytes().split(b"\n")
    result = replay_lines(lines, Rules())
    assert [type(r) for r in result.records] == [Decision, Conversion, Decision]
    assert result.invalid == [
        (3, "not_json", result.invalid[0][2]),
        (8, "unknown_type", "type 'teleported' is not a known event type"),
    ]
    assert set(result.states) == {"alice", "bob", "carol"}
    assert result.summary.decisions["cart_abandonment", "sent"] == 1
    assert result.summary.ignored == 2


def test_the_replay_driver_fires_due_users_in_due_then_user_order() -> None:
    replay = Replay(Rules())
    for user in ("zed", "amy"):
        replay.feed_line(wire("product_viewed", at(), user, f"{user}-1", product_id="p"))
    out = replay.feed_line(wire("search", at(hours=5), "other", "o-1", query="q"))
    assert [r.user_id for r in out] == ["amy", "zed"]
    assert all(r.fired_at == at(hours=2) for r in out)


def test_the_progress_line_for_terminals() -> None:
    import io

    from triggers.replay import _progress_printer

    stream = io.StringIO()
    show = _progress_printer(stream, 1000)
    show(100_000, 250)
    show(-1, 1000)
    assert stream.getvalue() == "\rreplay: 100000 lines (25%)\r\x1b[K"
