"""MathVision: the official MATH-V extraction and equality rules, loading, prompts, lazy images.

Rules are pinned by tables (input, expected, why) traced by hand through the official
`evaluate.py` / `utils.py`; fixtures are self-written rows in the official schema.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from chat_server import ChatServer
from conftest import cli
from PIL import Image as PILImage

from evals.types import Image, Response, Sample, Text, UserError
from tasks import get_task
from tasks.mathvision import PROMPT_TEMPLATE, MathVision
from tasks.mathvision_rules import (
    QuickValue, emulated_value, find_math_answer, official_equal, official_extract, parsed_value, rounded,
    rounded_value,
)

INSTRUCTION, QUESTION_SLOT = PROMPT_TEMPLATE.format(question="{question}").split("<image>")

# ---- extraction: (response, answer, rule, why) -----------------------------------------------

EXTRACTION = [
    ("so the sum is 60.\n\n\\boxed{60}", "60", "answer_format", "the boxed answer"),
    ("\\boxed{\\frac{4}{3}}", "\\frac{4}{3}", "answer_format", "nested braces kept whole"),
    ("first \\boxed{1}, then \\boxed{\\frac{2}{5}}", "\\frac{2}{5}", "answer_format", "the last of several boxes"),
    ("\\boxed{A}", "a", "answer_format", "answers are lower-cased"),
    ("\\boxed{\\text{(C)}}", "c", "answer_format", "\\text dropped, then (c) -> c"),
    ("\\boxed{x = 12}", "12", "answer_format", "the part after '='"),
    ("\\boxed{30^\\circ}", "30", "answer_format", "degree sign dropped"),
    ("\\boxed{12 \\text{ cm}}", "12{cm}", "answer_format", "spaces go before \\text: the unit stays (official)"),
    ("\\boxed{5 km}", "5", "answer_format", "km is one of the official units"),
    ("\\boxed{0.5}", "\\frac{1}{2}", "answer_format", "0.5 rewritten as a fraction"),
    ("\\boxed{3/4}", "\\frac{3}{4}", "answer_format", "a/b with integers becomes \\frac"),
    ("\\boxed{\\dfrac{3}{4}}", "\\frac{3}{4}", "answer_format", "dfrac -> frac"),
    ("\\boxed{2\\sqrt3}", "2\\sqrt{3}", "answer_format", "sqrt argument braced"),
    ("\\boxed{\\frac43}", "\\frac43", "answer_format", "fracs are only braced next to a sqrt (official)"),
    ("\\boxed{\\sqrt2\\frac12}", "\\sqrt{2}\\frac{1}{2}", "answer_format", "...as here"),
    ("\\boxed{070}", "070", "answer_format", "leading zero kept; equality handles it"),
    ("The answer is 42.", "42", "official", "text after the last 'is ', a number"),
    ("This is 7", "7", "official", "'is ' inside 'This' counts too"),
    ("Thus the answer is C. It fits best.", "c", "official", "after 'the answer is', up to '. '"),
    ("The correct answer is (D)\nbecause...", "d", "official", "up to the newline, then (d) -> d"),
    ("(B)\nBecause the triangle...", "b", "official", "a letter at the start"),
    ("Counting gives option (E).", "e", "official", "a letter at the end"),
    ("A\nB is wrong", "a", "official", "letters are tried A to E, the first that fits wins"),
    ("I cannot tell", "icannottell", "fallback", "nothing matched: the cleaned response"),
    ("", "", "none", "empty"),
    ("   ", "", "none", "blank"),
]


@pytest.mark.parametrize("response,answer,rule,why", EXTRACTION, ids=[c[3] for c in EXTRACTION])
def test_official_extraction(response: str, answer: str, rule: str, why: str):
    assert official_extract(response) == (answer, rule), why


def test_find_math_answer_cuts_at_an_unmatched_closing_brace():
    # `oxed{(.*)}` is greedy: it runs to the last brace, and the stray '}' then cuts it.
    assert find_math_answer("\\boxed{5} and {x}") == "5"


# ---- equality: (gold, answer, expected, why) -------------------------------------------------

EQUALITY = [
    ("60", "60", True, "exact"),
    ("A", "a", True, "case-insensitive"),
    ("A", "b", False, "another letter"),
    ("70", "070", True, "070 == 70"),
    ("\\frac{4}{3}", "4/3", True, "\\frac{4}{3} vs 4/3"),
    ("\\frac{4}{3}", "1.33", True, "numbers compare at 2 decimals"),
    ("\\frac{4}{3}", "1.3", False, "...not at 1"),
    ("2", "2.0", True, "2.0 is 2"),
    ("$2\\sqrt{3}$", "2\\sqrt{3}", True, "dollar signs dropped before parsing"),
    ("$2\\sqrt{3}$", "3.46", True, "symbolic vs numeric"),
    ("$4 \\pi$", "12.57", True, "pi"),
    ("$6+4\\sqrt{3}$", "4\\sqrt{3}+6", True, "term order"),
    ("1:2", "0.5", True, "a ratio is a division"),
    ("$\\frac{3^{1008}-1}{3^{1009}}$", "\\frac{1}{3}", True, "large exact powers"),
    ("(3,-4)", "(3, -4)", True, "tuples compare element-wise"),
    ("(3,-4)", "(-4,3)", False, "...in order"),
    ("[1,2]", "[1.0,2.0]", True, "decimals are read as rationals: 1.0 is 1"),
    ("5", "5cm", False, "a unit is a symbol, which has no value"),
    ("5", "5\\mathrm{cm}", False, "...\\mathrm too"),
    ("$120^{\\circ}$", "120", False, "the official parser cannot read ^{\\circ}"),
    ("$45 \\%$", "45%", False, "...nor a bare or spaced percent sign"),
    ("$\\boxed{\\frac{3}{4}}$", "\\frac{3}{4}", False, "...nor \\boxed in a gold answer"),
    ("e", "2.72", False, "e parses as E, which the official eval cannot name"),
    ("\\theta", "\\theta", True, "exact string before any parsing"),
    ("2\\theta", "2\\alpha", False, "Greek letters are symbols"),
    ("10^{10^{10}}", "1", False, "a value too large to compute is no value"),
    ("5", "", False, "empty answer"),
    ("", "5", False, "empty gold (a free-form question has no option text)"),
]


@pytest.mark.parametrize("gold,answer,expected,why", EQUALITY, ids=[c[3] for c in EQUALITY])
def test_official_equality(gold: str, answer: str, expected: bool, why: str):
    assert official_equal(gold, answer) is expected, why


# ---- the original parser's semantics (issue 12): (gold, options, response, answer, correct, why) -
# Each case is also run through the official scorer itself in the oracle tier
# (tests/test_oracle_mathvision.py), which must give the same answer and verdict.

QUARTERS = ["$\\frac{1}{2}$", "$\\frac{1}{4}$", "$\\frac{1}{3}$", "$\\frac{3}{4}$", "$1$"]
PERCENTS = ["$10\\%$", "$20\\%$", "$30\\%$", "$40\\%$", "$50\\%$"]
SIGNED = ["$-\\!2$", "$-1$", "$0$", "$1$", "$2$"]
ORIGINAL_PARSER_CASES = [
    ("B", QUARTERS, "The shaded part is \\boxed{\\frac{1}{4}} of the area of ABCD. The answer is: \\frac{1}{4}",
     "\\frac{1}{4}}oftheareaofabcd.theansweris:\\frac{1}{4", True, "the longest valid prefix: 1/4"),
    ("\\frac{3\\pi}{2}", [], "$\\boxed{\\frac{3\\pi}{2}}{cm}$", "\\frac{3\\pi}{2}}{cm", True, "prefix before }{cm"),
    ("$8+2\\sqrt{2}$", [], "\\boxed{8+2\\sqrt{2}}. The answer is: 8+2\\sqrt{2}",
     "8+2\\sqrt{2}}.theansweris:8+2\\sqrt{2", True, "prefix before }."),
    ("\\frac{4}{9}", [], "\\boxed{\\frac{4}{9}}.\\end{align*}", "\\frac{4}{9}}.\\end{align*", True,
     "prefix before \\end"),
    ("\\frac{\\sqrt{21}}{5}", [], "so \\boxed{\\frac{\\sqrt{21}}{5}} is the value of \\sin{t}",
     "\\frac{\\sqrt{21}}{5}}isthevalueof\\sin{t", True, "prefix before text"),
    ("5", [], "\\boxed{5. So, even without the figure}", "5.so,evenwithoutthefigure", True, "a number, then '.'"),
    ("60", [], "\\boxed{x = 60.0__}", "60.0__", True, "'_' ends the prefix too"),
    ("12", [], "\\boxed{{12}}}", "{12}}", True, "a braced group, then a stray brace"),
    ("12", [], "\\boxed{{12}#}", "{12}#", False, "but the token after the prefix is read: '#' is a lexer error"),
    ("12", [], "\\boxed{12cm}", "12cm", False, "a letter continues the product: 12*c*m has no value"),
    ("A", SIGNED, "\\boxed{-2}", "-2", False, "the option $-\\!2$ has no value there (\\! is a lexer error)"),
    ("A", SIGNED, "\\boxed{-\\!2}", "-2", False, "the answer's \\! is stripped, the option's is not"),
    ("E", SIGNED, "\\boxed{2}", "2", True, "a plain option"),
    ("C", PERCENTS, "\\boxed{0.3}", "0.3", True, "30\\% is 3/10 (fix 5)"),
    ("C", PERCENTS, "\\boxed{30\\%}", "30", False, "the answer's \\% is stripped: 30 is not 3/10"),
    ("C", PERCENTS, "\\boxed{30%}", "30%", False, "a bare % is a lexer error"),
    ("$2.5\\%$", [], "\\boxed{0.025}", "0.025", True, "2.5\\% is 1/40, rounded 0.03 both"),
    ("$45 \\%$", [], "\\boxed{0.45}", "0.45", False, "a space before \\% is a lexer error"),
    ("1000", [], "\\boxed{1\\,000}", "1000", True, "\\, dropped"),
    ("3", [], "\\boxed{\\(3\\)}", "\\(3\\)", False, "\\( is a lexer error"),
    ("2", [], "The answer is \\boxed{\\dfrac{4}{2}}", "\\frac{4}{2}", True, "\\dfrac"),
]


@pytest.mark.parametrize("gold,options,response,answer,correct,why", ORIGINAL_PARSER_CASES,
                         ids=[c[5] for c in ORIGINAL_PARSER_CASES])
def test_original_parser_semantics(gold: str, options: list[str], response: str, answer: str, correct: bool,
                                   why: str):
    choices = {chr(ord("A") + i): text for i, text in enumerate(options)} or None
    sample = Sample(id="1", messages=[], target=gold, choices=choices)
    scored = MathVision().score(sample, Response(key="1", text=response))
    assert (scored.extracted or "", scored.correct) == (answer, correct), why


QUICK_SHAPES = ["60", "070", "2.0", "1.25", "\\frac{4}{3}", "-\\frac{24}{25}", "2\\sqrt{3}", "\\sqrt{16}",
                "\\frac{3\\sqrt{6}}{2}", "6+4\\sqrt{3}", "4\\pi-2\\sqrt{3}", "45^2", "2^{-1}", "1:2",
                "2(\\sqrt{2}-1)", "3 \\cdot 4", "\\frac{7^3}{2^{12} 13^2}", "27000-4500\\pi",
                "\\sqrt{\\frac{4}{4}}", "\\sqrt{\\frac{9}{4}}"]


@pytest.mark.parametrize("shape", QUICK_SHAPES)
def test_fast_path_values_equal_the_parsed_values(shape: str):
    assert rounded(QuickValue(shape).value()) == parsed_value(shape)


# Types matter inside tuples, where str(value) is compared: "(2,3)" is not "(2.0,3)".
OFFICIAL_VALUES = [
    ("7", 7, "an integer stays an integer"),
    ("2.0", 2, "latex2sympy reads decimals as rationals, so 2.0 is the integer 2"),
    ("\\frac{4}{2}", 2.0, "an unevaluated 4/2, which eval divides into a float"),
    ("\\frac{1}{3}", 0.33, "rounded to 2 decimals"),
    ("45^2", 2025, "integer powers stay integers"),
    ("\\sqrt{16}", 4, "sympy folds perfect squares"),
    ("\\frac{1}{0}", None, "ZeroDivisionError: no value"),
    ("\\sqrt{-4}", None, "math.sqrt of a negative raises"),
    ("\\sqrt{\\frac{4}{4}}", 1.0, "the root of a float (4/4) is a float: 1.0, never the integer fallback"),
]


# The original parser's reading (latex2sympy2 1.9.1), as values: also run through the original
# itself (the official engine) in the oracle tier.
PREFIX_VALUES = [
    ("\\frac{1}{4}}oftheareaofabcd", 0.25, "the longest valid prefix"),
    ("5.so,evenwithout", 5, "'.' before a letter ends the prefix"),
    ("5 .5", 2.5, "'.' before a digit is a number: 5*(1/2)"),
    ("{12}}", 12, "a group, then a stray brace"),
    ("{12}#", None, "the token after the prefix is lexed: '#' is an error"),
    ("60.0__", 60, "'_' ends the prefix"),
    ("30\\%", 0.3, "a percent number is Rational(n, 100)"),
    ("100\\%", 1, "...an integer where it divides"),
    ("1,000\\%", 10, "thousands groups in a percent number"),
    ("30%", None, "a bare % is a lexer error"),
    ("45 \\%", None, "a space before \\% too"),
    ("\\frac{1}{2}\\%", None, "\\% only follows a number"),
    ("8,178", 8178, "a thousands group"),
    ("(8,178)", 8178, "...inside parentheses"),
    ("1,00", None, "not a thousands group: a list, which has no value"),
    ("{\\arccos\\frac{5}{6}}}", 0.59, "braces are a group, not a set"),
    ("-\\!2", None, "\\! is a lexer error"),
    ("\\(3\\)", None, "\\( too"),
    ("2~96[1]", 192, "two numbers apart are a product (math-verify's fork reads a mixed number, 98)"),
    ("-25[1]]", -25, "a ] that closes nothing ends the prefix"),
]


@pytest.mark.parametrize("text,value,why", PREFIX_VALUES, ids=[c[2] for c in PREFIX_VALUES])
def test_emulation_reads_as_the_original_parser(text: str, value: int | float | None, why: str):
    found = emulated_value(text)
    assert (found, type(found)) == (value, type(value)), why


@pytest.mark.parametrize("text,value,why", OFFICIAL_VALUES, ids=[c[2] for c in OFFICIAL_VALUES])
def test_values_have_the_official_eval_types(text: str, value: int | float | None, why: str):
    found = rounded_value(text)
    assert (found, type(found)) == (value, type(value)), why


# ---- fixtures in the official schema ---------------------------------------------------------

ROWS: list[dict[str, Any]] = [
    {"id": "1", "question": "Which number should be written in place of the question mark?\n<image1>",
     "options": [], "answer": "60", "solution": None, "level": 2, "subject": "arithmetic", "image": "images/1.jpg"},
    {"id": "2", "question": "Which bike is most expensive?\n<image1>", "options": ["A", "B", "C", "D", "E"],
     "answer": "A", "solution": None, "level": 2, "subject": "arithmetic", "image": "images/2.jpg"},
    {"id": "3", "question": "<image1>\nHow long is the side $x$?", "options": ["$9$", "$10$", "$\\sqrt{120}$", "$12$", "$14$"],
     "answer": "C", "solution": None, "level": 4, "subject": "metric geometry - length", "image": "images/3.jpg"},
]


def write_official_layout(root: Path, rows: list[dict[str, Any]] = ROWS, split: str = "test",
                          images: bool = True) -> Path:
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(exist_ok=True)
    path = root / "data" / f"{split}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    if images:
        for r in rows:
            PILImage.new("RGB", (4, 3), "white").save(root / r["image"])
    return path


def test_loads_offline_from_the_official_layout_file_or_folder(tmp_path: Path):
    jsonl = write_official_layout(tmp_path)
    by_file = MathVision().load(str(jsonl), None, None)
    by_folder = MathVision().load(str(tmp_path), None, None)
    assert [s.id for s in by_file] == ["1", "2", "3"] == [s.id for s in by_folder]
    image = by_folder[0].messages[0].images()[0]
    assert image.path == str(tmp_path / "images" / "1.jpg")
    assert image.read_bytes()[:2] == b"\xff\xd8"
    assert by_file[2].choices == {"A": "$9$", "B": "$10$", "C": "$\\sqrt{120}$", "D": "$12$", "E": "$14$"}
    assert by_file[2].metadata == {"subject": "metric geometry - length", "level": "4", "question_type": "multiple-choice"}


def test_loads_a_hub_snapshot_with_the_figure_in_decoded_image(tmp_path: Path):
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    PILImage.new("RGB", (4, 3), "white").save(buf, format="JPEG")
    figures = [buf.getvalue(), b"\xff\xd8\xff broken"]
    rows = [{**row, "decoded_image": {"bytes": figure, "path": f"{row['id']}.jpg"}}
            for row, figure in zip(ROWS[:2], figures)]
    (tmp_path / "data").mkdir()
    parquet = tmp_path / "data" / "test-00000-of-00001.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    good, broken = MathVision().load(str(tmp_path), None, None)
    assert good.messages[0].images()[0].read_bytes() == figures[0]
    assert good.choices is None and broken.choices == {c: c for c in "ABCDE"}
    with pytest.raises(UserError, match=f"^{parquet}:2: field 'image': inline image is not a readable image"):
        broken.messages[0].images()[0].read_bytes()


def test_default_split_is_test_and_testmini_is_selectable(tmp_path: Path):
    write_official_layout(tmp_path)
    write_official_layout(tmp_path, ROWS[:1], split="testmini")
    assert len(MathVision().load(str(tmp_path), None, None)) == 3
    assert len(MathVision().load(str(tmp_path), "testmini", None)) == 1
    with pytest.raises(UserError, match="split must be one of test, testmini"):
        MathVision().load(str(tmp_path), "validation", None)


def test_a_jsonl_beside_its_images_folder_resolves_there(tmp_path: Path):
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n")
    (tmp_path / "images").mkdir()
    (sample,) = MathVision().load(str(path), None, None)
    assert sample.messages[0].images()[0].path == str(tmp_path / "images" / "1.jpg")


def test_prompt_is_the_reports_template_with_the_figure_before_the_question(tmp_path: Path):
    assert INSTRUCTION == ('Please solve the problem and put your answer in one "\\boxed{}". If it is a multiple '
                           'choice question, only one letter is allowed in the "\\boxed{}". ')
    assert QUESTION_SLOT == " {question}"
    free, letters, mcq = MathVision().load(str(write_official_layout(tmp_path)), None, None)
    for sample in (free, letters, mcq):
        head, image, tail = sample.messages[0].content
        assert isinstance(image, Image) and head == Text(INSTRUCTION) and isinstance(tail, Text)
    # The <image1> tags stay: they name panels of the one merged figure, as in the official harness.
    assert free.messages[0].content[2].text == " Which number should be written in place of the question mark?\n<image1>"
    # Options that are just the letters drawn in the figure are not listed (as the official harness does).
    assert letters.messages[0].content[2].text == " Which bike is most expensive?\n<image1>"
    assert mcq.messages[0].content[2].text == (
        " <image1>\nHow long is the side $x$?\n(A) $9$\n(B) $10$\n(C) $\\sqrt{120}$\n(D) $12$\n(E) $14$")


def test_missing_images_do_not_matter_until_a_model_reads_them(tmp_path: Path):
    jsonl = write_official_layout(tmp_path, images=False)
    samples = MathVision().load(str(jsonl), None, None)  # no image is opened here
    with pytest.raises(UserError) as err:
        samples[1].messages[0].images()[0].read_bytes()
    assert f"{jsonl}:2: field 'image'" in str(err.value) and "2.jpg" in str(err.value)


def test_a_corrupt_image_names_the_file_row_and_field_when_read(tmp_path: Path):
    jsonl = write_official_layout(tmp_path)
    (tmp_path / "images" / "3.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    samples = MathVision().load(str(jsonl), None, None)
    with pytest.raises(UserError) as err:
        samples[2].messages[0].images()[0].read_bytes()
    message = str(err.value)
    assert message.startswith(f"{jsonl}:3: field 'image': ") and "not a readable image" in message
    assert "\n" not in message


BAD_ROWS = [
    ({"answer": None}, "missing field 'answer'"),
    ({"subject": None}, "missing field 'subject'"),
    ({"options": "A,B,C,D,E"}, "field 'options': expected a list"),
    ({"answer": "F"}, "field 'answer': 'F' is not one of the option letters ABCDE"),
    ({"image": None}, "missing field 'image'"),
]


@pytest.mark.parametrize("change,message", BAD_ROWS, ids=[m for _, m in BAD_ROWS])
def test_bad_rows_give_one_line_naming_file_row_and_field(tmp_path: Path, change: dict, message: str):
    rows = [ROWS[0], {**ROWS[1], **change}]
    jsonl = write_official_layout(tmp_path, rows, images=False)
    with pytest.raises(UserError) as err:
        MathVision().load(str(jsonl), None, None)
    assert str(err.value).startswith(f"{jsonl}:2: ") and message in str(err.value)
    assert "\n" not in str(err.value)


def test_a_folder_without_the_split_says_what_it_looked_for(tmp_path: Path):
    with pytest.raises(UserError, match="no test.jsonl or test-\\*.parquet"):
        MathVision().load(str(tmp_path), None, None)


# ---- scoring and aggregation -----------------------------------------------------------------

def test_scores_against_the_gold_letter_or_the_gold_option_text(tmp_path: Path):
    task = get_task("mathvision")
    free, letters, mcq = task.load(str(write_official_layout(tmp_path)), None, None)
    cases = [
        (free, "\\boxed{60}", True, "answer_format"),
        (free, "The answer is 61.", False, "official"),
        (letters, "(A)\nthe first bike", True, "official"),
        (mcq, "\\boxed{C}", True, "answer_format"),
        (mcq, "\\boxed{2\\sqrt{30}}", True, "answer_format"),  # the value of option C's text
        (mcq, "\\boxed{10}", False, "answer_format"),
        (mcq, "", False, "none"),
    ]
    for sample, text, correct, rule in cases:
        scored = task.score(sample, Response(key=f"{sample.id}#0", text=text, finish_reason="stop"))
        assert (scored.correct, scored.rule, scored.score) == (correct, rule, float(correct)), text


def test_aggregate_reports_accuracy_per_subject_and_per_level(tmp_path: Path):
    task = MathVision()
    samples = task.load(str(write_official_layout(tmp_path)), None, None)
    answers = {"1": "\\boxed{60}", "2": "\\boxed{B}", "3": "\\boxed{C}"}
    scored = [task.score(s, Response(key=f"{s.id}#0", text=answers[s.id])) for s in samples]
    for s in scored:
        s.sample_id = s.key.split("#")[0]
    out = task.aggregate({s.id: s for s in samples}, scored)
    assert out["metrics"]["accuracy"]["value"] == pytest.approx(2 / 3)
    assert {k: (v["value"], v["n"]) for k, v in out["breakdowns"]["subject"].items()} == {
        "arithmetic": (0.5, 2), "metric geometry - length": (1.0, 1)}
    assert {k: v["n"] for k, v in out["breakdowns"]["level"].items()} == {"2": 2, "4": 1}


# ---- through the CLI -------------------------------------------------------------------------

def test_cli_replay_scores_without_images_and_reports_subjects_and_levels(tmp_path: Path):
    data = write_official_layout(tmp_path / "mathvision", images=False)
    predictions = tmp_path / "preds.jsonl"
    answers = {"1": "\\boxed{60}", "2": "The answer is B.", "3": "so x = 2\\sqrt{30}"}
    predictions.write_text("".join(json.dumps({"id": i, "response": r}) + "\n" for i, r in answers.items()))
    proc = cli("run", "mathvision", "--model", f"replay:{predictions}", "--data", str(data),
               "--out", str(tmp_path / "runs"), "--quiet")
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = list((tmp_path / "runs").iterdir())
    result = json.loads((run_dir / "results.json").read_text())
    assert result["metrics"]["accuracy"]["value"] == pytest.approx(2 / 3)
    assert set(result["breakdowns"]) == {"subject", "level"}
    assert result["breakdowns"]["level"]["4"]["value"] == 1.0  # 2\sqrt{30} is option C's \sqrt{120}
    rules = {json.loads(line)["sample_id"]: json.loads(line)["scored"]["rule"]
             for line in (run_dir / "samples.jsonl").read_text().splitlines()}
    assert rules == {"1": "answer_format", "2": "official", "3": "fallback"}


def test_a_model_that_needs_a_missing_image_stops_with_one_line(tmp_path: Path):
    data = write_official_layout(tmp_path / "mathvision", images=False)
    with ChatServer() as server:
        proc = cli("run", "mathvision", "--model", "openai/test-model", "--base-url", server.url,
                   "--data", str(data), "--out", str(tmp_path / "runs"), "--quiet")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].endswith(f"{data}:1: field 'image': cannot read image "
                                                         f"{tmp_path / 'mathvision' / 'images' / '1.jpg'}: "
                                                         "No such file or directory")


def test_an_http_model_receives_the_figure_between_instruction_and_question(tmp_path: Path):
    data = write_official_layout(tmp_path / "mathvision")
    with ChatServer() as server:
        proc = cli("run", "mathvision", "--model", "openai/test-model", "--base-url", server.url,
                   "--data", str(data), "--out", str(tmp_path / "runs"), "--quiet")
        assert proc.returncode == 0, proc.stderr
    kinds = sorted([p["type"] for p in b["messages"][0]["content"]] for b in server.received)
    assert kinds == [["text", "image_url", "text"]] * 3
    first = next(b for b in server.received if "question mark" in b["messages"][0]["content"][2]["text"])
    assert first["messages"][0]["content"][1]["image_url"]["url"].startswith("data:image/jpeg;base64,/9j/")
    assert first["temperature"] == 1.0 and first["max_tokens"] == 65536
