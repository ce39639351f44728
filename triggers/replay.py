"""``nudge replay``: the engine on a JSON Lines file, with an event-time clock.

The same :class:`~triggers.engine.Engine` as the live service, without Kafka or
Redis. The simulation (contract section 6):

- a heap holds ``(next_due, user_id)`` for every user with something pending;
- before each event with time T, every user whose next due time is <= T is
  fired, in (due, user_id) order, with ``on_time(state, now=due)``: in replay
  a stage is reached exactly when it is due;
- the event is then applied with ``on_event(state, event, now=clock)``, where
  ``clock = max(clock, T)``: events need not be sorted, an out-of-order event
  is processed at the current clock; if it makes something due at once, that
  fires right after, at the clock;
- at the end the clock advances to ``until`` (default: the latest event time
  seen) and everything due by then fires.

Same input, same output, byte for byte. The operator suppression set is an
injected collection of user ids (empty for the command line).

Errors (``keep_going=True``, what the command and :func:`replay_lines` use): a
line whose own processing raises anything is reported like an invalid line,
with reason ``processing_error``, and skipped (nothing of it is kept: the
user's state and the clock are as if the line were absent); a stage of another
user that cannot fire when the clock reaches it is reported as a
``processing_error`` of the line being read (or of the end of input), that
user keeps their state and is scheduled again by their next event. The
parser and the engine are meant never to raise (bounded input, bounded
rules); this is the safety net, so one bad line never stops a replay. With
the default ``keep_going=False`` the exception propagates (tests see it).

Programmatic use (the benchmark, tests)::

    from triggers.replay import replay_lines
    result = replay_lines(open("events.jsonl", "rb"), rules, until=None)
    result.records   # list of Decision | Conversion, in emission order
    result.summary   # ReplaySummary: events_read, invalid, test, duplicate, processed, ...
    result.states    # final UserState per user id
    result.invalid   # [(line number, reason, detail)]
    result.errors    # [(line number or None at the end, detail)]: stages that could not fire

or incrementally with :class:`Replay` (``feed_line`` / ``feed_event`` /
``finish``), which is what ``replay_command`` streams with.
"""

from __future__ import annotations

import gc
import heapq
import os
import sys
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import BinaryIO, TextIO

from triggers.engine import NO_FACTS, PROCESSED, TEST, Engine, OutsideFacts
from triggers.events import Event, InvalidEvent, parse_event
from triggers.records import STATUSES, TRIGGER_NAMES, Conversion, Decision, record_to_json
from triggers.rules import Rules, RulesError, load_rules
from triggers.state import UserState
from triggers.timestamps import TimestampError, format_timestamp, parse_timestamp

Record = Decision | Conversion
_SUPPRESSED_FACTS = OutsideFacts(suppressed=True)
_PROGRESS_EVERY = 100_000


@dataclass(slots=True)
class ReplaySummary:
    events_read: int = 0  # non-blank lines
    invalid: int = 0
    test: int = 0
    duplicate: int = 0
    processed: int = 0
    users: int = 0
    conversions: int = 0
    decisions: Counter[tuple[str, str]] = field(default_factory=Counter)  # (trigger, status)
    reasons: Counter[str] = field(default_factory=Counter)  # suppression reasons
    arms: Counter[str] = field(default_factory=Counter)  # conversions by arm
    invalid_reasons: Counter[str] = field(default_factory=Counter)
    errors: int = 0  # stages that could not fire (keep_going)
    clock: datetime | None = None  # where the clock ended

    @property
    def ignored(self) -> int:
        return self.test + self.duplicate

    def count(self, record: Record) -> None:
        if type(record) is Decision:
            self.decisions[record.trigger, record.status] += 1
            if record.reason is not None:
                self.reasons[record.reason] += 1
        else:
            self.conversions += 1
            self.arms[record.arm] += 1

    def lines(self) -> list[str]:
        out = [
            f"events read  {self.events_read}",
            f"invalid      {self.invalid}"
            + (f" ({_counts(self.invalid_reasons)})" if self.invalid_reasons else ""),
            f"ignored      {self.ignored} (duplicate {self.duplicate}, test {self.test})",
            f"processed    {self.processed}",
            f"users        {self.users}",
            "decisions    " + "".join(f"{status:>12}" for status in STATUSES),
        ]
        for trigger in TRIGGER_NAMES:
            counts = [self.decisions[trigger, status] for status in STATUSES]
            out.append(f"  {trigger:<25}" + "".join(f"{n:>12}" for n in counts))
        if self.reasons:
            out.append(f"suppressed   {_counts(self.reasons)}")
        arms = f" ({_counts(self.arms)})" if self.arms else ""
        out.append(f"conversions  {self.conversions}{arms}")
        if self.errors:
            out.append(f"errors       {self.errors} (stages that could not fire, reported above)")
        if self.clock is not None:
            out.append(f"clock        {format_timestamp(self.clock)}")
        return out


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{key} {counter[key]}" for key in sorted(counter))


class Replay:
    """The event-time simulation, fed one line or event at a time.

    Every ``feed_*`` call and :meth:`finish` return the records it produced, in
    emission order. ``states`` holds the current state of every user seen.
    """

    def __init__(
        self,
        rules: Rules,
        *,
        suppressed: Collection[str] = frozenset(),
        keep_going: bool = False,
    ) -> None:
        self.engine = Engine(rules)
        self.suppressed = suppressed
        self.keep_going = keep_going
        self.states: dict[str, UserState] = {}
        self.summary = ReplaySummary()
        self.clock: datetime | None = None
        # keep_going: stages that could not fire (details, see take_errors), and records
        # produced before a line failed (returned with the next call, so none is lost).
        self.errors: list[str] = []
        self._carry: list[Record] = []
        # The heap holds at most one live entry per user: the earliest time queued for
        # them (``_queued``). When a user's next due time (``_due``) moves later, the
        # entry stays; when it pops, it is re-queued at the user's current due time.
        self._heap: list[tuple[datetime, str]] = []
        self._due: dict[str, datetime] = {}
        self._queued: dict[str, datetime] = {}

    def feed_line(self, raw: bytes | str) -> list[Record]:
        """Parse and apply one line; raises InvalidEvent (counted) for a bad one, and
        (``keep_going``) ``InvalidEvent("processing_error")`` for one that fails."""
        self.summary.events_read += 1
        try:
            event = parse_event(raw)
        except InvalidEvent as exc:
            self.summary.invalid += 1
            self.summary.invalid_reasons[exc.reason] += 1
            raise
        return self.feed_event(event)

    def feed_event(self, event: Event) -> list[Record]:
        ts = event.ts
        heap = self._heap
        out: list[Record] = self._fire_until(ts) if heap and heap[0][0] <= ts else []
        if self._carry:
            out[:0] = self._carry
            self._carry = []
        try:
            self._apply(event, out)
        except Exception as exc:
            if not self.keep_going:
                raise
            self._carry = out  # what fired before the failure still goes out, in order
            self.summary.invalid += 1
            self.summary.invalid_reasons["processing_error"] += 1
            raise InvalidEvent("processing_error", _describe(exc)) from exc
        return out

    def _apply(self, event: Event, out: list[Record]) -> None:
        """Apply one event at ``max(clock, ts)``; commits nothing if the engine raises."""
        ts = event.ts
        clock = self.clock
        if clock is None or ts > clock:
            clock = ts
        user_id = event.user_id
        states = self.states
        previous = states.get(user_id)
        step = self.engine.on_event(previous, event, clock)
        summary = self.summary
        outcome = step.outcome
        if outcome != PROCESSED:
            self.clock = clock
            if outcome == TEST:
                summary.test += 1
            else:
                summary.duplicate += 1
            return
        state = step.state
        due = step.next_due
        fired = None
        if due is not None and due <= clock:
            fired = self.engine.on_time(state, clock, self._facts(user_id))
            state = fired.state
            due = fired.next_due
        # Nothing failed: commit.
        self.clock = clock
        summary.processed += 1
        if previous is None:
            summary.users += 1
        states[user_id] = state
        if step.records:
            self._collect(step.records, out)
        if fired is not None:
            self._collect(fired.records, out)
        self._schedule(user_id, due)

    def take_errors(self) -> list[str]:
        """The stages that could not fire since the last call (``keep_going``)."""
        errors, self.errors = self.errors, []
        return errors

    def advance(self, until: datetime) -> list[Record]:
        """Move the clock forward to ``until``, firing every stage due by then."""
        out = self._fire_until(until)
        if self._carry:
            out[:0] = self._carry
            self._carry = []
        if self.clock is None or until > self.clock:
            self.clock = until
        self.summary.clock = self.clock
        return out

    def finish(self, until: datetime | None = None) -> list[Record]:
        """End of input: advance to ``until`` (default: the latest event time seen)."""
        target = until if until is not None else self.clock
        return self.advance(target) if target is not None else []

    def _facts(self, user_id: str) -> OutsideFacts:
        return _SUPPRESSED_FACTS if user_id in self.suppressed else NO_FACTS

    def _collect(self, records: tuple[Record, ...], out: list[Record]) -> None:
        count = self.summary.count
        for record in records:
            count(record)
        out += records

    def _schedule(self, user_id: str, due: datetime | None) -> None:
        if due is None:
            self._due.pop(user_id, None)
            return
        self._due[user_id] = due
        queued = self._queued.get(user_id)
        if queued is None or due < queued:
            self._queued[user_id] = due
            heapq.heappush(self._heap, (due, user_id))

    def _fire_until(self, moment: datetime) -> list[Record]:
        out: list[Record] = []
        heap, due_of, queued = self._heap, self._due, self._queued
        pop, push = heapq.heappop, heapq.heappush
        while heap and heap[0][0] <= moment:
            when, user_id = pop(heap)
            if queued.get(user_id) != when:
                continue  # an earlier entry for this user was queued after this one
            due = due_of.get(user_id)
            if due is None:
                del queued[user_id]
                continue  # nothing pending any more
            if due != when:  # moved later: queue the user again at the new time
                queued[user_id] = due
                push(heap, (due, user_id))
                continue
            del queued[user_id]
            del due_of[user_id]
            if self.clock is None or due > self.clock:
                self.clock = due
            try:
                step = self.engine.on_time(self.states[user_id], due, self._facts(user_id))
            except Exception as exc:
                if not self.keep_going:
                    raise
                # The user keeps their state, unscheduled: their next event re-arms them.
                self.summary.errors += 1
                self.errors.append(
                    f"a stage due at {format_timestamp(due)} could not fire: {_describe(exc)}"
                )
                continue
            self.states[user_id] = step.state
            self._collect(step.records, out)
            self._schedule(user_id, step.next_due)
        return out


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 300 else text[:297] + "..."


@dataclass(slots=True)
class ReplayResult:
    records: list[Record]
    summary: ReplaySummary
    states: dict[str, UserState]
    invalid: list[tuple[int, str, str]]  # (line number, reason, detail)
    # stages that could not fire: (line being read, None at the end of input; detail)
    errors: list[tuple[int | None, str]] = field(default_factory=list)


@contextmanager
def _without_cycle_collector() -> Iterator[None]:
    """Pause the cyclic garbage collector for a batch run.

    The engine only builds immutable trees (no reference cycles), so reference
    counting frees everything; the collector would only re-scan the growing
    set of live user states, which costs about a fifth of a replay's time.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def replay_lines(
    lines: Iterable[bytes | str],
    rules: Rules,
    until: datetime | None = None,
    *,
    suppressed: Collection[str] = frozenset(),
) -> ReplayResult:
    """Replay JSON Lines (blank lines skipped, invalid ones collected) and finish at ``until``.

    A line that fails in the engine is collected as invalid (``processing_error``)."""
    replay = Replay(rules, suppressed=suppressed, keep_going=True)
    records: list[Record] = []
    invalid: list[tuple[int, str, str]] = []
    errors: list[tuple[int | None, str]] = []
    with _without_cycle_collector():
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            try:
                records += replay.feed_line(raw)
            except InvalidEvent as exc:
                invalid.append((number, exc.reason, exc.detail))
            if replay.errors:
                errors += ((number, detail) for detail in replay.take_errors())
        records += replay.finish(until)
        errors += ((None, detail) for detail in replay.take_errors())
    return ReplayResult(records, replay.summary, replay.states, invalid, errors)


# --- the command -------------------------------------------------------------------------


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
        with _without_cycle_collector():
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
                message = f"a record could not be written: {_describe(exc)}"
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
