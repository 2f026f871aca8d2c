"""`step3vl-eval compare` (issue 17): two replayed runs built with known flips, compared end to end
through the CLI; MMBench by question (CircularEval), AIME by problem (k samples as a rate); the same
view in the HTML report; every model and dataset text escaped."""

from __future__ import annotations

import csv
import html
import io
import json
from pathlib import Path

import pytest
from conftest import cli
from test_gate import make_run, write_problems

from evals import runner
from evals.types import RunSpec

N = 40
A_WRONG = set(range(10))
B_WRONG = set(range(5, 15)) | {30}
GAINED = {f"q{i}" for i in A_WRONG - B_WRONG}  # q0..q4
LOST = {f"q{i}" for i in B_WRONG - A_WRONG}  # q10..q14, q30


def csv_changes(path: Path) -> dict[str, set[str]]:
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    out: dict[str, set[str]] = {}
    for r in rows:
        out.setdefault(r["change"], set()).add(r["question"])
    return out


@pytest.fixture(scope="module")
def flipped(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("flipped")
    data = write_problems(tmp / "aime.jsonl", N)
    return {"tmp": tmp, "a": make_run(tmp, "a", data, A_WRONG), "b": make_run(tmp, "b", data, B_WRONG)}


def test_compare_lists_exactly_the_flipped_questions(flipped):
    out_csv = flipped["tmp"] / "changes.csv"
    proc = cli("compare", str(flipped["a"]), str(flipped["b"]), "--csv", str(out_csv))
    assert proc.returncode == 0, proc.stderr
    changes = csv_changes(out_csv)
    assert changes["gained"] == GAINED and changes["lost"] == LOST
    assert len(changes["both right"]) == N - len(A_WRONG | B_WRONG) and len(changes["both wrong"]) == 5
    listed = {line.split()[1].rstrip(":") for line in proc.stdout.splitlines()
              if line.strip().startswith(("lost ", "gained "))}
    assert listed == GAINED | LOST  # the terminal lists the changed questions, and only them
    assert "both right 24 · gained 5 · lost 6 · both wrong 5" in proc.stdout
    lost_q30 = next(line for line in proc.stdout.splitlines() if " q30:" in line)
    assert "right -> wrong" in lost_q30 and "target 30" in lost_q30
    assert "A: 30 ✓" in proc.stdout and "B: 31 ✗" in proc.stdout  # both extracted answers


def test_compare_shows_the_gates_paired_test_for_the_difference(flipped):
    """5 gained and 6 lost of 40: McNemar's exact mid-p over the 11 discordant questions, two-sided:
    2 x (P(X > 6) + P(X = 6) / 2) for X ~ Bin(11, 1/2) = 2 x 793/2048 = 0.774."""
    page = flipped["tmp"] / "test.html"
    proc = cli("compare", str(flipped["a"]), str(flipped["b"]), "--html", str(page))
    assert proc.returncode == 0, proc.stderr
    line = "B − A: -2.50 points (95% CI "
    tail = " over 40 paired questions; McNemar exact mid-p, two-sided p = 0.774: not significant at the 5% level"
    assert line in proc.stdout.replace("\n", " ") and tail in " ".join(proc.stdout.split())
    text = " ".join(page.read_text(encoding="utf-8").split())
    assert line in text and tail in text
    # the interval is the gate's for these outcomes (Newcombe's, paired), not a second implementation
    from gates import gate

    base = [0.0 if i in A_WRONG else 1.0 for i in range(N)]
    cur = [0.0 if i in B_WRONG else 1.0 for i in range(N)]
    est = gate.mcnemar_test(base, cur)
    assert f"(95% CI {100 * est.ci[0]:+.2f} to {100 * est.ci[1]:+.2f})" in text


def test_avg_at_k_is_compared_by_problem_as_a_rate(tmp_path):
    data = write_problems(tmp_path / "aime.jsonl", 10)
    a_wrong = {0: {3, 9}, 1: {3, 7, 9}, 2: {7}, 3: {7}}  # q3 2/4 -> 1/4; q7 1/4 -> 3/4; q9 2/4 both
    b_wrong = {0: {3, 9}, 1: {3}, 2: {3, 9}, 3: {7}}
    a = make_run(tmp_path, "a", data, a_wrong, k=4)
    b = make_run(tmp_path, "b", data, b_wrong, k=4)
    out_csv = tmp_path / "changes.csv"
    proc = cli("compare", str(a), str(b), "--csv", str(out_csv))
    assert proc.returncode == 0, proc.stderr
    changes = csv_changes(out_csv)
    assert changes["lost"] == {"q3"} and changes["gained"] == {"q7"} and changes["same"] == {"q9"}
    rows = {r["question"]: r for r in csv.DictReader(io.StringIO(out_csv.read_text(encoding="utf-8")))}
    assert (float(rows["q3"]["outcome_a"]), float(rows["q3"]["outcome_b"])) == (0.5, 0.25)
    assert rows["q3"]["extracted_a"] == "3 ×2 ✓ · 4 ×2 ✗" and rows["q3"]["extracted_b"] == "4 ×3 ✗ · 3 ×1 ✓"
    assert "lost   q3: 50% -> 25%" in proc.stdout
    assert "over 10 paired questions; paired bootstrap, two-sided p = " in " ".join(proc.stdout.split())


def test_mmbench_is_compared_by_question_with_circular_eval(tmp_path):
    from test_mmbench import ANSWERS, build_rows, write_tsv

    tsv = write_tsv(tmp_path / "MMBench_DEV_EN_V11.tsv", build_rows())
    changed = {**ANSWERS, "1000001": "Final answer: A", "1000002": "Final answer: B"}  # q1 lost, q2 gained
    runs = []
    for name, answers in (("a", ANSWERS), ("b", changed)):
        replay = tmp_path / f"{name}.jsonl"
        replay.write_text("".join(json.dumps({"id": i, "response": t}) + "\n" for i, t in answers.items()))
        spec = RunSpec(task="mmbench_en", model=f"replay:{replay}", data=str(tsv), out=str(tmp_path / name))
        runs.append(runner.run(spec, show_progress=False)[0])
    out_csv = tmp_path / "changes.csv"
    proc = cli("compare", str(runs[0]), str(runs[1]), "--csv", str(out_csv))
    assert proc.returncode == 0, proc.stderr
    changes = csv_changes(out_csv)
    assert changes["lost"] == {"1"} and changes["gained"] == {"2"}  # questions, not rows
    assert sum(len(v) for v in changes.values()) == 5
    rows = {r["question"]: r for r in csv.DictReader(io.StringIO(out_csv.read_text(encoding="utf-8")))}
    assert rows["1"]["category"] and rows["1"]["extracted_b"].count("|") == 3  # four passes, in order
    assert rows["1"]["extracted_a"].split(" | ")[1] == "D ✓" and rows["1"]["extracted_b"].split(" | ")[1] == "A ✗"


def test_html_escapes_model_and_dataset_text(tmp_path):
    hostile = '<img src=x onerror="alert(1)">'
    data = tmp_path / "aime.jsonl"
    data.write_text("".join(json.dumps({"id": f"q{i}", "problem": f"Problem {i}: {hostile} What is {i}?", "answer": str(i)}) + "\n"
                            for i in range(3)))
    (tmp_path / "a.jsonl").write_text("".join(json.dumps({"id": f"q{i}", "response": f"\\boxed{{{i}}}"}) + "\n"
                                              for i in range(3)))
    (tmp_path / "b.jsonl").write_text("".join(json.dumps({"id": f"q{i}", "response": f"<script>alert({i})</script> "
                                                          f"\\boxed{{{i + 1}}}"}) + "\n" for i in range(3)))
    runs = [runner.run(RunSpec(task="aime2025", model=f"replay:{tmp_path / f'{n}.jsonl'}", data=str(data),
                               out=str(tmp_path / n)), show_progress=False)[0] for n in ("a", "b")]
    page = tmp_path / "changes.html"
    proc = cli("compare", str(runs[0]), str(runs[1]), "--html", str(page))
    assert proc.returncode == 0, proc.stderr
    text = page.read_text(encoding="utf-8")
    assert "<script" not in text and "<img" not in text
    assert html.escape("<script>alert(0)</script>", quote=True) in text and "&lt;img src=x" in text
    assert text.count('class="ch-lost"') == 3
    # the same view inside the report, which shows these two runs of aime2025 side by side
    report = tmp_path / "report.html"
    proc = cli("report", str(runs[0]), str(runs[1]), "--html", str(report), "--no-samples")
    assert proc.returncode == 0, proc.stderr
    text = report.read_text(encoding="utf-8")
    assert 'id="changes-aime2025"' in text and text.count('class="ch-lost"') == 3
    assert "<script>alert" not in text and "&lt;img src=x" in text


def test_report_without_a_pair_has_no_changes_section(flipped, tmp_path):
    report = tmp_path / "report.html"
    assert cli("report", str(flipped["a"]), "--html", str(report), "--no-samples").returncode == 0
    assert 'id="changes"' not in report.read_text(encoding="utf-8")


@pytest.mark.parametrize("args, message", [
    (["/nonexistent/a", "/nonexistent/b"], "does not exist"),
])
def test_bad_input_is_one_line_and_exit_2(args, message):
    proc = cli("compare", *args)
    assert proc.returncode == 2 and message in proc.stderr and proc.stderr.count("\n") == 1


def test_a_damaged_run_dir_is_one_line_and_exit_2(flipped, tmp_path):
    import shutil

    damaged = tmp_path / "damaged"
    shutil.copytree(flipped["b"], damaged)
    (damaged / "results.json").write_text('{"spec": 3}')
    proc = cli("compare", str(flipped["a"]), str(damaged))
    assert proc.returncode == 2 and "results.json" in proc.stderr and proc.stderr.count("\n") == 1


def test_tasks_not_on_both_sides_are_refused(flipped):
    proc = cli("compare", str(flipped["a"]), str(flipped["b"]), "--tasks", "mmmu")
    assert proc.returncode == 2 and "task mmmu is not in both runs" in proc.stderr


def test_files_are_written_even_when_the_terminal_reader_goes_away(flipped, tmp_path):
    """`compare A B --html x.html | head -3`: the pipe closes early; the files asked for still appear."""
    import os
    import subprocess
    import sys

    from conftest import REPO

    read_end, write_end = os.pipe()
    os.close(read_end)  # a reader that is already gone: the first print fails
    proc = subprocess.run([sys.executable, "-m", "evals.cli", "compare", str(flipped["a"]), str(flipped["b"]),
                           "--csv", str(tmp_path / "c.csv"), "--html", str(tmp_path / "c.html")],
                          stdout=write_end, stderr=subprocess.PIPE, cwd=REPO, timeout=120)
    os.close(write_end)
    assert csv_changes(tmp_path / "c.csv")["lost"] == LOST, proc.stderr
    assert "q30" in (tmp_path / "c.html").read_text(encoding="utf-8")


def test_released_mathvision_predictions_flip_exactly_where_the_official_verdicts_do(tmp_path):
    """Two real models' released testmini answers (bundled), replayed: the gained and lost questions are
    those whose official `correct` flags differ, and the changes are listed category by category."""
    from tasks.data import BUNDLED_ROOT

    outputs = BUNDLED_ROOT / "mathvision" / "outputs"
    official = {name: {str(r["id"]): bool(r["correct"])
                       for r in map(json.loads, (outputs / f"{name}.jsonl").read_text().splitlines())}
                for name in ("Gemini-Pro-CoT", "Qwen-VL-Plus")}
    runs = [runner.run(RunSpec(task="mathvision", model=f"replay:{outputs / f'{name}.jsonl'}", data="bundled",
                               split="testmini", out=str(tmp_path / name)), show_progress=False)[0]
            for name in official]
    out_csv = tmp_path / "changes.csv"
    proc = cli("compare", str(runs[0]), str(runs[1]), "--csv", str(out_csv))
    assert proc.returncode == 0, proc.stderr
    a, b = official["Gemini-Pro-CoT"], official["Qwen-VL-Plus"]
    changes = csv_changes(out_csv)
    assert changes["gained"] == {i for i in a if b[i] and not a[i]} and len(changes["gained"]) == 25
    assert changes["lost"] == {i for i in a if a[i] and not b[i]} and len(changes["lost"]) == 37
    listed = [(line.split("[", 1)[1].split("]", 1)[0], line.split()[0]) for line in proc.stdout.splitlines()
              if line.strip().startswith(("lost ", "gained "))]
    assert len(listed) == 62 and len({c for c, _ in listed}) > 3
    assert listed == sorted(listed, key=lambda x: (x[0], x[1] == "gained"))  # by category, lost before gained
    rows = list(csv.DictReader(io.StringIO(out_csv.read_text(encoding="utf-8"))))
    prompt_column = next(k for k in rows[0] if "prompt" in k)
    # the excerpt is the question, not the instruction every MathVision prompt opens with
    assert not any(r[prompt_column].startswith("Please solve") for r in rows)
    assert all(r[prompt_column] for r in rows)
