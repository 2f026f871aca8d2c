"""MathVista on self-written problems in the official schema (no ../shared needed): the extraction
rules and the official normalisation as tables, the runner end to end through the CLI (mock,
replay with an official `extraction`, the judge over HTTP, the test split without answers), bad data."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from chat_server import ChatServer, Reply
from conftest import cli

from evals.types import Response, Sample
from tasks.mathvista import MathVista, edit_distance, extraction_prompt, normalize_extraction, rules_extract

HINTS = {  # build_query.py's hints, as the official query.json holds them
    "text": "Hint: Please answer the question and provide the correct option letter, e.g., A, B, C, D, at the end.",
    "integer": "Hint: Please answer the question requiring an integer answer and provide the final value, "
               "e.g., 1, 2, 3, at the end.",
    1: "Hint: Please answer the question requiring a floating-point number with one decimal place and provide "
       "the final value, e.g., 1.2, 1.3, 1.4, at the end.",
    2: "Hint: Please answer the question requiring a floating-point number with two decimal places and provide "
       "the final value, e.g., 1.23, 1.34, 1.45, at the end.",
    "list": "Hint: Please answer the question requiring a Python list as an answer and provide the final list, "
            "e.g., [1, 2, 3], [1.2, 1.3, 1.4], at the end.",
}


def problem(pid: str, question: str, answer: str, answer_type: str, choices: list[str] | None = None,
            precision: int | None = None, unit: str | None = None, skills: tuple[str, ...] = ("arithmetic reasoning",),
            source: str = "Ours") -> dict:
    return {"question": question, "image": f"images/{pid}.png", "choices": choices, "unit": unit,
            "precision": precision, "answer": answer, "question_type": "multi_choice" if choices else "free_form",
            "answer_type": answer_type, "pid": pid,
            "metadata": {"split": "testmini", "language": "english", "img_width": 8, "img_height": 8,
                         "source": source, "category": "math-targeted-vqa", "task": "figure question answering",
                         "context": "synthetic scene", "grade": "elementary school", "skills": list(skills)}}


PROBLEMS = {p["pid"]: p for p in [
    problem("1", "What fraction of the shape is blue?", "8/11", "text", ["3/11", "8/11", "6/11", "3/5"],
            skills=("arithmetic reasoning", "geometry reasoning"), source="Geo"),
    problem("2", "Which number is missing?", "14", "integer"),
    problem("3", "What is the fraction of females facing the camera?", "0.6", "float", precision=1),
    problem("4", "How much money does Luca need?", "1.45", "float", precision=2, unit="$"),
    problem("5", "Between which two years does the line graph peak?", "[2007, 2008]", "list",
            skills=("statistical reasoning",)),
    problem("6", "Is the sandwich cut in half?", "Yes", "text", ["Yes", "No"], source="Geo"),
]}


def query_of(p: dict) -> str:
    hint = HINTS[p["precision"]] if p["answer_type"] == "float" else HINTS.get(p["answer_type"], "")
    text = f"{hint}\nQuestion: {p['question']}" + (f" (Unit: {p['unit']})" if p["unit"] else "")
    if p["choices"]:
        text += "\nChoices:\n" + "\n".join(f"({chr(65 + i)}) {c}" for i, c in enumerate(p["choices"]))
    return text


def write_folder(root: Path, problems: dict, split: str = "testmini", queries: bool = True) -> Path:
    from PIL import Image

    (root / "images").mkdir(parents=True)
    for pid in problems:
        buf = io.BytesIO()
        Image.new("RGB", (8, 8), (0, 0, 255)).save(buf, format="PNG")
        (root / "images" / f"{pid}.png").write_bytes(buf.getvalue())
    (root / f"{split}.json").write_text(json.dumps(problems))
    if queries:
        (root / "query.json").write_text(json.dumps({pid: query_of(p) for pid, p in problems.items()}))
    return root


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return write_folder(tmp_path / "mathvista" / "data", PROBLEMS)


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Sample]:
    root = write_folder(tmp_path_factory.mktemp("mv") / "data", PROBLEMS)
    return {s.id: s for s in MathVista().load(str(root), None, None)}


# ---- extraction rules: (pid, reply, extraction, rule, why) ---------------------------------------

RULES = [
    ("1", "8/11", "8/11", "official", "the reply is an option text: the official direct read"),
    ("1", "Final answer: B", "B", "answer_format", "the report's answer format"),
    ("1", "**Final Answer:** (B) 8/11", "B", "answer_format", "bold label, letter with its text"),
    ("1", "The correct answer is (B) 8/11.", "B", "answer_format", "the demo's own example"),
    ("1", "So the answer is \\boxed{C}.", "C", "answer_format", "a boxed letter"),
    ("1", "The answer is B. On reflection, Final answer: D", "D", "answer_format", "the last phrase wins"),
    ("1", "Final answer: A\nLet me check... \\boxed{B}", "B", "answer_format", "a later box wins"),
    ("1", "The answer is \\boxed{6/11}", "6/11", "answer_format", "an option text in a box"),
    ("1", "The answer is E.", None, "none", "E is not an option of four"),
    ("1", "Final answer: a fraction near 3/4", None, "none", "words that are neither a letter nor an option"),
    ("1", "(B)", "B", "answer_format", "a bare letter in brackets"),
    ("1", "B. 8/11", "B", "answer_format", "a bare letter with its own option text"),
    ("1", "B. 6/11", None, "none", "a bare letter with another option's text: ambiguous"),
    ("1", "I think it is B because of the colours.", None, "none", "no phrase, not a bare answer: the judge's"),
    ("6", "yes.", "Yes", "answer_format", "an option text in another case"),
    ("6", "Yes", "Yes", "official", "the exact option text"),
    ("2", "14", "14", "official", "int(reply): the official direct read"),
    ("2", " 14\n", "14", "official", "int() forgives surrounding whitespace, as officially"),
    ("2", "14.0", "14.0", "answer_format", "int('14.0') fails officially; a bare number is still an answer"),
    ("2", "The missing number is 14.", None, "none", "a sentence: the judge's"),
    ("2", "So the answer is 14.", "14", "answer_format", "answer is"),
    ("2", "The answer is $14$ because 7 + 7 = 14.", "14", "answer_format", "first sentence, leading number"),
    ("2", "The answer is 1,024.", "1024", "answer_format", "thousands separator"),
    ("2", "Final answer: x = 12", "12", "answer_format", "the right side of an equation"),
    ("2", "\\boxed{42}", "42", "answer_format", "a box"),
    ("2", "The answer is 3/4 of it", None, "none", "a fraction is not a leading integer"),
    ("2", "The answer is 2x.", None, "none", "a number glued to a variable"),
    ("2", "Final answer: 45^\\circ", "45", "answer_format", "degrees"),
    ("3", "0.6", "0.6", "official", "float(reply)"),
    ("3", "1e-1", "0.1", "official", "float() reads exponents and str() writes them back"),
    ("3", "The fraction is \\boxed{0.60}.", "0.60", "answer_format", "kept as written: normalisation rounds"),
    ("4", "Final answer: $1.45", "1.45", "answer_format", "a dollar sign is math markup here"),
    ("4", "The answer is 1.45 $.", "1.45", "answer_format", "the problem's unit after the number"),
    ("5", "The answer is [2007, 2008].", "[2007, 2008]", "answer_format", "a list"),
    ("5", "Final answer: [2007,2008]", "[2007, 2008]", "answer_format", "a list in the official spacing"),
    ("5", "Final answer: 2007, 2008", "[2007, 2008]", "answer_format", "comma-separated numbers"),
    ("5", "The answer is between 2007 and 2008.", None, "none", "words: the judge's"),
    ("5", "", None, "none", "an empty reply is wrong, not a guess of the shortest option"),
]


@pytest.mark.parametrize(("pid", "reply", "extraction", "rule", "why"), RULES, ids=[r[4] for r in RULES])
def test_extraction_rules(samples: dict[str, Sample], pid: str, reply: str, extraction: str | None, rule: str,
                          why: str):
    assert rules_extract(reply, samples[pid]) == (extraction, rule), why


# ---- the official normalisation: (extraction, choices, question type, answer type, precision, result)

NORMALIZE = [
    ("B", ["3/11", "8/11"], "multi_choice", "text", None, "8/11", "a letter picks its option"),
    (" (b) 8/11 ", ["3/11", "8/11"], "multi_choice", "text", None, "8/11", "a bracketed letter, any case"),
    ("b", ["3/11", "8/11"], "multi_choice", "text", None, "3/11", "a bare lower-case letter is text: nearest"),
    ("N/A", ["5.8", "6.5", "14.2"], "multi_choice", "text", None, "5.8", "no letter: the least edit distance"),
    ("", ["Yes", "No"], "multi_choice", "text", None, "No", "empty: the shortest option"),
    ("ab", ["ax", "xb"], "multi_choice", "text", None, "ax", "a tie goes to the first option"),
    ("14.7", None, "free_form", "integer", None, "14", "int(float(x)) truncates"),
    ("-0.5", None, "free_form", "integer", None, "0", "towards zero"),
    ("1e3", None, "free_form", "integer", None, "1000", "exponents"),
    ("inf", None, "free_form", "integer", None, None, "int(inf) fails: no prediction"),
    ("fourteen", None, "free_form", "integer", None, None, "not a number"),
    ("1.25", None, "free_form", "float", 1, "1.2", "round() to the precision (binary float: 1.25 -> 1.2)"),
    ("0.6", None, "free_form", "float", 2.0, "0.6", "a hub precision is a float; str() drops zeros"),
    ("nan", None, "free_form", "float", 1, "nan", "float('nan') rounds to nan"),
    ("0.6", None, "free_form", "float", None, None, "no precision: int(None) fails"),
    ("[2007,2008]", None, "free_form", "list", None, "[2007,2008]", "a list is compared as written"),
]


@pytest.mark.parametrize(("extraction", "choices", "qtype", "atype", "precision", "expected", "why"), NORMALIZE,
                         ids=[r[6] for r in NORMALIZE])
def test_official_normalisation(extraction, choices, qtype, atype, precision, expected, why):
    assert normalize_extraction(extraction, choices, qtype, atype, precision) == expected, why


@pytest.mark.parametrize(("a", "b", "distance"), [("", "", 0), ("", "abc", 3), ("kitten", "sitting", 3),
                                                  ("flaw", "lawn", 2), ("5πcm", "4πcm", 1), ("日本", "本", 1)])
def test_edit_distance(a: str, b: str, distance: int):
    assert edit_distance(a, b) == edit_distance(b, a) == distance


# ---- end to end through the CLI --------------------------------------------------------------

def only_run(out: Path) -> Path:
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    return run_dir


def records(run_dir: Path) -> dict[str, dict]:
    return {r["sample_id"]: r for r in map(json.loads, (run_dir / "samples.jsonl").read_text().splitlines())}


def test_mock_run_on_the_repository_layout_scores_and_breaks_down(data: Path, tmp_path: Path):
    script = tmp_path / "script.json"
    script.write_text(json.dumps({"1": "<think>blue</think>Final answer: B", "2": "\\boxed{14}",
                                  "3": "The answer is 0.6.", "4": "1.45", "5": "[2007, 2008]", "6": "No"}))
    proc = cli("run", "mathvista", "--model", "mock", "-O", f"mock_script={script}",
               "--data", str(data.parent), "--out", str(tmp_path / "runs"))
    assert proc.returncode == 0, proc.stderr
    run_dir = only_run(tmp_path / "runs")
    result = json.loads((run_dir / "results.json").read_text())
    assert result["spec"]["split"] is None and result["status"] == "complete"
    acc = result["metrics"]["accuracy"]
    assert (acc["value"], acc["n"]) == (pytest.approx(5 / 6), 6)
    b = result["breakdowns"]
    assert {k: (round(v["value"] * v["n"]), v["n"]) for k, v in b["skills"].items()} == {
        "arithmetic reasoning": (4, 5), "geometry reasoning": (1, 1), "statistical reasoning": (1, 1)}
    assert {k: v["n"] for k, v in b["answer_type"].items()} == {"float": 2, "integer": 1, "list": 1, "text": 2}
    assert {k: round(v["value"] * v["n"]) for k, v in b["source"].items()} == {"Geo": 1, "Ours": 4}
    assert set(b) == {"question_type", "answer_type", "language", "source", "category", "task", "context",
                      "grade", "skills"}
    saved = records(run_dir)
    assert {pid: (r["scored"]["extracted"], r["scored"]["rule"]) for pid, r in saved.items()} == {
        "1": ("B", "answer_format"), "2": ("14", "answer_format"), "3": ("0.6", "answer_format"),
        "4": ("1.45", "official"), "5": ("[2007, 2008]", "answer_format"), "6": ("No", "official")}
    assert saved["1"]["scored"]["extra"]["prediction"] == "8/11"
    prompt = saved["1"]["prompt"][0]["content"]
    assert [p["type"] for p in prompt] == ["image", "text"] and prompt[1]["text"] == query_of(PROBLEMS["1"])


def test_replayed_official_file_is_scored_from_its_own_extraction(data: Path, tmp_path: Path):
    """`{pid: record}` with the official `extraction`: it decides, even against the reply's own letter,
    and results say how often our rules agree with it."""
    released = {pid: {**p, "query": query_of(p), "response": "The correct answer is (B) 8/11.",
                      "extraction": "A"} if pid == "1" else
                {**p, "query": query_of(p), "response": f"The answer is {p['answer']}.", "extraction": p["answer"]}
                for pid, p in PROBLEMS.items()}
    released["6"]["response"], released["6"]["extraction"] = "I cannot see it.", "N/A"  # nearest: "No"
    path = tmp_path / "output_ours.json"
    path.write_text(json.dumps(released))
    proc = cli("run", "mathvista", "--model", f"replay:{path}", "--data", str(data), "--out", str(tmp_path / "runs"))
    assert proc.returncode == 0, proc.stderr
    run_dir = only_run(tmp_path / "runs")
    result = json.loads((run_dir / "results.json").read_text())
    assert round(result["metrics"]["accuracy"]["value"] * 6) == 4  # 1 (A = 3/11) and 6 (No) are wrong
    agreement = result["metrics"]["rules_agreement"]
    assert (round(agreement["value"] * agreement["n"]), agreement["n"], agreement["of"]) == (4, 5, 6)
    one = records(run_dir)["1"]["scored"]
    assert (one["extracted"], one["rule"], one["extra"]["rules"]) == (
        "A", "judge", {"extracted": "B", "rule": "answer_format", "agrees": False})
    # Re-scoring without the model keeps the file's extraction (it is saved with the response).
    proc = cli("score", str(run_dir))
    assert proc.returncode == 0, proc.stderr
    assert json.loads((run_dir / "results.json").read_text())["metrics"]["accuracy"] == result["metrics"]["accuracy"]


def test_judge_reads_what_no_rule_can_with_the_official_prompt(data: Path, tmp_path: Path):
    script = tmp_path / "script.json"
    reply = "The missing number is fourteen, since each row adds up."
    script.write_text(json.dumps({"2": reply}))
    with ChatServer(responder=lambda body: Reply(content="14")) as server:
        proc = cli("run", "mathvista", "--model", "mock", "-O", f"mock_script={script}", "--data", str(data),
                   "--judge", "openai/judge-model", "-T", f"judge_base_url={server.url}",
                   "--out", str(tmp_path / "runs"))
        received = [m["content"] for body in server.received for m in body["messages"]]
    assert proc.returncode == 0, proc.stderr
    assert extraction_prompt(query_of(PROBLEMS["2"]), reply) in [
        c if isinstance(c, str) else "".join(p.get("text", "") for p in c) for c in received]
    saved = records(only_run(tmp_path / "runs"))["2"]["scored"]
    assert (saved["extracted"], saved["rule"], saved["correct"]) == ("14", "judge", True)


def test_test_split_saves_predictions_and_reports_no_accuracy(tmp_path: Path):
    unanswered = {pid: {**p, "answer": ""} for pid, p in PROBLEMS.items()}
    root = write_folder(tmp_path / "data", unanswered, split="test")
    proc = cli("run", "mathvista", "--model", "mock", "--data", str(root), "--split", "test",
               "--out", str(tmp_path / "runs"))
    assert proc.returncode == 0, proc.stderr
    assert "no accuracy: MathVista's test split has no public answers" in proc.stdout
    run_dir = only_run(tmp_path / "runs")
    result = json.loads((run_dir / "results.json").read_text())
    assert "accuracy" not in result["metrics"] and result["status"] == "complete"
    saved = records(run_dir)  # the mock says `\boxed{0}` last: an integer answer, no option letter
    assert len(saved) == 6 and saved["2"]["target"] is None
    assert (saved["2"]["scored"]["extracted"], saved["2"]["scored"]["extra"]["prediction"]) == ("0", "0")
    gate = cli("gate", "--write-baseline", str(run_dir), str(tmp_path / "baseline.json"))
    assert gate.returncode == 2 and len(gate.stderr.strip().splitlines()) == 1 and "nothing to gate" in gate.stderr
    report = cli("report", str(run_dir), "--md", str(tmp_path / "summary.md"))
    assert report.returncode == 0, report.stderr
    assert "| no score (complete) |" in (tmp_path / "summary.md").read_text()


def test_a_folder_without_query_json_is_one_line_and_exit_2(tmp_path: Path):
    root = write_folder(tmp_path / "data", PROBLEMS, queries=False)
    proc = cli("run", "mathvista", "--model", "mock", "--data", str(root), "--out", str(tmp_path / "runs"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("step3vl-eval: error: mathvista: no query.json beside") and not (tmp_path / "runs").exists()


@pytest.mark.parametrize(("change", "message"), [
    ({"answer_type": "fraction"}, "is not a MathVista type"),
    ({"choices": []}, "a multiple-choice problem needs a non-empty list"),
    ({"answer": None}, "missing field 'answer'"),
    ({"image": None}, "missing field 'image'"),
])
def test_bad_problems_are_one_line_and_exit_2(tmp_path: Path, change: dict, message: str):
    root = write_folder(tmp_path / "data", {**PROBLEMS, "1": {**PROBLEMS["1"], **change}})
    proc = cli("run", "mathvista", "--model", "mock", "--data", str(root), "--out", str(tmp_path / "runs"))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr


def test_list_shows_mathvista():
    proc = cli("list")
    assert proc.returncode == 0 and "mathvista" in proc.stdout


def test_replay_needs_no_image(data: Path, tmp_path: Path):
    for image in (data / "images").iterdir():
        image.unlink()
    path = tmp_path / "preds.json"
    path.write_text(json.dumps({pid: {"response": p["answer"]} for pid, p in PROBLEMS.items()}))
    proc = cli("run", "mathvista", "--model", f"replay:{path}", "--data", str(data), "--out", str(tmp_path / "runs"))
    assert proc.returncode == 0, proc.stderr
    result = json.loads((only_run(tmp_path / "runs") / "results.json").read_text())
    assert result["metrics"]["accuracy"]["value"] == 1.0


def test_score_of_a_response_uses_the_extraction_in_meta(samples: dict[str, Sample]):
    task = MathVista()
    scored = task.score(samples["2"], Response(key="2#0", text="no idea", meta={"extraction": "14"}))
    assert (scored.extracted, scored.rule, scored.correct) == ("14", "judge", True)


def test_hub_snapshot_parquet_in_the_hub_schema(tmp_path: Path):
    """The hub's columns: `decoded_image` bytes, `precision` as float64, `metadata` a struct, `query`."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="PNG")
    rows = [{**p, "precision": None if p["precision"] is None else float(p["precision"]), "query": query_of(p),
             "decoded_image": {"bytes": buf.getvalue(), "path": None}} for p in PROBLEMS.values()]
    (tmp_path / "data").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "data" / "testmini-00000-of-00001.parquet")
    samples = {s.id: s for s in MathVista().load(str(tmp_path), None, None)}
    assert samples["4"].metadata["precision"] == 2.0 and samples["1"].choices == {
        "A": "3/11", "B": "8/11", "C": "6/11", "D": "3/5"}
    image, text = samples["1"].messages[0].content
    assert image.read_bytes() == buf.getvalue() and text.text == query_of(PROBLEMS["1"])
    scored = MathVista().score(samples["4"], Response(key="4#0", text="Final answer: 1.449"))
    assert (scored.extra["prediction"], scored.correct) == ("1.45", True)
