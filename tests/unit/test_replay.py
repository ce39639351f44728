"""`nudge replay` on small files: output, invalid lines, summary, determinism, options."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from cli.replay import replay_command
from tests.unit.timelines import at, iso, wire
from triggers.engine import Engine
from triggers.records import Conversion, Decision
from triggers.replay import Replay, replay_lines
from triggers.rules import Rules
from triggers.schemas import decode_output_record

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
NUDGE = [sys.executable, "-m", "cli.main"]


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
        decode_output_record(line)
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
    assert "\r" not in stderr  # progress lines (none in so short a run) never rewrite one line


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
        (["--rules", "RULES"], 1, "rules.yaml:1: colour: unknown key"),
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


# --- robustness: nothing a line does stops the replay ------------------------------------------


def test_timestamps_the_engine_cannot_compute_with_are_invalid_lines(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    lines = [
        wire("cart_item_added", "9999-12-31T00:00:00Z", "u1", "e1", product_id="p"),
        wire("search", 253_402_214_399_999, "u1", "e2", query="q"),  # 9999-12-30 in ms
        wire("product_viewed", at(), "u2", "e3", product_id="p"),
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    done = run_nudge("replay", str(path), "--until", iso(at(days=1)))
    assert done.returncode == 0, done.stderr
    stderr = done.stderr.decode()
    assert "Traceback" not in stderr
    assert "line 1: invalid_value: $.ts: out of range" in stderr
    assert "line 2: invalid_value: $.ts: epoch milliseconds out of range" in stderr
    assert "replay: invalid      2 (invalid_value 2)" in stderr
    assert [orjson.loads(r)["user_id"] for r in done.stdout.splitlines()] == ["u2"]


def test_until_outside_the_accepted_range_is_refused(tmp_path: Path) -> None:
    done = run_nudge("replay", str(events_file(tmp_path)), "--until", "9999-12-31T00:00:00Z")
    assert done.returncode == 2
    assert "--until: out of range" in done.stderr.decode()


class Boom(RuntimeError):
    pass


def _failing(method: Callable[..., Any], when: Callable[..., bool]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if when(*args, **kwargs):
            raise Boom("engine failure")
        return method(*args, **kwargs)

    return wrapper


def test_a_line_that_fails_in_the_engine_is_reported_and_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        Engine,
        "on_event",
        _failing(Engine.on_event, lambda _self, _state, event, _now: event.event_id == "boom"),
    )
    lines = [
        wire("product_viewed", at(), "amy", "a1", product_id="p"),
        wire("cart_item_added", at(hours=5), "bob", "boom", product_id="p", unit_price=5),
        wire("search", at(hours=1), "carol", "c1", query="q"),
    ]
    result = replay_lines(lines, Rules())
    assert result.invalid == [(2, "processing_error", "Boom: engine failure")]
    assert result.summary.invalid_reasons == {"processing_error": 1}
    assert result.summary.processed == 2
    assert "bob" not in result.states  # nothing of the failed line is kept ...
    assert result.summary.clock == at(hours=2)  # ... not its time (5h): amy's stage was at 2h
    # What fired before the failing line (amy's browse reminder, due at 2h) still comes out.
    assert [(r.user_id, r.trigger) for r in result.records] == [("amy", "browse_abandonment")]

    # The command: the line is reported, the replay goes on, no traceback.
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "out.jsonl"
    assert replay_command(str(path), rules=None, until=None, out=str(out)) == 0
    assert [orjson.loads(r)["user_id"] for r in out.read_bytes().splitlines()] == ["amy"]


def test_the_command_reports_a_failing_line_without_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(
        Engine,
        "on_event",
        _failing(Engine.on_event, lambda _self, _state, event, _now: event.event_id == "boom"),
    )
    path = tmp_path / "events.jsonl"
    path.write_bytes(
        wire("search", at(), "amy", "a1", query="q")
        + b"\n"
        + wire("search", at(), "bob", "boom", query="q")
        + b"\n"
    )
    assert replay_command(str(path), rules=None, until=None, out=str(tmp_path / "out")) == 0
    stderr = capsys.readouterr().err
    assert "line 2: processing_error: Boom: engine failure" in stderr
    assert "replay: invalid      1 (processing_error 1)" in stderr
    assert "replay: processed    1" in stderr


def test_a_stage_that_cannot_fire_is_reported_and_the_others_still_fire(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr(
        Engine,
        "on_time",
        _failing(Engine.on_time, lambda _self, state, *_, **__: state.user_id == "bob"),
    )
    lines = [
        wire("product_viewed", at(), "amy", "a1", product_id="p"),
        wire("product_viewed", at(), "bob", "b1", product_id="p"),
        wire("product_viewed", at(), "carol", "c1", product_id="p"),
        wire("search", at(hours=5), "dave", "d1", query="q"),
    ]
    result = replay_lines(lines, Rules())
    assert [r.user_id for r in result.records] == ["amy", "carol"]
    assert result.invalid == []
    assert result.errors == [
        (4, f"a stage due at {iso(at(hours=2))} could not fire: Boom: engine failure")
    ]
    assert result.summary.errors == 1
    assert result.summary.processed == 4

    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines[:3]) + b"\n")  # bob's stage comes due at the end
    assert (
        replay_command(str(path), rules=None, until=iso(at(hours=5)), out=str(tmp_path / "o")) == 0
    )
    stderr = capsys.readouterr().err
    assert "end of input: processing_error: a stage due at" in stderr
    assert "replay: errors       1" in stderr
    assert "Traceback" not in stderr


def test_without_keep_going_engine_errors_propagate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Engine, "on_event", _failing(Engine.on_event, lambda *_: True))
    with pytest.raises(Boom):
        Replay(Rules()).feed_line(wire("search", at(), "amy", "a1", query="q"))
