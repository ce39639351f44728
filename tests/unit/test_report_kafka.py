"""``nudge report --from-kafka`` without a broker: the end-offset bookkeeping, the command
line, and one readable line when Kafka cannot be used (the real-broker tests are in
tests/integration/test_report_kafka.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli.main import main
from cli.report_data import AuditTally
from stream.topic_reader import UpToEnd, topic_missing

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def test_partitions_that_are_empty_at_start_are_done_at_once() -> None:
    progress = UpToEnd(begins={0: 0, 1: 7, 2: 3}, ends={0: 0, 1: 7, 2: 5})
    assert progress.todo == {2}
    assert not progress.done
    assert UpToEnd(begins={0: 4}, ends={0: 4}).done  # retention removed everything
    assert UpToEnd(begins={}, ends={}).done


def test_a_partition_is_done_when_the_position_reaches_the_end_taken_at_start() -> None:
    progress = UpToEnd(begins={0: 0, 1: 0}, ends={0: 3, 1: 10})
    assert progress.wanted(0, 2) and not progress.wanted(0, 3)  # written after the start
    assert not progress.reached(0, 2)
    assert progress.reached(0, 3)
    assert not progress.reached(0, 4)  # already done: reported once
    assert progress.todo == {1} and not progress.done
    # A gap (a transaction marker, a compacted record) still ends the partition.
    assert progress.reached(1, 12)
    assert progress.done


def test_a_missing_topic_is_named_with_the_closest_one_and_the_fix() -> None:
    error = topic_missing(
        "marketing.trigger.audit", {"marketing.triggers.audit", "shop.cart"}, "k:9092",
        "Set NUDGE_TOPIC_AUDIT.",
    )  # fmt: skip
    assert str(error) == (
        "topic 'marketing.trigger.audit' does not exist on k:9092 (did you mean "
        "marketing.triggers.audit?). Set NUDGE_TOPIC_AUDIT."
    )


def test_an_invalid_record_is_named_by_where_it_was_read() -> None:
    tally = AuditTally()
    tally.add_line(b'{"kind": "decision"}', "partition 2 offset 41")
    tally.add_line(b"not json")
    assert tally.invalid == 2
    assert tally.invalid_examples[0].startswith("partition 2 offset 41: ")
    assert tally.invalid_examples[1].startswith("line 2: ")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["report"], "give an audit file ('-' for stdin) or --from-kafka"),
        (["report", "a.jsonl", "--from-kafka"], "give an audit file or --from-kafka, not both"),
        (["report", "a.jsonl", "--topic", "t"], "--topic needs --from-kafka"),
    ],
)
def test_the_source_is_a_file_or_kafka(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_kafka_down_is_one_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])  # closed once the block ends: nothing listens
    monkeypatch.setenv("NUDGE_KAFKA_BOOTSTRAP", f"127.0.0.1:{port}")
    monkeypatch.setenv("NUDGE_KAFKA_STARTUP_TIMEOUT_SECONDS", "3")
    started = time.monotonic()
    assert main(["report", "--from-kafka"]) == 1
    assert time.monotonic() - started < 10
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f"nudge report: cannot use Kafka at 127.0.0.1:{port}: no broker accepts connections "
        "there. Is the broker running? Check NUDGE_KAFKA_BOOTSTRAP"
    ]


def test_bad_settings_are_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NUDGE_KAFKA_BOOTSTRAP", "no-port-here")
    assert main(["report", "--from-kafka"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nudge report: NUDGE_KAFKA_BOOTSTRAP=") and "Traceback" not in err


def test_ctrl_c_while_waiting_for_kafka_is_exit_130_without_a_report() -> None:
    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = int(silent.getsockname()[1])
        process = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "report", "--from-kafka"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={
                **os.environ,
                "NUDGE_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}",
                "NUDGE_KAFKA_STARTUP_TIMEOUT_SECONDS": "60",
            },
        )
        try:
            silent.settimeout(30)
            connection, _ = silent.accept()  # the client is connecting: its handlers are set
            assert process.poll() is None
            process.send_signal(signal.SIGINT)
            out, err = process.communicate(timeout=10)
            connection.close()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert process.returncode == 130
    assert out == b""
    assert err.decode().splitlines() == ["nudge report: stopped before Kafka answered; no report"]
