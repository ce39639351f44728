"""``nudge replay EVENTS --jobs N`` (N >= 2): the jobs of :mod:`cli.replay_jobs`, merged.

Each job reads the events file itself (stdin is first copied to a temporary file),
writes its records to a temporary file, each line prefixed with its merge key
(:func:`cli.replay_jobs.record_key`), and its messages (invalid lines, processing
errors) to another. The parent then merges the N files into the output, in the
canonical order, and the messages, in line order, to stderr: the output is byte for
byte the one ``--jobs 1`` writes. Job 0 shows the progress (it reads every line).
"""

from __future__ import annotations

import heapq
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

import orjson

from cli.event_input import EventInput, open_events
from cli.progress import CHECK_EVERY, Progress
from cli.replay_jobs import (
    END_OF_INPUT,
    JobFailed,
    JobReplay,
    merge_summaries,
    record_key,
    run_parallel,
    spool,
)
from triggers.events import InvalidEvent
from triggers.records import record_to_json
from triggers.replay import ReplaySummary, describe_error, without_cycle_collector
from triggers.rules import Rules

FLUSH_BYTES = 1 << 20


@dataclass(slots=True)
class JobOutcome:
    summary: ReplaySummary
    lines: int  # line number reached
    problem: str | None  # why reading stopped early (truncated gzip data), if it did
    cpu_seconds: float  # the job process's CPU time


class _Sinks:
    """A job's two files: records and messages, each line ``key TAB payload``."""

    def __init__(self, workdir: Path, job: int) -> None:
        self.job = job
        self.records = open(workdir / f"records-{job}", "wb", buffering=FLUSH_BYTES)  # noqa: SIM115
        self.messages = open(workdir / f"messages-{job}", "wb")  # noqa: SIM115
        self._seq = 0
        self._said = 0

    def say(self, line: int, kind: int, text: str) -> None:
        self._said += 1
        key = b"%012d%d%06d%012d" % (line, kind, self.job, self._said)
        self.messages.write(key + b"\t" + orjson.dumps(text) + b"\n")

    def write(self, replay: JobReplay, records: list, where: str) -> None:  # type: ignore[type-arg]
        for tag, record in replay.take_tagged(records):
            try:
                text = record_to_json(record)
            except Exception as exc:
                message = f"a record could not be written: {describe_error(exc)}"
                self.say(tag[0], 1, f"{where}: processing_error: {message}")
                continue
            self._seq += 1
            self.records.write(record_key(tag, self._seq) + b"\t" + text + b"\n")

    def close(self) -> None:
        self.records.close()
        self.messages.close()


def _job(
    job: int,
    *,
    jobs: int,
    path: str,
    rules: Rules,
    until: datetime | None,
    workdir: Path,
    progress_every: float | None,
) -> JobOutcome:
    source = open_events(path, sys.stdin.buffer)
    replay = JobReplay(rules, job=job, jobs=jobs, tagged=True)
    progress = None
    if job == 0 and progress_every is not None:
        progress = Progress(sys.stderr, size=source.size, every=progress_every)
    sinks = _Sinks(workdir, job)
    try:
        with without_cycle_collector():
            number, problem = _feed(source, replay, sinks, progress, job)
            replay.line = END_OF_INPUT
            sinks.write(replay, replay.finish(until), "end of input")
            for detail in replay.take_errors():
                sinks.say(END_OF_INPUT, 1, f"end of input: processing_error: {detail}")
    finally:
        if progress is not None:
            progress.done()
        sinks.close()
        source.close()
    return JobOutcome(replay.summary, number, problem, time.process_time())


def _feed(
    source: EventInput, replay: JobReplay, sinks: _Sinks, progress: Progress | None, job: int
) -> tuple[int, str | None]:
    number = 0
    try:
        for number, raw in enumerate(source.lines, start=1):
            if progress is not None and number % CHECK_EVERY == 0 and progress.due():
                progress.show(number, source.position())
            if not raw.strip():
                continue
            replay.line = number
            try:
                records = replay.feed_line(raw)
            except InvalidEvent as exc:
                # Every job parses every line: job 0 alone reports the invalid ones.
                if job == 0 or exc.reason == "processing_error":
                    sinks.say(number, 0, f"line {number}: {exc.reason}: {exc.detail}")
                continue
            if replay.errors:
                for detail in replay.take_errors():
                    sinks.say(number, 1, f"line {number}: processing_error: {detail}")
            if records:
                sinks.write(replay, records, f"line {number}")
    except (EOFError, OSError) as exc:
        return number, str(exc) or type(exc).__name__
    return number, None


def replay_in_jobs(
    events: str,
    source: EventInput,
    sink: BinaryIO,
    *,
    rules: Rules,
    until: datetime | None,
    jobs: int,
    progress_every: float | None,
) -> tuple[ReplaySummary, str | None, list[float]]:
    """Replay ``events`` (already opened and checked as ``source``) in ``jobs`` processes
    into ``sink``; the merged summary, if reading stopped early why (like ``reading
    stopped after line N: ...``), and each job's CPU seconds. Messages go to stderr in
    line order."""
    try:
        scratch = tempfile.TemporaryDirectory(prefix="nudge-replay-")
    except OSError as exc:  # e.g. TMPDIR missing or not writable
        raise JobFailed(f"cannot create the jobs' temporary directory: {exc}") from None
    with scratch as temporary:
        workdir = Path(temporary)
        path, spool_problem = events, None
        if events == "-":  # one reader only: the jobs read a copy
            path, spool_problem = spool(source.lines, workdir)

        def job(k: int) -> JobOutcome:
            return _job(
                k,
                jobs=jobs,
                path=path,
                rules=rules,
                until=until,
                workdir=workdir,
                progress_every=progress_every,
            )

        outcomes = run_parallel(jobs, job)
        _merge_messages(workdir, jobs)
        _merge_records(workdir, jobs, sink)
    first = outcomes[0]
    reason = first.problem or spool_problem
    problem = None if reason is None else f"reading stopped after line {first.lines}: {reason}"
    summary = merge_summaries([outcome.summary for outcome in outcomes])
    return summary, problem, [outcome.cpu_seconds for outcome in outcomes]


def _merge_records(workdir: Path, jobs: int, sink: BinaryIO) -> None:
    files = [open(workdir / f"records-{job}", "rb", buffering=FLUSH_BYTES) for job in range(jobs)]  # noqa: SIM115
    try:
        buffered: list[bytes] = []
        size = 0
        for line in heapq.merge(*files):
            record = line[line.index(b"\t") + 1 :]
            buffered.append(record)
            size += len(record)
            if size >= FLUSH_BYTES:
                sink.write(b"".join(buffered))
                buffered.clear()
                size = 0
        sink.write(b"".join(buffered))
        sink.flush()
    finally:
        for handle in files:
            handle.close()


def _merge_messages(workdir: Path, jobs: int) -> None:
    files = [open(workdir / f"messages-{job}", "rb") for job in range(jobs)]  # noqa: SIM115
    try:
        for line in heapq.merge(*files):
            print(orjson.loads(line[line.index(b"\t") + 1 :]), file=sys.stderr)
    finally:
        for handle in files:
            handle.close()
