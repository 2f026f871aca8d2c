"""`run table3`: one command for the report's whole Table 3 (issue 21), offline on fixtures in each
task's real schema. The mock tool and a replay folder run all nine tasks at the report's settings;
the report sets both beside the published Table 3 rows, checked in the saved HTML and in headless
Chromium; the README's size table is the one `tasks/suites.py` computes."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import AIME_FIXTURE, REPO, cli
from fixtures_table3 import write_hmmt, write_mmmu_pro
from headless_chromium import CHROMIUM, Browser
from test_mathvista import PROBLEMS as MATHVISTA_PROBLEMS
from test_mathvista import write_folder as write_mathvista
from test_mmbench import build_rows as mmbench_rows
from test_mmbench import write_tsv
from test_mmmu import HUB_ROWS as MMMU_ROWS
from test_mmmu import write_parquet

from tasks import TASKS
from tasks.suites import SUITES, plan

TABLE3 = ["mmbench_en", "mmbench_cn", "mmmu", "mmmu_pro", "mmmu_pro_vision", "mathvision", "mathvista", "aime2025",
          "hmmt2025"]
# The leaderboard's columns: Table 3's nine rows, MMMU-Pro's two settings before their mean.
COLUMNS = ["MMBench EN", "MMBench CN", "MMBench EN+CN", "MMMU", "MMMU-Pro standard", "MMMU-Pro vision", "MMMU-Pro",
           "MathVision", "MathVista", "AIME 2025", "HMMT25"]
# DESIGN §10, column by column ("" where the report gives no number: MMMU-Pro's settings apart).
PUBLISHED = {
    "STEP3-VL-10B · SeRe": ["92.05", "91.55", "91.80", "78.11", "", "", "64.08", "70.81", "83.97", "87.66", "78.18"],
    "STEP3-VL-10B · PaCoRe": ["92.38", "91.96", "92.17", "80.11", "", "", "67.18", "75.95", "85.50", "94.43", "92.14"],
    "GLM-4.6V · as reported": ["92.75", "91.88", "92.32", "75.20", "", "", "65.84", "63.50*", "83.51", "71.88", "57.29"],
    "Qwen3-VL-235B-A22B-Thinking · as reported": ["92.70", "91.80", "92.25", "78.70", "", "", "72.37", "72.10", "85.10",
                                                  "83.59", "67.71"],
    "Gemini-2.5-Pro · as reported": ["93.19", "93.13", "93.16", "83.89", "", "", "76.96", "73.30*", "83.88", "83.96",
                                     "65.68"],
    "Seed-1.5-VL-Thinking · as reported": ["92.11", "91.76", "91.94", "79.11", "", "", "70.60", "68.70*", "85.60", "64.06",
                                           "51.30"],
}
LIMIT = "3"  # questions per task: the suite's whole path in seconds


def data_flags(root: Path) -> list[str]:
    """--data for a Table 3 run: `bundled` (MathVision testmini, the AIME answer key), the others' files."""
    mmmu_dir = root / "mmmu"
    mmmu_dir.mkdir(parents=True)
    paths = {
        "mmbench_en": write_tsv(root / "MMBench_DEV_EN_V11.tsv", mmbench_rows()),
        "mmbench_cn": write_tsv(root / "MMBench_DEV_CN_V11.tsv", mmbench_rows()),
        "mmmu": write_parquet(mmmu_dir / "validation-00000-of-00001.parquet", MMMU_ROWS),
        "mmmu_pro": write_mmmu_pro(root / "MMMU_Pro"),
        "mathvista": write_mathvista(root / "mathvista" / "data", MATHVISTA_PROBLEMS),
        "hmmt2025": write_hmmt(root / "hmmt.jsonl"),
    }
    paths["mmmu_pro_vision"] = paths["mmmu_pro"]
    return ["--data", "bundled"] + [arg for task, path in paths.items() for arg in ("--data", f"{task}={path}")]


def results(out: Path) -> dict[str, dict[str, Any]]:
    found = [json.loads(p.read_text()) for p in out.glob("*/results.json")]
    return {r["spec"]["task"]: r for r in found}


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("table3")
    flags = data_flags(root / "data")
    mock = cli("run", "table3", "--model", "mock", *flags, "--limit", LIMIT, "--out", str(root / "mock"), "--quiet")
    assert mock.returncode == 0, mock.stderr
    # A replay folder as a user would lay it out: one file per task, named after it (mmmu_pro and
    # mmmu_pro_vision share their ids), here the mock run's own samples.
    preds = root / "preds"
    preds.mkdir()
    for path in (root / "mock").glob("*/results.json"):
        task = json.loads(path.read_text())["spec"]["task"]
        shutil.copy(path.parent / "samples.jsonl", preds / f"{task}.jsonl")
    replay = cli("run", "table3", "--model", f"replay:{preds}", *flags, "--limit", LIMIT, "--out", str(root / "replay"),
                 "--quiet")
    assert replay.returncode == 0, replay.stderr
    html = root / "table3.html"
    report = cli("report", str(root / "mock"), str(root / "replay"), "--html", str(html), "--md", str(root / "t.md"))
    assert report.returncode == 0, report.stderr
    return {"root": root, "flags": flags, "preds": preds, "mock": results(root / "mock"),
            "replay": results(root / "replay"), "html": html, "md": (root / "t.md").read_text(encoding="utf-8")}


def test_the_suite_is_table3s_nine_tasks_and_shadows_no_task():
    assert list(SUITES["table3"].tasks) == TABLE3
    assert not set(SUITES) & set(TASKS) and set(TABLE3) <= set(TASKS)


def test_table3_runs_every_task_at_the_reports_settings(suite):
    assert sorted(suite["mock"]) == sorted(TABLE3)
    for task, result in suite["mock"].items():
        spec = result["spec"]
        assert result["status"] == "complete" and result["counts"]["errors"] == 0, task
        assert (spec["params"]["max_tokens"], spec["params"]["temperature"], spec["params"]["top_p"]) == (65536, 1.0, 1.0)
        assert spec["params"]["top_k"] in (0, None) and spec["mode"] == "sere", task
        assert spec["repeats"] == (64 if task in ("aime2025", "hmmt2025") else 1), task
        assert "value" in result["metrics"]["accuracy"], task
    # `--data bundled` in a suite: the tasks that ship data use theirs, the others their TASK=PATH
    assert suite["mock"]["mathvision"]["spec"]["data"] == "bundled"
    assert suite["mock"]["mathvision"]["spec"]["split"] == "testmini"
    assert suite["mock"]["mmmu"]["spec"]["data"].endswith("validation-00000-of-00001.parquet")


def test_the_same_table3_command_again_resumes_each_tasks_run(suite):
    out = suite["root"] / "mock"
    before = {p: p.stat().st_size for p in out.glob("*/samples.jsonl")}
    proc = cli("run", "table3", "--model", "mock", *suite["flags"], "--limit", LIMIT, "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert {p: p.stat().st_size for p in out.glob("*/samples.jsonl")} == before  # nine dirs, nothing sent again


def test_a_replay_folder_gives_each_task_its_own_file_and_repeats(suite):
    assert sorted(suite["replay"]) == sorted(TABLE3)
    for task, replayed in suite["replay"].items():
        mocked = suite["mock"][task]
        assert replayed["spec"]["model"] == f"replay:{suite['preds']}"  # one leaderboard row
        assert replayed["spec"]["repeats"] == mocked["spec"]["repeats"], task  # from its own file: 64 or 1
        assert replayed["counts"]["errors"] == 0, task
        assert replayed["metrics"]["accuracy"]["value"] == mocked["metrics"]["accuracy"]["value"], task


def test_a_replay_folder_without_a_tasks_file_stops_before_any_run(suite, tmp_path):
    preds = tmp_path / "preds"
    shutil.copytree(suite["preds"], preds)
    (preds / "hmmt2025.jsonl").unlink()
    proc = cli("run", "table3", "--model", f"replay:{preds}", *suite["flags"], "--out", str(tmp_path / "runs"))
    assert proc.returncode == 2 and not (tmp_path / "runs").exists()
    assert proc.stderr.strip().count("\n") == 0 and "none for hmmt2025" in proc.stderr


@pytest.mark.parametrize("args, says", [
    (["run", "tabel3", "--model", "mock"], "unknown task 'tabel3'"),
    (["run", "table3", "mmmu_pr", "--model", "mock"], "unknown task 'mmmu_pr'"),
])
def test_a_bad_suite_or_task_name_is_one_line_and_exit_2(tmp_path, args, says):
    proc = cli(*args, "--out", str(tmp_path / "runs"))
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0
    assert says in proc.stderr and "suites: table3" in proc.stderr and not (tmp_path / "runs").exists()


def test_list_shows_the_suite_with_its_size():
    proc = cli("list")
    assert proc.returncode == 0, proc.stderr
    calls = {mode: sum(r.generations for r in plan("table3", mode)) for mode in ("sere", "pacore")}
    assert (calls["sere"], calls["pacore"]) == (20898, 20898 * 17)
    block = proc.stdout.split("suites:")[1]
    assert f"{calls['sere']:,} model calls in SeRe, {calls['pacore']:,} in PaCoRe" in block
    assert ", ".join(TABLE3) in block


def test_readme_size_table_is_the_computed_plan():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    sere, pacore = plan("table3", "sere"), plan("table3", "pacore")
    for s, p in zip(sere, pacore):
        row = (f"| `{s.task}` | {s.questions:,} | {s.repeats} | {s.generations:,} | {s.max_tokens / 1e6:,.1f} M | "
               f"{p.generations:,} | {p.max_tokens / 1e6:,.1f} M |")
        assert row in readme, row
    total = sum(r.max_tokens for r in sere), sum(r.max_tokens for r in pacore)
    assert f"| **total** | | | 20,898 | {total[0] / 1e6:,.1f} M | 355,266 | {total[1] / 1e6:,.1f} M |" in readme
    hours = [round(t / 10_000 / 3600) for t in total]  # the README's example throughput
    assert f"the cap is {hours[0]} hours\nin SeRe and {hours[1]} hours" in readme


def test_markdown_summary_has_both_means_beside_the_published_ones(suite):
    header = next(line for line in suite["md"].splitlines() if line.startswith("| configuration"))
    assert [c.strip() for c in header.strip("|").split("|")][1:] == COLUMNS
    published = next(line for line in suite["md"].splitlines() if "STEP3-VL-10B · SeRe (published)" in line)
    assert [c.strip() for c in published.strip("|").split("|")][1:] == PUBLISHED["STEP3-VL-10B · SeRe"]


BOARD = """Array.prototype.map.call(document.querySelectorAll("#board tr"), function (tr) {
  return Array.prototype.map.call(tr.querySelectorAll("th, td"), function (c) {
    var v = c.querySelector(".v"); return (v ? v.textContent : c.textContent).trim(); });
})"""


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install -y chromium)")
def test_the_report_shows_every_task_beside_the_published_table3_rows_in_chromium(suite):
    with Browser(suite["root"] / "profile", width=1400, height=900) as browser:
        browser.open(suite["html"].as_uri())
        board = browser.eval(BOARD)
        notes = browser.eval('document.querySelector("#leaderboard ul.caveats").textContent')
        fit = browser.eval('[document.querySelector("#leaderboard .scroll").scrollWidth, '
                           'document.querySelector("#leaderboard .scroll").clientWidth]')
        browser.screenshot(suite["root"] / "table3.png")
    header, rows = board[0], {re.sub(r"\s+(published|script, not a model).*", "", r[0]): r[1:] for r in board[1:]}
    assert [h.rstrip("†") for h in header] == ["configuration", *COLUMNS]  # † : a note below the table
    for label, values in PUBLISHED.items():
        assert rows[label] == [v or "—" for v in values], label
    mock = suite["mock"]
    for label in ("mock · SeRe", "replay:preds · SeRe"):  # one row per configuration, all nine tasks in it
        cells = rows[label]
        assert all(re.fullmatch(r"\d+\.\d\d", c) for c in cells), (label, cells)  # a score in all 11 columns
        for task, at in (("mmmu", 3), ("mathvista", 8), ("hmmt2025", 10)):
            assert cells[at] == f"{100 * mock[task]['metrics']['accuracy']['value']:.2f}"
        pro = [mock[t]["metrics"]["accuracy"]["value"] for t in ("mmmu_pro", "mmmu_pro_vision")]
        assert cells[6] == f"{100 * sum(pro) / 2:.2f}"  # MMMU-Pro: the mean of its two settings
    assert fit[0] <= fit[1], f"the twelve columns scroll sideways at 1400 px: {fit}"
    assert "mean of the standard (10 options) and vision settings" in notes
    assert "does not state the MathVista split" in notes and "HMMT25" in notes


def test_table3_runs_in_pacore_mode_too(suite, tmp_path):
    out = tmp_path / "pacore"
    proc = cli("run", "table3", "--model", "mock", "--mode", "pacore", "--pacore-widths", "2", *suite["flags"],
               "--samples", "1", "--limit", "1", "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    found = results(out)
    assert sorted(found) == sorted(TABLE3)
    for task, result in found.items():
        assert result["spec"]["mode"] == "pacore" and result["spec"]["pacore_widths"] == [2], task
        assert result["status"] == "complete" and result["counts"]["errors"] == 0, task
        assert result["counts"]["requests"] >= 1, task
