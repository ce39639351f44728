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

Programmatic use (the benchmark, tests)::

    from triggers.replay import replay_lines
    result = replay_lines(open("events.jsonl", "rb"), rules, until=None)
    result.records   # list of Decision | Conversion, in emission order
    result.summary   # ReplaySummary: events_read, invalid, test, duplicate, processed, ...
    result.states    # final UserState per user id
    result.invalid   # [(line number, reason, detail)]

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

    def __init__(self, rules: Rules, *, suppressed: Collection[str] = frozenset()) -> None:
        self.engine = Engine(rules)
        self.suppressed = suppressed
        self.states: dict[str, UserState] = {}
        self.summary = ReplaySummary()
        self.clock: datetime | None = None
        # The heap holds at most one live entry per user: the earliest time queued for
        # them (``_queued``). When a user's next due time (``_due``) moves later, the
        # entry stays; when it pops, it is re-queued at the user's current due time.
        self._heap: list[tuple[datetime, str]] = []
        self._due: dict[str, datetime] = {}
        self._queued: dict[str, datetime] = {}

    def feed_line(self, raw: bytes | str) -> list[Record]:
        """Parse and apply one line; raises InvalidEvent (counted) for a bad one."""
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
        clock = self.clock
        if clock is None or ts > clock:
            clock = self.clock = ts
        user_id = event.user_id
        states = self.states
        previous = states.get(user_id)
        step = self.engine.on_event(previous, event, clock)
        summary = self.summary
        outcome = step.outcome
        if outcome != PROCESSED:
            if outcome == TEST:
                summary.test += 1
            else:
                summary.duplicate += 1
            return out
        summary.processed += 1
        if previous is None:
            summary.users += 1
        state = states[user_id] = step.state
        if step.records:
            self._collect(step.records, out)
        due = step.next_due
        if due is not None and due <= clock:
            step = self.engine.on_time(state, clock, self._facts(user_id))
            states[user_id] = step.state
            self._collect(step.records, out)
            due = step.next_due
        self._schedule(user_id, due)
        return out

    def advance(self, until: datetime) -> list[Record]:
        """Move the clock forward to ``until``, firing every stage due by then."""
        out = self._fire_until(until)
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
            step = self.engine.on_time(self.states[user_id], due, self._facts(user_id))
            self.states[user_id] = step.state
            self._collect(step.records, out)
            self._schedule(user_id, step.next_due)
        return out


@dataclass(slots=True)
class ReplayResult:
    records: list[Record]
    summary: ReplaySummary
    states: dict[str, UserState]
    invalid: list[tuple[int, str, str]]  # (line number, reason, detail)


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
    """Replay JSON Lines (blank lines skipped, invalid ones collected) and finish at ``until``."""
    replay = Replay(rules, suppressed=suppressed)
    records: list[Record] = []
    invalid: list[tuple[int, str, str]] = []
    with _without_cycle_collector():
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                continue
            try:
                records += replay.feed_line(raw)
            except InvalidEvent as exc:
                invalid.append((number, exc.reason, exc.detail))
        records += replay.finish(until)
    return ReplayResult(records, replay.summary, replay.states, invalid)


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
    replay = Replay(rules)
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
            continue
        if records:
            buffered.extend(record_to_json(record) for record in records)
            if len(buffered) >= 2048:
                sink.write(b"\n".join(buffered) + b"\n")
                buffered.clear()
    if progress is not None:
        progress(-1, offset)
    buffered.extend(record_to_json(record) for record in replay.finish(until))
    if buffered:
        sink.write(b"\n".join(buffered) + b"\n")
    sink.flush()
    return replay.summary


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
