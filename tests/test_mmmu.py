"""MMMU: loading the hub schema, prompts with interleaved images, both scoring protocols, bad data."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image as PILImage

from evals.types import Image, Response, Scored, Text, UserError
from tasks import mmmu_official as official
from tasks.mmmu import DISCIPLINES, MMMU, SUBJECTS


def png(color: str) -> bytes:
    buf = io.BytesIO()
    PILImage.new("RGB", (2, 2), color).save(buf, "PNG")
    return buf.getvalue()


def hub_row(id_: str, question: str, options: str, answer: str, qtype: str = "multiple-choice",
            images: dict[int, bytes] | None = None) -> dict:
    row = {"id": id_, "question": question, "options": options, "answer": answer, "question_type": qtype,
           "subfield": "sub", "topic_difficulty": "Easy", "explanation": "", "img_type": "['Photos']"}
    for k in range(1, 8):
        b = (images or {}).get(k)
        row[f"image_{k}"] = {"bytes": b, "path": f"img{k}.png"} if b else None
    return row


HUB_ROWS = [
    hub_row("validation_Art_1", "Which painting is <image 1>?", "['Mona Lisa', 'The Scream', 'Guernica']", "B",
            images={1: png("red")}),
    hub_row("validation_Math_2", "Compare <image 1> and <image 2>. What is x?", "[]", "3.5", "open",
            images={1: png("red"), 2: png("blue"), 3: png("green")}),
    hub_row("validation_Chemistry_3", "Name the compound.", "[]", "['$MgS$', 'MgS']", "open"),
    hub_row("validation_Psychology_4", "Which theory?",
            "['James-Lange Theory', 'Cannon-Bard Theory', 'Schachter-Singer Theory', 'Cranberry-Melon Theory']",
            "B"),
]


def write_parquet(path: Path, rows: list[dict]) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.fixture
def hub_file(tmp_path: Path) -> Path:
    return write_parquet(tmp_path / "validation-00000-of-00001.parquet", HUB_ROWS)


def answer(task: MMMU, sample, text: str, key: str | None = None, repeat: int = 0) -> Scored:
    scored = task.score(sample, Response(key=key or f"{sample.id}#{repeat}", text=text, finish_reason="stop"))
    scored.sample_id, scored.repeat = sample.id, repeat  # the runner sets these
    return scored


def test_subjects_and_disciplines_are_the_official_thirty_and_six():
    assert len(SUBJECTS) == 30 and len(DISCIPLINES) == 6
    assert SUBJECTS[:3] == ["Accounting", "Agriculture", "Architecture_and_Engineering"]


def test_hub_parquet_loads_with_images_at_their_placeholders(hub_file: Path):
    samples = {s.id: s for s in MMMU().load(str(hub_file), None, None)}
    art = samples["validation_Art_1"]
    parts = art.messages[0].content
    assert isinstance(parts[0], Text) and parts[0].text == "Question: Which painting is "
    assert isinstance(parts[1], Image) and parts[1].mime == "image/png"
    # App. C.1: `{question} Your response...`, joined by a space (DESIGN §7)
    assert parts[2].text.startswith("?\nOptions:\nA. Mona Lisa\nB. The Scream\nC. Guernica Your response")
    assert parts[2].text.endswith('"Final answer: [the correct option]" with the option letter only.')
    assert art.choices == {"A": "Mona Lisa", "B": "The Scream", "C": "Guernica"}
    assert art.metadata["discipline"] == "Art and Design" and art.metadata["question_type"] == "multiple-choice"

    math = samples["validation_Math_2"].messages[0].content
    kinds = [type(p).__name__ for p in math]
    # image_3 is named nowhere in the text: it goes first; 1 and 2 sit where the question names them
    assert kinds == ["Image", "Text", "Image", "Text", "Image", "Text"]
    assert math[1].text == "Question: Compare " and math[3].text == " and "
    assert samples["validation_Chemistry_3"].target == ["$MgS$", "MgS"]


def test_jsonl_with_image_paths_relative_to_the_file(tmp_path: Path):
    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / "a.png").write_bytes(png("red"))
    row = {**hub_row("dev_Art_1", "Look: <image 1>", "['x', 'y']", "A"), "image_1": "pics/a.png"}
    path = tmp_path / "mmmu.jsonl"
    path.write_text(json.dumps(row) + "\n")
    (sample,) = MMMU().load(str(path), "dev", None)
    img = sample.messages[0].content[1]
    assert isinstance(img, Image) and Path(img.path) == tmp_path / "pics" / "a.png"
    assert img.read_bytes() == png("red")


@pytest.mark.parametrize("change,field", [
    ({"options": "A or B"}, "field 'options'"),
    ({"options": "{'A': 1}"}, "field 'options'"),
    ({"answer": None}, "missing field 'answer'"),
    ({"id": "validation_Cooking_1"}, "field 'id'"),
])
def test_bad_rows_name_the_file_row_and_field(tmp_path: Path, change: dict, field: str):
    first = {k: v for k, v in HUB_ROWS[0].items() if not k.startswith("image_")}  # no image columns
    path = tmp_path / "mmmu.jsonl"
    path.write_text(json.dumps(first) + "\n" + json.dumps({**HUB_ROWS[3], **change}) + "\n")
    with pytest.raises(UserError) as err:
        MMMU().load(str(path), None, None)
    assert f"{path}:2" in str(err.value) and field in str(err.value)


def test_a_placeholder_without_its_image_stays_text_warns_once_and_is_counted(tmp_path: Path, capsys):
    # The 2023 release's validation_Math_7 names an image in an option that the row does not have.
    rows = [hub_row("validation_Math_7", "Which graph is <image 1>?", "['<image 2>', 'a line', '<image 9>']", "A",
                    images={1: png("red")}),
            hub_row("validation_Math_8", "And <image 3>?", "['x', 'y']", "B", images={1: png("blue")})]
    samples = MMMU().load(str(write_parquet(tmp_path / "validation.parquet", rows)), None, None)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "2 row(s)" in err and "validation_Math_7, <image 2>" in err
    parts = samples[0].messages[0].content
    assert [type(p).__name__ for p in parts] == ["Text", "Image", "Text"]
    assert parts[2].text.startswith("?\nOptions:\nA. <image 2>\nB. a line\nC. <image 9> Your response")
    assert samples[0].metadata["missing_images"] == [2, 9] and samples[1].metadata["missing_images"] == [3]
    task = MMMU()
    scored = [answer(task, s, "Final answer: A") for s in samples]
    metrics = task.aggregate({s.id: s for s in samples}, scored)["metrics"]
    expected = {"rows": 2, "ids": ["validation_Math_7", "validation_Math_8"]}
    assert metrics["accuracy"]["missing_images"] == metrics["accuracy_official"]["missing_images"] == expected


def test_test_split_is_refused_and_bad_options_are_user_errors():
    with pytest.raises(UserError, match="test has no answers"):
        MMMU().load("unused", "test", None)
    with pytest.raises(UserError, match="official_fallback"):
        MMMU(official_fallback="maybe")
    with pytest.raises(UserError, match="unknown task option"):
        MMMU(fallback="random")


# (response, report letter, report rule, official pred, official rule, why) for validation_Psychology_4 (gold B)
PROTOCOL_CASES = [
    ("Final answer: B", "B", "answer_format", "B", "official", "the report's format; ' B ' for the official"),
    ("C) Schachter-Singer Theory", "C", "official", None, "fallback",
     "VLMEvalKit takes the token C; the official finds no '(C)', no ' C ', and only 3 words"),
    ("(A) James-Lange Theory, but maybe (B)", "A", "official", "B", "official",
     "VLMEvalKit: two letters, so the text rule finds A's text; official: the last '(X)'"),
    ("After weighing every argument in the passage, and after comparing how each of the four classic "
     "accounts explains the bodily reaction described there, I am quite sure it is the Cannon-Bard Theory",
     None, "none", "B", "official",
     "official option-text rule (more than 5 words); over twice the option texts for VLMEvalKit"),
]


@pytest.mark.parametrize("text,letter,rule,pred,orule,why", PROTOCOL_CASES, ids=[c[5] for c in PROTOCOL_CASES])
def test_report_and_official_protocols_score_the_same_response(hub_file, text, letter, rule, pred, orule, why):
    sample = {s.id: s for s in MMMU().load(str(hub_file), None, None)}["validation_Psychology_4"]
    scored = answer(MMMU(), sample, text)
    assert (scored.extracted, scored.rule) == (letter, rule), why
    assert (scored.extra["official"]["pred"], scored.extra["official"]["rule"]) == (pred, orule), why


def test_open_question_is_a_two_option_question_in_the_report_protocol(hub_file: Path):
    task = MMMU()
    sample = {s.id: s for s in task.load(str(hub_file), None, None)}["validation_Math_2"]
    right = answer(task, sample, "x = 3.5")
    assert right.correct and right.extracted == "A" and right.rule == "official"  # gold text inside
    assert right.extra["official"]["correct"]  # official: 3.5 after '='
    wrong = answer(task, sample, "x = 4")
    assert not wrong.correct and not wrong.extra["official"]["correct"]


def test_aggregate_reports_both_protocols_with_breakdowns_and_fallbacks(hub_file: Path):
    samples = {s.id: s for s in MMMU().load(str(hub_file), None, None)}
    texts = {"validation_Art_1": "Final answer: B", "validation_Math_2": "so x = 3.50",
             "validation_Chemistry_3": "It is MgS", "validation_Psychology_4": "C) Schachter-Singer Theory"}
    for policy, official_right in (("wrong", 3), ("random", 3)):
        task = MMMU(official_fallback=policy)
        scored = [answer(task, samples[i], t) for i, t in texts.items()]
        result = task.aggregate(samples, scored)
        m = result["metrics"]
        assert m["accuracy"]["value"] == pytest.approx(2 / 4)  # Psychology C wrong; MgS not A/B-resolved
        assert m["accuracy_official"]["value"] * 4 == official_right
        assert m["accuracy_official"]["fallback"]["keys"] == ["validation_Psychology_4#0"]
        # seed 42, first draw over A-D is 'A' (wrong here): the random policy changes nothing
        assert m["accuracy_official"]["fallback"]["picks"] == ({"validation_Psychology_4#0": "A"} if policy == "random" else {})
        assert set(result["breakdowns"]) == {"discipline", "subject", "question_type", "discipline_official",
                                             "subject_official", "question_type_official"}
        assert result["breakdowns"]["question_type"]["open"]["n"] == 2


def test_random_fallback_restarts_the_seed_for_each_repeat(hub_file: Path):
    samples = {s.id: s for s in MMMU().load(str(hub_file), None, None)}
    task = MMMU(official_fallback="random")
    scored = [answer(task, samples[i], "no idea", repeat=r)
              for r in range(2) for i in ("validation_Art_1", "validation_Psychology_4")]
    picks = task.aggregate(samples, scored)["metrics"]["accuracy_official"]["fallback"]["picks"]
    # official order: Art before Psychology; each repeat replays seed 42 from its first draw
    expected = official.official_random_picks([("art", ["A", "B", "C"]), ("psy", ["A", "B", "C", "D"])])
    assert picks == {"validation_Art_1#0": expected["art"], "validation_Psychology_4#0": expected["psy"],
                     "validation_Art_1#1": expected["art"], "validation_Psychology_4#1": expected["psy"]}


CHOICES = {"A": "James-Lange Theory", "B": "Cannon-Bard Theory", "C": "cat", "D": "dog"}
# (response, expected official letter or None for the random fallback, why)
OFFICIAL_MC_CASES = [
    ("B.", "B", "trailing period stripped, then ' B '"),
    ("B.'", None, "strip order: the quote goes last, so the period before it stays: 'B.' is no ' B '"),
    ("'B.'", None, "same: ',' '.' ... then \"'\" — 'B.' remains"),
    ("(A) or (B)", "B", "brackets: the last '(X)' wins"),
    ("(A) then B", "A", "a bracketed letter beats a spaced one"),
    ("A or B", "B", "spaced letters: the last ' X ' wins"),
    ("A)", None, "'A)' is neither '(A)' nor ' A '"),
    ("It must be the Cannon-Bard Theory", "B", "option text in a response of more than 5 words"),
    ("Cannon-Bard Theory", None, "option text needs more than 5 words"),
    ("I choose the cat, not the dog at all", "D", "several option texts: the one found last"),
    ("I'd say the answer is E here", None, "E is not an option"),
]


@pytest.mark.parametrize("text,expected,why", OFFICIAL_MC_CASES, ids=[c[2] for c in OFFICIAL_MC_CASES])
def test_official_multiple_choice_parse(text, expected, why):
    assert official.parse_multiple_choice(text, list(CHOICES), CHOICES) == expected, why


# (response, gold, correct?, why)
OFFICIAL_OPEN_CASES = [
    ("The answer is 3.50.", "3.5", True, "numbers compare after rounding to 2 decimals"),
    ("so it is 1,000 units", "1000", True, "commas in numbers"),
    ("x = 3.14159", "3.14", True, "both sides rounded to 2 decimals"),
    ("Therefore the result is trans-1-chloro-4-methylcyclohexane", "trans-1-Chloro-4-methylcyclohexane", True,
     "text: lower-cased gold contained in the tail"),
    ("It is MgS", ["$MgS$", "MgS"], True, "a list of acceptable answers"),
    ("The answer is alpha", "a", False, "a one-letter gold is padded (' a', 'a '): no match inside a word"),
    ("The answer is a", "A", True, "a one-letter prediction is padded the same way"),
    ("The answer is option a here", "A", True, "padded one-letter gold inside a longer tail"),
    ("first line is 5\nso the final value is 7", "5", True, "every line contributes its tail"),
    ("5 = 2 + 3", "5", False, "'=' only in the last line, and its tail is '2 + 3'"),
]


@pytest.mark.parametrize("text,gold,correct,why", OFFICIAL_OPEN_CASES, ids=[c[3] for c in OFFICIAL_OPEN_CASES])
def test_official_open_parse_and_eval(text, gold, correct, why):
    assert official.eval_open(gold, official.parse_open(text)) is correct, why


def test_a_truncated_response_counts_wrong_in_both_protocols(hub_file: Path):
    samples = {s.id: s for s in MMMU().load(str(hub_file), None, None)}
    task = MMMU()
    scored = [answer(task, samples["validation_Art_1"], "Final answer: B"),
              Scored("validation_Psychology_4#0", "validation_Psychology_4", 0, None, "truncated", False,
                     truncated=True)]  # as the runner records a cut-off response
    m = task.aggregate(samples, scored)["metrics"]
    assert m["accuracy"]["value"] == 0.5 and m["accuracy_official"]["value"] == 0.5
    assert m["accuracy_official"]["rules"] == {"official": 1, "truncated": 1}


# (repeat-0 answers in official order: Art_1 [A-C], Psychology_4 [A-D]; which take a draw; why)
RANDOM_SEQUENCE_CASES = [
    (["no idea", "no idea"], ["validation_Art_1#0", "validation_Psychology_4#0"], "both unparsed: draws 1, 2"),
    ([None, "no idea"], ["validation_Art_1#0", "validation_Psychology_4#0"],
     "truncated Art_1 draws first (the official parses it as ''), so Psychology_4 gets draw 2"),
    (["Final answer: B", None], ["validation_Psychology_4#0"], "a parsed answer takes no draw"),
]


@pytest.mark.parametrize("texts,drawn,why", RANDOM_SEQUENCE_CASES, ids=[c[2] for c in RANDOM_SEQUENCE_CASES])
def test_truncated_answers_take_their_official_random_draw(hub_file: Path, texts, drawn, why):
    from evals.scoring import score_response

    samples = {s.id: s for s in MMMU().load(str(hub_file), None, None)}
    task = MMMU(official_fallback="random")
    scored = []
    for sample_id, text in zip(("validation_Art_1", "validation_Psychology_4"), texts):
        response = (Response(f"{sample_id}#0", "", finish_reason="length") if text is None
                    else Response(f"{sample_id}#0", text, finish_reason="stop"))
        scored.append(score_response(task, samples[sample_id], response, 0))
    picks = task.aggregate(samples, scored)["metrics"]["accuracy_official"]["fallback"]["picks"]
    expected = official.official_random_picks((key, list(samples[key.split("#")[0]].choices)) for key in drawn)
    assert picks == expected, why
    verdicts = task.official_verdicts(samples, scored)
    for s in scored:
        if s.key in picks:
            assert verdicts[s.key] == (picks[s.key] == samples[s.sample_id].target), why


def design_template() -> str:
    """The report's MMMU/MMBench template as DESIGN §7 quotes App. C.1 (skipped when absent)."""
    design = Path(__file__).resolve().parents[2] / "shared" / "DESIGN.md"
    if not design.exists():
        pytest.skip(f"{design} is absent (../shared ships only with the project)")
    text = " ".join(design.read_text().split())
    start = text.index("- MMMU and MMBench: `") + len("- MMMU and MMBench: `")
    return text[start:text.index("`", start)]


@pytest.mark.parametrize("template", ["mmmu", "mmbench_en"])
def test_prompt_template_is_the_reports_verbatim(template: str):
    from tasks.mmbench import PROMPT_TEMPLATES
    from tasks.mmmu import PROMPT_TEMPLATE

    ours = PROMPT_TEMPLATE if template == "mmmu" else PROMPT_TEMPLATES["en"]
    assert "<image> " + ours == design_template()  # `{question}` and the instruction: one space
