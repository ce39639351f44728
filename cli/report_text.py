"""The terminal table of ``nudge report`` (the default output)."""

from __future__ import annotations

from cli.report_model import Report, Row
from cli.report_stats import MIN_CONVERTERS, MIN_RECIPIENTS, Step


def _pct(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value * 100:+.1f}%" if signed else f"{value * 100:.1f}%"


def _pp(value: float | None, ci: tuple[float, float] | None) -> str:
    if value is None:
        return "-"
    text = f"{value * 100:+.2f}pp"
    return text if ci is None else f"{text} [{ci[0] * 100:+.2f}, {ci[1] * 100:+.2f}]"


def _rel(value: float | None, ci: tuple[float, float] | None) -> str:
    if value is None:
        return "-"
    text = f"{value * 100:+.0f}%"
    return text if ci is None else f"{text} [{ci[0] * 100:+.0f}, {ci[1] * 100:+.0f}]"


def _p(value: float | None) -> str:
    return "-" if value is None else "<0.001" if value < 0.001 else f"{value:.3f}"


def _money(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _step(step: Step) -> str:
    if step.rate is None:
        return "-"
    text = f"{step.rate * 100:.1f}%"
    ci = step.rate_ci
    return text if ci is None else f"{text} [{ci[0] * 100:.1f}, {ci[1] * 100:.1f}]"


def _ratio(value: float | None, ci: tuple[float, float] | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if ci is None else f"{value:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]"


def _table(header: list[str], lines: list[list[str]], left: int = 4) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]

    def fmt(cells: list[str]) -> str:
        padded = (
            cell.ljust(width) if i < left else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )
        return "  ".join(padded).rstrip()

    return [fmt(header), "  ".join("-" * w for w in widths), *(fmt(r) for r in lines)]


def render_text(report: Report) -> str:
    s = report.input
    out = [
        f"audit lines {s.lines}: decisions {s.decisions}, conversions {s.conversions}"
        f" (unmatched {s.unmatched_conversions}), invalid {s.invalid}, duplicates {s.duplicates}",
    ]
    if s.first_fired_at is not None and s.last_fired_at is not None:
        out.append(
            f"fired from {s.first_fired_at:%Y-%m-%d %H:%M} to {s.last_fired_at:%Y-%m-%d %H:%M} UTC"
        )
    out.append("")
    header = [
        "trigger",
        "stage",
        "variant",
        "channel",
        "recip T",
        "recip H",
        "conv T",
        "conv H",
        "uplift [95% CI]",
        "relative [95% CI]",
        "p",
        "rev/recip T",
        "rev/recip H",
        "!",
    ]
    notes: list[str] = []
    lines = []
    for row in report.rows:
        u, h = row.uplift, row.holdout
        mark = ""
        if row.warnings:
            notes.append(f"  [{len(notes) + 1}] {_where(row)}: {'; '.join(row.warnings)}")
            mark = f"[{len(notes)}]"
        lines.append(
            [
                row.trigger,
                str(row.stage),
                row.variant or "",
                row.channel or "",
                str(row.treatment.recipients),
                str(h.recipients) if h else "0",
                _pct(row.treatment.rate),
                _pct(h.rate if h else None),
                _pp(u.absolute, u.absolute_ci) if u else "-",
                _rel(u.relative, u.relative_ci) if u else "-",
                _p(u.p_value) if u else "-",
                _money(row.treatment.revenue_per_recipient),
                _money(h.revenue_per_recipient if h else None),
                mark,
            ]
        )
    out += _table(header, lines) if lines else ["no sent or holdout decisions in the input"]
    out += _funnel(report)
    if report.variant_comparisons:
        out += ["", "variant against variant (treatment only)"]
        vlines = []
        for c in report.variant_comparisons:
            u = c.uplift
            mark = ""
            if c.warnings:
                notes.append(
                    f"  [{len(notes) + 1}] {c.trigger} stage {c.stage} {c.variant}"
                    f" vs {c.baseline}: {'; '.join(c.warnings)}"
                )
                mark = f"[{len(notes)}]"
            vlines.append(
                [
                    c.trigger,
                    str(c.stage),
                    f"{c.variant} vs {c.baseline}",
                    _pp(u.absolute, u.absolute_ci) if u else "-",
                    _rel(u.relative, u.relative_ci) if u else "-",
                    _p(u.p_value) if u else "-",
                    _money(u.revenue_diff) if u else "-",
                    mark,
                ]
            )
        out += _table(
            left=3,
            header=[
                "trigger",
                "stage",
                "variant",
                "uplift [95% CI]",
                "relative [95% CI]",
                "p",
                "rev/recip diff",
                "!",
            ],
            lines=vlines,
        )
    if notes:
        out += [
            "",
            f"too small to say anything (< {MIN_RECIPIENTS} recipients or "
            f"< {MIN_CONVERTERS} converters in an arm), or not measurable:",
            *notes,
        ]
    out += [
        "",
        "T = treatment (sent), H = holdout; uplift = conversion rate T - H in percentage "
        "points; p: two-sided, no correction for many rows or repeated looks (docs/report.md)",
    ]
    return "\n".join(out) + "\n"


def _where(row: Row) -> str:
    return " ".join(
        part
        for part in (row.trigger, f"stage {row.stage}", row.variant, row.channel)
        if part is not None
    )


def _funnel(report: Report) -> list[str]:
    """The funnel and cost of the sent decisions, per row; nothing when the input has no
    channel and no engagement record (a stream from before contract 8)."""
    if not report.input.engagement and all(r.channel is None for r in report.rows):
        return []
    lines = []
    for row in report.rows:
        f, c = row.funnel, row.cost
        lines.append(
            [
                row.trigger,
                str(row.stage),
                row.variant or "",
                row.channel or "",
                str(f.sent),
                _step(f.delivered),
                _step(f.opened),
                _step(f.clicked),
                _step(f.ordered),
                str(f.bounced + f.unsubscribed + f.complained),
                _money(c.cost),
                _ratio(c.incremental_revenue, c.incremental_revenue_ci),
                _ratio(c.per_cost, c.per_cost_ci),
            ]
        )
    header = [
        "trigger",
        "stage",
        "variant",
        "channel",
        "sent",
        "delivered [95% CI]",
        "opened [95% CI]",
        "clicked [95% CI]",
        "ordered [95% CI]",
        "lost",
        "cost",
        "incr. revenue [95% CI]",
        "per cost [95% CI]",
    ]
    s = report.input
    out = [
        "",
        "funnel of the sent decisions (share of sent) and return on cost",
        *_table(header, lines),
    ]
    out.append(
        f"engagement records {s.engagement} (unmatched {s.unmatched_engagement}); lost = bounced"
        " + unsubscribed + complained; incr. revenue = revenue per recipient T - H (same"
        " channel) x recipients T; per cost = incr. revenue / cost"
    )
    if report.rules.costs is None:
        out.append("cost: give the rules file (--rules) for the channels' costs")
    return out
