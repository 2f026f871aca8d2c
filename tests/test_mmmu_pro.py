"""MMMU-Pro: the hub's two configs, the official prompts with interleaved images, the official parse
rule by rule, the seeded fallback and its count, bad data."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures_table3 import PRO_ROWS, STANDARD_DIR, VISION_DIR, fixture_rows, png, write_mmmu_pro

from evals.types import Image, Response, Scored, Text, UserError
from tasks.mmmu_pro import INSTRUCTIONS, MMMUPro, fallback_letter, parse_answer_letter


@pytest.fixture
def pro_dir(tmp_path: Path) -> Path:
    return write_mmmu_pro(tmp_path / "MMMU_Pro")


def answer(task: MMMUPro, sample, text: str, repeat: int = 0) -> Scored:
    scored = task.score(sample, Response(key=f"{sample.id}#{repeat}", text=text, finish_reason="stop"))
    scored.sample_id, scored.repeat = sample.id, repeat  # the runner sets these
    return scored


def test_standard_prompt_is_question_options_and_cot_instruction_with_images_at_their_placeholders(pro_dir):
    samples = MMMUPro("standard").load(str(pro_dir), None, None)
    assert [s.id for s in samples] == [r[0] for r in PRO_ROWS]
    first = samples[0].messages[0].content
    assert isinstance(first[1], Image)
    assert first[0].text == "Which best explains the trend shown in the "
    assert first[2].text.startswith("?\nA. Population decline\nB. Pathogens on the Silk Road\n")
    assert first[2].text.endswith("J. Religious conflict\n" + INSTRUCTIONS["cot"]["standard"])
    assert samples[0].choices and len(samples[0].choices) == 10 and samples[0].target == "B"
    assert samples[0].metadata["discipline"] == "Humanities and Social Science"


def test_shuffled_option_images_each_take_their_own_image(pro_dir):
    """Option A names <image 3>, C names <image 1>: each placeholder gets image k, not the k-th image."""
    sample = MMMUPro("standard").load(str(pro_dir), None, None)[1]
    parts = sample.messages[0].content
    images = [p for p in parts if isinstance(p, Image)]
    texts = "".join(p.text for p in parts if isinstance(p, Text))
    assert "<image" not in texts and "\nA. " in texts and "\nD. None of these\n" in texts
    standard, _ = fixture_rows()
    by_k = {k: standard[1][f"image_{k}"]["bytes"] for k in (1, 2, 3, 4)}
    assert [img.read_bytes() for img in images] == [by_k[4], by_k[3], by_k[2], by_k[1]]  # question, then A, B, C


def test_vision_is_the_screenshot_then_the_instruction_and_direct_prompts_are_official(pro_dir):
    sample = MMMUPro("vision").load(str(pro_dir), None, None)[0]
    image, text = sample.messages[0].content
    assert isinstance(image, Image) and text.text == INSTRUCTIONS["cot"]["vision"]
    assert sample.choices and sample.choices["B"] == "Pathogens on the Silk Road"
    direct = MMMUPro("standard", prompt="direct").load(str(pro_dir), None, 1)[0]
    assert direct.messages[0].content[-1].text.endswith("\nAnswer with the option letter from the given choices directly.")
    assert MMMUPro("vision").name == "mmmu_pro_vision" and MMMUPro("standard").name == "mmmu_pro"


PARSE_CASES = [  # (response, expected letter or None = the official random draw, why)
    ("Answer: B", "B", "the answer line"),
    ("Reasoning about A and C.\nAnswer: C", "C", "the last Answer: wins over letters before it"),
    ("Answer: B\nActually, Answer: (D)", "D", "only the text after the last Answer: is read"),
    ("Answer: A or B", "B", "two letters after Answer: read on: ' B ' occurs after ' A '"),
    ("Answer: Both B and C", "C", "B and C after Answer:, then letters by last ` X `"),
    ("Answer: b", None, "lower case is no letter; a short reply has no text match"),
    ("The DNA molecule", "A", "`A ` matches inside a word (DNA ) and rfind(' A ') = -1 keeps the first"),
    ("I pick (C) not (A)", "A", "bracketed letters: the one bracketed last"),
    ("It is C.", "C", "stripped of the final dot, then `C ` with the padding"),
    ("C.x", "C", "`C.` found, no `X ` candidate"),
    ("C.D", "D", "`D ` (with the padding) comes before the `X.` rule"),
    ("the answer is pathogens on the silk road here", "B", "more than five words: option text"),
    ("silk road pathogens", None, "five words or fewer: no text match"),
    ("", None, "empty: the official draw"),
    ("Answer:", None, "nothing after Answer:"),
    ("Answer: J", "J", "the tenth option"),
    ("I cannot tell.", "I", "the pronoun `I ` is the ninth option's letter"),
    ("Answer: K", None, "K is not among ten options; ' K ' is no option either"),
]
TEXTS = dict(zip("ABCDEFGHIJ", PRO_ROWS[0][2]))


@pytest.mark.parametrize("text,expected,why", PARSE_CASES)
def test_official_parse(text, expected, why):
    assert parse_answer_letter(text, list(TEXTS), TEXTS) == expected, why


def test_fallback_is_a_seeded_draw_per_response_counted_in_results(pro_dir):
    task = MMMUPro("standard")
    samples = task.load(str(pro_dir), None, None)
    scored = [answer(task, samples[0], "unclear, sorry"), answer(task, samples[1], "Answer: C"),
              answer(task, samples[2], "no idea", repeat=1)]
    assert scored[0].rule == "fallback" and scored[0].extracted == fallback_letter("test_History_1#0", list(TEXTS))
    assert answer(task, samples[0], "unclear, sorry").extracted == scored[0].extracted  # same key, same letter
    result = task.aggregate({s.id: s for s in samples}, scored)
    fallback = result["metrics"]["accuracy"]["fallback"]
    assert fallback["policy"] == "random" and fallback["seed"] == 42 and fallback["count"] == 2
    assert fallback["keys"] == ["test_History_1#0", "test_Accounting_12#1"]
    assert set(result["breakdowns"]) == {"discipline", "subject", "topic_difficulty"}
    assert result["breakdowns"]["subject"]["Chemistry"]["value"] == 1.0
    wrong = MMMUPro("standard", fallback="wrong")
    assert answer(wrong, samples[0], "unclear, sorry").extracted is None
    assert wrong.aggregate({s.id: s for s in samples}, scored)["metrics"]["accuracy"]["fallback"]["seed"] is None


def test_the_fallback_draw_spreads_over_the_letters():
    drawn = {fallback_letter(f"q{i}#0", list("ABCDEFGHIJ")) for i in range(200)}
    assert drawn == set("ABCDEFGHIJ")


@pytest.mark.parametrize("setting,column", [("standard", "question"), ("standard", "options"),
                                            ("standard", "answer"), ("vision", "image"), ("vision", "id")])
def test_a_parquet_missing_a_column_names_file_row_and_column(tmp_path, setting, column):
    standard, vision = fixture_rows()
    rows = standard if setting == "standard" else vision
    for row in rows:
        del row[column]
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / (STANDARD_DIR if setting == "standard" else VISION_DIR)
    folder.mkdir()
    pq.write_table(pa.Table.from_pylist(rows), folder / "test.parquet")
    with pytest.raises(UserError, match=rf"test.parquet:1: missing field '{column}'"):
        MMMUPro(setting).load(str(tmp_path), None, None)


def test_wrong_split_option_and_missing_config_folder_are_user_errors(tmp_path, pro_dir):
    with pytest.raises(UserError, match="one split, 'test'"):
        MMMUPro("standard").load(str(pro_dir), "validation", None)
    with pytest.raises(UserError, match="prompt must be"):
        MMMUPro("standard", prompt="cot2")
    only_vision = write_mmmu_pro(tmp_path / "v")
    import shutil

    shutil.rmtree(only_vision / STANDARD_DIR)
    with pytest.raises(UserError, match="no 'standard \\(10 options\\)' folder"):
        MMMUPro("standard").load(str(only_vision), None, None)
    assert png()  # the fixture's images are real PNGs


def test_vision_options_may_be_a_list_column(tmp_path):
    """The hub's vision card types `options` as a sequence of strings in some snapshots: both load."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    _, vision = fixture_rows()
    rows = [{**r, "options": list(opts)} for r, (_, _, opts, _, _) in zip(vision, PRO_ROWS)]
    (tmp_path / VISION_DIR).mkdir()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / VISION_DIR / "test-00000-of-00001.parquet")
    samples = MMMUPro("vision").load(str(tmp_path), None, None)
    assert samples[1].choices == {"A": "<image 3>", "B": "<image 2>", "C": "<image 1>", "D": "None of these"}
