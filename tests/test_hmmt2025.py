"""HMMT February 2025: the hub's schema, expression answers under AIME's equivalence rules, the
per-type breakdown, and a run end to end through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import cli
from fixtures_table3 import HMMT_ROWS, write_hmmt

from evals.types import Response, UserError
from tasks import get_task
from tasks.hmmt2025 import HMMT2025

ANSWER_CASES = [  # (gold, boxed answer, correct, why)
    ("\\frac{9\\sqrt{3}}{2}", "\\dfrac{9\\sqrt3}{2}", True, "dfrac and an unbraced radicand"),
    ("\\frac{9\\sqrt{3}}{2}", "4.5\\sqrt{3}", True, "the same value as a decimal coefficient"),
    ("\\frac{9\\sqrt{3}}{2}", "\\frac{9}{2}", False, "the radical dropped"),
    ("2^{25} \\cdot 26!", "26! \\cdot 2^{25}", True, "factors swapped"),
    ("2^{25} \\cdot 26!", "2^{25}26!", True, "implicit product"),
    ("2^{25} \\cdot 26!", "2^{25} \\cdot 25!", False, "a different factorial"),
    ("\\sqrt{6}-\\sqrt{2}", "-\\sqrt{2}+\\sqrt{6}", True, "terms reordered"),
    ("\\sqrt{6}-\\sqrt{2}", "\\sqrt{2}-\\sqrt{6}", False, "the sign flipped"),
    ("103", "103", True, "an integer"),
    ("103", "\\text{103}", True, "an integer in text"),
    ("103", "1030", False, "another integer"),
]


@pytest.fixture
def hmmt_file(tmp_path: Path) -> Path:
    return write_hmmt(tmp_path / "train-00000-of-00001.parquet")


@pytest.mark.parametrize("gold,boxed,correct,why", ANSWER_CASES)
def test_expression_answers_are_compared_by_value(tmp_path, gold, boxed, correct, why):
    task = HMMT2025()
    row = {"problem_idx": 1, "problem": "Compute it.", "answer": gold, "problem_type": ["Algebra"]}
    sample = task.load(str(write_hmmt(tmp_path / "one.jsonl", [row])), None, None)[0]
    scored = task.score(sample, Response(key="1#0", text=f"Thus $\\boxed{{{boxed}}}$.", finish_reason="stop"))
    assert scored.correct is correct, why


def test_hub_parquet_loads_ids_prompts_and_types(hmmt_file: Path):
    samples = get_task("hmmt2025").load(str(hmmt_file), None, None)
    assert [s.id for s in samples] == ["1", "2", "3", "4"]
    assert samples[1].target == "2^{25} \\cdot 26!"
    assert samples[0].messages[0].text().startswith(HMMT_ROWS[0]["problem"])
    assert "\\boxed{}" in samples[0].messages[0].text()
    assert samples[2].metadata["problem_type"] == "Algebra, Geometry"
    assert HMMT2025.default_repeats == 64 and HMMT2025().default_params.temperature == 1.0


def test_a_file_without_answers_is_a_user_error(tmp_path: Path):
    rows = [{k: v for k, v in r.items() if k != "answer"} for r in HMMT_ROWS]
    with pytest.raises(UserError, match=r"no_answers.jsonl:1: missing field 'answer'"):
        HMMT2025().load(str(write_hmmt(tmp_path / "no_answers.jsonl", rows)), None, None)


def test_mock_run_end_to_end_gives_avg_at_k_and_per_type_breakdown(tmp_path: Path, hmmt_file: Path):
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"1": "\\boxed{\\frac{9\\sqrt{3}}{2}}", "2": "\\boxed{26!\\cdot 2^{25}}",
                                  "3": "\\boxed{\\sqrt{2}}", "4": "no box"}))
    proc = cli("run", "hmmt2025", "--model", "mock", "-O", f"mock_script={script}", "--data", str(hmmt_file),
               "-k", "2", "--out", str(tmp_path / "runs"), "--quiet")
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    result = json.loads((run_dir / "results.json").read_text())
    assert result["metrics"]["accuracy"]["value"] == 0.5
    assert result["metrics"]["avg@2"]["value"] == 0.5
    types = result["breakdowns"]["problem_type"]
    assert types["Geometry"]["value"] == 0.5 and types["Combinatorics"]["value"] == 1.0
    assert types["Number Theory"]["value"] == 0.0
