"""Replay (issue 14): the repeats come from the file, not the task's default (AIME's 64), and a file
that does not fit the data is refused before anything is written, or its gaps are counted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evals.cli import main
from evals.types import UserError
from model_adapters.replay import check_coverage, repeats_in_file, split_key
from tasks.data import BUNDLED_ROOT

AIME_KEY = {r["id"]: r["answer"] for r in map(json.loads, (BUNDLED_ROOT / "aime2025" / "answers.jsonl").read_text().splitlines())}


@pytest.mark.parametrize("keys, repeats", [
    (["a", "b"], 1),
    (["a#0", "b#0"], 1),
    (["a#0", "a#1", "a#2", "b#0"], 3),
    (["a#7"], 8),
    (["a#x", "b"], 1),  # a suffix that is not a number is part of the id
    (["a", "a#3"], 4),
])
def test_repeats_in_file(keys, repeats):
    assert repeats_in_file({k: "" for k in keys}) == repeats


@pytest.mark.parametrize("ident, split", [("q7#3", ("q7", 3)), ("q7", ("q7", None)), ("a#b#2", ("a#b", 2)),
                                          ("#2", ("#2", None)), ("q#", ("q#", None))])
def test_split_key(ident, split):
    assert split_key(ident) == split


def test_coverage_threshold_and_partial_note():
    ids = [f"s{i}" for i in range(10)]
    assert check_coverage("f", {f"s{i}": "" for i in range(10)}, ids, 1) is None
    note = check_coverage("f", {f"s{i}#0": "" for i in range(6)}, ids, 2)
    assert note == "replay: 14 of 20 requests have no prediction in f (4 samples unanswered): they are error records, not scored"
    with pytest.raises(UserError, match=r"answers 4 of the 10 samples \(needs 50%\): its ids are e.g. 's0', 's1', 's2'"):
        check_coverage("f", {f"s{i}": "" for i in range(4)}, ids, 1)


def write_predictions(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def run(tmp_path: Path, preds: Path, *extra: str) -> int:
    return main(["run", "aime2025", "--data", "bundled", "--model", f"replay:{preds}", "--out",
                 str(tmp_path / "runs"), "--quiet", *extra])


def result_of(tmp_path: Path) -> dict:
    (run_dir,) = (tmp_path / "runs").iterdir()
    return json.loads((run_dir / "results.json").read_text())


def test_plain_ids_give_one_repeat_not_the_tasks_64(tmp_path: Path):
    preds = write_predictions(tmp_path / "p.jsonl", [{"id": i, "response": f"\\boxed{{{a}}}"} for i, a in AIME_KEY.items()])
    assert run(tmp_path, preds) == 0
    result = result_of(tmp_path)
    assert result["spec"]["repeats"] == 1 and result["counts"]["requests"] == 30
    assert result["metrics"]["accuracy"]["value"] == 1.0 and "avg@1" in result["metrics"]


def test_keyed_repeats_give_k_plus_one(tmp_path: Path):
    rows = [{"key": f"{i}#{k}", "response": f"\\boxed{{{a if k < 2 else 0}}}"} for i, a in AIME_KEY.items() for k in range(4)]
    preds = write_predictions(tmp_path / "p.jsonl", rows)
    assert run(tmp_path, preds) == 0
    result = result_of(tmp_path)
    assert result["spec"]["repeats"] == 4 and result["counts"]["requests"] == 120
    assert result["metrics"]["accuracy"]["value"] == 0.5 and result["metrics"]["pass@4"]["value"] == 1.0


def test_a_file_for_other_data_is_one_line_exit_2_naming_both_sides(tmp_path: Path, capsys):
    preds = write_predictions(tmp_path / "p.jsonl", [{"id": str(n), "response": "A"} for n in range(1, 40)])
    assert run(tmp_path, preds) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "answers 0 of the 30 samples" in err
    assert "'1', '10', '11'" in err and "'I-1', 'I-2', 'I-3'" in err
    assert not (tmp_path / "runs").exists()  # refused before the run dir exists


def test_a_partial_file_says_how_many_are_missing_and_that_rerunning_cannot_help(tmp_path: Path, capsys):
    answered = list(AIME_KEY.items())[:20]
    preds = write_predictions(tmp_path / "p.jsonl", [{"id": i, "response": f"\\boxed{{{a}}}"} for i, a in answered])
    assert run(tmp_path, preds) == 1
    err = capsys.readouterr().err
    assert "replay: 10 of 30 requests have no prediction" in err and "(10 samples unanswered)" in err
    assert "rerunning cannot fill them" in err and "rerun the same command" not in err
    result = result_of(tmp_path)
    assert result["counts"]["errors"] == 10 and result["metrics"]["accuracy"]["value"] == 1.0  # errors are not scored wrong


def test_samples_flag_still_overrides_the_file(tmp_path: Path):
    preds = write_predictions(tmp_path / "p.jsonl", [{"id": i, "response": f"\\boxed{{{a}}}"} for i, a in AIME_KEY.items()])
    assert run(tmp_path, preds, "--samples", "2") == 0
    assert result_of(tmp_path)["counts"]["requests"] == 60
