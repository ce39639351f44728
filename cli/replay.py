"""``nudge replay EVENTS``: the replay simulation (:mod:`triggers.replay`) on a file.

Reads the events (JSON Lines, plain or gzip, see :mod:`cli.event_input`), writes
the records as JSON Lines, reports invalid lines, progress and the summary on
stderr, and optionally the summary as JSON (``--summary-json``).

Exit status: 0 after a replay (invalid lines are reported, not fatal); 1 for an
invalid rules file, an input with no valid event, or a reader that went away;
2 for an unreadable or non-text input, an unwritable output or a bad option.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import datetime
from typing import BinaryIO, TextIO

import orjson

from cli.event_input import EventInput, NotEventText, open_events
from cli.progress import CHECK_EVERY, Progress
from triggers.events import InvalidEvent
from triggers.records import STATUSES, record_to_json
from triggers.replay import (
    Record,
    Replay,
    ReplaySummary,
    describe_error,
    without_cycle_collector,
)
from triggers.rules import RulesError, load_rules
from triggers.timestamps import TimestampError, format_timestamp, parse_timestamp

FLUSH_RECORDS = 2048


class ReplayInputError(Exception):
    """The input broke off in the middle (e.g. truncated gzip data)."""


def replay_command(
    events: str,
    *,
    rules: str | None,
    until: str | None,
    out: str,
    quiet: bool = False,
    summary_json: str | None = None,
    progress_every: float = 5.0,
    jobs: int = 1,
) -> int:
    """``nudge replay EVENTS [--rules R] [--until TS] [--out F] [--quiet] [--summary-json F]
    [--jobs N]``: with N >= 2 the users are split across N processes
    (:mod:`cli.replay_parallel`), the output byte for byte the same."""
    try:
        loaded = load_rules(rules)
    except RulesError as exc:
        for line in str(exc).splitlines():
            print(f"nudge replay: rules: {line}", file=sys.stderr)
        return 1
    end: datetime | None = None
    if until is not None:
        try:
            end = parse_timestamp(int(until) if until.strip().lstrip("-").isdigit() else until)
        except TimestampError as exc:
            print(f"nudge replay: --until: {exc.detail}", file=sys.stderr)
            return 2
    try:
        source = open_events(events, sys.stdin.buffer)
    except OSError as exc:
        print(f"nudge replay: cannot read {events}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except NotEventText as exc:
        print(f"nudge replay: {exc}", file=sys.stderr)
        return 2
    opened: list[BinaryIO | TextIO] = []
    try:
        sink: BinaryIO = sys.stdout.buffer if out == "-" else open(out, "wb")  # noqa: SIM115
        opened.append(sink)
        report = open(summary_json, "w", encoding="utf-8") if summary_json else None  # noqa: SIM115
        if report is not None:
            opened.append(report)
    except OSError as exc:
        print(f"nudge replay: cannot write {exc.filename}: {exc.strerror}", file=sys.stderr)
        _close(source, opened)
        return 2
    started = time.monotonic()
    status = 0
    progress = None
    job_cpu: list[float] = []
    try:
        if jobs > 1:
            from cli.replay_jobs import JobFailed  # multiprocessing: imported only here
            from cli.replay_parallel import replay_in_jobs

            every = None if quiet else progress_every
            try:
                summary, problem, job_cpu = replay_in_jobs(
                    events, source, sink, rules=loaded, until=end, jobs=jobs, progress_every=every
                )
            except JobFailed as exc:
                print(f"nudge replay: {exc}", file=sys.stderr)
                _close(source, opened)
                return 1
            if problem is not None:
                raise ReplayInputError(problem)
        else:
            progress = (
                None if quiet else Progress(sys.stderr, size=source.size, every=progress_every)
            )
            replay = Replay(loaded, keep_going=True)
            summary = replay.summary
            with without_cycle_collector():
                _run(source, sink, replay, end, progress)
    except BrokenPipeError:  # the reader went away (e.g. `| head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        _close(source, opened)
        return 1
    except ReplayInputError as exc:
        print(f"nudge replay: {events}: {exc}", file=sys.stderr)
        status = 2
    finally:
        if progress is not None:
            progress.done()
    for line in summary.lines():
        print(f"replay: {line}", file=sys.stderr)
    if status == 0 and summary.events_read == summary.invalid:
        print(
            f"nudge replay: no valid event in {events} ({summary.events_read} lines read): "
            "replay reads the input events of CONTRACT section 1, one JSON object per line",
            file=sys.stderr,
        )
        status = 1
    if report is not None:
        elapsed = time.monotonic() - started
        # --jobs N: each job's CPU, to see the split and what every job repeats
        jobs_cpu = {"jobs": jobs, "job_cpu_seconds": [round(t, 3) for t in job_cpu]}
        report.write(
            summary_to_json(
                summary,
                events=events,
                status=status,
                elapsed=elapsed,
                extra=jobs_cpu if job_cpu else None,
            )
        )
    _close(source, opened)
    return status


def _close(source: EventInput, opened: list[BinaryIO | TextIO]) -> None:
    if source.raw is not sys.stdin.buffer:
        source.close()
    for handle in opened:
        if handle is not sys.stdout.buffer:
            handle.close()


def _run(
    source: EventInput,
    sink: BinaryIO,
    replay: Replay,
    until: datetime | None,
    progress: Progress | None,
) -> None:
    buffered: list[bytes] = []
    number = 0
    try:
        for number, raw in enumerate(source.lines, start=1):
            if progress is not None and number % CHECK_EVERY == 0 and progress.due():
                progress.show(number, source.position())
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
                if len(buffered) >= FLUSH_RECORDS:
                    sink.write(b"\n".join(buffered) + b"\n")
                    buffered.clear()
    except (EOFError, OSError) as exc:
        if isinstance(exc, BrokenPipeError):
            raise
        # Truncated or corrupt gzip data: what was read is replayed and reported.
        reason = str(exc) or type(exc).__name__
        problem = ReplayInputError(f"reading stopped after line {number}: {reason}")
    else:
        problem = None
    _serialize(replay.finish(until), buffered, "end of input")
    for detail in replay.take_errors():
        print(f"end of input: processing_error: {detail}", file=sys.stderr)
    if buffered:
        sink.write(b"\n".join(buffered) + b"\n")
    sink.flush()
    if problem is not None:
        raise problem


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


def summary_to_json(
    summary: ReplaySummary,
    *,
    events: str,
    status: int,
    elapsed: float,
    extra: dict[str, object] | None = None,
) -> str:
    """The summary as one JSON document (every trigger and status present, zeros included)."""
    document = {
        "input": events,
        "exit_status": status,
        "events_read": summary.events_read,
        "invalid": summary.invalid,
        "invalid_reasons": dict(sorted(summary.invalid_reasons.items())),
        "ignored": summary.ignored,
        "duplicate": summary.duplicate,
        "test": summary.test,
        "before_erasure": summary.before_erasure,
        "processed": summary.processed,
        "users": summary.users,
        "decisions": {
            trigger: {status: summary.decisions[trigger, status] for status in STATUSES}
            for trigger in summary.triggers()
        },
        "suppressed": dict(sorted(summary.reasons.items())),
        "conversions": summary.conversions,
        "conversions_by_arm": dict(sorted(summary.arms.items())),
        "engagement": summary.engagement,
        "erasures": summary.erasures,
        "expired": summary.expired,
        "errors": summary.errors,
        "clock": format_timestamp(summary.clock) if summary.clock is not None else None,
        "elapsed_seconds": round(elapsed, 3),
        "events_per_second": round(summary.events_read / elapsed) if elapsed > 0 else None,
        **(extra or {}),
    }
    return orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n"
