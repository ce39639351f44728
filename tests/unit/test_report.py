"""``nudge report``: recipients, rates, uplift and intervals against hand computation."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from statistics import NormalDist

import pytest
from scipy import stats

from cli.report import NO_HOLDOUT, Report, build_report, report_command
from cli.report_data import tally_lines
from cli.report_page import render_html
from cli.report_text import render_text

ROOT = Path(__file__).resolve().parents[2]
Z = NormalDist().inv_cdf(0.975)


def decision(
    tid: str,
    user: str,
    status: str,
    *,
    trigger: str = "cart_abandonment",
    stage: int = 1,
    variant: str | None = None,
    channel: str | None = None,
    fired_at: str = "2026-11-02T10:00:00Z",
) -> str:
    return json.dumps(
        {
            "kind": "decision",
            "trigger_id": tid,
            "trigger": trigger,
            "stage": stage,
            "user_id": user,
            "due_at": fired_at,
            "fired_at": fired_at,
            "status": status,
            "reason": "cooldown" if status == "suppressed" else None,
            "segment": "new",
            "offer": None,
            "context": {},
            "rules_version": "1",
            "variant": variant,
            "channel": channel,
        }
    )


def conversion(tid: str, user: str, arm: str, revenue: float, order: str = "") -> str:
    return json.dumps(
        {
            "kind": "conversion",
            "trigger_id": tid,
            "trigger": "cart_abandonment",
            "user_id": user,
            "arm": arm,
            "order_id": order or f"o-{tid}",
            "revenue": revenue,
            "converted_at": "2026-11-02T12:00:00Z",
        }
    )


def arm_lines(
    prefix: str, status: str, recipients: int, revenues: list[float], **kw: object
) -> list[str]:
    """``recipients`` users with one decision each; the first ones convert with ``revenues``."""
    arm = "treatment" if status == "sent" else "holdout"
    out = []
    for i in range(recipients):
        tid, user = f"{prefix}-t{i}", f"{prefix}-u{i}"
        out.append(decision(tid, user, status, **kw))  # type: ignore[arg-type]
        if i < len(revenues):
            out.append(conversion(tid, user, arm, revenues[i]))
    return out


def report_of(lines: list[str]) -> Report:
    return build_report(tally_lines(lines))


def row(report: Report, stage: int | str = "all", variant: str | None = None):
    (found,) = [r for r in report.rows if r.stage == stage and r.variant == variant]
    return found


def wilson(x: int, n: int) -> tuple[float, float]:
    center = (x + Z**2 / 2) / (n + Z**2)
    half = Z / (n + Z**2) * math.sqrt(x * (n - x) / n + Z**2 / 4)
    return center - half, center + half


# Treatment: 200 recipients, 30 converters; holdout: 150 recipients, 12 converters.
T_REVENUE = [10.0 + 3 * i for i in range(30)]
H_REVENUE = [20.0 + 2 * i for i in range(12)]
CASE = arm_lines("t", "sent", 200, T_REVENUE) + arm_lines("h", "holdout", 150, H_REVENUE)


def test_rates_and_uplift_match_the_hand_computed_intervals() -> None:
    r = row(report_of(CASE))
    t, h, u = r.treatment, r.holdout, r.uplift
    assert h is not None and u is not None
    assert (t.recipients, t.converters, h.recipients, h.converters) == (200, 30, 150, 12)
    assert t.rate == pytest.approx(0.15) and h.rate == pytest.approx(0.08)
    # Wilson per arm
    assert t.rate_ci == pytest.approx(wilson(30, 200), abs=1e-12)
    assert h.rate_ci == pytest.approx(wilson(12, 150), abs=1e-12)
    # Newcombe's hybrid score interval for the difference, from the Wilson limits
    (l1, u1), (l2, u2) = wilson(30, 200), wilson(12, 150)
    d = 0.15 - 0.08
    newcombe = (d - math.hypot(0.15 - l1, u2 - 0.08), d + math.hypot(u1 - 0.15, 0.08 - l2))
    assert u.absolute == pytest.approx(0.07)
    assert u.absolute_ci == pytest.approx(newcombe, abs=1e-12)
    assert u.absolute_ci[0] == pytest.approx(0.0004, abs=0.001)  # barely above 0
    # the plain Wald interval is close to it (a sanity check of the scale)
    wald = Z * math.sqrt(0.15 * 0.85 / 200 + 0.08 * 0.92 / 150)
    assert u.absolute_ci == pytest.approx((d - wald, d + wald), abs=0.01)
    # p-value: the pooled two-proportion z-test
    pooled = 42 / 350
    z = d / math.sqrt(pooled * (1 - pooled) * (1 / 200 + 1 / 150))
    assert u.p_value == pytest.approx(2 * (1 - NormalDist().cdf(z)), abs=1e-12)
    assert u.p_value == pytest.approx(0.0461, abs=0.0001)
    # relative: ratio - 1, log interval with 0.5 added to every count
    assert u.relative == pytest.approx(0.15 / 0.08 - 1)
    ratio = (30.5 / 200.5) / (12.5 / 150.5)
    se = math.sqrt(1 / 30.5 - 1 / 200.5 + 1 / 12.5 - 1 / 150.5)
    expected = (ratio * math.exp(-Z * se) - 1, ratio * math.exp(Z * se) - 1)
    assert u.relative_ci == pytest.approx(expected, abs=1e-12)


def test_revenue_per_recipient_and_welch_interval() -> None:
    r = row(report_of(CASE))
    u = r.uplift
    assert u is not None
    a = T_REVENUE + [0.0] * 170
    b = H_REVENUE + [0.0] * 138
    assert r.treatment.revenue_per_recipient == pytest.approx(sum(a) / 200)
    assert r.holdout is not None and r.holdout.revenue_per_recipient == pytest.approx(sum(b) / 150)

    def mean_var(xs: list[float]) -> tuple[float, float]:
        m = sum(xs) / len(xs)
        return m, sum((x - m) ** 2 for x in xs) / (len(xs) - 1)

    (ma, va), (mb, vb) = mean_var(a), mean_var(b)
    se2 = va / 200 + vb / 150
    df = se2**2 / ((va / 200) ** 2 / 199 + (vb / 150) ** 2 / 149)
    half = stats.t.ppf(0.975, df) * math.sqrt(se2)
    assert u.revenue_diff == pytest.approx(ma - mb)
    assert u.revenue_diff_ci == pytest.approx((ma - mb - half, ma - mb + half), rel=1e-9)
    p = 2 * stats.t.sf(abs(ma - mb) / math.sqrt(se2), df)
    assert u.revenue_p_value == pytest.approx(p, rel=1e-9)


def test_recipients_are_distinct_users_and_stage_all_counts_each_once() -> None:
    lines = [
        decision("a1", "alice", "sent", stage=1),
        decision("a2", "alice", "sent", stage=2),
        decision("a3", "alice", "sent", stage=1, fired_at="2026-11-05T10:00:00Z"),  # new episode
        conversion("a1", "alice", "treatment", 30.0),
        conversion("a3", "alice", "treatment", 12.5),
        decision("b1", "bob", "sent", stage=1),
        decision("c1", "carol", "suppressed", stage=1),  # not a recipient
        decision("d1", "dave", "holdout", stage=1),
        decision("d2", "dave", "holdout", stage=2),
        conversion("d2", "dave", "holdout", 40.0),
    ]
    report = report_of(lines)
    overall, first, second = row(report), row(report, 1), row(report, 2)
    assert overall.treatment.recipients == 2  # alice, bob
    assert overall.treatment.converters == 1 and overall.treatment.conversions == 2
    assert overall.treatment.revenue == pytest.approx(42.5)
    assert overall.treatment.revenue_per_recipient == pytest.approx(21.25)
    assert first.treatment.recipients == 2 and first.treatment.converters == 1
    assert second.treatment.recipients == 1 and second.treatment.converters == 0
    assert overall.holdout is not None and first.holdout is not None
    assert overall.holdout.converters == 1 and first.holdout.converters == 0
    assert second.holdout is not None and second.holdout.converters == 1
    assert report.input.statuses["cart_abandonment"] == {"holdout": 2, "sent": 4, "suppressed": 1}


def test_small_groups_are_flagged_and_large_enough_ones_are_not() -> None:
    # 29 holdout recipients -> flagged; the treatment arm has 4 converters -> flagged too
    small = report_of(
        arm_lines("t", "sent", 40, [5.0] * 4) + arm_lines("h", "holdout", 29, [5.0] * 6)
    )
    assert row(small).warnings == [
        "treatment: 4 converters (< 5)",
        "holdout: 29 recipients (< 30)",
    ]
    # exactly at the thresholds: 30 recipients and 5 converters in each arm -> no warning
    enough = report_of(
        arm_lines("t", "sent", 30, [5.0] * 5) + arm_lines("h", "holdout", 30, [5.0] * 5)
    )
    assert row(enough).warnings == []
    assert "too small" not in render_text(enough)
    assert "too small to say anything" in render_text(small)


def test_without_a_holdout_there_is_no_uplift_but_a_warning() -> None:
    report = report_of(arm_lines("t", "sent", 100, [9.0] * 10))
    r = row(report)
    assert r.holdout is None and r.uplift is None
    assert r.warnings == [NO_HOLDOUT]
    assert r.treatment.rate == pytest.approx(0.1)


def test_variants_have_their_rows_share_the_holdout_and_are_compared() -> None:
    lines = (
        arm_lines("a", "sent", 300, [10.0] * 30, variant="A")
        + arm_lines("b", "sent", 300, [10.0] * 51, variant="B")
        + arm_lines("h", "holdout", 100, [10.0] * 8)
    )
    report = report_of(lines)
    a, b, pooled = row(report, variant="A"), row(report, variant="B"), row(report, variant="(all)")
    assert (a.treatment.recipients, b.treatment.recipients, pooled.treatment.recipients) == (
        300,
        300,
        600,
    )
    assert pooled.treatment.converters == 81
    assert a.holdout == b.holdout == pooled.holdout
    assert a.holdout is not None and a.holdout.recipients == 100
    (stage_all,) = [c for c in report.variant_comparisons if c.stage == "all"]
    assert (stage_all.variant, stage_all.baseline) == ("B", "A")
    u = stage_all.uplift
    assert u is not None and u.absolute == pytest.approx(0.17 - 0.10)
    (l1, u1), (l2, u2) = wilson(51, 300), wilson(30, 300)
    expected = (0.07 - math.hypot(0.17 - l1, u2 - 0.10), 0.07 + math.hypot(u1 - 0.17, 0.10 - l2))
    assert u.absolute_ci == pytest.approx(expected, abs=1e-12)
    assert u.p_value is not None and u.p_value < 0.05
    assert "B vs A" in render_text(report)


def test_invalid_duplicate_and_unmatched_records_are_counted_not_used() -> None:
    lines = [
        *CASE,
        CASE[0],  # a decision read twice
        CASE[1],  # its conversion read twice
        conversion("nowhere", "zed", "treatment", 99.0),  # its decision is not in the input
        "{not json",
        json.dumps({"kind": "decision", "trigger_id": "x"}),  # fields missing
        json.dumps({"kind": "something_else"}),
        "",
    ]
    report = report_of(lines)
    s = report.input
    assert (s.lines, s.invalid, s.duplicates, s.unmatched_conversions) == (len(CASE) + 6, 3, 2, 1)
    assert row(report).treatment.converters == 30  # unchanged by the duplicates


def test_json_output_carries_every_figure(tmp_path) -> None:
    audit = tmp_path / "audit.jsonl"
    audit.write_text("\n".join(CASE) + "\n")
    out = io.StringIO()
    assert report_command(str(audit), as_json=True, out=out) == 0
    data = json.loads(out.getvalue())
    (overall,) = [r for r in data["rows"] if r["stage"] == "all"]
    assert overall["treatment"]["recipients"] == 200
    assert overall["holdout"]["converters"] == 12
    assert overall["uplift"]["absolute"] == pytest.approx(0.07)
    assert len(overall["uplift"]["absolute_ci"]) == 2
    assert overall["warnings"] == []
    assert data["rules"] == {
        "confidence": 0.95,
        "min_recipients": 30,
        "min_converters": 5,
        "costs": None,
    }
    assert data["sends_bucket"] == "hour"
    assert data["sends"] == [{"start": "2026-11-02T10:00:00Z", "sent": {"cart_abandonment": 200}}]


def test_sends_over_time_has_one_bucket_per_day_without_gaps() -> None:
    lines = [
        decision("s1", "u1", "sent", fired_at="2026-11-01T09:00:00Z"),
        decision("s2", "u2", "sent", fired_at="2026-11-01T23:59:00Z"),
        decision("s3", "u3", "sent", trigger="browse_abandonment", fired_at="2026-11-05T01:00:00Z"),
        decision("s4", "u4", "holdout", fired_at="2026-11-03T01:00:00Z"),  # not a send
    ]
    report = report_of(lines)
    assert report.sends_bucket == "day"
    assert [(b.start.day, b.sent) for b in report.sends] == [
        (1, {"cart_abandonment": 2}),
        (2, {}),
        (3, {}),
        (4, {}),
        (5, {"browse_abandonment": 1}),
    ]


def test_html_page_is_self_contained_with_the_three_charts() -> None:
    page = render_html(report_of(CASE))
    for chart in ('id="uplift"', 'id="rates"', 'id="sends"'):
        assert chart in page
    assert "When not to trust it" in page and "Peeking" in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in page and "<script" not in page


def test_unreadable_input_exits_2(tmp_path) -> None:
    assert report_command(str(tmp_path / "missing.jsonl"), out=io.StringIO()) == 2


def test_an_events_file_is_refused_in_one_line_with_the_fix(capsys) -> None:
    # The events a replay reads, given instead of the audit records it writes.
    events = str(ROOT / "examples" / "shop.jsonl")
    out = io.StringIO()
    assert report_command(events, out=out) == 1
    assert out.getvalue() == ""
    (line,) = capsys.readouterr().err.splitlines()
    assert line == (
        f"nudge report: {events} holds shop events (7 of 7 lines), the input of nudge replay,"
        f" not audit records: run `nudge replay {events} --rules RULES --out audit.jsonl`,"
        " then `nudge report audit.jsonl`"
    )


def test_a_file_without_any_audit_record_is_exit_1(tmp_path, capsys) -> None:
    other = tmp_path / "other.jsonl"
    other.write_text('{"a": 1}\nnot json\n')
    assert report_command(str(other), out=io.StringIO()) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"nudge report: none of the 2 lines of {other} is an audit record")
    empty = tmp_path / "empty.jsonl"  # nothing decided yet: an empty report, not an error
    empty.write_text("")
    assert report_command(str(empty), out=io.StringIO()) == 0
