"""``nudge report AUDIT``: uplift per trigger, stage and variant, with 95 % intervals.

Reads an audit stream (:mod:`cli.report_data`), computes per group the arms'
figures and their comparison (:mod:`cli.report_stats`), and prints a terminal
table (:mod:`cli.report_text`), or JSON (``--json``), and optionally writes one
self-contained HTML page with charts (``--html FILE``, :mod:`cli.report_page`).
How to read it: docs/report.md.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
from datetime import datetime, timedelta
from typing import BinaryIO, TextIO

import msgspec

from cli.report_data import ALL_STAGES, ALL_VARIANTS, AuditTally, GroupKey, tally_lines
from cli.report_stats import (
    ALPHA,
    MIN_CONVERTERS,
    MIN_RECIPIENTS,
    ArmStats,
    Uplift,
    arm_stats,
    compare_arms,
    size_warnings,
)
from triggers.records import TRIGGER_NAMES

NO_HOLDOUT = "no holdout recipients: uplift cannot be measured (holdout_percent 0?)"


class Row(msgspec.Struct, frozen=True):
    """One group: a trigger's stage (or "all") and variant (None, a name, or "(all)")."""

    trigger: str
    stage: int | str  # a stage number or "all"
    variant: str | None
    treatment: ArmStats
    holdout: ArmStats | None
    uplift: Uplift | None
    warnings: list[str]


class VariantComparison(msgspec.Struct, frozen=True):
    """Variant ``variant`` against variant ``baseline`` (both treatment, same stage)."""

    trigger: str
    stage: int | str
    variant: str
    baseline: str
    uplift: Uplift | None
    warnings: list[str]


class SendsBucket(msgspec.Struct, frozen=True):
    start: datetime
    sent: dict[str, int]  # trigger -> sent decisions fired in the bucket


class InputSummary(msgspec.Struct, frozen=True):
    lines: int
    invalid: int
    duplicates: int
    decisions: int
    conversions: int
    unmatched_conversions: int
    first_fired_at: datetime | None
    last_fired_at: datetime | None
    statuses: dict[str, dict[str, int]]  # trigger -> status -> decisions


class Rules(msgspec.Struct, frozen=True):
    confidence: float = 1 - ALPHA
    min_recipients: int = MIN_RECIPIENTS
    min_converters: int = MIN_CONVERTERS


class Report(msgspec.Struct, frozen=True):
    input: InputSummary
    rows: list[Row]
    variant_comparisons: list[VariantComparison]
    sends_bucket: str  # hour | day | week
    sends: list[SendsBucket]
    rules: Rules = Rules()


def trigger_order(trigger: str) -> tuple[int, str]:
    known = TRIGGER_NAMES.index(trigger) if trigger in TRIGGER_NAMES else len(TRIGGER_NAMES)
    return known, trigger


def _variant_order(variant: str | None) -> tuple[int, str]:
    return (0, "") if variant is None else (1, variant)


class _Arms:
    """Arm figures and per-converter revenues of a tally, by group key."""

    def __init__(self, tally: AuditTally) -> None:
        self.tally = tally
        self.revenue, self.counts, self.unmatched = tally.conversions()

    def get(self, key: GroupKey) -> tuple[ArmStats, list[float]]:
        revenues = list(self.revenue.get(key, {}).values())
        recipients = len(self.tally.recipients.get(key, ()))
        return arm_stats(recipients, revenues, self.counts[key]), revenues


def build_report(tally: AuditTally) -> Report:
    arms = _Arms(tally)
    groups: dict[tuple[str, int], set[str | None]] = {}
    for trigger, stage, variant, arm in tally.recipients:
        variants = groups.setdefault((trigger, stage), set())
        if arm == "treatment" and variant != ALL_VARIANTS:
            variants.add(variant)
    rows: list[Row] = []
    comparisons: list[VariantComparison] = []
    stages: dict[str, set[int]] = {}
    for trigger, stage in groups:
        stages.setdefault(trigger, set()).add(stage)
    for trigger, stage in sorted(groups, key=lambda g: (trigger_order(g[0]), g[1])):
        if stage != ALL_STAGES and stages[trigger] == {ALL_STAGES, stage}:
            continue  # one stage only: its row would repeat the "all" row
        stage_label: int | str = "all" if stage == ALL_STAGES else stage
        holdout, holdout_revenues = arms.get((trigger, stage, None, "holdout"))
        variants = sorted(groups[trigger, stage], key=_variant_order)
        shown: list[str | None] = list(variants)
        if len(variants) > 1:
            shown.append(ALL_VARIANTS)
        for variant in shown:
            treatment, revenues = arms.get((trigger, stage, variant, "treatment"))
            if holdout.recipients == 0:
                uplift, notes = None, [NO_HOLDOUT]
            else:
                uplift = compare_arms(treatment, revenues, holdout, holdout_revenues)
                notes = size_warnings(treatment, holdout, ("treatment", "holdout"))
            rows.append(
                Row(
                    trigger=trigger,
                    stage=stage_label,
                    variant="(all)" if variant == ALL_VARIANTS else variant,
                    treatment=treatment,
                    holdout=holdout if holdout.recipients else None,
                    uplift=uplift,
                    warnings=notes,
                )
            )
        for base, other in itertools.combinations(variants, 2):
            base_arm, base_revenues = arms.get((trigger, stage, base, "treatment"))
            other_arm, other_revenues = arms.get((trigger, stage, other, "treatment"))
            base_name, other_name = base or "(none)", other or "(none)"
            comparisons.append(
                VariantComparison(
                    trigger=trigger,
                    stage=stage_label,
                    variant=other_name,
                    baseline=base_name,
                    uplift=compare_arms(other_arm, other_revenues, base_arm, base_revenues),
                    warnings=size_warnings(other_arm, base_arm, (other_name, base_name)),
                )
            )
    bucket, sends = _sends(tally)
    statuses: dict[str, dict[str, int]] = {}
    for (trigger, status), n in sorted(tally.statuses.items()):
        statuses.setdefault(trigger, {})[status] = n
    summary = InputSummary(
        lines=tally.lines,
        invalid=tally.invalid,
        duplicates=tally.duplicates,
        decisions=tally.decisions,
        conversions=tally.conversion_records,
        unmatched_conversions=arms.unmatched,
        first_fired_at=tally.first,
        last_fired_at=tally.last,
        statuses=statuses,
    )
    return Report(summary, rows, comparisons, bucket, sends)


def _bucket_start(hour: datetime, bucket: str) -> datetime:
    if bucket == "hour":
        return hour
    day = hour.replace(hour=0)
    return day if bucket == "day" else day - timedelta(days=day.weekday())


def _sends(tally: AuditTally) -> tuple[str, list[SendsBucket]]:
    """Sent decisions per hour (span <= 3 days), day (<= 180 days) or week, no gaps."""
    if tally.first is None or tally.last is None or not tally.sends_by_hour:
        return "day", []
    span = tally.last - tally.first
    bucket = (
        "hour" if span <= timedelta(days=3) else "day" if span <= timedelta(days=180) else "week"
    )
    step = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(days=7)}[bucket]
    counts: dict[datetime, dict[str, int]] = {}
    for (hour, trigger), n in tally.sends_by_hour.items():
        sent = counts.setdefault(_bucket_start(hour, bucket), {})
        sent[trigger] = sent.get(trigger, 0) + n
    start, end = min(counts), max(counts)
    out = []
    while start <= end:
        sent = counts.get(start, {})
        out.append(SendsBucket(start, {t: sent[t] for t in sorted(sent, key=trigger_order)}))
        start += step
    return bucket, out


def report_json(report: Report) -> bytes:
    return msgspec.json.format(msgspec.json.encode(report), indent=2)


def report_command(
    source: str | None,
    *,
    from_kafka: bool = False,
    topic: str | None = None,
    as_json: bool = False,
    html: str | None = None,
    out: TextIO | None = None,
) -> int:
    """``nudge report AUDIT | --from-kafka [--topic T] [--json] [--html FILE]``; ``-`` is
    stdin. Exit 2 if unreadable or bad settings, 1 if Kafka or the topic cannot be used or
    the input holds no audit record (e.g. an events file)."""
    out = out or sys.stdout
    if from_kafka:
        read = tally_kafka(topic)
        if isinstance(read, int):
            return read
        tally = read
    else:
        try:
            stream: BinaryIO = sys.stdin.buffer if source in (None, "-") else open(source, "rb")  # noqa: SIM115
        except OSError as exc:
            print(f"nudge report: cannot read {source}: {exc.strerror}", file=sys.stderr)
            return 2
        with stream:
            tally = tally_lines(stream)
    problem = not_audit(tally, source, from_kafka, topic)
    if problem is not None:
        print(f"nudge report: {problem}", file=sys.stderr)
        return 1
    for example in tally.invalid_examples:
        print(f"nudge report: invalid record, skipped: {example}", file=sys.stderr)
    if tally.invalid > len(tally.invalid_examples):
        print(f"nudge report: {tally.invalid} invalid records in all", file=sys.stderr)
    report = build_report(tally)
    if html is not None:
        from cli.report_page import render_html

        try:
            with open(html, "w", encoding="utf-8") as page:
                page.write(render_html(report))
        except OSError as exc:
            print(f"nudge report: cannot write {html}: {exc.strerror}", file=sys.stderr)
            return 2
    if as_json:
        out.write(report_json(report).decode() + "\n")
    else:
        from cli.report_text import render_text

        out.write(render_text(report))
    return 0


def not_audit(
    tally: AuditTally, source: str | None, from_kafka: bool, topic: str | None
) -> str | None:
    """One line saying what the input is and what to give instead, when it holds lines but no
    audit record (e.g. the events file instead of its replay); None when it is fine."""
    kind = tally.not_audit()
    if kind is None:
        return None
    if from_kafka:
        name = f"topic {topic}" if topic else "the topic NUDGE_TOPIC_AUDIT names"
        what = "shop events" if kind == "events" else "no audit record"
        return (
            f"{name} holds {what} ({tally.lines:,} records, none a decision or a conversion):"
            " give the topic the worker writes its audit records to (--topic or"
            " NUDGE_TOPIC_AUDIT)"
        )
    name = "stdin" if source in (None, "-") else source
    events = "EVENTS" if name == "stdin" else name
    if kind == "events":
        return (
            f"{name} holds shop events ({tally.events:,} of {tally.lines:,} lines), the input of"
            f" nudge replay, not audit records: run `nudge replay {events} --rules RULES"
            " --out audit.jsonl`, then `nudge report audit.jsonl`"
        )
    return (
        f"none of the {tally.lines:,} lines of {name} is an audit record (a decision or a"
        " conversion): give nudge replay's output, or read the audit topic with --from-kafka"
    )


def tally_kafka(topic: str | None) -> AuditTally | int:
    """The audit topic (``NUDGE_TOPIC_AUDIT``, or ``topic``) from the beginning up to its end
    offsets at start, tallied; or the exit status after a one-line error."""
    from stream.client_start import KafkaUnavailable
    from stream.settings import SettingsError, load_settings
    from stream.tail import MissingTopic
    from stream.topic_reader import ReadStopped, read_to_end

    try:
        settings, warnings = load_settings()
    except SettingsError as exc:
        print(f"nudge report: {exc}", file=sys.stderr)
        return 2
    for warning in warnings:
        print(f"nudge report: warning: {warning}", file=sys.stderr)
    name = topic or settings.topic_audit
    variable = "--topic" if topic else "NUDGE_TOPIC_AUDIT"
    fix = (
        f"Set {variable} to the audit topic the worker writes (it creates it at its first "
        "start), or check that NUDGE_KAFKA_BOOTSTRAP is the worker's cluster"
    )
    tally = AuditTally()
    try:
        asyncio.run(read_to_end(settings, name, tally.add_line, fix=fix))
    except (KafkaUnavailable, MissingTopic) as exc:
        print(f"nudge report: {exc}", file=sys.stderr)
        return 1
    except ReadStopped as exc:
        print(f"nudge report: {exc}; no report", file=sys.stderr)
        return 130
    except OSError as exc:  # e.g. a TLS certificate file named in the settings is missing
        print(f"nudge report: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return tally
