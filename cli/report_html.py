"""The charts of the ``nudge report --html`` page, drawn as inline SVG.

No script, no stylesheet or font from the network (the page is assembled in
:mod:`cli.report_page`). Charts:

- ``#uplift``: absolute uplift per trigger and variant (every stage) with its
  95 % interval, around a zero line;
- ``#rates``: conversion rate by arm (treatment, holdout) with 95 % interval
  bars;
- ``#sends``: sent decisions over time, stacked by trigger;
- ``#funnel-TRIGGER``: one per trigger, the funnel of its sent decisions per
  channel (sent, delivered, opened, clicked, ordered as shares of sent, with
  95 % intervals).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from html import escape

from cli.report_model import Report, Row, trigger_order
from cli.report_stats import Step

WIDTH = 960
LABEL = 230  # left margin for row labels
RIGHT = 150  # right margin for value labels
TREATMENT, HOLDOUT = "#2563eb", "#9ca3af"
UP, DOWN, FLAT = "#15803d", "#b91c1c", "#6b7280"
PALETTE = ("#2563eb", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#06b6d4", "#ec4899", "#84cc16")

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
color:#111827;margin:0;background:#f9fafb}
main{max-width:1232px;margin:0 auto;padding:24px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:32px 0 8px}
.muted{color:#6b7280}.card{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:12px}
svg{width:100%;height:auto;display:block}svg text{font:12px system-ui,"DejaVu Sans",sans-serif}
table{border-collapse:collapse;width:100%;background:#fff;font-size:12px}
th,td{border-bottom:1px solid #e5e7eb;padding:4px 5px;text-align:right;white-space:nowrap}
th{white-space:normal;vertical-align:bottom}.scroll{overflow-x:auto}
th:nth-child(-n+4),td:nth-child(-n+4){text-align:left}td small{color:#6b7280}
tr.warn td{background:#fffbeb;border-bottom:0}
tr.note td{white-space:normal;text-align:left;color:#92400e;background:#fffbeb;padding-top:0}
.legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:-1px}
"""


def fmt_pct(value: float | None, signed: bool = False, digits: int = 1) -> str:
    if value is None:
        return "–"
    return f"{value * 100:+.{digits}f}%" if signed else f"{value * 100:.{digits}f}%"


def _nice_step(span: float, ticks: int = 5) -> float:
    if span <= 0:
        return 1.0
    raw = span / ticks
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)


def _axis(low: float, high: float) -> tuple[float, float, list[float]]:
    """A rounded axis covering [low, high] and its ticks."""
    step = _nice_step(high - low)
    start, end = math.floor(low / step) * step, math.ceil(high / step) * step
    if end <= start:
        end = start + step
    ticks = [start + i * step for i in range(round((end - start) / step) + 1)]
    return start, end, ticks


def _label(row: Row) -> str:
    return row.trigger + (f" · {row.variant}" if row.variant else "")


def _svg(chart_id: str, height: float, body: list[str], title: str) -> str:
    return (
        f'<svg id="{chart_id}" class="chart" viewBox="0 0 {WIDTH} {height:.0f}" '
        f'role="img" aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">'
        + "".join(body)
        + "</svg>"
    )


def _grid(
    scale: Callable[[float], float],
    ticks: list[float],
    top: float,
    bottom: float,
    fmt: Callable[[float], str],
) -> list[str]:
    out = []
    for tick in ticks:
        x = scale(tick)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{bottom}" stroke="#e5e7eb"/>')
        out.append(
            f'<text x="{x:.1f}" y="{bottom + 14}" text-anchor="middle" fill="#6b7280">'
            f"{escape(fmt(tick))}</text>"
        )
    return out


def uplift_chart(rows: list[Row]) -> str:
    rows = [r for r in rows if r.uplift is not None and r.uplift.absolute is not None]
    if not rows:
        return '<p class="muted">No trigger has both a treatment and a holdout group.</p>'
    values = [0.0]
    for r in rows:
        assert r.uplift is not None and r.uplift.absolute is not None
        values += [r.uplift.absolute, *(r.uplift.absolute_ci or ())]
    low, high, ticks = _axis(min(values), max(values))
    top, row_h = 10, 30
    bottom = top + row_h * len(rows)

    def x(v: float) -> float:
        return LABEL + (v - low) / (high - low) * (WIDTH - LABEL - RIGHT)

    body = _grid(x, ticks, top, bottom, lambda t: f"{t * 100:+.0f} pp" if t else "0")
    body.append(
        f'<line x1="{x(0):.1f}" x2="{x(0):.1f}" y1="{top}" y2="{bottom}" stroke="#111827"/>'
    )
    for i, r in enumerate(rows):
        u = r.uplift
        assert u is not None and u.absolute is not None
        y = top + row_h * i + row_h / 2
        lo, hi = u.absolute_ci or (u.absolute, u.absolute)
        color = UP if lo > 0 else DOWN if hi < 0 else FLAT
        small = bool(r.warnings)
        body.append(
            f'<text x="{LABEL - 10}" y="{y + 4:.1f}" text-anchor="end">{escape(_label(r))}</text>'
        )
        body.append(
            f'<rect class="ci" x="{x(lo):.1f}" y="{y - 2:.1f}" width="{max(x(hi) - x(lo), 1):.1f}" '
            f'height="4" fill="{color}" opacity="0.55"><title>95% interval '
            f"{lo * 100:+.2f} to {hi * 100:+.2f} pp</title></rect>"
        )
        fill = "#fff" if small else color
        body.append(
            f'<circle class="point" cx="{x(u.absolute):.1f}" cy="{y:.1f}" r="6" fill="{fill}" '
            f'stroke="{color}" stroke-width="2"/>'
        )
        text = f"{u.absolute * 100:+.1f} pp [{lo * 100:+.1f}, {hi * 100:+.1f}]"
        body.append(
            f'<text x="{WIDTH - RIGHT + 8}" y="{y + 4:.1f}" fill="{color}">{escape(text)}'
            f"{' ⚠' if small else ''}</text>"
        )
    return _svg("uplift", bottom + 24, body, "Uplift per trigger with 95% intervals")


def rates_chart(rows: list[Row]) -> str:
    if not rows:
        return '<p class="muted">No recipients.</p>'
    highs = [0.01]
    for r in rows:
        for arm in (r.treatment, r.holdout):
            if arm is not None and arm.rate_ci is not None:
                highs.append(arm.rate_ci[1])
    _, high, ticks = _axis(0.0, max(highs))
    top, bar_h, row_h = 10, 12, 40
    bottom = top + row_h * len(rows)

    def x(v: float) -> float:
        return LABEL + v / high * (WIDTH - LABEL - RIGHT)

    body = _grid(x, ticks, top, bottom, lambda t: f"{t * 100:.0f}%")
    for i, r in enumerate(rows):
        y0 = top + row_h * i + 6
        body.append(
            f'<text x="{LABEL - 10}" y="{y0 + bar_h + 4}" text-anchor="end">'
            f"{escape(_label(r))}</text>"
        )
        for j, (arm, name, color) in enumerate(
            ((r.treatment, "treatment", TREATMENT), (r.holdout, "holdout", HOLDOUT))
        ):
            y = y0 + j * (bar_h + 2)
            if arm is None or arm.rate is None:
                body.append(f'<text x="{LABEL + 4}" y="{y + 10}" fill="#6b7280">no {name}</text>')
                continue
            body.append(
                f'<rect class="bar {name}" x="{LABEL}" y="{y}" '
                f'width="{max(x(arm.rate) - LABEL, 1):.1f}" '
                f'height="{bar_h}" fill="{color}"><title>{name}: {arm.converters} of '
                f"{arm.recipients}</title></rect>"
            )
            if arm.rate_ci is not None:
                lo, hi = x(arm.rate_ci[0]), x(arm.rate_ci[1])
                mid = y + bar_h / 2
                body.append(
                    f'<path class="whisker" d="M{lo:.1f},{mid - 4:.1f}v8'
                    f'M{lo:.1f},{mid:.1f}H{hi:.1f}M{hi:.1f},{mid - 4:.1f}v8" '
                    'stroke="#111827" stroke-width="1.5" fill="none"/>'
                )
            body.append(
                f'<text x="{WIDTH - RIGHT + 8}" y="{y + 10}">{name[0].upper()} '
                f"{fmt_pct(arm.rate)} of {arm.recipients:,}</text>"
            )
    return _svg("rates", bottom + 24, body, "Conversion rate by arm with 95% intervals")


def sends_chart(report: Report) -> str:
    buckets = report.sends
    if not buckets:
        return '<p class="muted">No sent decisions.</p>'
    triggers = sorted({t for b in buckets for t in b.sent}, key=trigger_order)
    colors = {t: PALETTE[i % len(PALETTE)] for i, t in enumerate(triggers)}
    _, high, ticks = _axis(0.0, max(max(sum(b.sent.values()) for b in buckets), 1))
    top, bottom, left = 10, 230, 60
    width = (WIDTH - left - 20) / len(buckets)

    def y(v: float) -> float:
        return bottom - v / high * (bottom - top)

    body = []
    for tick in ticks:
        body.append(
            f'<line x1="{left}" x2="{WIDTH - 20}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" '
            'stroke="#e5e7eb"/>'
        )
        body.append(
            f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end" fill="#6b7280">'
            f"{tick:,.0f}</text>"
        )
    every = max(1, math.ceil(len(buckets) / 12))
    fmt = "%m-%d %H:00" if report.sends_bucket == "hour" else "%m-%d"
    for i, b in enumerate(buckets):
        x0, level = left + i * width, 0
        for trigger, n in b.sent.items():
            body.append(
                f'<rect class="bar" x="{x0 + 1:.1f}" y="{y(level + n):.1f}" '
                f'width="{max(width - 2, 1):.1f}" height="{y(level) - y(level + n):.1f}" '
                f'fill="{colors[trigger]}">'
                f"<title>{escape(trigger)} {b.start:{fmt}}: {n}</title></rect>"
            )
            level += n
        if i % every == 0:
            body.append(
                f'<text x="{x0 + width / 2:.1f}" y="{bottom + 16}" text-anchor="middle" '
                f'fill="#6b7280">{b.start:{fmt}}</text>'
            )
    legend = "".join(f'<span style="background:{c}"></span>{escape(t)}' for t, c in colors.items())
    title = f"Sent decisions per {report.sends_bucket} (UTC)"
    return f'<div class="legend muted">{legend}</div>' + _svg("sends", bottom + 26, body, title)


#: The funnel's steps: the name shown, and the attribute of :class:`~cli.report_model.FunnelStats`.
FUNNEL_STEPS = ("sent", "delivered", "opened", "clicked", "ordered")


def channel_colors(rows: list[Row]) -> dict[str | None, str]:
    """One colour per channel, in the order the rows name them, the same on every chart."""
    names: list[str | None] = []
    for r in rows:
        if r.channel not in names:
            names.append(r.channel)
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}


def funnel_chart(trigger: str, rows: list[Row], colors: dict[str | None, str]) -> str:
    """The funnel of one trigger: per step a bar per channel (``rows``, one per channel), its
    length the share of that channel's sent decisions, with the 95 % interval."""
    rows = [r for r in rows if r.funnel.sent]
    if not rows:
        return f'<p class="muted">{escape(trigger)}: no sent decisions.</p>'
    top, bar_h, gap, right = 10, 12, 12, 240  # a wider right margin: name, rate, interval
    group_h = len(rows) * (bar_h + 2) + gap
    bottom = top + group_h * len(FUNNEL_STEPS)

    def x(v: float) -> float:
        return LABEL + v * (WIDTH - LABEL - right)

    body = _grid(x, [0.0, 0.25, 0.5, 0.75, 1.0], top, bottom, lambda t: f"{t * 100:.0f}%")
    for i, name in enumerate(FUNNEL_STEPS):
        y0 = top + group_h * i + gap / 2
        body.append(
            f'<text x="{LABEL - 10}" y="{y0 + bar_h - 1:.1f}" text-anchor="end">{name}</text>'
        )
        for j, r in enumerate(rows):
            f = r.funnel
            step = Step(f.sent, 1.0, None) if name == "sent" else getattr(f, name)
            y = y0 + j * (bar_h + 2)
            channel = r.channel or "(no channel)"
            width = max(x(step.rate or 0.0) - LABEL, 1)
            body.append(
                f'<rect class="bar step-{name}" x="{LABEL}" y="{y:.1f}" width="{width:.1f}" '
                f'height="{bar_h}" fill="{colors[r.channel]}"><title>{escape(channel)} {name}: '
                f"{step.count:,} of {f.sent:,} sent</title></rect>"
            )
            text = f"{escape(channel)} {f.sent:,}"
            if name != "sent" and step.rate is not None:
                text = f"{escape(channel)} {fmt_pct(step.rate)}"
                if step.rate_ci is not None:
                    lo, hi = x(step.rate_ci[0]), x(step.rate_ci[1])
                    mid = y + bar_h / 2
                    body.append(
                        f'<path class="whisker" d="M{lo:.1f},{mid - 4:.1f}v8'
                        f'M{lo:.1f},{mid:.1f}H{hi:.1f}M{hi:.1f},{mid - 4:.1f}v8" '
                        'stroke="#111827" stroke-width="1.5" fill="none"/>'
                    )
                    text += f" [{fmt_pct(step.rate_ci[0])}, {fmt_pct(step.rate_ci[1])}]"
            body.append(f'<text x="{WIDTH - right + 8}" y="{y + 10:.1f}">{text}</text>')
    title = f"Funnel of {trigger} per channel with 95% intervals"
    return _svg(f"funnel-{escape(trigger)}", bottom + 24, body, title)
