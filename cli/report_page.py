"""The ``nudge report --html`` page: charts (:mod:`cli.report_html`), tables, how to read it.

One self-contained HTML document: inline CSS and SVG, no script, nothing
fetched from the network, so it opens offline and can be attached to an email.
"""

from __future__ import annotations

from html import escape

from cli.report_html import (
    CSS,
    HOLDOUT,
    TREATMENT,
    channel_colors,
    fmt_pct,
    funnel_chart,
    rates_chart,
    sends_chart,
    uplift_chart,
)
from cli.report_model import POOLED, Report, Row
from cli.report_stats import MIN_CONVERTERS, MIN_RECIPIENTS, Step


def _ci(text: str, ci: str | None) -> str:
    """A figure with its interval on a second line (narrow columns: the page fits 1280 px)."""
    return text if ci is None else f"{text}<br><small>{ci}</small>"


def _pp(value: float | None, ci: tuple[float, float] | None) -> str:
    if value is None:
        return "–"
    bounds = None if ci is None else f"[{ci[0] * 100:+.2f}, {ci[1] * 100:+.2f}]"
    return _ci(f"{value * 100:+.2f} pp", bounds)


def _rel(value: float | None, ci: tuple[float, float] | None) -> str:
    if value is None:
        return "–"
    bounds = None if ci is None else f"[{ci[0] * 100:+.0f}%, {ci[1] * 100:+.0f}%]"
    return _ci(f"{value * 100:+.0f}%", bounds)


def _p(value: float | None) -> str:
    return "–" if value is None else "&lt;0.001" if value < 0.001 else f"{value:.3f}"


def _money(value: float | None, ci: tuple[float, float] | None = None, sign: str = "") -> str:
    if value is None:
        return "–"
    bounds = None if ci is None else f"[{ci[0]:{sign},.2f}, {ci[1]:{sign},.2f}]"
    return _ci(f"{value:{sign},.2f}", bounds)


def _step(step: Step) -> str:
    if step.rate is None:
        return "–"
    ci = step.rate_ci
    bounds = None if ci is None else f"[{fmt_pct(ci[0])}, {fmt_pct(ci[1])}]"
    return _ci(f"{fmt_pct(step.rate)} <small>({step.count:,})</small>", bounds)


def _table(header: list[str], rows: list[tuple[list[str], list[str]]]) -> str:
    """Warnings go on a line of their own under their row, across the whole table, so they
    never scroll out of view however wide the figures are."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = []
    for cells, warnings in rows:
        tds = "".join(f"<td>{c}</td>" for c in cells)
        if not warnings:
            body.append(f"<tr>{tds}</tr>")
            continue
        note = escape("; ".join(warnings))
        body.append(f'<tr class="warn">{tds}</tr>')
        body.append(f'<tr class="note"><td colspan="{len(header)}">⚠ {note}</td></tr>')
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _group(r: Row) -> list[str]:
    return [escape(r.trigger), str(r.stage), escape(r.variant or ""), escape(r.channel or "")]


def rows_table(report: Report) -> str:
    header = [
        "trigger",
        "stage",
        "variant",
        "channel",
        "recipients T",
        "recipients H",
        "conv. T",
        "conv. H",
        "uplift [95% CI]",
        "relative [95% CI]",
        "p",
        "rev./recip. T",
        "rev./recip. H",
    ]
    rows = []
    for r in report.rows:
        u, h = r.uplift, r.holdout
        cells = [
            *_group(r),
            f"{r.treatment.recipients:,}",
            f"{h.recipients:,}" if h else "0",
            fmt_pct(r.treatment.rate),
            fmt_pct(h.rate if h else None),
            _pp(u.absolute, u.absolute_ci) if u else "–",
            _rel(u.relative, u.relative_ci) if u else "–",
            _p(u.p_value) if u else "–",
            _money(r.treatment.revenue_per_recipient),
            _money(h.revenue_per_recipient if h else None),
        ]
        rows.append((cells, r.warnings))
    return _table(header, rows)


def funnel_table(report: Report) -> str:
    header = [
        "trigger",
        "stage",
        "variant",
        "channel",
        "sent",
        "delivered",
        "opened",
        "clicked",
        "ordered",
        "bounced · unsub. · complaints",
        "cost",
        "incremental revenue [95% CI]",
        "per unit of cost [95% CI]",
    ]
    rows = []
    for r in report.rows:
        f, c = r.funnel, r.cost
        cells = [
            *_group(r),
            f"{f.sent:,}",
            _step(f.delivered),
            _step(f.opened),
            _step(f.clicked),
            _step(f.ordered),
            f"{f.bounced:,} · {f.unsubscribed:,} · {f.complained:,}",
            _money(c.cost),
            ("⚠ " if r.warnings else "")
            + _money(c.incremental_revenue, c.incremental_revenue_ci, "+"),
            _money(c.per_cost, c.per_cost_ci, "+"),
        ]
        rows.append((cells, []))
    return _table(header, rows)


def funnels(report: Report) -> str:
    """A funnel chart per trigger (every stage, variants pooled), a bar per channel."""
    if not report.input.engagement and all(r.channel is None for r in report.rows):
        return (
            '<p class="muted">No channel and no engagement record in the input: the funnel'
            " needs the delivery feedback of contract 8 (<code>message_delivered</code>, ...).</p>"
        )
    pooled = {(r.trigger, r.stage, r.channel) for r in report.rows if r.variant == POOLED}
    by_trigger: dict[str, list[Row]] = {}
    for r in report.rows:
        if r.stage != "all" or r.channel == POOLED:
            continue
        if r.variant == POOLED or (r.trigger, r.stage, r.channel) not in pooled:
            by_trigger.setdefault(r.trigger, []).append(r)
    colors = channel_colors([r for rows in by_trigger.values() for r in rows])
    legend = "".join(
        f'<span style="background:{color}"></span>{escape(name or "(no channel)")}'
        for name, color in colors.items()
    )
    parts = [f'<div class="legend muted">{legend} · whiskers: 95 % interval</div>']
    for trigger, rows in by_trigger.items():
        parts.append(f"<h3>{escape(trigger)}</h3>{funnel_chart(trigger, rows, colors)}")
    return f'<div class="card">{"".join(parts)}</div>'


def overall_rows(report: Report) -> list[Row]:
    """Every stage, every channel: per trigger and variant the row pooled over channels (the
    one row when the trigger used one channel)."""
    pooled = {(r.trigger, r.variant) for r in report.rows if r.channel == POOLED}
    return [
        r
        for r in report.rows
        if r.stage == "all" and (r.channel == POOLED or (r.trigger, r.variant) not in pooled)
    ]


def variants_table(report: Report) -> str:
    if not report.variant_comparisons:
        return '<p class="muted">No trigger has more than one variant.</p>'
    header = [
        "trigger",
        "stage",
        "variant vs baseline",
        "uplift [95% CI]",
        "relative [95% CI]",
        "p",
        "rev./recip. diff [95% CI]",
        "p (revenue)",
    ]
    rows = []
    for c in report.variant_comparisons:
        u = c.uplift
        revenue = "–" if u is None else _money(u.revenue_diff, u.revenue_diff_ci, "+")
        cells = [
            escape(c.trigger),
            str(c.stage),
            f"{escape(c.variant)} vs {escape(c.baseline)}",
            _pp(u.absolute, u.absolute_ci) if u else "–",
            _rel(u.relative, u.relative_ci) if u else "–",
            _p(u.p_value) if u else "–",
            revenue,
            _p(u.revenue_p_value) if u else "–",
        ]
        rows.append((cells, c.warnings))
    return _table(header, rows)


HOW_TO_READ = f"""
<h2>How to read this</h2>
<ul>
<li><b>Recipients</b> are distinct shoppers: <i>treatment</i> = had a decision <code>sent</code>,
<i>holdout</i> = had a decision <code>holdout</code> (recorded, deliberately not sent). Stage
<i>all</i> counts a shopper once over every stage of the trigger.</li>
<li><b>Conversion rate</b> = recipients with at least one attributed order ÷ recipients.
<b>Revenue per recipient</b> = attributed revenue ÷ recipients (non-buyers count as 0).</li>
<li><b>Uplift</b> = treatment rate − holdout rate, in percentage points (pp); <b>relative</b> =
treatment ÷ holdout − 1. The bracket is the 95 % confidence interval: the range of true effects
that fit the data. An interval that crosses 0 (grey in the chart) means the data cannot tell a
positive effect from none.</li>
<li><b>p</b> is the chance of a difference at least this large if the message did nothing.</li>
<li><b>Channels</b>: a holdout decision records the channel it would have used, so each
channel's row compares its treatment with the holdout of the same channel; <i>(all)</i> pools
the channels.</li>
<li><b>Funnel</b>: sent decisions (messages, not shoppers) that got at least one
<code>message_delivered</code>, <code>message_opened</code>, <code>message_clicked</code>
feedback, or an attributed order, as a share of sent with its Wilson 95 % interval. Feedback
naming a <code>trigger_id</code> that is no sent decision of the input is left out (counted
in the summary).</li>
<li><b>Return on cost</b>: incremental revenue (revenue per recipient of treatment minus
holdout, times the treatment's recipients; Welch's interval scaled alike) divided by the cost
of the sent messages. Above 1: the messages brought back more than they cost; an interval
that crosses 0 cannot tell a gain from none.</li>
</ul>
<h2>When not to trust it</h2>
<ul>
<li><b>Small groups</b>: fewer than {MIN_RECIPIENTS} recipients or fewer than {MIN_CONVERTERS}
converters in an arm → the row is flagged (hollow point, yellow row); its interval is too wide
to say anything.</li>
<li><b>Peeking</b>: looking every day and stopping when p &lt; 0.05 finds “winners” that are
noise. Fix the test length (or sample size) in advance and decide once.</li>
<li><b>Many rows</b>: with 20 rows, one is expected to show p &lt; 0.05 by chance alone; no
correction for multiple comparisons is applied.</li>
<li><b>Later stages</b>: a stage-2 row compares shoppers who reached stage 2; treatment
shoppers who bought after stage 1 left, so later stages are biased. Judge a trigger by its
<i>all</i> row.</li>
<li><b>Attribution</b>: an order counts only within the attribution window after a decision, and
only for the most recent one; incomplete input (a partial audit stream) leaves conversions
out.</li>
</ul>
"""


def _cost_note(report: Report) -> str:
    note = (
        "Cost = sent × the channel's cost (rules). Incremental revenue = revenue per recipient"
        " of treatment − holdout (same channel) × treatment recipients; per unit of cost ="
        " incremental revenue ÷ cost, – for a free channel. ⚠: the comparison with the"
        " holdout is flagged in the uplift table."
    )
    if report.rules.costs is None:
        note += " No rules file was given (--rules): no costs."
    return note


def render_html(report: Report) -> str:
    s = report.input
    period = ""
    if s.first_fired_at is not None and s.last_fired_at is not None:
        period = f"{s.first_fired_at:%Y-%m-%d %H:%M} – {s.last_fired_at:%Y-%m-%d %H:%M} UTC · "
    summary = (
        f"{period}{s.decisions:,} decisions, {s.conversions:,} conversions"
        f" ({s.unmatched_conversions:,} without their decision, left out),"
        f" {s.engagement:,} engagement records ({s.unmatched_engagement:,} without their sent"
        f" decision, left out), {s.erasures:,} erasures,"
        f" {s.invalid:,} invalid lines, {s.duplicates:,} duplicates"
    )
    overall = overall_rows(report)
    legend = (
        f'<div class="legend muted"><span style="background:{TREATMENT}"></span>treatment'
        f'<span style="background:{HOLDOUT}"></span>holdout · whiskers: 95 % interval</div>'
    )
    parts = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Nudge report</title><style>{CSS}</style></head><body><main>",
        "<h1>Nudge report: what the reminders did</h1>",
        f'<p class="muted">{escape(summary)}</p>',
        "<h2>Uplift per trigger (all stages)</h2>",
        '<p class="muted">Conversion rate of treatment minus holdout, with 95 % interval. Green:'
        " the whole interval is above 0; hollow point ⚠: group too small.</p>",
        f'<div class="card">{uplift_chart(overall)}</div>',
        "<h2>Conversion rate by arm (all stages)</h2>",
        f'<div class="card">{legend}{rates_chart(overall)}</div>',
        "<h2>Sends over time</h2>",
        f'<div class="card">{sends_chart(report)}</div>',
        "<h2>Funnel per trigger and channel (all stages)</h2>",
        '<p class="muted">Share of the sent decisions (messages) that were delivered, opened,'
        " clicked, and that an attributed order followed, with 95 % intervals.</p>",
        funnels(report),
        "<h2>Uplift per trigger, stage, variant and channel</h2>",
        "<p class=\"muted\">Each row's holdout is the trigger's holdout on the same channel.</p>",
        rows_table(report),
        "<h2>Funnel and return on cost per trigger, stage, variant and channel</h2>",
        f'<p class="muted">{escape(_cost_note(report))}</p>',
        funnel_table(report),
        "<h2>Variant against variant (treatment only)</h2>",
        variants_table(report),
        HOW_TO_READ,
        '<p class="muted">Generated by <code>nudge report</code>. Statistics: Wilson intervals per'
        " arm, Newcombe interval for the difference, log interval for the ratio, score test p,"
        " Welch's t for revenue (statsmodels, scipy). See docs/report.md.</p>",
        "</main></body></html>",
    ]
    return "\n".join(parts) + "\n"
