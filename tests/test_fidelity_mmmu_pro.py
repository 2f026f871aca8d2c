"""MMMU-Pro fidelity: the two released GPT-4o runs replayed through the CLI give the official verdict
on every question whose official parse is deterministic.

Data: ../shared/data/mmmu-pro/outputs (skipped with the reason when absent): `pred_indexs` and
`if_right` are what the MMMU-Pro repository's `evaluate.py` wrote. The question set is rebuilt in the
hub's layout from the files themselves (every column but the images, a tiny image standing for each
figure). Where the official parse finds no letter it drew with an unseeded `random.choice`: those
questions (0 in the standard file, 48 in the vision file, against the data README's 42; counted by
the official parser itself in tests/test_oracle_mmmu_pro.py) are compared apart: here they are
flagged `fallback` and drawn with our seed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import cli, shared_data
from fixtures_table3 import rows_from_released, write_mmmu_pro

RUNS = {  # task, file, prompt, stored right, fallback questions, right among the deterministic
    "standard": ("mmmu_pro", "gpt-4o_standard(10 options)_cot.jsonl", "cot", 952, 0, 952),
    "vision": ("mmmu_pro_vision", "gpt-4o_vision_direct.jsonl", "direct", 734, 48, 725),
}


def released(name: str) -> list[dict]:
    path = shared_data("mmmu-pro", "outputs", name)
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def pro_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    standard, vision = rows_from_released(released(RUNS["standard"][1]))
    return write_mmmu_pro(tmp_path_factory.mktemp("mmmu_pro_data"), standard, vision)


@pytest.mark.parametrize("setting", list(RUNS))
def test_released_run_replays_to_the_official_verdict_on_every_deterministic_question(setting, pro_data, tmp_path):
    task, name, prompt, stored_right, fallbacks, deterministic_right = RUNS[setting]
    records = {r["id"]: r for r in released(name)}
    assert sum(r["if_right"] for r in records.values()) == stored_right
    predictions = shared_data("mmmu-pro", "outputs", name)
    proc = cli("run", task, "--model", f"replay:{predictions}", "--data", str(pro_data), "-T", f"prompt={prompt}",
               "--out", str(tmp_path), "--quiet")
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = tmp_path.iterdir()
    lines = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert len(lines) == len(records) == 1730
    drawn, right = [], 0
    for line in lines:
        scored, record = line["scored"], records[line["sample_id"]]
        if scored["rule"] == "fallback":
            drawn.append(line["sample_id"])
            continue
        assert (scored["extracted"], scored["correct"]) == (record["pred_indexs"], record["if_right"]), line["sample_id"]
        right += scored["correct"]
    assert len(drawn) == fallbacks and right == deterministic_right
    result = json.loads((run_dir / "results.json").read_text())
    fallback = result["metrics"]["accuracy"]["fallback"]
    assert fallback["count"] == fallbacks and fallback["seed"] == 42 and sorted(fallback["keys"]) == sorted(
        f"{i}#0" for i in drawn)
    assert result["counts"]["fallback"] == fallbacks
    assert result["spec"]["task_options"] == {"prompt": prompt}
    subjects = result["breakdowns"]["subject"]
    assert len(subjects) == 30 and sum(v["n"] for v in subjects.values()) == 1730
    assert set(result["breakdowns"]["discipline"]) == {"Art and Design", "Business", "Science", "Health and Medicine",
                                                       "Humanities and Social Science", "Tech and Engineering"}
