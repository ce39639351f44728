"""Structured (JSON Lines) logs for the worker. Nudge's own log lines never carry user ids."""

from __future__ import annotations

import logging
import logging.config
from datetime import UTC, datetime
from typing import Any

import orjson

#: Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = {*logging.makeLogRecord({}).__dict__, "message", "asctime", "taskName"}
_CORE = ("ts", "level", "logger", "msg", "exc")
#: ``extra=`` keys that would carry a user's identity: dropped, never written.
PERSONAL_KEYS = frozenset({"user_id", "user", "email", "key"})


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, exc, then the ``extra=`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        for name, value in record.__dict__.items():
            if name in _STANDARD or name in _CORE or name.startswith("_"):
                continue
            if name in PERSONAL_KEYS:
                continue
            entry[name] = value
        return orjson.dumps(entry, default=str).decode()


class RepeatFilter(logging.Filter):
    """Let the same message from the same logger through once per ``interval`` seconds.

    While a broker is unreachable, aiokafka logs each reconnect attempt, thousands a
    second; the first of each kind is enough, with a count of what was dropped. Only
    warnings and errors are limited: the lifecycle lines (a rebalance, a recovery) must
    all show, even two rebalances a second apart.
    """

    def __init__(self, interval: float = 10.0) -> None:
        super().__init__()
        self._interval = interval
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.levelno, str(record.msg))
        first, dropped = self._seen.get(key, (0.0, 0))
        if record.created - first < self._interval:
            self._seen[key] = (first, dropped + 1)
            return False
        if len(self._seen) > 10_000:
            self._seen.clear()
        self._seen[key] = (record.created, 0)
        if dropped:
            record.msg = f"{record.msg} (and {dropped} more like it)"
        return True


def logging_config(level: str) -> dict[str, Any]:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "filters": {"repeats": {"()": RepeatFilter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
                "filters": ["repeats"],
            }
        },
        "root": {"level": level.upper(), "handlers": ["stderr"]},
        "loggers": {
            "aiokafka": {"level": "WARNING"},
            "faust": {"level": level.upper()},
            # At DEBUG, faust.topics logs every record it sends: user ids and payloads.
            "faust.topics": {"level": "INFO" if level.upper() == "DEBUG" else level.upper()},
        },
    }


def configure_logging(level: str = "INFO") -> None:
    """JSON lines on stderr from here on (call it before the first line is logged)."""
    logging.config.dictConfig(logging_config(level))
