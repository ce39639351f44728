"""``nudge replay EVENTS --compare RULES_B``: what-if on history, two rules files in one run.

Both replays (:class:`triggers.replay.Replay`, rules A = ``--rules`` or the
defaults, rules B = ``--compare``) read the same lines in one pass; their
decisions are joined on ``trigger_id`` (the same user, trigger, episode and
stage give the same id under both rules). Each decision falls in exactly one
class, checked in this order:

- **added**: only under B; **removed**: only under A;
- **re-judged**: in both, ``status`` or ``reason`` differs (a changed time
  may come with it);
- **re-timed**: in both, same status and reason, ``fired_at`` differs;
- **kept**: in both, same status, reason and ``fired_at``.

So A = kept + re-timed + re-judged + removed and B = kept + re-timed +
re-judged + added, per trigger and stage. ``--diff FILE`` writes every decision
that is not kept as one JSON line: ``change``, ``trigger_id``, ``trigger``,
``stage``, ``user_id``, and the record under each rules (``a``, ``b``; null
where absent), ordered by time.
"""

from __future__ import annotations

import sys
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, TextIO

import orjson

from cli.replay_jobs import JobFailed, JobReplay, run_parallel, spool
from triggers.events import InvalidEvent
from triggers.records import Decision, record_to_json
from triggers.replay import Replay
from triggers.rules import Rules, RulesError, load_rules
from triggers.timestamps import TimestampError, format_timestamp, parse_timestamp

CHANGES = ("kept", "retimed", "rejudged", "added", "removed")
# Under the conversions by arm: both replays read the same orders, so B's are not a forecast.
NOT_A_PREDICTION = (
    "  replayed shoppers do not react to B's messages: conversions under B are not a prediction"
)
HEADERS = ("kept", "re-timed", "re-judged", "added", "removed")


@dataclass(frozen=True, slots=True)
class _Seen:
    """A decision as the comparison needs it (the JSON only with ``--diff``)."""

    trigger: str
    stage: int
    user_id: str
    fired_at: datetime
    status: str
    reason: str | None
    json: bytes | None

    @property
    def verdict(self) -> str:
        return self.status if self.reason is None else f"{self.status}:{self.reason}"


@dataclass
class Comparison:
    """Counts per (trigger, stage) and change, the re-judged transitions, and the diff."""

    counts: Counter[tuple[str, int, str]] = field(default_factory=Counter)
    totals: Counter[tuple[str, int, str]] = field(default_factory=Counter)  # (t, s, "a"|"b")
    transitions: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # trigger, a, b
    conversions: Counter[tuple[str, str]] = field(default_factory=Counter)  # ("a"|"b", arm)
    shift_seconds: dict[str, list[float]] = field(default_factory=dict)  # trigger -> B - A
    diff: list[dict[str, object]] = field(default_factory=list)
    lines: int = 0
    invalid: int = 0
    errors: int = 0

    def groups(self) -> list[tuple[str, int]]:
        return sorted({(t, s) for t, s, _ in self.totals})


class _Side:
    """One replay and the decisions it made, by ``trigger_id``."""

    def __init__(
        self, rules: Rules, name: str, keep_json: bool, job: tuple[int, int] | None = None
    ) -> None:
        self.replay = (
            Replay(rules, keep_going=True)
            if job is None
            else JobReplay(rules, job=job[0], jobs=job[1])
        )
        self.name = name
        self.keep_json = keep_json
        self.decisions: dict[str, _Seen] = {}

    def take(self, records: Iterable[Decision | object], comparison: Comparison) -> None:
        for record in records:
            if type(record) is not Decision:
                comparison.conversions[self.name, record.arm] += 1  # type: ignore[attr-defined]
                continue
            self.decisions[record.trigger_id] = _Seen(
                record.trigger,
                record.stage,
                record.user_id,
                record.fired_at,
                record.status,
                record.reason,
                record_to_json(record) if self.keep_json else None,
            )
            comparison.totals[record.trigger, record.stage, self.name] += 1


def compare_lines(
    lines: Iterable[bytes | str],
    rules_a: Rules,
    rules_b: Rules,
    until: datetime | None = None,
    *,
    with_diff: bool = False,
    job: tuple[int, int] | None = None,
) -> Comparison:
    """Replay ``lines`` under both rules and join the decisions on ``trigger_id``.

    ``job=(k, n)``: only the users of job ``k`` of ``n`` (:mod:`cli.replay_jobs`); the
    lines and invalid lines are counted by job 0 alone (see :func:`merge_comparisons`)."""
    comparison = Comparison()
    a, b = _Side(rules_a, "a", with_diff, job), _Side(rules_b, "b", with_diff, job)
    counts_lines = job is None or job[0] == 0
    for raw in lines:
        if not raw.strip():
            continue
        comparison.lines += 1
        for side in (a, b):
            try:
                side.take(side.replay.feed_line(raw), comparison)
            except InvalidEvent as exc:
                if side is a and (counts_lines or exc.reason == "processing_error"):
                    comparison.invalid += 1
    for side in (a, b):
        side.take(side.replay.finish(until), comparison)
        comparison.errors += len(side.replay.take_errors())
    _join(a.decisions, b.decisions, comparison, with_diff)
    return comparison


def _join(
    a: dict[str, _Seen], b: dict[str, _Seen], comparison: Comparison, with_diff: bool
) -> None:
    changed: list[tuple[datetime, str, str, _Seen | None, _Seen | None]] = []
    for trigger_id in a.keys() | b.keys():
        old, new = a.get(trigger_id), b.get(trigger_id)
        if old is None or new is None:
            change = "added" if old is None else "removed"
        elif old.verdict != new.verdict:
            change = "rejudged"
            comparison.transitions[old.trigger, old.verdict, new.verdict] += 1
        elif old.fired_at != new.fired_at:
            change = "retimed"
            shift = (new.fired_at - old.fired_at).total_seconds()
            comparison.shift_seconds.setdefault(old.trigger, []).append(shift)
        else:
            change = "kept"
        seen = new if old is None else old
        assert seen is not None
        comparison.counts[seen.trigger, seen.stage, change] += 1
        if with_diff and change != "kept":
            when = min(s.fired_at for s in (old, new) if s is not None)
            changed.append((when, trigger_id, change, old, new))
    for when, trigger_id, change, old, new in sorted(changed, key=lambda c: (c[0], c[1])):
        seen = old or new
        assert seen is not None
        comparison.diff.append(
            {
                "change": change,
                "trigger_id": trigger_id,
                "trigger": seen.trigger,
                "stage": seen.stage,
                "user_id": seen.user_id,
                "at": format_timestamp(when),
                "a": orjson.Fragment(old.json) if old and old.json else None,
                "b": orjson.Fragment(new.json) if new and new.json else None,
            }
        )


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _duration(seconds: float) -> str:
    sign = "-" if seconds < 0 else "+"
    seconds = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{sign}{seconds / size:.1f}{unit}"
    return f"{sign}{seconds:.0f}s"


def render_comparison(comparison: Comparison, names: tuple[str, str]) -> str:
    """The table a marketer reads: per trigger and stage, then what changed verdict."""
    header = ["trigger", "stage", "A", "B", *HEADERS]
    rows = []
    for trigger, stage in comparison.groups():
        counts = [comparison.counts[trigger, stage, change] for change in CHANGES]
        totals = [comparison.totals[trigger, stage, side] for side in ("a", "b")]
        rows.append([trigger, str(stage), *(f"{n:,}" for n in totals + counts)])
    sums = [sum(comparison.totals[t, s, side] for t, s in comparison.groups()) for side in "ab"]
    sums += [sum(comparison.counts[t, s, c] for t, s in comparison.groups()) for c in CHANGES]
    rows.append(["all", "", *(f"{n:,}" for n in sums)])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    out = [f"A = {names[0]}", f"B = {names[1]}", f"{comparison.lines:,} event lines", ""]
    for i, cells in enumerate([header, *rows]):
        out.append(
            "  ".join(
                c.ljust(w) if j < 2 else c.rjust(w)
                for j, (c, w) in enumerate(zip(cells, widths, strict=True))
            ).rstrip()
        )
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    if comparison.transitions:
        out += ["", "re-judged (A -> B), most frequent first:"]
        # most frequent first, equal counts by name: the same text for every --jobs
        ranked = sorted(comparison.transitions.items(), key=lambda item: (-item[1], item[0]))
        for (trigger, old, new), n in ranked[:15]:
            out.append(f"  {n:>9,}  {trigger:<25} {old} -> {new}")
    if comparison.shift_seconds:
        out += ["", "re-timed: median shift of fired_at (B - A)"]
        for trigger, shifts in sorted(comparison.shift_seconds.items()):
            plural = "" if len(shifts) == 1 else "s"
            median = _duration(_median(shifts))
            out.append(f"  {trigger:<25} {median:>8} ({len(shifts):,} decision{plural})")
    conv = comparison.conversions
    out += ["", "conversions        A          B"]
    for arm in ("treatment", "holdout"):
        out.append(f"  {arm:<10} {conv['a', arm]:>10,} {conv['b', arm]:>10,}")
    out.append(NOT_A_PREDICTION)
    if comparison.invalid or comparison.errors:
        out.append(
            f"invalid lines {comparison.invalid}, stages that could not fire {comparison.errors}"
        )
    return "\n".join(out) + "\n"


def _load(path: str | None, flag: str) -> Rules | None:
    try:
        return load_rules(path)
    except RulesError as exc:
        for key_path, reason in exc.errors:
            where = f"{key_path}: " if key_path else ""
            print(f"nudge replay: {flag} {path}: {where}{reason}", file=sys.stderr)
        return None


def compare_command(
    events: str,
    *,
    rules: str | None,
    compare: str,
    until: str | None = None,
    diff: str | None = None,
    out: TextIO | None = None,
    jobs: int = 1,
) -> int:
    """``nudge replay EVENTS [--rules A] --compare B [--until TS] [--diff FILE] [--jobs N]``.

    Exit status: 0 after the comparison, 1 for an invalid rules file, 2 for an
    unreadable input, an unwritable diff file or a bad ``--until``.
    """
    out = out or sys.stdout
    rules_a, rules_b = _load(rules, "--rules"), _load(compare, "--compare")
    if rules_a is None or rules_b is None:
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
    with source:
        if jobs > 1:
            try:
                comparison = _compare_in_jobs(
                    events, source, (rules_a, rules_b), end, diff is not None, jobs
                )
            except JobFailed as exc:
                print(f"nudge replay: {exc}", file=sys.stderr)
                return 1
        else:
            comparison = compare_lines(source, rules_a, rules_b, end, with_diff=diff is not None)
    if diff is not None:
        try:
            with open(diff, "wb") as sink:
                for change in comparison.diff:
                    sink.write(orjson.dumps(change) + b"\n")
        except OSError as exc:
            print(f"nudge replay: cannot write {diff}: {exc.strerror}", file=sys.stderr)
            return 2
    names = (rules or "built-in defaults", compare)
    out.write(render_comparison(comparison, names))
    return 0


def _compare_in_jobs(
    events: str,
    source: BinaryIO,
    rules: tuple[Rules, Rules],
    until: datetime | None,
    with_diff: bool,
    jobs: int,
) -> Comparison:
    """:func:`compare_lines` with the users split across ``jobs`` processes; the same
    comparison (a decision and its ``trigger_id`` belong to one user, so to one job)."""
    with tempfile.TemporaryDirectory(prefix="nudge-compare-") as temporary:
        path = spool(source, Path(temporary))[0] if events == "-" else events

        def job(k: int) -> Comparison:
            with open(path, "rb") as lines:
                part = compare_lines(lines, *rules, until, with_diff=with_diff, job=(k, jobs))
            # the diff's JSON fragments do not cross processes: (time, id, bytes) do
            part.diff = [
                (parse_timestamp(c["at"]), c["trigger_id"], orjson.dumps(c)) for c in part.diff
            ]
            return part

        return merge_comparisons(run_parallel(jobs, job))


def merge_comparisons(parts: list[Comparison]) -> Comparison:
    """One comparison of the jobs' (lines from job 0, which counts them; the rest summed;
    the diff in its order: time, then ``trigger_id``)."""
    total = Comparison(lines=parts[0].lines)
    changed: list[tuple[datetime, str, bytes]] = []
    for part in parts:
        total.counts.update(part.counts)
        total.totals.update(part.totals)
        total.transitions.update(part.transitions)
        total.conversions.update(part.conversions)
        for trigger, shifts in part.shift_seconds.items():
            total.shift_seconds.setdefault(trigger, []).extend(shifts)
        total.invalid += part.invalid
        total.errors += part.errors
        changed += part.diff  # type: ignore[arg-type]
    total.diff = [orjson.Fragment(line) for _, _, line in sorted(changed)]  # type: ignore[misc]
    return total
