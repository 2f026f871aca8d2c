"""How runs are named and which one a report shows (issue 23): a replay's label and run id use the
prediction file's stem (two files with one stem still get two run ids and two labels; a file whose
content changed is not resumed on its old answers), and a report
given two folders holding the same run id shows the complete run and says which one it left out."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from evals import store
from evals.cli import main
from model_adapters.mock import MockAdapter
from tasks.data import bundled_dir

GEMINI = bundled_dir("mathvision") / "outputs" / "Gemini-Pro-CoT.jsonl"


def run_dirs(out: Path) -> list[Path]:
    return sorted(p.parent for p in out.glob(f"*/{store.RESULTS}"))


@pytest.mark.parametrize("model, short", [
    ("replay:/data/outputs/Gemini-Pro-CoT.jsonl", "replay:Gemini-Pro-CoT"),  # folder and extension dropped
    ("replay:preds.v1.5.tsv", "replay:preds.v1.5"),  # only the extension: dots in the name stay
    ("replay:/data/mmmu_outputs/", "replay:mmmu_outputs"),  # a folder of files
    ("replay:/data/.jsonl", "replay:.jsonl"),  # nothing but an extension: kept
    ("openai/Step3-VL-10B", "openai/Step3-VL-10B"),  # not a replay: whole
    ("mock", "mock"),
])
def test_short_model_names_a_replay_by_its_file_stem(model: str, short: str):
    assert store.short_model(model) == short


def test_replay_labels_and_run_ids_use_the_stem_and_same_stems_stay_apart(tmp_path: Path, capsys):
    out = tmp_path / "runs"
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        shutil.copy(GEMINI, tmp_path / folder / GEMINI.name)
        assert main(["run", "mathvision", "--data", "bundled", "--model", f"replay:{tmp_path / folder / GEMINI.name}",
                     "--out", str(out), "--quiet"]) == 0
    assert "mathvision · replay:Gemini-Pro-CoT · sere" in capsys.readouterr().out  # the summary's title
    first, second = run_dirs(out)
    assert first.name != second.name  # the digest covers the whole path
    for run_dir in (first, second):
        assert run_dir.name.startswith("mathvision-Gemini-Pro-CoT-sere-") and ".jsonl" not in run_dir.name
    assert main(["report", str(first), "--csv", str(tmp_path / "one.csv")]) == 0
    assert ",replay:Gemini-Pro-CoT · SeRe," in (tmp_path / "one.csv").read_text()
    assert main(["report", str(out), "--csv", str(tmp_path / "two.csv")]) == 0
    csv = (tmp_path / "two.csv").read_text()
    assert ",replay:a/Gemini-Pro-CoT · SeRe," in csv and ",replay:b/Gemini-Pro-CoT · SeRe," in csv


def test_a_changed_replay_file_is_not_resumed_on_its_old_answers(tmp_path: Path, capsys):
    """The run id covers the file's path, not its content: the same command after the file changed
    would find the old run dir complete and report its old score; it is refused instead."""
    preds = tmp_path / "preds.jsonl"
    command = ["run", "mathvision", "--data", "bundled", "--model", f"replay:{preds}", "--out", str(tmp_path / "runs"),
               "--quiet"]
    preds.write_text("".join(GEMINI.read_text().splitlines(keepends=True)[:250]))
    assert main(command) == 1  # 54 questions unanswered: error records
    shutil.copy(GEMINI, preds)  # the file now answers them too: welcome, the rest is unchanged
    assert main(command) == 0 and main(command) == 0
    (run_dir,) = run_dirs(tmp_path / "runs")
    assert store.load_result(run_dir).status == "complete"
    shutil.copy(GEMINI.with_name("Random-Chance.jsonl"), preds)
    capsys.readouterr()
    assert main(command) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "answers that" in err and "already scored differ in" in err
    assert "the file changed; start a new run" in err


def interrupted_copy(run_dir: Path, out: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The same command in another folder, stopped by Ctrl-C after 5 answers: a real interrupted run."""
    real_generate = MockAdapter.generate

    def stop_after_five(self, requests, on_response=None):
        real_generate(self, requests[:5], on_response)
        raise KeyboardInterrupt

    monkeypatch.setattr(MockAdapter, "generate", stop_after_five)
    assert main(["run", "aime2025", "--data", "bundled", "--model", "mock", "--samples", "2", "--out", str(out),
                 "--quiet"]) == 130
    monkeypatch.undo()
    (stopped,) = run_dirs(out)
    assert stopped.name == run_dir.name and store.load_result(stopped).status == "interrupted"
    return stopped


def test_a_report_of_two_folders_with_one_run_id_shows_the_complete_run_and_says_so(tmp_path: Path, monkeypatch,
                                                                                      capsys):
    assert main(["run", "aime2025", "--data", "bundled", "--model", "mock", "--samples", "2",
                 "--out", str(tmp_path / "runs"), "--quiet"]) == 0
    (complete,) = run_dirs(tmp_path / "runs")
    stopped = interrupted_copy(complete, tmp_path / "runs-int", monkeypatch)
    capsys.readouterr()
    for order in (["runs", "runs-int"], ["runs-int", "runs"]):  # the order given does not decide
        html, csv = tmp_path / "r.html", tmp_path / "r.csv"
        assert main(["report", *(str(tmp_path / f) for f in order), "--html", str(html), "--csv", str(csv)]) == 0
        err = capsys.readouterr().err
        line = (f"left out {stopped.resolve()} (interrupted, 5 requests): {complete.resolve()} has the same run id "
                "and is complete")
        assert f"report: {line}\n" in err
        assert f"{line[0].upper()}{line[1:]}." in html.read_text()
        rows = [r for r in csv.read_text().splitlines() if r.startswith("run,")]
        assert rows and all(",complete," in r for r in rows) and not any(",interrupted," in r for r in rows)
