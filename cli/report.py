"""``nudge report AUDIT``: uplift, funnel and return on cost per trigger, stage, variant and
channel, with 95 % intervals.

Reads an audit stream (:mod:`cli.report_data`, :mod:`cli.report_input`), computes per group
the arms' figures and their comparison, the funnel of the sent decisions and what they cost
(:mod:`cli.report_stats`), and prints a terminal table (:mod:`cli.report_text`), or JSON
(``--json``), and optionally writes one self-contained HTML page with charts (``--html FILE``,
:mod:`cli.report_page`). How to read it: docs/report.md.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import BinaryIO, TextIO

import msgspec

from cli.report_data import (
    ALL_CHANNELS,
    ALL_STAGES,
    ALL_VARIANTS,
    AuditTally,
    Funnel,
    GroupKey,
    tally_lines,
)
from cli.report_input import channel_costs, not_audit, tally_kafka
from cli.report_model import (
    POOLED,
    FunnelStats,
    InputSummary,
    Report,
    Row,
    Rules,
    SendsBucket,
    VariantComparison,
    trigger_order,
)
from cli.report_stats import (
    ArmStats,
    arm_stats,
    compare_arms,
    cost_return,
    funnel_step,
    size_warnings,
)

__all__ = ["NO_HOLDOUT", "Report", "Row", "build_report", "report_command", "trigger_order"]

NO_HOLDOUT = "no holdout recipients: uplift cannot be measured (holdout_percent 0?)"
NO_CHANNEL_HOLDOUT = "no holdout recipients on this channel: uplift cannot be measured"


def _name_order(name: str | None) -> tuple[int, str]:
    return (0, "") if name is None else (1, name)


class _Groups:
    """Arm figures, funnels and sent counts of a tally, by group key."""

    def __init__(self, tally: AuditTally, costs: dict[str, float] | None) -> None:
        self.tally = tally
        self.costs = costs
        self.revenue, self.counts, self.unmatched = tally.conversions()
        self.funnels, self.unmatched_engagement = tally.funnel()

    def arm(self, key: GroupKey) -> tuple[ArmStats, list[float]]:
        revenues = list(self.revenue.get(key, {}).values())
        recipients = len(self.tally.recipients.get(key, ()))
        return arm_stats(recipients, revenues, self.counts[key]), revenues

    def funnel(self, key: GroupKey) -> FunnelStats:
        sent = self.tally.sent[key]
        f = self.funnels.get(key, Funnel())
        return FunnelStats(
            sent=sent,
            delivered=funnel_step(f.delivered, sent),
            opened=funnel_step(f.opened, sent),
            clicked=funnel_step(f.clicked, sent),
            ordered=funnel_step(f.ordered, sent),
            bounced=f.bounced,
            unsubscribed=f.unsubscribed,
            complained=f.complained,
        )

    def cost(self, key: GroupKey, channels: Iterable[str | None]) -> float | None:
        """Sent decisions x their channel's cost, over ``channels`` (the group's, or its one);
        None when a channel's cost is not known."""
        if self.costs is None:
            return None
        trigger, stage, variant, _, arm = key
        total = 0.0
        for channel in channels:
            if channel is None or channel not in self.costs:
                return None
            total += self.tally.sent[trigger, stage, variant, channel, arm] * self.costs[channel]
        return total


def _label(value: str | None) -> str | None:
    return POOLED if value == ALL_VARIANTS else value


def build_report(tally: AuditTally, costs: dict[str, float] | None = None) -> Report:
    """``costs``: each channel's cost per sent message (the rules' ``channels``), in the
    order the rows show the channels; None when no rules were given (no cost figures)."""
    groups = _Groups(tally, costs)
    variants_of: dict[tuple[str, int], set[str | None]] = {}
    channels_of: dict[tuple[str, int], set[str | None]] = {}
    for trigger, stage, variant, channel, arm in tally.recipients:
        variants = variants_of.setdefault((trigger, stage), set())
        if arm == "treatment" and variant != ALL_VARIANTS:
            variants.add(variant)
        if channel != ALL_CHANNELS:
            channels_of.setdefault((trigger, stage), set()).add(channel)
    rank = {name: i for i, name in enumerate(costs or ())}

    def channel_order(channel: str | None) -> tuple[int, int, str]:
        return (0 if channel is None else 1, rank.get(channel or "", len(rank)), channel or "")

    rows: list[Row] = []
    comparisons: list[VariantComparison] = []
    stages: dict[str, set[int]] = {}
    for trigger, stage in variants_of:
        stages.setdefault(trigger, set()).add(stage)
    for trigger, stage in sorted(variants_of, key=lambda g: (trigger_order(g[0]), g[1])):
        if stage != ALL_STAGES and stages[trigger] == {ALL_STAGES, stage}:
            continue  # one stage only: its rows would repeat the "all" rows
        stage_label: int | str = "all" if stage == ALL_STAGES else stage
        variants = sorted(variants_of[trigger, stage], key=_name_order)
        shown: list[str | None] = [*variants, ALL_VARIANTS] if len(variants) > 1 else variants
        channels = sorted(channels_of[trigger, stage], key=channel_order)
        by_channel: list[str | None] = [*channels, ALL_CHANNELS] if len(channels) > 1 else channels
        for variant, channel in itertools.product(shown, by_channel):
            key = (trigger, stage, variant, channel, "treatment")
            holdout, holdout_revenues = groups.arm((trigger, stage, None, channel, "holdout"))
            treatment, revenues = groups.arm(key)
            if holdout.recipients == 0:
                pooled = tally.recipients.get((trigger, stage, None, ALL_CHANNELS, "holdout"))
                uplift, notes = None, [NO_CHANNEL_HOLDOUT if pooled else NO_HOLDOUT]
            else:
                uplift = compare_arms(treatment, revenues, holdout, holdout_revenues)
                notes = size_warnings(treatment, holdout, ("treatment", "holdout"))
            cost = groups.cost(key, channels if channel == ALL_CHANNELS else [channel])
            rows.append(
                Row(
                    trigger=trigger,
                    stage=stage_label,
                    variant=_label(variant),
                    channel=_label(channel),
                    treatment=treatment,
                    holdout=holdout if holdout.recipients else None,
                    uplift=uplift,
                    funnel=groups.funnel(key),
                    cost=cost_return(cost, uplift, treatment.recipients),
                    warnings=notes,
                )
            )
        for base, other in itertools.combinations(variants, 2):
            base_arm, base_revenues = groups.arm((trigger, stage, base, ALL_CHANNELS, "treatment"))
            other_arm, other_revenues = groups.arm(
                (trigger, stage, other, ALL_CHANNELS, "treatment")
            )
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
    return Report(_summary(tally, groups), rows, comparisons, bucket, sends, Rules(costs=costs))


def _summary(tally: AuditTally, groups: _Groups) -> InputSummary:
    statuses: dict[str, dict[str, int]] = {}
    for (trigger, status), n in sorted(tally.statuses.items()):
        statuses.setdefault(trigger, {})[status] = n
    return InputSummary(
        lines=tally.lines,
        invalid=tally.invalid,
        duplicates=tally.duplicates,
        decisions=tally.decisions,
        conversions=tally.conversion_records,
        unmatched_conversions=groups.unmatched,
        first_fired_at=tally.first,
        last_fired_at=tally.last,
        statuses=statuses,
        engagement=tally.engagement_records,
        unmatched_engagement=groups.unmatched_engagement,
        erasures=tally.erasures,
    )


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
    rules: str | None = None,
    as_json: bool = False,
    html: str | None = None,
    out: TextIO | None = None,
) -> int:
    """``nudge report AUDIT | --from-kafka [--topic T] [--rules R] [--json] [--html FILE]``;
    ``-`` is stdin. Exit 2 if unreadable or bad settings, 1 if Kafka or the topic or the
    rules cannot be used or the input holds no audit record (e.g. an events file)."""
    out = out or sys.stdout
    costs = channel_costs(rules)
    if isinstance(costs, int):
        return costs
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
    report = build_report(tally, costs)
    if costs is not None:
        named = {r.channel for r in report.rows} - {None, POOLED}
        for channel in sorted(name for name in named if name not in costs):
            print(
                f"nudge report: channel {channel} is not in the rules {rules}: its cost is unknown",
                file=sys.stderr,
            )
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
