"""The HTML report in a real headless browser (Debian's chromium, installed by ``./dev setup``).

Fails, never skips, when chromium is missing: ``scripts/chromium.sh install``.
Two looks at the same page, 1280 px wide: a screenshot whose pixels must show the chart
colours, and the layout the browser computed for the chart elements and the tables (a
measuring script is added to a copy of the page; the report itself has none): nothing
wider than the window, every warning inside it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html import unescape
from pathlib import Path

import pytest
from PIL import Image

from cli.report import Report, build_report
from cli.report_data import tally_lines
from cli.report_page import overall_rows, render_html
from tests.unit.test_report import arm_lines, decision
from tests.unit.test_report_funnel import feedback

WINDOW = (1280, 1800)
MEASURE = """<script>
const box = (e) => { const r = e.getBoundingClientRect(); return [r.width, r.height]; };
const out = {charts: {}};
for (const svg of document.querySelectorAll("svg.chart")) {
  out.charts[svg.id] = {size: box(svg), bars: [...svg.querySelectorAll(".bar")].map(
    (e) => ({cls: e.getAttribute("class"), size: box(e)})),
    ci: [...svg.querySelectorAll(".ci")].map(box), points: svg.querySelectorAll(".point").length};
}
out.page = [document.documentElement.scrollWidth, window.innerWidth];
out.tables = [...document.querySelectorAll(".scroll")].map((e) => [e.scrollWidth, e.clientWidth]);
out.notes = [...document.querySelectorAll("tr.note td")].map((e) => {
  const r = e.getBoundingClientRect();
  return {left: r.left, right: r.right, height: r.height, overflow: e.scrollWidth - e.clientWidth,
          text: e.textContent};
});
const pre = document.createElement("pre"); pre.id = "measure";
pre.textContent = JSON.stringify(out); document.body.appendChild(pre);
</script>"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("chromium is not installed: run ./dev setup (scripts/chromium.sh install)")


def run_browser(page: Path, profile: Path, *args: str) -> str:
    done = subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--window-size={WINDOW[0]},{WINDOW[1]}",
            *args,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def sample_report() -> Report:
    """Cart abandonment: variants A and B on push and email, a holdout on each channel (the
    email one too small: warnings); browse abandonment on push; delivery feedback."""
    browse = {"trigger": "browse_abandonment", "channel": "push"}
    lines = (
        arm_lines("ca", "sent", 250, [30.0] * 40, variant="A", channel="push")
        + arm_lines("cA", "sent", 150, [30.0] * 20, variant="A", channel="email")
        + arm_lines("cb", "sent", 250, [30.0] * 50, variant="B", channel="push")
        + arm_lines("cB", "sent", 150, [30.0] * 34, variant="B", channel="email")
        + arm_lines("ch", "holdout", 60, [30.0] * 6, channel="push")
        + arm_lines("cH", "holdout", 40, [30.0] * 3, channel="email")
        + arm_lines("bt", "sent", 300, [20.0] * 36, **browse)
        + arm_lines("bh", "holdout", 60, [20.0] * 5, **browse)
    )
    for prefix, channel, delivered in (("ca", "push", 240), ("cA", "email", 140),
                                       ("cb", "push", 230), ("cB", "email", 145),
                                       ("bt", "push", 290)):  # fmt: skip
        steps = {"message_delivered": delivered, "message_opened": delivered // 3}
        lines += feedback(prefix, channel, steps | {"message_clicked": delivered // 10})
    days = [f"2026-11-{d:02d}T10:00:00Z" for d in (3, 4, 6)]
    lines += [
        decision(f"late{i}", f"late{i}", "sent", variant="A", channel="push", fired_at=days[i % 3])
        for i in range(90)
    ]
    return build_report(tally_lines(lines), {"push": 0.0, "email": 0.01})


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report") / "report.html"
    path.write_text(render_html(sample_report()), encoding="utf-8")
    return path


def test_the_screenshot_shows_the_charts(page: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    run_browser(page, tmp_path / "profile", f"--screenshot={shot}")
    image = Image.open(shot).convert("RGB")
    assert image.size == WINDOW
    colours = image.getcolors(maxcolors=WINDOW[0] * WINDOW[1])
    assert colours is not None
    counts = {rgb: n for n, rgb in colours}
    background = max(counts.values())
    assert background < 0.9 * WINDOW[0] * WINDOW[1]  # not a blank page
    assert len(counts) > 50  # text, lines and fills, not a flat image
    treatment_blue, holdout_grey, browse_orange = (37, 99, 235), (156, 163, 175), (245, 158, 11)
    assert counts.get(treatment_blue, 0) > 3000  # treatment bars and the first send series
    assert counts.get(holdout_grey, 0) > 1500  # holdout bars
    assert counts.get(browse_orange, 0) > 500  # the second send series


@pytest.fixture(scope="module")
def measured(page: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The layout chromium computed for the page: one browser run for the tests below."""
    work = tmp_path_factory.mktemp("measure")
    copy = work / "measured.html"
    copy.write_text(page.read_text().replace("</body>", MEASURE + "</body>"))
    dom = run_browser(copy, work / "profile", "--dump-dom")
    found = re.search(r'<pre id="measure">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    return json.loads(unescape(found.group(1)))


def test_the_browser_lays_out_every_chart_element_with_a_size(measured: dict) -> None:
    charts = measured["charts"]
    funnels = {"funnel-cart_abandonment", "funnel-browse_abandonment"}
    assert set(charts) == {"uplift", "rates", "sends", *funnels}
    for chart in charts.values():
        width, height = chart["size"]
        assert width > 1100 and height > 100
    report = sample_report()
    overall = overall_rows(report)
    # uplift: one interval bar and one point per trigger / variant row, all with a width
    assert charts["uplift"]["points"] == len(overall) == 4
    assert all(w > 5 and h > 2 for w, h in charts["uplift"]["ci"])
    # rates: a treatment and a holdout bar per row, widths proportional to the rates
    bars = charts["rates"]["bars"]
    assert [b["cls"] for b in bars] == ["bar treatment", "bar holdout"] * 4
    widths = [b["size"][0] for b in bars]
    rates = [rate for r in overall for rate in (r.treatment.rate, r.holdout.rate)]  # type: ignore[union-attr]
    assert all(w > 10 for w in widths)
    scale = widths[0] / rates[0]
    assert widths == pytest.approx([scale * r for r in rates], rel=0.02, abs=1.0)
    # sends: one stacked segment per (day, trigger) with sends, each with a height
    segments = sum(len(b.sent) for b in report.sends)
    assert len(charts["sends"]["bars"]) == segments >= 4
    assert all(b["size"][1] > 1 for b in charts["sends"]["bars"])
    # funnels: per step a bar per channel (push, email), as long as the share of sent
    bars = charts["funnel-cart_abandonment"]["bars"]
    steps = ("sent", "delivered", "opened", "clicked", "ordered")
    assert [b["cls"] for b in bars] == [f"bar step-{s}" for s in steps for _ in (1, 2)]
    (push,) = [r for r in report.rows if (r.trigger, r.stage, r.variant, r.channel) ==
               ("cart_abandonment", "all", "(all)", "push")]  # fmt: skip
    f = push.funnel
    shares = [1.0, f.delivered.rate, f.opened.rate, f.clicked.rate, f.ordered.rate]
    full = bars[0]["size"][0]
    assert [b["size"][0] for b in bars[::2]] == pytest.approx(
        [full * share for share in shares],
        rel=0.02,
        abs=1.0,  # type: ignore[operator]
    )
    assert len(charts["funnel-browse_abandonment"]["bars"]) == 5


def test_the_page_fits_1280_px_with_every_warning_in_view(measured: dict) -> None:
    found = measured
    width, window = found["page"]
    assert window == WINDOW[0] and width <= window  # no horizontal scrolling of the page
    assert len(found["tables"]) == 3
    for scroll_width, client_width in found["tables"]:
        assert scroll_width <= client_width  # no table scrolls sideways inside its box
    report = sample_report()
    warnings = [r.warnings for r in (*report.rows, *report.variant_comparisons) if r.warnings]
    assert len(warnings) >= 3
    assert [note["text"] for note in found["notes"]] == ["⚠ " + "; ".join(w) for w in warnings]
    for note in found["notes"]:
        assert note["left"] >= 0 and note["right"] <= window
        assert note["height"] > 5 and note["overflow"] <= 0
