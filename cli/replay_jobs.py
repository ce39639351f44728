"""``--jobs N``: one replay's users split across N processes, exactly as one process gives.

Job ``k`` of ``N`` owns the users whose ``user_id`` the live service's partitioner
(Kafka's murmur2, :func:`stream.catalog_wire.partition_of`) puts in partition ``k``
of ``N``. Every job reads the whole input and parses every line; then

- an event of one of its users is fed to its :class:`JobReplay` as in one process;
- an event of another job's user only moves the time: the stages of the job's own
  users due by its time fire before it, and the clock becomes ``max(clock, ts)``,
  exactly what that event does to everybody else in one process (contract section
  6: the clock, and so an out-of-order event's effect, depends on every line);
- a catalog line goes to every job: each keeps the products and the interest of its
  own users (interest is per user), so each fans a change out to its own users only.

A user's whole history is in one job, and each job sees the same clock at every
line, so each user's records are the ones one process gives. Their order is
canonical (see :func:`record_key`): by input line; at a line, first the stages that
fire before it by (due time, user), then the line's own records (a catalog line's by
user); the end of input last. One process emits exactly that order, so ``--jobs 1``
needs no merge, and N jobs are merged back into it.

Invalid lines are counted and reported by job 0 alone; each job reports its own
users' processing errors. One caveat: a line that fails inside the engine (reason
``processing_error``, the safety net that should never be used) leaves the clock
where it was in one process, while the other jobs, which do not apply it, move the
clock to its time.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from stream.catalog_wire import partition_of
from triggers.deadlines import due_millis
from triggers.driver import Advance, Driver
from triggers.events import Event, ProductUpdated
from triggers.replay import Record, Replay, ReplaySummary, describe_error
from triggers.rules import Rules
from triggers.state import UserState
from triggers.steps import OutsideFacts
from triggers.timestamps import to_millis

T = TypeVar("T")

END_OF_INPUT = 10**12 - 1  # the "line" of what finish() fires: after every line
_DUE_OFFSET = 10**16  # keeps negative epoch milliseconds in fixed-width order
FIRED, APPLIED = 0, 1  # a record's phase at its line


class JobFailed(Exception):
    """A job process failed or went away; the message says which and why."""


class _TimedDriver(Driver):
    """The driver, remembering the due time of the last stage firing (the merge key)."""

    due_ms = 0

    def time(
        self, state: UserState, now: datetime, until: datetime, facts: OutsideFacts | None
    ) -> Advance:
        self.due_ms = due_millis(now) or 0
        return super().time(state, now, until, facts)


def owner(user_id: str, jobs: int) -> int:
    """The job (0..jobs-1) of a user: the partition the live service gives its key."""
    return partition_of(user_id.encode(), jobs)


class JobReplay(Replay):
    """The replay of job ``job`` of ``jobs``: its own users' records, the shared clock.

    With ``tagged``, ``line`` is set by the caller before each line is fed
    (``END_OF_INPUT`` before ``finish``) and ``tags`` gets one ``(line, phase,
    due_ms, user_id)`` per record produced, in emission order, for :func:`record_key`.
    """

    def __init__(
        self,
        rules: Rules,
        *,
        job: int,
        jobs: int,
        suppressed: Collection[str] = frozenset(),
        keep_going: bool = True,
        tagged: bool = False,
    ) -> None:
        super().__init__(rules, suppressed=suppressed, keep_going=keep_going)
        self.tagged = tagged
        self.driver = _TimedDriver(rules)
        self.engine = self.driver.engine
        self.job = job
        self.jobs = jobs
        self.line = 0
        self.tags: list[tuple[int, int, int, str]] = []
        self._owned: dict[str, bool] = {}  # murmur2 in Python costs ~4 µs: once per user

    def owns(self, user_id: str) -> bool:
        owned = self._owned.get(user_id)
        if owned is None:
            owned = self._owned[user_id] = owner(user_id, self.jobs) == self.job
        return owned

    def feed_event(self, event: Event | ProductUpdated) -> list[Record]:
        if type(event) is ProductUpdated:
            if self.job == 0:
                return super().feed_event(event)
            summary = self.summary  # job 0 counts the catalog lines
            counts = summary.test, summary.duplicate, summary.processed
            try:
                return super().feed_event(event)
            finally:
                summary.test, summary.duplicate, summary.processed = counts
        if self.owns(event.user_id):  # type: ignore[union-attr]
            return super().feed_event(event)
        return self._pass(event.ts)

    def _pass(self, ts: datetime) -> list[Record]:
        """Another job's valid event at ``ts``: what :meth:`Replay.feed_event` does before
        applying an event, then the clock (the engine's ``_apply`` moves it whatever the
        event's outcome). Kept in step with it by tests/unit/test_replay_jobs.py."""
        moment = to_millis(ts)
        earliest = self._deadlines.earliest()
        if self._expiries:
            expiring = self._expiries.earliest()
            if expiring is not None and (earliest is None or expiring < earliest):
                earliest = expiring
        out = self._fire_until(ts) if earliest is not None and earliest <= moment else []
        if self._carry:
            out[:0] = self._carry
            self._carry = []
        if self.clock is None or ts > self.clock:
            self.clock = ts
        return out

    def _keep(self, user_id: str, advance: Advance, out: list[Record]) -> None:
        if self.tagged and advance.records:
            if advance.outcome == "fired":
                tag = (self.line, FIRED, self.driver.due_ms, user_id)  # type: ignore[attr-defined]
            else:
                tag = (self.line, APPLIED, 0, user_id)
            self.tags += [tag] * len(advance.records)
        super()._keep(user_id, advance, out)

    def take_tagged(
        self, records: list[Record]
    ) -> Iterator[tuple[tuple[int, int, int, str], Record]]:
        """The records a call returned with their tags (a failed line's records, carried
        to the next call, keep the tags they got then)."""
        tags, self.tags = self.tags, []
        return zip(tags, records, strict=True)


def record_key(tag: tuple[int, int, int, str], seq: int) -> bytes:
    """The merge key of a record: bytes that sort as (line, phase, due, user, seq).

    The user id is hex of its UTF-8 (byte order = code point order = Python's str
    order), ended by a space (below every hex digit: a prefix sorts first)."""
    line, phase, due, user_id = tag
    return b"%012d%d%017d%s %012d" % (
        line,
        phase,
        due + _DUE_OFFSET,
        user_id.encode().hex().encode(),
        seq,
    )


def spool(stream: BinaryIO, workdir: Path) -> tuple[str, str | None]:
    """Copy standard input to a file every job can read; its path, and why copying
    stopped early (truncated gzip data) if it did."""
    path = workdir / "input.jsonl"
    with open(path, "wb", buffering=1 << 20) as copy:
        try:
            copy.writelines(stream)  # line by line, as one process reads: the same lines
        except (EOFError, OSError) as exc:
            return str(path), str(exc) or type(exc).__name__
    return str(path), None


def merge_summaries(summaries: list[ReplaySummary]) -> ReplaySummary:
    """One summary of N jobs: lines and invalid lines from job 0 (every job reads them
    all), everything per user summed, the clock (the same in every job) from job 0."""
    first = summaries[0]
    total = ReplaySummary(names=first.names)
    total.events_read = first.events_read
    total.invalid_reasons = Counter(first.invalid_reasons)
    for other in summaries[1:]:
        failed = other.invalid_reasons.get("processing_error", 0)
        if failed:
            total.invalid_reasons["processing_error"] += failed
    total.invalid = first.invalid + sum(
        other.invalid_reasons.get("processing_error", 0) for other in summaries[1:]
    )
    for summary in summaries:
        total.test += summary.test
        total.duplicate += summary.duplicate
        total.before_erasure += summary.before_erasure
        total.processed += summary.processed
        total.users += summary.users
        total.conversions += summary.conversions
        total.errors += summary.errors
        total.engagement += summary.engagement
        total.erasures += summary.erasures
        total.expired += summary.expired
        total.decisions.update(summary.decisions)
        total.reasons.update(summary.reasons)
        total.arms.update(summary.arms)
    total.clock = first.clock
    return total


def run_parallel(jobs: int, target: Callable[[int], T]) -> list[T]:
    """``target(job)`` for job 0..jobs-1, each in its own process; their results in job order.

    The processes are forked (they share the loaded rules) and ignore SIGINT: Ctrl-C
    reaches the caller as KeyboardInterrupt, and the jobs are stopped on the way out.
    A job that raises or dies gives :class:`JobFailed` (the other jobs are stopped)."""
    context = multiprocessing.get_context("fork")
    running: list[tuple[multiprocessing.process.BaseProcess, Connection]] = []
    try:
        for job in range(jobs):
            receive, send = context.Pipe(duplex=False)
            process = context.Process(target=_child, args=(target, job, send), daemon=True)
            process.start()
            send.close()
            running.append((process, receive))
        results: list[T] = []
        for job, (process, receive) in enumerate(running):
            try:
                kind, value = receive.recv()
            except EOFError:
                process.join()
                raise JobFailed(f"job {job} stopped (exit status {process.exitcode})") from None
            if kind != "ok":
                raise JobFailed(f"job {job} failed: {value}")
            results.append(value)
        for process, _ in running:
            process.join()
        return results
    finally:
        for process, receive in running:
            receive.close()
            if process.is_alive():
                process.terminate()
            process.join()


def _child(target: Callable[[int], Any], job: int, send: Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    try:
        result: tuple[str, Any] = ("ok", target(job))
    except BaseException as exc:
        result = ("error", describe_error(exc))
    send.send(result)
    send.close()
