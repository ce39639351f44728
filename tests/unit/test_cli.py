"""The ``nudge`` commands as a user meets them: version, help, input checks, readable errors.

Kafka-down paths use a closed local port (nothing listens) or a socket that accepts
connections and never answers: no broker is needed.
"""

from __future__ import annotations

import gzip
import io
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from cli.event_input import NotEventText, open_events
from cli.main import main
from cli.progress import Progress
from stream.tail import missing_topic
from tests.unit.timelines import at, wire

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
NUDGE = [sys.executable, "-m", "cli.main"]


def run_nudge(
    *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*NUDGE, *args],
        input=stdin,
        capture_output=True,
        cwd=ROOT,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections (the kernel's backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield int(sock.getsockname()[1])


def kafka_at(port: int, timeout: float = 3.0) -> dict[str, str]:
    return {
        "NUDGE_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}",
        "NUDGE_KAFKA_STARTUP_TIMEOUT_SECONDS": str(timeout),
    }


# --- version, help, argument checks ----------------------------------------------------------


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("nudge 0.")


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        ("simulate", ["(default: 50.0)", "(default: 1000)", "(default: 0)"]),
        ("replay", ["(default: -)", "(default: 5.0)"]),
        ("tail", ["(default: 0)"]),
    ],
)
def test_help_shows_the_defaults(
    command: str, shown: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())  # help text wraps lines
    for default in shown:
        assert default in text
    assert "(default: None)" not in text and "(default: False)" not in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["simulate", "--users", "0"], "argument --users: must be at least 1, got 0"),
        (["simulate", "--rate", "0"], "argument --rate: must be a number greater than 0, got 0"),
        (["simulate", "--rate", "-5"], "argument --rate: must be a number greater than 0"),
        (["simulate", "--rate", "nan"], "argument --rate: must be a number greater than 0"),
        (["simulate", "--rate", "inf"], "argument --rate: must be a number greater than 0"),
        (["simulate", "--rate", "fast"], "argument --rate: not a number: 'fast'"),
        (["simulate", "--limit", "-1"], "argument --limit: must be 0 (no limit) or more"),
        (["simulate", "--users", "1.5"], "argument --users: not a whole number: '1.5'"),
        (["tail", "t", "--limit", "-1"], "argument --limit: must be 0 (no limit) or more"),
        (["replay", "-", "--progress-every", "0"], "argument --progress-every: must be"),
    ],
)
def test_bad_arguments_are_one_readable_error(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_schema_prints_one_schema_or_refuses_an_unknown_name(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["schema", "conversion"]) == 0
    schema = orjson.loads(capsys.readouterr().out)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert main(["schema", "nope"]) == 2
    assert "unknown schema 'nope'" in capsys.readouterr().err


# --- simulate and tail: Kafka down, missing file, signals ------------------------------------


@pytest.mark.parametrize("argv", [["simulate", "--limit", "5"], ["tail", "marketing.triggers"]])
def test_kafka_down_is_one_line(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = closed_port()
    for name, value in kafka_at(port).items():
        monkeypatch.setenv(name, value)
    started = time.monotonic()
    assert main(argv) == 1
    assert time.monotonic() - started < 10
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"nudge {argv[0]}: cannot use Kafka at 127.0.0.1:{port}: ")
    assert "NUDGE_KAFKA_BOOTSTRAP" in lines[0]


def test_a_broker_that_never_answers_fails_at_the_startup_deadline(silent_port: int) -> None:
    started = time.monotonic()
    done = run_nudge("simulate", "--limit", "5", env=kafka_at(silent_port, timeout=1.5))
    assert 1.5 <= time.monotonic() - started < 20
    assert done.returncode == 1
    assert done.stderr.decode().splitlines() == [
        f"nudge simulate: cannot use Kafka at 127.0.0.1:{silent_port}: no answer within 1.5 s."
        " Is the broker running? Check NUDGE_KAFKA_BOOTSTRAP"
    ]


def test_simulate_of_a_missing_file_says_so_before_contacting_kafka(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NUDGE_KAFKA_BOOTSTRAP", f"127.0.0.1:{closed_port()}")
    missing = tmp_path / "nope.jsonl"
    assert main(["simulate", "--file", str(missing)]) == 2
    assert capsys.readouterr().err == (
        f"nudge simulate: cannot read {missing}: No such file or directory\n"
    )


@pytest.mark.parametrize("command", ["simulate", "tail"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_commands_stop_promptly_on_a_signal_without_spinning(
    command: str, sig: signal.Signals, silent_port: int
) -> None:
    argv = [*NUDGE, command] + (["marketing.triggers"] if command == "tail" else [])
    process = subprocess.Popen(
        argv,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **kafka_at(silent_port, timeout=60)},
    )
    time.sleep(2.5)  # started and waiting for the broker
    assert process.poll() is None
    signalled = time.monotonic()
    process.send_signal(sig)
    _, status, usage = os.wait4(process.pid, 0)
    stopped = time.monotonic()
    process.returncode = os.waitstatus_to_exitcode(status)
    assert stopped - signalled < 3
    assert process.returncode == (130 if sig == signal.SIGINT else 0)  # Ctrl-C: 130, as all
    assert b"Traceback" not in process.stderr.read()  # type: ignore[union-attr]
    # Waiting costs no CPU: start-up (imports) is well under the 2.5 s waited.
    assert usage.ru_utime + usage.ru_stime < 2.0


def _wait_until_blocked_reading(pid: int) -> None:
    """Until the process waits on a pipe or a FIFO (its input), not in its imports."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        wchan = Path(f"/proc/{pid}/wchan").read_text()
        if "pipe" in wchan or "fifo" in wchan or "partner" in wchan:
            return
        time.sleep(0.05)
    raise AssertionError(f"the command never waited for its input (wchan {wchan!r})")


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["replay", "-"], "nudge replay"),
        (["replay", "-", "--compare", "RULES"], "nudge replay"),
        (["report", "-"], "nudge report"),
        (["inspect", "ana", "--events", "-"], "nudge inspect"),
        (["rules", "check", "FIFO"], "nudge rules check"),
    ],
)
def test_ctrl_c_is_exit_130_in_one_line_for_every_command(
    argv: list[str], name: str, tmp_path: Path
) -> None:
    fifo = tmp_path / "rules.fifo"  # opening it waits for a writer: a rules file that hangs
    os.mkfifo(fifo)
    rules = tmp_path / "b.yaml"
    rules.write_text("version: 2\n")
    argv = [str(fifo) if a == "FIFO" else str(rules) if a == "RULES" else a for a in argv]
    process = subprocess.Popen(
        [*NUDGE, *argv],
        cwd=ROOT,
        stdin=subprocess.PIPE,  # open, never written: the command waits for its input
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_until_blocked_reading(process.pid)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130
    assert err.decode().splitlines() == [f"{name}: interrupted (Ctrl-C)"]


def test_ctrl_c_while_the_worker_waits_for_kafka_is_exit_130(tmp_path: Path) -> None:
    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        env = {
            **os.environ,
            **kafka_at(int(silent.getsockname()[1]), timeout=60),
            "NUDGE_DATA_DIR": str(tmp_path / "data"),
        }
        process = subprocess.Popen(
            [*NUDGE, "worker"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        try:
            silent.settimeout(30)
            connection, _ = silent.accept()  # start-up checks: reaching Kafka
            process.send_signal(signal.SIGINT)
            _, err = process.communicate(timeout=20)
            connection.close()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert process.returncode == 130
    assert err.decode().splitlines()[-1] == "nudge worker: interrupted (Ctrl-C)"
    assert b"Traceback" not in err


def test_a_missing_topic_is_named_with_the_closest_existing_one() -> None:
    error = missing_topic(
        "marketing.trigger", {"marketing.triggers", "shop.cart", "__consumer_offsets"}, "k:9092"
    )
    assert str(error) == (
        "topic 'marketing.trigger' does not exist on k:9092 (did you mean marketing.triggers?)"
    )
    assert str(missing_topic("no.such.topic", {"shop.cart"}, "k:9092")) == (
        "topic 'no.such.topic' does not exist on k:9092"
    )


# --- replay: gzip, binary input, progress, summary JSON, exit status ------------------------


def event_lines(count: int) -> bytes:
    """``count`` product views by 50 users, then one search 5 h later (the views' reminders
    come due before it)."""
    views = b"".join(
        wire("product_viewed", at(seconds=n), f"u{n % 50}", f"e{n}", product_id="p") + b"\n"
        for n in range(count)
    )
    return views + wire("search", at(hours=5), "late", "last", query="q") + b"\n"


def test_replay_reads_gzip_transparently_from_a_file_and_stdin(tmp_path: Path) -> None:
    data = event_lines(300)
    plain = tmp_path / "events.jsonl"
    plain.write_bytes(data)
    packed = tmp_path / "events.data"  # recognised by content, not by name
    packed.write_bytes(gzip.compress(data))
    expected = run_nudge("replay", str(plain))
    assert expected.returncode == 0 and expected.stdout
    from_file = run_nudge("replay", str(packed))
    from_stdin = run_nudge("replay", "-", stdin=packed.read_bytes())
    assert from_file.returncode == 0 and from_stdin.returncode == 0
    assert from_file.stdout == expected.stdout == from_stdin.stdout
    assert b"replay: invalid      0" in from_file.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "is binary data, not JSON Lines"),
        ("caf\u00e9\n".encode("latin-1") * 10, "is not UTF-8 text (byte 3 of its file)"),
        (
            gzip.compress(b"\x00\x01\x02" * 100, mtime=0),
            "binary data, not JSON Lines (its decompressed",
        ),
        (b"\x1f\x8b\x08\x00garbage", "is not readable gzip data"),
    ],
)
def test_replay_refuses_what_is_not_event_text(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "input"
    path.write_bytes(content)
    done = run_nudge("replay", str(path))
    assert done.returncode == 2
    err = done.stderr.decode()
    assert err.count("\n") == 1 and message in err
    assert done.stdout == b""


def test_a_truncated_gzip_file_replays_what_it_holds_and_fails(tmp_path: Path) -> None:
    packed = gzip.compress(event_lines(5000))
    path = tmp_path / "events.jsonl.gz"
    path.write_bytes(packed[: len(packed) // 2])
    done = run_nudge("replay", str(path))
    assert done.returncode == 2
    err = done.stderr.decode()
    assert f"nudge replay: {path}: reading stopped after line" in err
    assert "replay: events read  " in err  # the summary of what was read
    assert "Traceback" not in err


@pytest.mark.parametrize("content", [b"", b"\n\n", b"not json\n{}\n"])
def test_replay_with_no_valid_event_exits_1(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(content)
    done = run_nudge("replay", str(path))
    assert done.returncode == 1
    assert f"nudge replay: no valid event in {path}" in done.stderr.decode()


def test_replay_writes_the_summary_as_json(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(event_lines(10) + b"{oops\n")
    report = tmp_path / "summary.json"
    done = run_nudge("replay", str(path), "--summary-json", str(report))
    assert done.returncode == 0
    summary = orjson.loads(report.read_bytes())
    assert summary["exit_status"] == 0
    assert (summary["events_read"], summary["invalid"], summary["processed"]) == (12, 1, 11)
    assert summary["invalid_reasons"] == {"not_json": 1}
    assert summary["users"] == 11
    assert summary["decisions"]["browse_abandonment"]["sent"] == 10
    assert summary["decisions"]["dormancy"]["sent"] == 0
    assert summary["clock"] is not None and summary["elapsed_seconds"] >= 0
    unwritable = run_nudge("replay", str(path), "--summary-json", "/nonexistent/dir/s.json")
    assert unwritable.returncode == 2
    assert b"cannot write /nonexistent/dir/s.json" in unwritable.stderr


def test_replay_prints_progress_lines_to_a_non_terminal_unless_quiet(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(event_lines(3100))
    loud = run_nudge("replay", str(path), "--progress-every", "0.000001")
    progress = [line for line in loud.stderr.decode().splitlines() if " events/s" in line]
    assert [line.split(" events,")[0] for line in progress] == [
        "replay: 1,024",
        "replay: 2,048",
        "replay: 3,072",
    ]
    assert "%, ETA " in progress[0] and "\r" not in loud.stderr.decode()
    quiet = run_nudge("replay", str(path), "--progress-every", "0.000001", "--quiet")
    assert b" events/s" not in quiet.stderr
    assert quiet.stdout == loud.stdout


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_line_rate_share_and_eta() -> None:
    clock, stream = FakeClock(), io.StringIO()
    progress = Progress(stream, size=1000, every=5.0, clock=clock, terminal=False)
    assert not progress.due()
    clock.now += 5.0
    assert progress.due()
    progress.show(50_000, 250)  # a quarter in 5 s: 15 s to go
    assert stream.getvalue() == (
        "replay: 50,000 events, 10,000 events/s, 0:00:05 elapsed, 25%, ETA 0:00:15\n"
    )
    assert not progress.due()
    progress.show(60_000, None)  # position unknown (stdin): no share, no ETA
    assert stream.getvalue().endswith("replay: 60,000 events, 12,000 events/s, 0:00:05 elapsed\n")


def test_progress_on_a_terminal_rewrites_one_line() -> None:
    clock, stream = FakeClock(), io.StringIO()
    progress = Progress(stream, size=None, every=1.0, clock=clock, terminal=True)
    clock.now += 2
    progress.show(10, None)
    progress.done()
    assert stream.getvalue() == "\rreplay: 10 events, 5 events/s, 0:00:02 elapsed\x1b[K\r\x1b[K"


class Pipe(io.RawIOBase):
    """A non-seekable stream handing out a few bytes at a time, like a pipe."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), 7, len(self.data))
        buffer[:n], self.data = self.data[:n], self.data[n:]
        return n


@pytest.mark.parametrize("compress", [False, True])
def test_open_events_on_a_pipe_puts_back_what_it_sniffed(compress: bool) -> None:
    data = event_lines(2000)
    stream = io.BufferedReader(Pipe(gzip.compress(data) if compress else data))
    source = open_events("-", stream)  # type: ignore[arg-type]
    assert source.compressed is compress and source.size is None
    assert b"".join(source.lines) == data


def test_open_events_accepts_a_character_cut_at_the_end_of_the_sample(tmp_path: Path) -> None:
    from cli.event_input import SAMPLE

    path = tmp_path / "events.jsonl"
    data = b"a" * (SAMPLE - 1) + "\u00e9".encode()  # the sample ends inside the character
    path.write_bytes(data)
    source = open_events(str(path), sys.stdin.buffer)
    try:
        assert b"".join(source.lines) == data
    finally:
        source.close()
    path.write_bytes(b"a" * 10 + b"\xc3")  # but a cut character at the very end is refused
    with pytest.raises(NotEventText):
        open_events(str(path), sys.stdin.buffer)
