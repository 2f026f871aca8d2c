"""The HTML report in a real browser: headless Chromium loads it from a file, runs its inline script,
and we read the DOM it built (`--dump-dom`): leaderboard values, the explorer's filters over its
gzip-compressed data (decompressed by the browser's DecompressionStream; driven by
the URL hash, as a shared link would), and model output holding <script>/<img onerror> payloads
staying text. A screenshot is saved under the pytest tmp dir for a person to look at.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from headless_chromium import Browser
from test_reports import SUBJECT_PAYLOAD, make_demo, make_fixture_runs

from reports import build_report
from reports.runs import assign_anchors, group_rows, load_runs

CHROMIUM = Path("/usr/bin/chromium")
WIDTH = 1400  # the width the report must fit without sideways scrolling
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install -y chromium)"),
]


def chromium(profile: Path, *args: str) -> str:
    out = subprocess.run([str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                         text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("browser")
    runs = make_fixture_runs(root / "fixture")
    html = root / "report.html"
    build_report([str(p) for p in runs.values()], html=str(html))
    anchors = {r.path: r.anchor for r in assign_anchors(group_rows(load_runs([str(p) for p in runs.values()])))}
    mcq = runs["mcq_mock"]
    records = [json.loads(line) for line in (mcq / "samples.jsonl").read_text().splitlines()]
    return {"html": html, "profile": root / "profile", "anchor": anchors[mcq.resolve()], "records": records,
            "results": json.loads((mcq / "results.json").read_text())}


def dom(page: dict[str, Any], state: str) -> str:
    # The explorer draws once the browser has decompressed its data (a promise): the virtual time
    # budget makes headless Chromium run the page's pending work before it dumps the DOM.
    return chromium(page["profile"], "--virtual-time-budget=10000", "--dump-dom",
                    f"{page['html'].as_uri()}#samples:{state}")


def cards(dom_text: str) -> list[dict[str, str]]:
    return [dict(re.findall(r'([\w-]+)="([^"]*)"', m)) for m in re.findall(r"<article ([^>]*)>", dom_text)]


def test_leaderboard_and_verdict_filter_render_and_payloads_stay_text(page):
    text = dom(page, f"run={page['anchor']}&verdict=wrong")
    board = re.search(r'<table class="board sortable" id="board">.*?</table>', text, re.DOTALL).group(0)
    acc = page["results"]["metrics"]["accuracy"]
    assert f">{100 * acc['value']:.2f}</a>" in board and ">87.66<" in board and ">94.43<" in board  # AIME's published SeRe, PaCoRe
    wrong = [r["sample_id"] for r in page["records"] if r["scored"]["correct"] is False]
    shown = cards(text)
    assert len(shown) == len(wrong) == 4 and {c["data-verdict"] for c in shown} == {"wrong"}
    assert f"{len(wrong)} of 12 samples" in text
    assert re.search(r'<div id="sample-list" data-ready-ms="\d+">', text)  # drawn from the decompressed data
    # the payload sample is among them: its text is on the page, as text
    assert "&lt;script&gt;document.title='PWNED'&lt;/script&gt;" in text
    assert "&lt;img src=x onerror=" in text
    assert re.search(r"<body>", text) and "<title>PWNED" not in text  # onerror would set body[data-pwned]
    assert not re.search(r"<img[^>]*src=\"x\"", text) and "<script>document.title" not in text


def test_category_and_rule_filters_combine_and_category_payload_stays_text(page):
    state = f"run={page['anchor']}&cat={quote('subject=' + SUBJECT_PAYLOAD)}&rule=answer_format"
    text = dom(page, state)
    expected = sorted(r["sample_id"] for r in page["records"]
                      if r["metadata"]["subject"] == SUBJECT_PAYLOAD and r["scored"]["rule"] == "answer_format")
    shown = cards(text)
    assert sorted(c["data-key"].split("#")[0] for c in shown) == expected == ["q2", "q6"]
    assert {c["data-rule"] for c in shown} == {"answer_format"}
    assert "subject: Optics &lt;img src=x onerror=alert(1)&gt;" in text  # the option and the card header
    assert not re.search(r"<img[^>]*src=\"?x[\" >]", text)


def test_screenshot_of_the_report(page, tmp_path):
    shot = tmp_path / "report.png"
    chromium(page["profile"], "--window-size=1400,4200", "--hide-scrollbars", "--virtual-time-budget=10000",
             f"--screenshot={shot}", page["html"].as_uri())
    assert shot.stat().st_size > 20_000
    print(f"screenshot: {shot}")


# ---- the demo's report as a reader sees it, at 1400 px ---------------------------------------------

EXPLORER_DRAWN = """new Promise(function (done) {
  (function wait() { var l = document.getElementById("sample-list");
    if (l.getAttribute("data-ready-ms")) done(true); else setTimeout(wait, 50); })(); })"""
# Every element that can scroll sideways (the page, and each table's .scroll box), with the widths
OVERFLOW = """[["page", document.scrollingElement.scrollWidth, window.innerWidth]].concat(
  Array.prototype.map.call(document.querySelectorAll(".scroll"), function (e) {
    return [e.parentNode.id || e.parentNode.className, e.scrollWidth, e.clientWidth]; }))"""
FIRST_SCREEN = """(function () {
  var first = document.querySelector("#board tbody tr"), card = document.querySelector("#sample-list article");
  return {row: first.querySelector("th").textContent.trim(), rowTop: first.getBoundingClientRect().top,
          height: window.innerHeight, run: document.getElementById("f-run").selectedOptions[0].textContent,
          card: card.getAttribute("data-key"), verdicts: Array.prototype.map.call(
            document.querySelectorAll("#sample-list article"), function (a) { return a.getAttribute("data-verdict"); })};
})()"""


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_demo(tmp_path_factory.mktemp("demo_page"))


@pytest.fixture(scope="module")
def demo_page(demo_report: Path) -> Any:
    html = demo_report
    with Browser(html.parent / "profile", width=WIDTH, height=900) as browser:
        browser.open(html.as_uri())
        browser.eval(EXPLORER_DRAWN)
        yield browser


def test_demo_report_first_screen_shows_a_real_models_row_and_a_real_runs_samples(demo_page, tmp_path):
    seen = demo_page.eval(FIRST_SCREEN)
    assert seen["row"].startswith("replay:Gemini-Pro-CoT") and 0 < seen["rowTop"] < seen["height"]
    assert seen["run"].startswith("replay:Gemini-Pro-CoT") and "mathvision" in seen["run"]
    assert {"correct", "wrong"} <= set(seen["verdicts"])  # a real model's answers: some right, some wrong
    print(f"screenshot: {demo_page.screenshot(tmp_path / 'demo-first-screen.png')}")


def test_demo_report_has_no_horizontal_scroll_at_1400px(demo_page, tmp_path):
    for where, scroll_width, width in demo_page.eval(OVERFLOW):
        assert scroll_width <= width, f"{where} scrolls sideways: {scroll_width} > {width}"
    print(f"screenshot: {demo_page.screenshot(tmp_path / 'demo-full.png', full_page=True)}")


def test_demo_report_draws_no_chart_without_data(demo_page):
    charts = demo_page.eval("""Array.prototype.map.call(document.querySelectorAll("figure.chart"), function (f) {
      return [f.querySelector("figcaption b").textContent, Array.prototype.map.call(
        f.querySelectorAll("g.pt circle, g.pt rect"), function (p) { return parseFloat(p.getAttribute("cx") || p.getAttribute("x")); })];
    })""")
    assert [title for title, _ in charts] == ["AIME 2025"]  # MathVision's replays saved no token counts
    assert all(xs and min(xs) > 52 for _, xs in charts)  # no point at x = 0 tokens (the axis at 52 px)
    notes = demo_page.eval('document.querySelector("#compute ul.caveats").textContent')
    assert "MathVision: no chart, as none of its 4 runs saved token counts" in notes


def test_breakdown_bars_are_drawn_to_scale(demo_page):
    widths = demo_page.eval("""Array.prototype.map.call(document.querySelectorAll("#breakdowns details[open] .cell"),
      function (c) { var bar = c.querySelector(".bar"), fill = bar.firstElementChild;
        return [parseFloat(c.closest("td").getAttribute("data-sort")), fill.getBoundingClientRect().width,
                bar.getBoundingClientRect().width, getComputedStyle(fill).backgroundColor]; })""")
    assert len(widths) >= 4
    for value, fill, track, color in widths:
        assert track > 50 and fill == pytest.approx(track * value / 100, abs=1.5)
        assert color not in ("rgba(0, 0, 0, 0)", "transparent")


COLUMNS = """(function () {
  var table = document.querySelector("table.changes"), heads = table.tHead.rows[0].cells;
  return Array.prototype.map.call(table.tBodies[0].rows, function (row) {
    return Array.prototype.map.call(row.cells, function (cell, i) {
      return [heads[i].textContent, getComputedStyle(heads[i]).textAlign, getComputedStyle(cell).textAlign,
              cell.textContent.trim()]; }); });
})()"""


def test_compare_page_aligns_its_headers_fills_its_columns_and_shows_the_paired_test(demo_report, tmp_path):
    from conftest import cli

    runs = {p.name.split("-")[1]: p for p in (demo_report.parent / "runs").glob("mathvision-*")}
    page = tmp_path / "compare.html"
    proc = cli("compare", str(runs["Gemini"]), str(runs["LLaVA"]), "--html", str(page))
    assert proc.returncode == 0, proc.stderr
    with Browser(tmp_path / "profile", width=WIDTH, height=900) as browser:
        browser.open(page.as_uri())
        rows = browser.eval(COLUMNS)
        overflow = browser.eval(OVERFLOW)
        test_line = browser.eval('document.querySelector("p.test").textContent')
        print(f"screenshot: {browser.screenshot(tmp_path / 'compare.png')}")
    assert len(rows) == 24 + 37  # Gemini -> LLaVA: 24 gained, 37 lost
    for row in rows:
        for head, head_align, cell_align, text in row:
            assert head_align == cell_align, f"column {head!r}: header {head_align}, cells {cell_align}"
            assert text, f"column {head!r} is empty"
    for where, scroll_width, width in overflow:
        assert scroll_width <= width, f"{where} scrolls sideways: {scroll_width} > {width}"
    assert "B − A: -4.28 points" in test_line and "McNemar exact mid-p, two-sided p = 0.098" in test_line
