"""The three Table 3 tasks added with MathVista (`mmmu_pro`, `mmmu_pro_vision`, `hmmt2025`) through every
command, offline on hub-schema fixtures: run (mock and replay), score, report (leaderboard,
breakdowns, explorer), gate and compare."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import cli
from fixtures_table3 import PRO_ROWS, write_hmmt, write_mmmu_pro

from reports.explorer import explorer_data
from reports.runs import assign_anchors, group_rows, load_runs

TASK_RUNS = {  # task: (data kind, two replies: the first run's and the second's)
    "mmmu_pro": ("pro", "Answer: A", "Answer: B"),
    "mmmu_pro_vision": ("pro", "I cannot see it", "Answer: B"),
    "hmmt2025": ("hmmt", "\\boxed{0}", "\\boxed{103}"),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    root = tmp_path_factory.mktemp("table3_tasks")
    data = {"pro": write_mmmu_pro(root / "MMMU_Pro"), "hmmt": write_hmmt(root / "hmmt.jsonl")}
    out: dict[str, list[Path]] = {}
    for task, (kind, first, second) in TASK_RUNS.items():
        dirs = []
        for text in (first, second):
            run_out = root / "runs" / f"{task}-{len(dirs)}"
            proc = cli("run", task, "--model", "mock", "-O", f"mock_text={text}", "--data", str(data[kind]),
                       "--out", str(run_out), "--quiet", *(["-k", "2"] if kind == "hmmt" else []))
            assert proc.returncode == 0, proc.stderr
            dirs += list(run_out.iterdir())
        out[task] = dirs
    preds = root / "preds.jsonl"  # a replay: right on the first question, no letter on the others
    preds.write_text("".join(json.dumps({"id": r[0], "response": f"Answer: {r[3]}" if i == 0 else "unclear"}) + "\n"
                             for i, r in enumerate(PRO_ROWS)))
    proc = cli("run", "mmmu_pro", "--model", f"replay:{preds}", "--data", str(data["pro"]), "-T", "fallback=wrong",
               "--out", str(root / "runs" / "replay"), "--quiet")
    assert proc.returncode == 0, proc.stderr
    out["replay"] = list((root / "runs" / "replay").iterdir())
    hmmt_preds = root / "hmmt_preds.jsonl"  # two repeats per problem, keyed `<id>#<repeat>`
    hmmt_preds.write_text("".join(json.dumps({"key": f"{i}#{k}", "response": "\\boxed{4.5\\sqrt{3}}"}) + "\n"
                                  for i in range(1, 5) for k in range(2)))
    proc = cli("run", "hmmt2025", "--model", f"replay:{hmmt_preds}", "--data", str(data["hmmt"]),
               "--out", str(root / "runs" / "hmmt_replay"), "--quiet")
    assert proc.returncode == 0, proc.stderr
    out["hmmt_replay"] = list((root / "runs" / "hmmt_replay").iterdir())
    return out


def test_replay_scores_from_the_file_and_counts_the_no_letter_answers(runs):
    (run_dir,) = runs["replay"]
    result = json.loads((run_dir / "results.json").read_text())
    assert result["metrics"]["accuracy"]["value"] == pytest.approx(1 / 3)
    assert result["metrics"]["accuracy"]["fallback"]["count"] == 2 and result["counts"]["fallback"] == 2
    proc = cli("score", str(run_dir))
    assert proc.returncode == 0, proc.stderr
    assert json.loads((run_dir / "results.json").read_text())["metrics"]["accuracy"]["value"] == pytest.approx(1 / 3)


def test_hmmt_replay_takes_its_repeats_from_the_file_and_scores_expressions(runs):
    (run_dir,) = runs["hmmt_replay"]
    result = json.loads((run_dir / "results.json").read_text())
    assert result["spec"]["repeats"] == 2 and "avg@2" in result["metrics"]
    assert result["metrics"]["accuracy"]["value"] == 0.25  # 4.5*sqrt(3) is problem 1's 9*sqrt(3)/2
    assert result["breakdowns"]["problem_type"]["Geometry"]["value"] == 0.5


def test_report_shows_each_task_with_its_breakdowns_and_explorer(runs, tmp_path):
    html, table = tmp_path / "r.html", tmp_path / "r.csv"
    proc = cli("report", *[str(d) for dirs in runs.values() for d in dirs], "--html", str(html), "--csv", str(table))
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(table.open()))
    tasks = {r.get("task") for r in rows}
    assert {"mmmu_pro", "mmmu_pro_vision", "hmmt2025"} <= tasks, tasks
    page = html.read_text()
    for category in ("Humanities and Social Science", "Chemistry", "Medium", "Number Theory"):
        assert category in page, category  # the breakdown tables
    shown = assign_anchors(group_rows(load_runs([str(d) for dirs in runs.values() for d in dirs])))
    views, _ = explorer_data(shown, 8000)
    by_task: dict[str, list[dict]] = {}
    for view in views:
        by_task.setdefault(view["task"], []).append(view)
    assert set(by_task["mmmu_pro"][0]["cats"]) == {"discipline", "subject", "topic_difficulty"}
    assert "Algebra, Geometry" in by_task["hmmt2025"][0]["cats"]["problem_type"]
    rules = {s["id"]: s["rule"] for v in by_task["mmmu_pro_vision"] for s in v["samples"] if s["answer"].startswith("I ")}
    assert rules == {"test_History_1": "official", "validation_Chemistry_7": "fallback", "test_Accounting_12": "official"}


@pytest.mark.parametrize("task", list(TASK_RUNS))
def test_gate_and_compare_pair_the_two_runs(runs, task):
    first, second = runs[task]
    gate = cli("gate", "--baseline", str(first), "--current", str(second))
    assert gate.returncode == 0, gate.stderr
    assert f"| {task} |" in gate.stdout
    back = cli("gate", "--baseline", str(second), "--current", str(first), "--tolerance", "0", "--alpha", "0.5")
    assert back.returncode != 2, back.stderr  # a judged regression, not an input error
    compare = cli("compare", str(first), str(second))
    assert compare.returncode == 0, compare.stderr
    assert "gained" in compare.stdout and task in compare.stdout
