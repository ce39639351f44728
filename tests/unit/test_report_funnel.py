"""``nudge report`` and contract 8.4: the funnel per channel, holdout within the channel, cost
and incremental revenue per unit of cost, against hand computation."""

from __future__ import annotations

import io
import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from scipy import stats

from cli.main import main
from cli.report import NO_CHANNEL_HOLDOUT, Report, Row, build_report, report_command
from cli.report_data import tally_lines
from cli.report_page import render_html
from cli.report_text import render_text
from tests.unit.test_report import arm_lines, wilson
from triggers.records import record_to_json
from triggers.replay import replay_lines
from triggers.rules import parse_rules

pytestmark = pytest.mark.unit


def engagement(tid: str, user: str, type_: str, channel: str, minute: int = 5, **kw: str) -> str:
    at = datetime(2026, 11, 2, 10, tzinfo=UTC) + timedelta(minutes=minute)
    return json.dumps(
        {
            "kind": "engagement",
            "type": type_,
            "trigger_id": tid,
            "channel": channel,
            "user_id": user,
            "at": at.isoformat().replace("+00:00", "Z"),
            **kw,
        }
    )


def feedback(prefix: str, channel: str, counts: dict[str, int]) -> list[str]:
    """``counts[type]`` records of ``type`` on the first decisions of ``arm_lines(prefix)``."""
    return [
        engagement(f"{prefix}-t{i}", f"{prefix}-u{i}", type_, channel)
        for type_, n in counts.items()
        for i in range(n)
    ]


# push: 200 sent, 60 held out; email: 100 sent, 30 held out (one trigger, no variants).
PUSH_T = arm_lines("pt", "sent", 200, [30.0] * 20, channel="push")
PUSH_H = arm_lines("ph", "holdout", 60, [30.0] * 3, channel="push")
EMAIL_T = arm_lines("et", "sent", 100, [40.0 + i for i in range(15)], channel="email")
EMAIL_H = arm_lines("eh", "holdout", 30, [40.0] * 2, channel="email")
BOUNCES = ((98, "hard"), (99, "soft"))  # two emails not delivered
FEEDBACK = [
    *feedback("pt", "push", {"message_delivered": 190, "message_opened": 50}),
    *feedback("pt", "push", {"message_clicked": 12}),
    *feedback("et", "email", {"message_delivered": 95, "message_opened": 40}),
    *feedback("et", "email", {"message_clicked": 10, "message_complained": 1}),
    *(engagement(f"et-t{i}", f"et-u{i}", "message_bounced", "email", bounce=b) for i, b in BOUNCES),
    engagement("pt-t1", "pt-u1", "message_opened", "push", minute=50),  # opened again: 1 decision
    engagement("pt-t0", "pt-u0", "message_opened", "push"),  # the same record twice
    engagement("nowhere", "zed", "message_opened", "push"),  # not a decision of the input
    engagement("ph-t0", "ph-u0", "message_delivered", "push"),  # a holdout: nothing was sent
]  # fmt: skip
CASE = [*PUSH_T, *PUSH_H, *EMAIL_T, *EMAIL_H, *FEEDBACK]


def find(report: Report, channel: str | None, stage: int | str = "all") -> Row:
    (found,) = [r for r in report.rows if r.stage == stage and r.channel == channel]
    return found


def test_the_funnel_counts_sent_decisions_per_channel_with_wilson_intervals() -> None:
    report = build_report(tally_lines(CASE))
    push, email, pooled = find(report, "push"), find(report, "email"), find(report, "(all)")
    for row, sent, delivered, opened, clicked, ordered in (
        (push, 200, 190, 50, 12, 20),
        (email, 100, 95, 40, 10, 15),
        (pooled, 300, 285, 90, 22, 35),
    ):
        f = row.funnel
        assert f.sent == sent
        for step, count in (
            (f.delivered, delivered),
            (f.opened, opened),
            (f.clicked, clicked),
            (f.ordered, ordered),
        ):
            assert step.count == count
            assert step.rate == pytest.approx(count / sent)
            assert step.rate_ci == pytest.approx(wilson(count, sent), abs=1e-12)
    assert (email.funnel.bounced, email.funnel.complained, email.funnel.unsubscribed) == (2, 1, 0)
    assert (pooled.funnel.bounced, push.funnel.bounced) == (2, 0)
    s = report.input
    # distinct records: 190+50+12 + 95+40+10+1+2 + the second open, the two unmatched ones
    assert s.engagement == 190 + 50 + 12 + 95 + 40 + 10 + 1 + 2 + 1 + 2
    assert (s.unmatched_engagement, s.duplicates) == (2, 1)


def test_holdout_is_compared_within_the_channel() -> None:
    report = build_report(tally_lines(CASE))
    for channel, lines in (("push", PUSH_T + PUSH_H), ("email", EMAIL_T + EMAIL_H)):
        row = find(report, channel)
        alone = find(build_report(tally_lines(lines)), channel)  # that channel's records only
        assert row.holdout == alone.holdout and row.treatment == alone.treatment
        assert row.uplift == alone.uplift
    push, email = find(report, "push"), find(report, "email")
    assert push.holdout is not None and email.holdout is not None
    assert (push.holdout.recipients, email.holdout.recipients) == (60, 30)
    assert push.uplift is not None and push.uplift.absolute == pytest.approx(0.10 - 0.05)
    pooled = find(report, "(all)")
    assert pooled.holdout is not None and pooled.holdout.recipients == 90
    assert pooled.treatment.recipients == 300 and pooled.treatment.converters == 35


def test_a_channel_without_holdout_recipients_says_so() -> None:
    lines = [*PUSH_T, *PUSH_H, *arm_lines("st", "sent", 40, [9.0] * 5, channel="sms")]
    sms = find(build_report(tally_lines(lines)), "sms")
    assert sms.uplift is None and sms.holdout is None
    assert sms.warnings == [NO_CHANNEL_HOLDOUT]


def _welch_half(a: list[float], b: list[float]) -> float:
    def mean_var(xs: list[float]) -> tuple[float, float]:
        m = sum(xs) / len(xs)
        return m, sum((x - m) ** 2 for x in xs) / (len(xs) - 1)

    (_, va), (_, vb) = mean_var(a), mean_var(b)
    na, nb = len(a), len(b)
    se2 = va / na + vb / nb
    df = se2**2 / ((va / na) ** 2 / (na - 1) + (vb / nb) ** 2 / (nb - 1))
    return float(stats.t.ppf(0.975, df)) * math.sqrt(se2)


def test_cost_and_incremental_revenue_per_unit_of_cost() -> None:
    report = build_report(tally_lines(CASE), {"push": 0.0, "email": 0.05, "sms": 0.2})
    email, push, pooled = find(report, "email"), find(report, "push"), find(report, "(all)")
    # email: 100 sent x 0.05; revenue per recipient T - H (email's holdout) x 100 recipients
    t = [40.0 + i for i in range(15)] + [0.0] * 85
    h = [40.0] * 2 + [0.0] * 28
    gain = (sum(t) / 100 - sum(h) / 30) * 100
    half = _welch_half(t, h) * 100
    c = email.cost
    assert c.cost == pytest.approx(5.0)
    assert c.incremental_revenue == pytest.approx(gain)
    assert c.incremental_revenue_ci == pytest.approx((gain - half, gain + half), rel=1e-9)
    assert c.per_cost == pytest.approx(gain / 5.0)
    assert c.per_cost_ci == pytest.approx(((gain - half) / 5, (gain + half) / 5), rel=1e-9)
    assert c.per_cost_ci[0] < c.per_cost < c.per_cost_ci[1]  # type: ignore[index,operator]
    # push is free: a cost of 0 and no ratio, the incremental revenue still there
    assert push.cost.cost == 0.0 and push.cost.per_cost is None and push.cost.per_cost_ci is None
    assert push.cost.incremental_revenue == pytest.approx((600 / 200 - 90 / 60) * 200)
    # every channel: the costs add up; the gain is the pooled arms'
    assert pooled.cost.cost == pytest.approx(5.0)
    pooled_gain = ((600 + sum(t)) / 300 - (90 + 80) / 90) * 300
    assert pooled.cost.incremental_revenue == pytest.approx(pooled_gain)
    assert pooled.cost.per_cost == pytest.approx(pooled_gain / 5.0)


def test_without_rules_or_for_a_channel_they_lack_the_cost_is_unknown() -> None:
    for costs in (None, {"push": 0.01}):
        report = build_report(tally_lines(CASE), costs)
        email, pooled = find(report, "email"), find(report, "(all)")
        assert email.cost.cost is None and pooled.cost.cost is None
        assert email.cost.per_cost is None
        assert email.cost.incremental_revenue is not None
    push = find(build_report(tally_lines(CASE), {"push": 0.01}), "push")
    assert push.cost.cost == pytest.approx(2.0)
    assert push.cost.per_cost == pytest.approx(push.cost.incremental_revenue / 2.0)  # type: ignore[operator]


def test_variants_per_channel_share_that_channels_holdout() -> None:
    lines = (
        arm_lines("a", "sent", 100, [10.0] * 10, variant="A", channel="push")
        + arm_lines("b", "sent", 100, [10.0] * 20, variant="B", channel="push")
        + arm_lines("c", "sent", 50, [10.0] * 5, variant="A", channel="sms")
        + arm_lines("h", "holdout", 40, [10.0] * 2, channel="push")
        + arm_lines("g", "holdout", 20, [10.0] * 1, channel="sms")
    )
    rows = build_report(tally_lines(lines)).rows
    got = {(r.variant, r.channel): r for r in rows}
    assert set(got) == {(v, c) for v in ("A", "B", "(all)") for c in ("push", "sms", "(all)")}
    for variant in ("A", "B", "(all)"):
        assert got[variant, "push"].holdout == got["A", "push"].holdout
        assert got[variant, "push"].holdout.recipients == 40  # type: ignore[union-attr]
    assert got["B", "sms"].treatment.recipients == 0 and got["B", "sms"].funnel.sent == 0
    assert got["(all)", "(all)"].holdout.recipients == 60  # type: ignore[union-attr]
    assert got["A", "(all)"].funnel.sent == 150


def test_the_table_shows_the_funnel_and_cost_only_when_there_are_channels() -> None:
    text = render_text(build_report(tally_lines(CASE), {"push": 0.0, "email": 0.05}))
    assert "funnel of the sent decisions" in text
    funnel = text.split("funnel of the sent decisions")[1].splitlines()
    (email_line,) = [line for line in funnel if line.split()[2:3] == ["email"]]
    assert email_line.split()[3:6] == ["100", "95.0%", "[88.8,"]  # sent, delivered [Wilson
    assert "  5.00  " in email_line  # cost: 100 sent x 0.05
    assert "(unmatched 2)" in text
    assert "give the rules file" in render_text(build_report(tally_lines(CASE)))
    before = render_text(build_report(tally_lines(arm_lines("x", "sent", 40, [1.0]))))
    assert "funnel" not in before and "channel" in before.splitlines()[3]


def test_the_page_has_a_funnel_chart_per_trigger_and_warnings_under_their_row() -> None:
    lines = [
        *CASE,
        *arm_lines("b", "sent", 20, [5.0], trigger="browse_abandonment", channel="push"),
    ]
    page = render_html(build_report(tally_lines(lines), {"push": 0.0, "email": 0.05}))
    assert 'id="funnel-cart_abandonment"' in page and 'id="funnel-browse_abandonment"' in page
    assert page.count('class="bar step-opened"') == 3  # two channels of one trigger, one of another
    assert '<tr class="note"><td colspan="13">⚠ ' in page
    assert "Return on cost" in page
    no_channels = render_html(build_report(tally_lines(arm_lines("x", "sent", 40, [1.0]))))
    assert "funnel-" not in no_channels and "No channel and no engagement record" in no_channels


def test_erasure_records_are_counted_and_engagement_alone_is_an_audit_stream(
    tmp_path: Path,
) -> None:
    erasure = json.dumps({"kind": "erasure", "user_id": "u", "erased_at": "2026-11-03T00:00:00Z"})
    report = build_report(tally_lines([*PUSH_T[:4], erasure]))
    assert (report.input.erasures, report.input.invalid) == (1, 0)
    only = tmp_path / "engagement.jsonl"
    only.write_text(engagement("x", "u", "message_opened", "push") + "\n")
    out = io.StringIO()
    assert report_command(str(only), as_json=True, out=out) == 0
    assert json.loads(out.getvalue())["input"]["unmatched_engagement"] == 1


def test_a_file_of_feedback_events_is_refused_as_events(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = tmp_path / "feedback.jsonl"
    events.write_text(
        json.dumps({"event_id": "e1", "type": "message_opened", "user_id": "u",
                    "ts": "2026-11-02T10:00:00Z", "trigger_id": "t", "channel": "push"}) + "\n"
    )  # fmt: skip
    assert report_command(str(events), out=io.StringIO()) == 1
    assert "holds shop events (1 of 1 lines)" in capsys.readouterr().err


def test_rules_give_the_costs_and_bad_rules_are_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    audit, rules = tmp_path / "audit.jsonl", tmp_path / "rules.yaml"
    audit.write_text("\n".join(CASE) + "\n")
    rules.write_text("channels:\n  push: {}\n  email: {cost: 0.05}\n")
    assert main(["report", str(audit), "--rules", str(rules), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["rules"]["costs"] == {"push": 0.0, "email": 0.05}
    (email,) = [r for r in data["rows"] if r["channel"] == "email"]
    assert email["cost"]["cost"] == pytest.approx(5.0)
    assert email["funnel"]["delivered"]["count"] == 95
    assert len(email["cost"]["per_cost_ci"]) == 2
    rules.write_text("channels:\n  push: {cost: 0.01}\n")  # rules that lack email
    assert main(["report", str(audit), "--rules", str(rules), "--json"]) == 0
    assert capsys.readouterr().err == (
        f"nudge report: channel email is not in the rules {rules}: its cost is unknown\n"
    )
    rules.write_text("channels:\n  email: {cost: -1}\n")
    assert main(["report", str(audit), "--rules", str(rules)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"nudge report: rules: {rules}:2: channels.email.cost")


PREFS_TS = "2026-11-01T00:00:00Z"


def event(event_id: str, type_: str, user: str, ts: str, **fields: object) -> dict[str, object]:
    return {"event_id": event_id, "type": type_, "user_id": user, "ts": ts, **fields}


def test_a_replay_with_channels_and_feedback_gives_the_funnel() -> None:
    """The engine's own records: replay, feedback on what was sent, replay again, report."""
    rules = parse_rules(
        "channels: {push: {}, sms: {consent: opt_in, cost: 0.05}}\n"
        "contact_policy: {holdout_percent: 0, quiet_hours: null}\n"
        "triggers: {cart_abandonment: {stages: [1h]}}\n"
    )
    events = []
    for i in range(6):
        user, ts = f"u{i}", f"2026-11-02T10:0{i}:00Z"
        if i % 2:  # half say yes to SMS and no to push: their reminders go by SMS
            consent = {"sms": True, "push": False}
            events.append(event(f"p{i}", "preferences_updated", user, PREFS_TS, channels=consent))
        events.append(event(f"c{i}", "cart_item_added", user, ts, product_id="p", unit_price=10))
    lines = [json.dumps(e) for e in events]
    end = datetime(2026, 11, 3, tzinfo=UTC)
    first = [json.loads(record_to_json(r)) for r in replay_lines(lines, rules, end).records]
    sent = [d for d in first if d["kind"] == "decision" and d["status"] == "sent"]
    assert sorted(d["channel"] for d in sent) == ["push"] * 3 + ["sms"] * 3
    for n, d in enumerate(sent):
        for type_ in ("message_delivered", "message_opened")[: 1 + n % 2]:
            answer = event(f"f{n}{type_}", type_, d["user_id"], "2026-11-02T12:00:00Z")
            answer |= {"trigger_id": d["trigger_id"], "channel": d["channel"]}
            lines.append(json.dumps(answer))
    audit = [record_to_json(r) for r in replay_lines(lines, rules, end).records]
    report = build_report(tally_lines(audit), {"push": 0.0, "sms": 0.05})
    assert report.input.engagement == 9 and report.input.unmatched_engagement == 0
    by_channel = {r.channel: r for r in report.rows}
    assert set(by_channel) == {"push", "sms", "(all)"}
    assert [by_channel[c].funnel.delivered.count for c in ("push", "sms", "(all)")] == [3, 3, 6]
    assert by_channel["(all)"].funnel.opened.count == 3
    assert by_channel["sms"].cost.cost == pytest.approx(0.15)
