"""MMMU fidelity: the official LLaVA-1.5-13B example outputs must score exactly as the official scorer.

The MMMU repository's scorer gives 330/900 on these files, both by parsing the per-subject
responses (`main_parse_and_eval.py`; 2 items hit its seed-42 random fallback) and from the parsed
predictions (`main_eval_only.py` on `total_val_output.json`). The per-discipline numbers below are
what its `print_results.py` / `main_eval_only.py` print (`num`, `acc` rounded to 3 decimals).
Data: ../shared/data/mmmu (skipped with the reason when absent).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import cli, shared_data

from tasks import mmmu_official as official
from tasks.mmmu import DISCIPLINE_OF, DISCIPLINES, SUBJECTS

OFFICIAL_CORRECT = 330
OFFICIAL_FALLBACKS = {"validation_Design_4": "A", "validation_Psychology_4": "A"}  # seed-42 draws, in order
OFFICIAL_BY_DISCIPLINE = {  # (num, acc) as the official scorer prints them
    "Art and Design": (120, 0.525), "Business": (150, 0.227), "Science": (150, 0.293),
    "Health and Medicine": (150, 0.387), "Humanities and Social Science": (120, 0.55),
    "Tech and Engineering": (210, 0.31),
}
# The report protocol (VLMEvalKit rules) on the same responses / predictions, shown beside them.
REPORT_CORRECT_RESPONSES, REPORT_CORRECT_PREDICTIONS = 327, 329


def outputs_dir() -> Path:
    return shared_data("mmmu", "llava1.5_13b_outputs")


def official_items() -> list[dict]:
    """Every output.json item in the official scorer's order: subjects as CAT_SHORT2LONG, file order."""
    return [item for subject in SUBJECTS
            for item in json.loads((outputs_dir() / subject / "output.json").read_text())]


def official_correct(item: dict, pred) -> bool:
    if item["question_type"] == "multiple-choice":
        return official.eval_multiple_choice(item["answer"], pred)
    return official.eval_open(item["answer"], pred)


def test_parse_and_eval_of_the_responses_gives_330_with_2_random_fallbacks():
    items = official_items()
    parsed = {}
    for item in items:
        if item["question_type"] == "multiple-choice":
            parsed[item["id"]] = official.parse_multiple_choice(item["response"], item["all_choices"], item["index2ans"])
        else:
            parsed[item["id"]] = official.parse_open(item["response"])
    fallbacks = [(i["id"], i["all_choices"]) for i in items if i["question_type"] == "multiple-choice"
                 and parsed[i["id"]] is None]
    picks = official.official_random_picks(fallbacks)
    assert picks == OFFICIAL_FALLBACKS
    parsed.update(picks)
    assert len(items) == 900
    assert sum(official_correct(i, parsed[i["id"]]) for i in items) == OFFICIAL_CORRECT
    # Counted wrong instead (our default), the fallback that drew the right letter is lost.
    assert sum(official_correct(i, parsed[i["id"]]) for i in items if i["id"] not in picks) == OFFICIAL_CORRECT - 1


def test_eval_only_of_total_val_output_gives_330_and_the_printed_disciplines():
    predictions = json.loads((outputs_dir() / "total_val_output.json").read_text())
    answers = json.loads(shared_data("mmmu", "answer_dict_val.json").read_text())
    per_discipline: dict[str, list[bool]] = {d: [] for d in DISCIPLINES}
    for sample_id, pred in predictions.items():
        key = answers[sample_id]
        item = {"question_type": key["question_type"], "answer": key["ground_truth"]}
        pred = pred if key["question_type"] == "multiple-choice" else official.parse_open(pred)
        subject = "_".join(sample_id.split("_")[1:-1])
        per_discipline[DISCIPLINE_OF[subject]].append(official_correct(item, pred))
    assert sum(sum(v) for v in per_discipline.values()) == OFFICIAL_CORRECT
    printed = {d: (len(v), round(sum(v) / len(v), 3)) for d, v in per_discipline.items()}
    assert printed == OFFICIAL_BY_DISCIPLINE


def responses_only(tmp_path: Path) -> Path:
    """The per-subject output.json files alone (the folder also holds total_val_output.json, whose
    parsed predictions would answer the same ids)."""
    for f in outputs_dir().glob("*/output.json"):
        (tmp_path / "responses" / f.parent.name).mkdir(parents=True)
        shutil.copy(f, tmp_path / "responses" / f.parent.name / "output.json")
    return tmp_path / "responses"


def run_cli(tmp_path: Path, predictions: Path, *options: str) -> dict:
    out = tmp_path / f"runs-{len(list(tmp_path.iterdir()))}"
    proc = cli("run", "mmmu", "--model", f"replay:{predictions}", "--data", str(outputs_dir()),
               "--out", str(out), "--quiet", *options)
    assert proc.returncode == 0, proc.stderr
    (results,) = out.glob("*/results.json")
    return json.loads(results.read_text())


@pytest.mark.parametrize("source,report_correct", [("responses", REPORT_CORRECT_RESPONSES),
                                                   ("predictions", REPORT_CORRECT_PREDICTIONS)])
def test_replayed_llava_outputs_score_330_through_the_cli(tmp_path: Path, source: str, report_correct: int):
    predictions = responses_only(tmp_path) if source == "responses" else outputs_dir() / "total_val_output.json"
    result = run_cli(tmp_path, predictions, "-T", "official_fallback=random")
    strict, report = result["metrics"]["accuracy_official"], result["metrics"]["accuracy"]
    assert round(strict["value"] * strict["n"]) == OFFICIAL_CORRECT and strict["n"] == 900
    assert round(report["value"] * report["n"]) == report_correct
    fallback_keys = {k.split("#")[0] for k in strict["fallback"]["keys"]}
    assert fallback_keys == (set(OFFICIAL_FALLBACKS) if source == "responses" else set())
    printed = {d: (m["n"], round(m["value"], 3)) for d, m in result["breakdowns"]["discipline_official"].items()}
    assert printed == OFFICIAL_BY_DISCIPLINE
    assert len(result["breakdowns"]["subject_official"]) == 30


def test_default_policy_counts_the_two_fallbacks_wrong(tmp_path: Path):
    result = run_cli(tmp_path, responses_only(tmp_path))
    strict = result["metrics"]["accuracy_official"]
    assert round(strict["value"] * 900) == OFFICIAL_CORRECT - 1
    assert strict["fallback"]["policy"] == "wrong" and len(strict["fallback"]["keys"]) == 2


def test_replaying_the_whole_example_folder_refuses_its_two_conflicting_answer_sets(tmp_path: Path):
    proc = cli("run", "mmmu", "--model", f"replay:{outputs_dir()}", "--data", str(outputs_dir()),
               "--out", str(tmp_path / "runs"))
    assert proc.returncode == 2 and "total_val_output.json" in proc.stderr and "answered, differently" in proc.stderr
