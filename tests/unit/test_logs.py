"""JSON log lines: extra= fields kept, personal keys dropped, repeats merged, config applied."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from stream.logs import JsonFormatter, RepeatFilter, configure_logging, logging_config


def record(
    msg: str, *args: object, level: int = logging.INFO, **extra: object
) -> logging.LogRecord:
    made = logging.getLogger("nudge.test").makeRecord(
        "nudge.test", level, __file__, 1, msg, args, None, extra=extra or None
    )
    return made


def test_a_line_is_one_json_object_with_the_core_fields() -> None:
    line = orjson.loads(JsonFormatter().format(record("rules %s, %d partitions", "7+ab", 4)))
    assert line["level"] == "info"
    assert line["logger"] == "nudge.test"
    assert line["msg"] == "rules 7+ab, 4 partitions"
    assert datetime.fromisoformat(line["ts"]).tzinfo == UTC
    assert list(line) == ["ts", "level", "logger", "msg"]


def test_extra_fields_are_kept_and_made_json() -> None:
    entry = record(
        "created topics",
        topics=["a", "b"],
        partitions=4,
        path=Path("/var/lib/nudge"),
        at=datetime(2026, 1, 2, tzinfo=UTC),
    )
    line = orjson.loads(JsonFormatter().format(entry))
    assert line["topics"] == ["a", "b"]
    assert line["partitions"] == 4
    assert line["path"] == "/var/lib/nudge"
    assert line["at"] == "2026-01-02T00:00:00+00:00"


def test_fields_that_would_carry_a_user_are_dropped() -> None:
    entry = record("fired", user_id="u-123", email="a@b.c", key=b"u-123", trigger="cart")
    text = JsonFormatter().format(entry)
    assert "u-123" not in text
    assert "a@b.c" not in text
    assert orjson.loads(text)["trigger"] == "cart"


def test_an_exception_is_one_field_of_the_same_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        entry = logging.getLogger("nudge.test").makeRecord(
            "nudge.test", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    text = JsonFormatter().format(entry)
    assert "\n" not in text
    assert "ValueError: boom" in orjson.loads(text)["exc"]


def at(entry: logging.LogRecord, created: float) -> logging.LogRecord:
    entry.created = created
    return entry


def test_repeats_pass_once_per_interval_with_a_count() -> None:
    repeats = RepeatFilter(interval=10.0)
    warn = logging.WARNING
    assert repeats.filter(at(record("Unable connect to %s", "k:9092", level=warn), 100.0))
    assert not repeats.filter(at(record("Unable connect to %s", "k:9093", level=warn), 101.0))
    assert not repeats.filter(at(record("Unable connect to %s", "k:9094", level=warn), 105.0))
    later = at(record("Unable connect to %s", "k:9092", level=warn), 111.0)
    assert repeats.filter(later)
    assert later.getMessage() == "Unable connect to k:9092 (and 2 more like it)"


def test_a_different_level_or_template_is_not_a_repeat() -> None:
    repeats = RepeatFilter(interval=10.0)
    assert repeats.filter(at(record("%s", "warned", level=logging.WARNING), 100.0))
    assert repeats.filter(at(record("%s", "failed", level=logging.ERROR), 100.5))
    assert repeats.filter(at(record("other", level=logging.ERROR), 100.6))


def test_faust_per_record_logs_never_go_below_info() -> None:
    config = logging_config("DEBUG")
    assert config["loggers"]["faust.topics"]["level"] == "INFO"
    assert config["root"]["level"] == "DEBUG"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_configured_logging_writes_json_to_stderr(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("warning")
    logging.getLogger("nudge.worker").info("not at this level")
    logging.getLogger("nudge.worker").warning("NUDGE_X is unknown", extra={"variable": "NUDGE_X"})
    lines = [orjson.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(line["level"], line["msg"], line["variable"]) for line in lines] == [
        ("warning", "NUDGE_X is unknown", "NUDGE_X")
    ]


def test_lifecycle_lines_below_warning_are_never_limited() -> None:
    # Faust logs each recovery step at INFO; a second rebalance seconds after the first
    # must show all of them (a stuck recovery was invisible behind this filter).
    repeats = RepeatFilter(interval=10.0)
    assert repeats.filter(at(record("Restore complete!", level=logging.INFO), 100.0))
    assert repeats.filter(at(record("Restore complete!", level=logging.INFO), 101.0))
