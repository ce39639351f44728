"""The HTML report in a real headless browser (Debian's chromium, installed by ``./dev setup``).

Fails, never skips, when chromium is missing: ``scripts/chromium.sh install``.
Two looks at the same page: a screenshot whose pixels must show the chart
colours, and the layout the browser computed for the chart elements (a
measuring script is added to a copy of the page; the report itself has none).
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
from cli.report_page import render_html
from tests.unit.test_report import arm_lines, decision

WINDOW = (1100, 1800)
MEASURE = """<script>
const box = (e) => { const r = e.getBoundingClientRect(); return [r.width, r.height]; };
const out = {};
for (const svg of document.querySelectorAll("svg.chart")) {
  out[svg.id] = {size: box(svg), bars: [...svg.querySelectorAll(".bar")].map(
    (e) => ({cls: e.getAttribute("class"), size: box(e)})),
    ci: [...svg.querySelectorAll(".ci")].map(box), points: svg.querySelectorAll(".point").length};
}
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
    lines = (
        arm_lines("ca", "sent", 400, [30.0] * 60, variant="A")
        + arm_lines("cb", "sent", 400, [30.0] * 84, variant="B")
        + arm_lines("ch", "holdout", 100, [30.0] * 9)
        + arm_lines("bt", "sent", 300, [20.0] * 36, trigger="browse_abandonment")
        + arm_lines("bh", "holdout", 60, [20.0] * 5, trigger="browse_abandonment")
    )
    days = [f"2026-11-{d:02d}T10:00:00Z" for d in (3, 4, 6)]
    lines += [
        decision(f"late{i}", f"late{i}", "sent", variant="A", fired_at=days[i % 3])
        for i in range(90)
    ]
    return build_report(tally_lines(lines))


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


def test_the_browser_lays_out_every_chart_element_with_a_size(page: Path, tmp_path: Path) -> None:
    measured = tmp_path / "measured.html"
    measured.write_text(page.read_text().replace("</body>", MEASURE + "</body>"))
    dom = run_browser(measured, tmp_path / "profile", "--dump-dom")
    found = re.search(r'<pre id="measure">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    charts = json.loads(unescape(found.group(1)))
    assert set(charts) == {"uplift", "rates", "sends"}
    for chart in charts.values():
        width, height = chart["size"]
        assert width > 800 and height > 100
    report = sample_report()
    overall = [r for r in report.rows if r.stage == "all"]
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
