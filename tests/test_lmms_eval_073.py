"""Replaying a sample log that lmms-eval 0.7.3 itself wrote (../shared/data/lmms-eval-0.7.3, see its
README): no `doc`, no `resps`, rows known by `doc_id` (their position in the split) and answers kept
only as `filtered_resps` (a regex filter `boxed\\{(\\d+)\\}`, then take_first). The rows land on the
samples at their positions (their logged targets checked against the gold), the run says on stderr and
in results.json that only filtered answers survived, and AIME scores them as the answers.

What the real file scores here, and why it is not lmms-eval's 0.55: 12 of the 20 answers are right
against lmms-eval's 11. The one difference is doc 13 (AIME I-14, gold 60), answered `060`: lmms-eval's
exact_match compares strings; AIME answers are integers written with three digits, and this project's
check (DESIGN §7: `070` equals `70`) counts it right. Four answers are `[invalid]` (lmms-eval's regex
found no `\\boxed{digits}`): unparsed, wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import shared_data

from evals import store
from evals.cli import main

LOG = "20261203_010233_samples_aime25_local_lmms.jsonl"
BUNDLED_KEY = Path(__file__).resolve().parents[1] / "tasks" / "bundled" / "aime2025" / "answers.jsonl"


@pytest.fixture(scope="module")
def release() -> Path:
    return shared_data("lmms-eval-0.7.3")


def test_a_073_sample_log_replays_by_position_and_says_only_filtered_answers_survive(release: Path, tmp_path: Path,
                                                                                        capsys):
    code = main(["run", "aime2025", "--data", "bundled", "--limit", "20", "--model", f"replay:{release / LOG}",
                 "--out", str(tmp_path), "--quiet"])
    out, err = capsys.readouterr()
    assert code == 0, err
    note = [line for line in err.splitlines() if "filtered_resps" in line]
    assert len(note) == 1 and note[0].startswith("step3vl-eval: replay: all 20 answers in ")
    (run_dir,) = [p.parent for p in tmp_path.glob(f"*/{store.RESULTS}")]
    result = json.loads((run_dir / store.RESULTS).read_text())
    assert result["status"] == "complete" and result["counts"]["errors"] == 0
    assert result["provenance"]["replay"]["answers"] == "filtered_resps" and result["provenance"]["replay"]["count"] == 20
    assert result["provenance"]["rules"] == {"filtered": 16, "none": 4}
    accuracy = result["metrics"]["accuracy"]
    assert (round(accuracy["value"] * accuracy["n"]), accuracy["n"]) == (12, 20)

    logged = [json.loads(line) for line in (release / LOG).read_text().splitlines()]
    official = json.loads(next(release.glob("*_results.json")).read_text())
    assert official["results"]["aime25_local_lmms"]["exact_match,boxed_first"] == 0.55
    ids = [json.loads(line)["id"] for line in BUNDLED_KEY.read_text().splitlines()]
    ours = {r["sample_id"]: r["scored"] for r in map(json.loads, (run_dir / store.SAMPLES).read_text().splitlines())}
    differ = [(row["doc_id"], row["filtered_resps"], row["target"]) for row in logged
              if ours[ids[row["doc_id"]]]["correct"] != bool(row["exact_match"])]
    assert differ == [(13, "060", "60")]  # the only disagreement: three-digit AIME answer form
    assert ours["I-14"] == {**ours["I-14"], "extracted": "060", "rule": "filtered", "correct": True}
    unparsed = {ids[row["doc_id"]] for row in logged if row["filtered_resps"] == "[invalid]"}
    assert len(unparsed) == 4 and all(ours[sid]["rule"] == "none" and not ours[sid]["correct"] for sid in unparsed)


def test_rows_known_by_position_must_land_on_their_targets(release: Path, tmp_path: Path, capsys):
    """The same log against data in another order: positions no longer meet their rows; one line, exit 2."""
    rows = [json.loads(line) for line in BUNDLED_KEY.read_text().splitlines()]
    data = tmp_path / "aime_reversed.jsonl"
    data.write_text("".join(json.dumps({**row, "problem": f"problem {row['id']}"}) + "\n" for row in reversed(rows)))
    code = main(["run", "aime2025", "--data", str(data), "--model", f"replay:{release / LOG}",
                 "--out", str(tmp_path / "runs"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "names its rows by position (lmms-eval's doc_id)" in err and "logged targets differ from the gold" in err
    assert not (tmp_path / "runs").exists()


def test_without_a_limit_the_log_answers_its_20_of_the_30_problems(release: Path, tmp_path: Path, capsys):
    code = main(["run", "aime2025", "--data", "bundled", "--model", f"replay:{release / LOG}", "--out", str(tmp_path),
                 "--quiet"])
    err = capsys.readouterr().err
    assert code == 1  # the 10 unanswered requests are error records
    assert "10 of 30 requests have no prediction" in err and "all 20 answers in " in err
