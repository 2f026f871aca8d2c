"""MathVista fidelity: the four released testmini runs, replayed through the CLI, give the official
count, every breakdown of the official `scores_*.json`, and each item's official verdict.

The files (../shared/data/mathvista/outputs) carry the official GPT-4 extractor's `extraction`:
scoring from it needs no judge. The data folder holds no images: a replay reads none.

The official scorer groups by the metadata copied into the output file when the run was made; these
runs predate a revision of testmini.json that renamed grade `daily life` to `not applicable` (the
same 381 problems) and changed the skills of ~58 problems. Our breakdowns follow the data loaded, so
grade is compared through that rename, and skills against the official grouping rule
(`get_acc_with_contion`: a problem counts in each of its skills) applied to the current data, after
checking that the same rule on the file's own metadata gives the scores file's skills exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import cli, shared_data

RENAMED = {"grade": {"daily life": "not applicable"}}  # the testmini.json revision after these runs
OFFICIAL_HITS = {"bard": 348, "gpt4": 261, "llava_llama_2_13b": 261, "random_guess": 179}


def counts(metric: dict) -> tuple[int, int]:
    return round(metric["value"] * metric["n"]), metric["n"]


@pytest.mark.parametrize("model", list(OFFICIAL_HITS))
def test_released_run_replays_to_its_official_scores(model: str, tmp_path: Path):
    root = shared_data("mathvista")
    output = root / "outputs" / f"output_{model}.json"
    proc = cli("run", "mathvista", "--data", str(root), "--model", f"replay:{output}", "--out", str(tmp_path),
               "--quiet")
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    result = json.loads((run_dir / "results.json").read_text())
    official = json.loads((root / "outputs" / f"scores_{model}.json").read_text())

    assert counts(result["metrics"]["accuracy"]) == (OFFICIAL_HITS[model], 1000)
    assert official["average"]["correct"] == OFFICIAL_HITS[model]
    released = json.loads(output.read_text())
    problems = json.loads((root / "testmini.json").read_text())
    for group, values in official.items():
        if group in ("average", "skills"):
            continue
        ours = {name: counts(m) for name, m in result["breakdowns"][group].items()}
        renamed = RENAMED.get(group, {})
        assert ours == {renamed.get(name, name): (v["correct"], v["total"]) for name, v in values.items()}, group
    assert skill_counts(released, {pid: r["metadata"] for pid, r in released.items()}) == {
        name: (v["correct"], v["total"]) for name, v in official["skills"].items()}
    ours = {name: counts(m) for name, m in result["breakdowns"]["skills"].items()}
    assert ours == skill_counts(released, {pid: p["metadata"] for pid, p in problems.items()})
    saved = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert len(saved) == 1000
    assert [r["sample_id"] for r in saved if r["scored"]["correct"] != released[r["sample_id"]]["true_false"]] == []
    assert {r["scored"]["rule"] for r in saved} == {"judge"}  # the official extractor's reading, replayed


def skill_counts(released: dict, metadata: dict) -> dict[str, tuple[int, int]]:
    """The official per-skill (correct, total) of the released verdicts, by the given metadata."""
    found: dict[str, list[int]] = {}
    for pid, record in released.items():
        for skill in metadata[pid]["skills"]:
            found.setdefault(skill, [0, 0])
            found[skill][0] += bool(record["true_false"])
            found[skill][1] += 1
    return {skill: (c, t) for skill, (c, t) in found.items()}
