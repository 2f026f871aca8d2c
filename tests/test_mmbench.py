"""MMBench: the official TSV format, CircularEval and vanilla scores by hand, bad data, the judge."""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from chat_server import Reply
from conftest import cli
from PIL import Image as PILImage

from model_adapters.judge import make_judge
from evals.types import Image, Response, RunSpec, Scored, Text, UserError
from tasks.mmbench import MMBench


def png_b64(color: str) -> str:
    buf = io.BytesIO()
    PILImage.new("RGB", (2, 2), color).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


HEADER = ["index", "question", "hint", "A", "B", "C", "D", "E", "answer", "category", "image", "source",
          "l2-category", "comment", "split"]
CP, FP, LR = "coarse_perception", "finegrained_perception (instance-level)", "logic_reasoning"


def rotations(group: int, options: list[str], gold: int) -> list[tuple[int, list[str], str]]:
    """The circular passes as the official TSV holds them: options rotated left, one pass each."""
    n = len(options)
    return [(group + k * 1_000_000, options[k:] + options[:k], "ABCDE"[(gold - k) % n]) for k in range(n)]


def build_rows() -> list[dict[str, str]]:
    """Five questions: 4, 2 (Chinese), 3, 5 and 1 pass(es); images reused across rows by index."""
    questions = [  # (group, question, hint, options, gold position, L2, L3, own image or reused index)
        (1, "What animal is shown?", "A photo of a pet.", ["cat", "dog", "bird", "fish"], 0, CP, "image_topic", "red"),
        (2, "图中是什么动物？", "", ["猫", "狗"], 0, FP, "object_localization", "blue"),
        (3, "Which colour dominates?", "", ["red", "green", "blue"], 2, CP, "image_style", "1"),
        (4, "Which number comes next: 0, 1?", "", ["1", "2", "3", "4", "5"], 1, LR, "future_prediction", "1"),
        (5, "How many legs has a spider?", "", ["2", "4", "6", "8"], 3, LR, "physical_property_reasoning", "2"),
    ]
    rows = []
    for group, question, hint, options, gold, l2, l3, image in questions:
        passes = rotations(group, options, gold) if group != 5 else [(5, options, "D")]
        reused = image in ("1", "2")  # the index of another question's row
        for index, opts, answer in passes:
            cell = png_b64(image) if index == group and not reused else (image if reused else str(group))
            rows.append({"index": str(index), "question": question, "hint": hint,
                         **{L: (opts[i] if i < len(opts) else "") for i, L in enumerate("ABCDE")},
                         "answer": answer, "category": l3, "l2-category": l2, "source": "fixture",
                         "comment": "", "split": "dev",
                         "image": cell})
    return rows


def write_tsv(path: Path, rows: list[dict[str, str]], header: list[str] = HEADER) -> Path:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=header, delimiter="\t", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def tsv(tmp_path: Path) -> Path:
    return write_tsv(tmp_path / "MMBench_DEV_EN_V11.tsv", build_rows())


# One scripted answer per row, and what it means (gold in brackets).
ANSWERS = {
    "1": "Final answer: A",                 # [A] right (answer format)
    "1000001": "The answer is D.",          # [D] right (VLMEvalKit letter rule)
    "2000001": "It is a cat",               # [C] right (VLMEvalKit text rule: 'cat' is C here)
    "3000001": "**Final Answer**: (B)",     # [B] right
    "2": "最终答案：A",                      # [A] right (the CN format)
    "1000002": "Final answer: A",           # [B] wrong -> question 2 fails
    "3": "Final answer: C",                 # [C] right
    "1000003": "I am not sure.",            # [B] unresolved -> wrong unless a judge says B
    "2000003": "Final answer: A",           # [A] right
    "4": "B",                               # [B] right
    "1000004": "Final answer: A",           # [A] right
    "2000004": "Final answer: E",           # [E] right
    "3000004": "(D)",                       # [D] right
    "4000004": "Final answer: C",           # [C] right
    "5": "Final answer: A",                 # [D] wrong
}
# Hand-computed. CircularEval: Q1 and Q4 hold in every pass -> 2/5; with a judge answering B, Q3 too -> 3/5.
# Vanilla (first passes 1-5): right, right, right, right, wrong -> 4/5.
# Per L2 (circular): coarse perception Q1 yes, Q3 no -> 1/2; fine-grained Q2 no -> 0; logic Q4 yes, Q5 no -> 1/2.
EXPECTED_CIRCULAR, EXPECTED_CIRCULAR_JUDGED, EXPECTED_VANILLA = 0.4, 0.6, 0.8
EXPECTED_L2 = {CP: 0.5, FP: 0.0, LR: 0.5}


def score_all(task: MMBench, samples, answers: dict[str, str]) -> list[Scored]:
    out = []
    for s in samples:
        scored = task.score(s, Response(key=f"{s.id}#0", text=answers[s.id], finish_reason="stop"))
        scored.sample_id, scored.repeat = s.id, 0
        out.append(scored)
    return out


def test_tsv_rows_become_prompts_with_hint_options_and_reused_images(tsv: Path):
    samples = {s.id: s for s in MMBench().load(str(tsv), None, None)}
    assert len(samples) == 15
    first, rotated = samples["1"].messages[0].content, samples["3000001"].messages[0].content
    assert isinstance(first[0], Image) and first[0].mime == "image/png"
    assert rotated[0] is first[0]  # image "1" reused, held once
    assert samples["4"].messages[0].content[0] is first[0]  # reused across questions too
    assert first[1].text.startswith("Hint: A photo of a pet.\nQuestion: What animal is shown?\n"
                                    "Options:\nA. cat\nB. dog\nC. bird\nD. fish Your response")
    assert samples["2"].choices == {"A": "猫", "B": "狗"}  # empty C-E cells are no options
    assert len(samples["4"].choices or {}) == 5
    assert samples["3000001"].metadata == {**samples["3000001"].metadata, "group": "1", "circular_pass": 3}
    assert "Hint" not in samples["3"].messages[0].content[1].text


def test_cn_task_uses_the_fixed_chinese_instruction(tmp_path: Path):
    path = write_tsv(tmp_path / "MMBench_DEV_CN_V11.tsv", build_rows())
    sample = MMBench(lang="cn").load(str(tmp_path), None, None)[0]  # a folder: the official file name
    text = sample.messages[0].content[1]
    assert isinstance(text, Text) and text.text.endswith("“最终答案：[正确选项]”，只写选项字母。")
    assert "D. fish 你的回答" in text.text  # joined with a space, as App. C.1 joins the English one (fix 9)
    assert path.exists()


def test_circular_and_vanilla_accuracy_match_hand_computed_values(tsv: Path):
    task = MMBench()
    samples = task.load(str(tsv), None, None)
    result = task.aggregate({s.id: s for s in samples}, score_all(task, samples, ANSWERS))
    m = result["metrics"]
    assert m["accuracy"]["value"] == pytest.approx(EXPECTED_CIRCULAR) and m["accuracy"]["questions"] == 5
    assert m["vanilla_accuracy"]["value"] == pytest.approx(EXPECTED_VANILLA) and m["vanilla_accuracy"]["n"] == 5
    assert {k: v["value"] for k, v in result["breakdowns"]["l2"].items()} == pytest.approx(EXPECTED_L2)
    assert result["breakdowns"]["l3"]["image_topic"]["value"] == 1.0
    assert m["accuracy"]["rules"] == {"answer_format": 10, "official": 4, "none": 1}


def test_a_group_with_a_failed_request_is_left_out_and_counted(tsv: Path):
    task = MMBench()
    samples = task.load(str(tsv), None, None)
    scored = [s for s in score_all(task, samples, ANSWERS) if s.sample_id != "1000004"]
    m = task.aggregate({s.id: s for s in samples}, scored)["metrics"]["accuracy"]
    assert m["incomplete_groups"] == 1 and m["value"] == pytest.approx(1 / 4)


def test_limit_keeps_whole_questions(tsv: Path):
    samples = MMBench().load(str(tsv), None, 2)
    assert sorted(s.id for s in samples) == ["1", "1000001", "1000002", "2", "2000001", "3000001"]


def test_judge_resolves_unresolved_passes_and_caches_its_calls(tsv: Path, tmp_path: Path):
    task = MMBench()
    samples = task.load(str(tsv), None, None)
    spec = RunSpec(task="mmbench_en", model="mock", task_options={"judge": "mock", "judge_mock_text": "B"})
    task.judge = make_judge(spec, tmp_path / "run")
    result = task.aggregate({s.id: s for s in samples}, score_all(task, samples, ANSWERS))
    assert result["metrics"]["accuracy"]["value"] == pytest.approx(EXPECTED_CIRCULAR_JUDGED)
    assert result["metrics"]["accuracy"]["rules"]["judge"] == 1
    assert result["metrics"]["accuracy"]["judge"]["calls"] == 1
    cached = [json.loads(line) for line in (tmp_path / "run" / "judge.jsonl").read_text().splitlines()]
    assert len(cached) == 1 and "Which colour dominates?" in cached[0]["prompt"]

    again = MMBench()  # a re-score: the cache answers, nothing is sent
    again.judge = make_judge(spec, tmp_path / "run")
    score_all(again, samples, ANSWERS)
    assert again.judge.counts()["calls"] == 0 and again.judge.counts()["cached"] == 1


def test_a_judge_that_names_nothing_leaves_the_pass_unresolved(tsv: Path, tmp_path: Path):
    task = MMBench()
    sample = {s.id: s for s in task.load(str(tsv), None, None)}["1000003"]
    spec = RunSpec(task="mmbench_en", model="mock", task_options={"judge": "mock", "judge_mock_text": "no idea"})
    task.judge = make_judge(spec, tmp_path)
    scored = task.score(sample, Response(key="1000003#0", text="I am not sure."))
    assert (scored.extracted, scored.rule, scored.correct) == (None, "none", False)
    assert task.judge.counts()["undecided"] == 1


def test_hub_rows_with_l2_spelled_differently_and_image_bytes(tmp_path: Path):
    rows = [{**r, "L2-category": r.pop("l2-category"), "index": int(r["index"]),
             "image": {"bytes": base64.b64decode(png_b64("red")), "path": None}}
            for r in build_rows() if int(r["index"]) < 1_000_000]
    rows[1].update(hint="nan", C="nan", D="nan", E="nan")  # the hub copy writes empty cells as 'nan'
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "dev.parquet")
    samples = MMBench(version="v1.0").load(str(tmp_path / "dev.parquet"), None, None)
    assert [s.metadata["l2"] for s in samples][:2] == [CP, FP]
    assert samples[1].choices == {"A": "猫", "B": "狗"} and "Hint" not in samples[1].messages[0].text()


def test_hub_v11_is_refused_with_the_way_out():
    with pytest.raises(UserError, match="version=v1.0"):
        MMBench().load(None, None, None)


@pytest.mark.parametrize("edit,message", [
    (lambda rows, header: (rows, [h for h in header if h != "answer"]), "missing field 'answer'"),
    (lambda rows, header: (rows[:1] + [{**rows[1], "image": "%%%" * 30}] + rows[2:], header),
     "field 'image': image is not valid base64"),
    (lambda rows, header: (rows[:1] + [{**rows[1], "image": "999"}] + rows[2:], header),
     "field 'image': '999' names no row with an image"),
    (lambda rows, header: (rows[:1] + [{**rows[1], "answer": "E"}] + rows[2:], header), "field 'answer'"),
    (lambda rows, header: (rows[:1] + [{**rows[1], "index": "x1"}] + rows[2:], header), "field 'index'"),
])
def test_bad_data_is_one_line_naming_file_row_and_field(tmp_path: Path, edit, message):
    rows, header = edit(build_rows(), list(HEADER))
    path = write_tsv(tmp_path / "bad.tsv", rows, header)
    with pytest.raises(UserError) as err:
        MMBench().load(str(path), None, None)
    text = str(err.value)
    assert message in text and f"{path}:" in text and "\n" not in text
    if "answer" not in message or "missing" not in message:
        assert f"{path}:3" in text  # the second data row is line 3 of the file


def test_cli_run_with_replayed_answers_writes_circular_results(tsv: Path, tmp_path: Path):
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps({"id": k, "response": v}, ensure_ascii=False) + "\n" for k, v in ANSWERS.items()))
    proc = cli("run", "mmbench_en", "--model", f"replay:{preds}", "--data", str(tsv), "--out", str(tmp_path / "runs"),
               "--quiet")
    assert proc.returncode == 0, proc.stderr
    (results,) = (tmp_path / "runs").glob("*/results.json")
    metrics = json.loads(results.read_text())["metrics"]
    assert metrics["accuracy"]["value"] == pytest.approx(EXPECTED_CIRCULAR)
    assert metrics["vanilla_accuracy"]["value"] == pytest.approx(EXPECTED_VANILLA)


def test_cli_bad_tsv_exits_2_with_one_line(tmp_path: Path):
    rows = build_rows()
    path = write_tsv(tmp_path / "bad.tsv", rows[:1] + [{**rows[1], "image": "999"}] + rows[2:])
    proc = cli("run", "mmbench_en", "--model", "mock", "--data", str(path), "--out", str(tmp_path / "runs"))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and f"{path}:3" in proc.stderr


def test_http_judge_works_when_scoring_runs_inside_an_event_loop(tsv: Path, tmp_path: Path, chat_server):
    """The OpenAI adapter scores from inside its own event loop; the judge must not nest another."""
    chat_server.responder = lambda body: Reply("B")
    task = MMBench()
    sample = {s.id: s for s in task.load(str(tsv), None, None)}["1000003"]
    spec = RunSpec(task="mmbench_en", model="mock",
                   task_options={"judge": "openai/judge-model", "judge_base_url": chat_server.url})
    task.judge = make_judge(spec, tmp_path)

    async def score_inside_loop() -> Scored:
        return task.score(sample, Response(key="1000003#0", text="I am not sure."))

    scored = asyncio.run(score_inside_loop())
    task.judge.close()
    assert (scored.extracted, scored.rule, scored.correct) == ("B", "judge", True)
    (body,) = chat_server.received
    assert body["temperature"] == 0 and "Which colour dominates?" in json.dumps(body, ensure_ascii=False)


def test_cli_judge_resolves_and_caches_through_the_runner(tsv: Path, tmp_path: Path):
    import evals.runner

    if not hasattr(evals.runner, "make_judge"):
        pytest.skip("the runner does not attach judges yet (it should call model_adapters.judge.make_judge)")
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps({"id": k, "response": v}, ensure_ascii=False) + "\n" for k, v in ANSWERS.items()))
    proc = cli("run", "mmbench_en", "--model", f"replay:{preds}", "--data", str(tsv), "--out", str(tmp_path / "runs"),
               "--judge", "mock", "-T", "judge_mock_text=B", "--quiet")
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    result = json.loads((run_dir / "results.json").read_text())
    assert result["metrics"]["accuracy"]["value"] == pytest.approx(EXPECTED_CIRCULAR_JUDGED)
    assert len((run_dir / "judge.jsonl").read_text().splitlines()) == 1
    records = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert [r["scored"]["rule"] for r in records if r["sample_id"] == "1000003"] == ["judge"]


# (cell, missing?, why): VLMEvalKit reads the TSV with pandas, whose default na_values drop a cell
NA_CELLS = [
    ("", True, "empty"),
    ("None", True, "pandas reads 'None' as missing"),
    ("NA", True, "pandas: NA"),
    ("N/A", True, "pandas: N/A"),
    ("n/a", True, "pandas: n/a"),
    ("null", True, "pandas: null"),
    ("NULL", True, "pandas: NULL"),
    ("nan", True, "the hub copy's empty cells"),
    ("#N/A", True, "pandas: #N/A"),
    ("<NA>", True, "pandas: <NA>"),
    ("none", False, "lower-case none is text for pandas"),
    (" NA", False, "pandas matches the whole cell: with a space it is text"),
    ("Not applicable", False, "ordinary text"),
    ("0", False, "a number is an option"),
]


def test_the_missing_cell_texts_are_pandas_own_defaults():
    """VLMEvalKit's `pd.read_csv` decides what is missing: the list here must be pandas' own."""
    pytest.importorskip("pandas", reason="pandas (the dev extra) defines the default na_values")
    from pandas._libs.parsers import STR_NA_VALUES

    from tasks.mmbench import PANDAS_NA_CELLS

    assert PANDAS_NA_CELLS == set(STR_NA_VALUES)


@pytest.mark.parametrize("cell,missing,why", NA_CELLS, ids=[c[2] for c in NA_CELLS])
def test_option_and_hint_cells_pandas_reads_as_missing_are_dropped(tmp_path: Path, cell, missing, why):
    rows = [{"index": "1", "question": "Which?", "hint": cell, "A": "cat", "B": "dog", "C": cell, "D": "",
             "E": "", "answer": "A", "category": "image_topic", "l2-category": CP, "image": png_b64("red")}]
    (sample,) = MMBench().load(str(write_tsv(tmp_path / "MMBench_DEV_EN_V11.tsv", rows)), None, None)
    assert ("C" not in (sample.choices or {})) is missing, why
    prompt = sample.messages[0].content[1].text
    assert ("Hint:" not in prompt) is missing, why
