"""``nudge replay EVENTS``: the replay simulation (:mod:`triggers.replay`) on a file.

Reads the events file, writes the records as JSON Lines, reports invalid lines
and the summary on stderr.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from datetime import datetime
from typing import BinaryIO, TextIO

from triggers.events import InvalidEvent
from triggers.records import record_to_json
from triggers.replay import (
    Record,
    Replay,
    ReplaySummary,
    describe_error,
    without_cycle_collector,
)
from triggers.rules import Rules, RulesError, load_rules
from triggers.timestamps import TimestampError, parse_timestamp

_PROGRESS_EVERY = 100_000


def replay_command(events: str, *, rules: str | None, until: str | None, out: str) -> int:
    """``nudge replay EVENTS [--rules R] [--until TS] [--out F]``; ``-`` is stdin / stdout.

    Exit status: 0 after a replay (invalid lines are reported, not fatal), 1 for
    an invalid rules file, 2 for an unreadable input, unwritable output or a
    bad ``--until``.
    """
    try:
        loaded = load_rules(rules)
    except RulesError as exc:
        for key_path, reason in exc.errors:
            print(
                f"nudge replay: rules: {key_path + ': ' if key_path else ''}{reason}",
                file=sys.stderr,
            )
        return 1
    end: datetime | None = None
    if until is not None:
        try:
            end = parse_timestamp(int(until) if until.strip().lstrip("-").isdigit() else until)
        except TimestampError as exc:
            print(f"nudge replay: --until: {exc.detail}", file=sys.stderr)
            return 2
    try:
        source: BinaryIO = sys.stdin.buffer if events == "-" else open(events, "rb")  # noqa: SIM115
    except OSError as exc:
        print(f"nudge replay: cannot read {events}: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        sink: BinaryIO = sys.stdout.buffer if out == "-" else open(out, "wb")  # noqa: SIM115
    except OSError as exc:
        print(f"nudge replay: cannot write {out}: {exc.strerror}", file=sys.stderr)
        source.close()
        return 2
    size = _size_of(source)
    progress = _progress_printer(sys.stderr, size) if sys.stderr.isatty() else None
    try:
        with without_cycle_collector():
            summary = _run(source, sink, loaded, end, progress)
    except BrokenPipeError:  # the reader went away (e.g. `| head`): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    finally:
        if source is not sys.stdin.buffer:
            source.close()
        if sink is not sys.stdout.buffer:
            sink.close()
    for line in summary.lines():
        print(f"replay: {line}", file=sys.stderr)
    return 0


def _run(
    source: BinaryIO,
    sink: BinaryIO,
    rules: Rules,
    until: datetime | None,
    progress: Callable[[int, int], None] | None,
) -> ReplaySummary:
    replay = Replay(rules, keep_going=True)
    buffered: list[bytes] = []
    offset = 0
    for number, raw in enumerate(source, start=1):
        offset += len(raw)
        if progress is not None and number % _PROGRESS_EVERY == 0:
            progress(number, offset)
        if not raw.strip():
            continue
        try:
            records = replay.feed_line(raw)
        except InvalidEvent as exc:
            print(f"line {number}: {exc.reason}: {exc.detail}", file=sys.stderr)
            records = []
        if replay.errors:
            for detail in replay.take_errors():
                print(f"line {number}: processing_error: {detail}", file=sys.stderr)
        if records:
            _serialize(records, buffered, f"line {number}")
            if len(buffered) >= 2048:
                sink.write(b"\n".join(buffered) + b"\n")
                buffered.clear()
    if progress is not None:
        progress(-1, offset)
    _serialize(replay.finish(until), buffered, "end of input")
    for detail in replay.take_errors():
        print(f"end of input: processing_error: {detail}", file=sys.stderr)
    if buffered:
        sink.write(b"\n".join(buffered) + b"\n")
    sink.flush()
    return replay.summary


def _serialize(records: list[Record], buffered: list[bytes], where: str) -> None:
    """Append the records as JSON; one that cannot be written is reported and left out."""
    try:
        lines = [record_to_json(record) for record in records]
    except Exception:
        lines = []
        for record in records:
            try:
                lines.append(record_to_json(record))
            except Exception as exc:
                message = f"a record could not be written: {describe_error(exc)}"
                print(f"{where}: processing_error: {message}", file=sys.stderr)
    buffered += lines


def _size_of(source: BinaryIO) -> int | None:
    try:
        size = os.fstat(source.fileno()).st_size
    except (OSError, ValueError):
        return None
    return size or None


def _progress_printer(stream: TextIO, size: int | None) -> Callable[[int, int], None]:
    def show(lines: int, offset: int) -> None:
        if lines < 0:
            stream.write("\r\x1b[K")
        else:
            share = f" ({100 * offset / size:.0f}%)" if size else ""
            stream.write(f"\rreplay: {lines} lines{share}")
        stream.flush()

    return show
