"""The ``nudge report --html`` page: charts (:mod:`cli.report_html`), tables, how to read it.

One self-contained HTML document: inline CSS and SVG, no script, nothing
fetched from the network, so it opens offline and can be attached to an email.
"""

from __future__ import annotations

from html import escape

from cli.report import Report
from cli.report_html import (
    CSS,
    HOLDOUT,
    TREATMENT,
    fmt_pct,
    rates_chart,
    sends_chart,
    uplift_chart,
)
from cli.report_stats import MIN_CONVERTERS, MIN_RECIPIENTS


def _pp(value: float | None, ci: tuple[float, float] | None) -> str:
    if value is None:
        return "–"
    text = f"{value * 100:+.2f} pp"
    return text if ci is None else f"{text} [{ci[0] * 100:+.2f}, {ci[1] * 100:+.2f}]"


def _rel(value: float | None, ci: tuple[float, float] | None) -> str:
    if value is None:
        return "–"
    text = f"{value * 100:+.0f}%"
    return text if ci is None else f"{text} [{ci[0] * 100:+.0f}%, {ci[1] * 100:+.0f}%]"


def _p(value: float | None) -> str:
    return "–" if value is None else "&lt;0.001" if value < 0.001 else f"{value:.3f}"


def _money(value: float | None) -> str:
    return "–" if value is None else f"{value:,.2f}"


def _table(header: list[str], rows: list[tuple[list[str], list[str]]]) -> str:
    head = "".join(f"<th>{h}</th>" for h in header)
    body = []
    for cells, warnings in rows:
        note = escape("; ".join(warnings))
        cls = ' class="warn"' if warnings else ""
        tds = "".join(f"<td>{c}</td>" for c in cells)
        body.append(f'<tr{cls}>{tds}<td class="warn">{note}</td></tr>')
    return (
        f'<div class="scroll"><table><thead><tr>{head}<th>warning</th></tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def rows_table(report: Report) -> str:
    header = [
        "trigger",
        "stage",
        "variant",
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
            escape(r.trigger),
            str(r.stage),
            escape(r.variant or ""),
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
        revenue = "–"
        if u is not None and u.revenue_diff is not None:
            ci = u.revenue_diff_ci
            revenue = f"{u.revenue_diff:+,.2f}" + (f" [{ci[0]:+,.2f}, {ci[1]:+,.2f}]" if ci else "")
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


def render_html(report: Report) -> str:
    s = report.input
    period = ""
    if s.first_fired_at is not None and s.last_fired_at is not None:
        period = f"{s.first_fired_at:%Y-%m-%d %H:%M} – {s.last_fired_at:%Y-%m-%d %H:%M} UTC · "
    summary = (
        f"{period}{s.decisions:,} decisions, {s.conversions:,} conversions"
        f" ({s.unmatched_conversions:,} without their decision, left out),"
        f" {s.invalid:,} invalid lines, {s.duplicates:,} duplicates"
    )
    overall = [r for r in report.rows if r.stage == "all"]
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
        "<h2>Every trigger, stage and variant</h2>",
        rows_table(report),
        "<h2>Variant against variant (treatment only)</h2>",
        variants_table(report),
        HOW_TO_READ,
        '<p class="muted">Generated by <code>nudge report</code>. Statistics: Wilson intervals per'
        " arm, Newcombe interval for the difference, log interval for the ratio, score test p,"
        " Welch's t for revenue (statsmodels, scipy). See docs/report.md.</p>",
        "</main></body></html>",
    ]
    return "\n".join(parts) + "\n"
