"""Reports rendered from runs that the real pipeline made (runner + mock/replay adapters + PaCoRe).

A small multiple-choice image task defined here (file images, an inline image, a missing image,
two category levels) stands beside the real AIME 2025 task, so the tests need no hub and no
../shared data. Model answers and dataset text carry HTML/script payloads on purpose.
"""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path
from typing import Any
from unittest import mock

import pandas as pd
import pytest
from PIL import Image as PILImage

import tasks
from evals import metrics, runner
from evals.cli import main
from evals.extract import extract_final_answer_letter
from evals.types import GenParams, Image, Message, Response, RunSpec, Sample, Scored, Text
from reports import build_report
from reports.csv_md import md_text
from reports.explorer import cut_text, explorer_data, script_json, unpack_json
from reports.runs import assign_anchors, group_rows, load_runs

FIXTURE_TASK = "report_fixture_mcq"
SCRIPT_PAYLOAD = "<script>document.title='PWNED'</script>"
IMG_PAYLOAD = "<img src=x onerror=\"document.body.setAttribute('data-pwned','1')\">"
SUBJECT_PAYLOAD = "Optics <img src=x onerror=alert(1)>"
LONG_REASONING = "step " * 3000  # 15,000 characters


class FixtureMCQ:
    """Multiple choice over an image; `Final answer: X` first, then a lone letter as a fallback."""

    name = FIXTURE_TASK
    prompt_template = "{question}\nOptions: {options}\nAnswer with \"Final answer: X\"."
    default_params = GenParams(max_tokens=512)
    default_repeats = 1

    def load(self, data: str | None, split: str | None, limit: int | None) -> list[Sample]:
        rows = [json.loads(line) for line in Path(str(data)).read_text().splitlines() if line.strip()]
        return [self.to_sample(r) for r in rows][:limit]

    def to_sample(self, row: dict[str, Any]) -> Sample:
        image = Image(b64=row["b64"], mime="image/png") if "b64" in row else Image(path=row["image"], mime="image/png")
        text = self.prompt_template.format(question=row["question"], options="A, B, C, D")
        return Sample(row["id"], [Message("user", [image, Text(text)])], row["answer"], None,
                      {"discipline": row["discipline"], "subject": row["subject"]})

    def score(self, sample: Sample, response: Response) -> Scored:
        letter = extract_final_answer_letter(response.text, list("ABCD"))
        rule = "answer_format"
        if letter is None:
            lone = re.findall(r"\b([ABCD])\b", response.text)
            letter, rule = (lone[-1], "fallback") if lone else (None, "none")
        correct = letter == sample.target
        return Scored(response.key, sample.id, 0, letter, rule, correct, 1.0 if correct else 0.0)

    def aggregate(self, samples: dict[str, Sample], scored: list[Scored]) -> dict[str, Any]:
        return {"metrics": {"accuracy": metrics.accuracy(scored)},
                "breakdowns": {g: metrics.group_by(scored, samples, metrics.metadata_field(g))
                               for g in ("discipline", "subject")}}


def write_png(path: Path, color: tuple[int, int, int], size: tuple[int, int] = (400, 300)) -> Path:
    PILImage.new("RGB", size, color).save(path)
    return path


def png_b64(color: tuple[int, int, int]) -> str:
    buf = io.BytesIO()
    PILImage.new("RGB", (64, 64), color).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def fixture_rows(folder: Path) -> list[dict[str, Any]]:
    subjects = [("Science", "Physics"), ("Science", SUBJECT_PAYLOAD), ("Art", "Painting"), ("Art", "Music")]
    rows = []
    for i in range(12):
        discipline, subject = subjects[i % 4]
        row: dict[str, Any] = {"id": f"q{i + 1}", "question": f"Question {i + 1}: which colour?",
                               "answer": "ABCD"[i % 4], "discipline": discipline, "subject": subject}
        if i == 10:
            row["b64"] = png_b64((0, 128, 0))
        elif i == 11:
            row["image"] = str(folder / "missing.png")
        else:
            row["image"] = str(write_png(folder / f"img{i}.png", (20 * i, 100, 200)))
        rows.append(row)
    return rows


# Run A's answers: 7 right (q1-q7), q8 wrong, q9 payload (wrong), q10 unparsed, q11 fallback, q12 right.
def mcq_script(rows: list[dict[str, Any]]) -> dict[str, str]:
    script = {r["id"]: f"<think>{LONG_REASONING}</think>Final answer: {r['answer']}" for r in rows}
    script["q8"] = "<think>hmm</think>Final answer: A"
    script["q9"] = f"<think>{SCRIPT_PAYLOAD}</think>{SCRIPT_PAYLOAD}{IMG_PAYLOAD} Final answer: C"
    script["q10"] = "I cannot tell."
    script["q11"] = "Probably D"
    return script


AIME_ROWS = [{"id": "p1", "problem": "What is $1+1$?", "answer": "2"},
             {"id": "p2", "problem": "What is $6 \\times 7$?", "answer": "42"},
             {"id": "p3", "problem": "What is $7 \\times 10$?", "answer": "70"}]


def run_spec(root: Path, task: str, model: str, data: Path, **kw: Any) -> Path:
    spec = RunSpec(task=task, model=model, data=str(data), out=str(root / "runs"), **kw)
    with mock.patch.dict(tasks.TASKS, {FIXTURE_TASK: (f"{FixtureMCQ.__module__}:FixtureMCQ", {})}):
        run_dir, _ = runner.run(spec, show_progress=False)
    return run_dir


def write_json(path: Path, obj: Any) -> Path:
    path.write_text(json.dumps(obj))
    return path


def make_fixture_runs(root: Path) -> dict[str, Path]:
    """Five runs: MCQ x {mock, replay with 2 missing}, AIME x {mock SeRe k=2, mock PaCoRe, replay}."""
    root.mkdir(parents=True, exist_ok=True)
    rows = fixture_rows(root)
    mcq = root / "mcq.jsonl"
    mcq.write_text("".join(json.dumps(r) + "\n" for r in rows))
    aime = root / "aime.jsonl"
    aime.write_text("".join(json.dumps(r) + "\n" for r in AIME_ROWS))
    # one script for both tasks (sample ids differ), as a model's adapter options stay the same across tasks
    script = write_json(root / "script.json", {**mcq_script(rows), "p1": "\\boxed{2}", "p2": "\\boxed{41}",
                                               "p3": "\\boxed{070}"})
    replay = write_json(root / "mcq_preds.json", {r["id"]: f"Final answer: {'A' if i % 2 else r['answer']}"
                                                  for i, r in enumerate(rows[:10])})
    aime_replay = write_json(root / "aime_preds.json", {"p1": "\\boxed{2}", "p2": "\\boxed{42}", "p3": "no idea"})
    alpha = {"mock_script": str(script)}
    return {
        "mcq_mock": run_spec(root, FIXTURE_TASK, "mock/alpha", mcq, adapter_options=alpha),
        "mcq_replay": run_spec(root, FIXTURE_TASK, f"replay:{replay}", mcq),
        "aime_mock": run_spec(root, "aime2025", "mock/alpha", aime, repeats=2, adapter_options=alpha),
        "aime_pacore": run_spec(root, "aime2025", "mock/alpha", aime, mode="pacore", pacore_widths=[2],
                                adapter_options=alpha),
        "aime_replay": run_spec(root, "aime2025", f"replay:{aime_replay}", aime),
    }


@pytest.fixture(scope="module")
def fixture_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_fixture_runs(tmp_path_factory.mktemp("report_runs"))


@pytest.fixture(scope="module")
def report(fixture_runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("report_out")
    paths = {"html": out / "report.html", "csv": out / "report.csv", "md": out / "summary.md"}
    build_report([str(p) for p in fixture_runs.values()], str(paths["html"]), str(paths["csv"]), str(paths["md"]))
    return paths


def make_demo(root: Path) -> Path:
    """`step3vl-eval demo` in `root`: four released MathVision predictions replayed, a mock AIME run, and
    their report; returns the report's path."""
    from evals.cli import spec_for
    from tasks.demo import run_demo

    assert run_demo(root / "step3vl-demo", spec_for) == 0
    return root / "step3vl-demo" / "leaderboard.html"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_demo(tmp_path_factory.mktemp("demo"))


def board_row_labels(html: str) -> list[str]:
    board = re.search(r'<table class="board sortable" id="board">.*?</table>', html, re.DOTALL).group(0)
    return [re.sub(r"<.*", "", m).strip() for m in re.findall(r'<th scope="row" data-sort="[^"]*">(.*?)</th>', board)]


def results(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "results.json").read_text())


def explorer_views(run_dirs: list[Path], max_chars: int = 8000) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    runs = load_runs([str(p) for p in run_dirs])
    shown = assign_anchors(group_rows(runs))
    views, thumbs = explorer_data(shown, max_chars)
    return {v["run"]: v for v in views}, thumbs


# ---- CSV and Markdown ---------------------------------------------------------------------------

def test_csv_has_one_row_per_metric_and_category_equal_to_results_json(fixture_runs, report):
    table = pd.read_csv(report["csv"], keep_default_na=False, na_values=[""])
    for run_dir in fixture_runs.values():
        res = results(run_dir)
        mine = table[(table.source == "run") & (table.run_id == res["run_id"])]
        expected = [(name, "", "", m) for name, m in res["metrics"].items()]
        expected += [("accuracy", g, c, m) for g, cats in res["breakdowns"].items() for c, m in cats.items()]
        assert len(mine) == len(expected), res["run_id"]
        for name, group, cat, m in expected:
            hit = mine[(mine.metric == name) & (mine.group.fillna("") == group) & (mine.category.fillna("") == cat)]
            assert len(hit) == 1, (res["run_id"], name, group, cat)
            row = hit.iloc[0]
            assert row.value == pytest.approx(m["value"], abs=1e-12)
            assert [row.ci_lo, row.ci_hi] == pytest.approx(m["ci"], abs=1e-12)
            assert row.n == m["n"]
            assert row.requests == res["counts"]["requests"] and row.errors == res["counts"]["errors"]
            assert row["task"] == res["spec"]["task"] and row["mode"] == res["spec"]["mode"]


def test_csv_holds_published_numbers_as_fractions_with_their_source(report):
    table = pd.read_csv(report["csv"])
    pub = table[table.source == "published"]
    step_sere = pub[(pub.model == "STEP3-VL-10B") & (pub["mode"] == "sere")].set_index("task")
    assert step_sere.loc["mmmu", "value"] == pytest.approx(0.7811)
    assert step_sere.loc["aime2025", "value"] == pytest.approx(0.8766)
    assert "does not state the MMMU split" in step_sere.loc["mmmu", "note"]
    assert step_sere.loc["mmmu_pro_overall", "value"] == pytest.approx(0.6408)  # beside standard + vision's mean
    assert "mean of the standard (10 options) and vision" in step_sere.loc["mmmu_pro_overall", "note"]
    assert len(pub) == 10 * 5 + 6 * 3  # Table 3's three more rows for its six columns; Tables 1-2 have five


def test_markdown_summary_shows_scores_ci_rates_and_published_reference(fixture_runs, report):
    md = report["md"].read_text()
    acc = results(fixture_runs["mcq_mock"])["metrics"]["accuracy"]
    assert f"**{100 * acc['value']:.2f}** [{100 * acc['ci'][0]:.2f}, {100 * acc['ci'][1]:.2f}] n=12" in md
    assert "*STEP3-VL-10B · SeRe (published)* |" in md and "| 87.66 |" in md
    replay_id = results(fixture_runs["mcq_replay"])["run_id"]
    assert re.search(rf"\| {re.escape(replay_id)} \| {FIXTURE_TASK} \| incomplete \| 12 \| 16\.67% \|", md)
    assert md_text("a|b <i>\nc") == "a\\|b &lt;i&gt; c"


# ---- leaderboard ----------------------------------------------------------------------------------

def test_leaderboard_rows_are_model_by_mode_with_one_run_per_task(fixture_runs):
    rows = {r.label: r for r in group_rows(load_runs([str(p) for p in fixture_runs.values()]))}
    assert set(rows["mock/alpha · SeRe"].runs) == {FIXTURE_TASK, "aime2025"}
    assert set(rows["mock/alpha · PaCoRe [2]"].runs) == {"aime2025"}
    assert set(rows["replay:mcq_preds · SeRe"].runs) == {FIXTURE_TASK}
    assert len(rows) == 4


def test_the_demo_report_leads_with_real_models_and_shows_the_scripts_row_marked_and_last(demo):
    html = demo.read_text()
    labels = board_row_labels(html)
    assert labels[0].startswith("replay:") and labels[-1] == "mock · SeRe"
    assert [label for label in labels if "mock" in label] == ["mock · SeRe"]
    mock_row = re.search(r'<tr class="run script" data-kind="run">\s*<th scope="row" data-sort="mock · SeRe">(.*?)</th>',
                         html, re.DOTALL)
    assert mock_row and "script, not a model" in mock_row.group(1)
    # the sample explorer opens on its first run: a real model's replayed answers, not the mock's
    options = re.findall(r'<option value="(run-\d+)">([^<]*)</option>', html)
    assert options[0][1].startswith("replay:Gemini-Pro-CoT") and "mathvision" in options[0][1]
    assert options[-1][1].startswith("mock · SeRe") and options[-1][1].endswith("a script, not a model")


def test_rows_of_a_script_sort_after_every_model_whatever_their_names(fixture_runs):
    rows = group_rows(load_runs([str(p) for p in fixture_runs.values()]))
    assert [r.label for r in rows] == ["replay:aime_preds · SeRe", "replay:mcq_preds · SeRe",
                                       "mock/alpha · PaCoRe [2]", "mock/alpha · SeRe"]  # "mock" sorts first by name
    assert [r.scripted for r in rows] == [False, False, True, True]


def test_a_high_fallback_rate_is_flagged_beside_the_score_it_affects(demo):
    html = demo.read_text()
    llava = re.search(r'<th scope="row" data-sort="replay:LLaVA[^"]*">.*?</tr>', html, re.DOTALL).group(0)
    assert '<span class="flag">fallback 62%</span>' in llava
    assert "62.17% of the requests were read by the fallback rule, not the task&#39;s answer format" in llava  # tooltip
    assert re.search(r'<li class="warn">replay:LLaVA[^<]*· MathVision: 62\.17% of the requests were read by the '
                     r"fallback rule", html)
    assert '<td data-sort="62.17" class="high">62.17%</td>' in html  # the runs table marks the same rate
    gemini = re.search(r'<th scope="row" data-sort="replay:Gemini[^"]*">.*?</tr>', html, re.DOTALL).group(0)
    assert "fallback" not in gemini  # 1.64%: below the threshold


def test_two_runs_of_one_task_and_configuration_get_rows_named_by_what_differs(fixture_runs, tmp_path):
    first = results(fixture_runs["aime_mock"])["spec"]
    other = run_spec(tmp_path, "aime2025", "mock/alpha", Path(first["data"]), repeats=2, seed=7,
                     adapter_options=first["adapter_options"])
    labels = sorted(r.label for r in group_rows(load_runs([str(fixture_runs["aime_mock"]), str(other)])))
    assert labels == ["mock/alpha · SeRe · seed=0", "mock/alpha · SeRe · seed=7"]


def test_the_same_run_saved_twice_keeps_the_later_and_says_so(fixture_runs, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    src = fixture_runs["aime_replay"]
    res = results(src)
    res["provenance"]["finished"] += 100
    write_json(copy / "results.json", res)
    (copy / "samples.jsonl").write_text((src / "samples.jsonl").read_text())
    out = tmp_path / "r.html"
    build_report([str(src), str(copy)], html=str(out))
    assert (f"Left out {src.resolve()} (complete, {res['counts']['requests']} requests): {copy.resolve()} has the "
            "same run id and finished later.") in out.read_text()


def test_html_leaderboard_has_scores_ci_n_published_rows_and_caveats(fixture_runs, report):
    html = report["html"].read_text()
    acc = results(fixture_runs["aime_mock"])["metrics"]["accuracy"]
    assert f">{100 * acc['value']:.2f}</a>" in html
    assert f"{100 * acc['ci'][0]:.2f}–{100 * acc['ci'][1]:.2f} · n=3, k=2" in html
    assert html.count('<span class="badge pub">published</span>') >= 10
    assert "Published settings: temperature 1.0" in html and "avg@64" in html
    # columns are the tasks the runs cover (a full Table 3 is twelve): no MathVision run, no MathVision note
    assert "The report does not state the MathVision split" not in html
    assert "Qwen3-VL-235B-A22B-Thinking · as reported" in html


def test_breakdowns_list_every_category_of_every_run(fixture_runs, report):
    html = report["html"].read_text()
    for g, cats in results(fixture_runs["mcq_mock"])["breakdowns"].items():
        assert f"<summary>{g} <span" in html
        for cat in cats:
            if "<" not in cat:
                assert f'data-sort="{cat}">{cat}</th>' in html


def test_compute_chart_has_a_point_per_run_with_tokens_and_squares_for_pacore(report):
    html = report["html"].read_text()
    svgs = re.findall(r"<svg .*?</svg>", html, re.DOTALL)
    assert len(svgs) == 2  # AIME 2025 and the fixture task
    aime = next(s for s in svgs if "AIME 2025" in s)
    assert aime.count("<g class=\"pt\">") == 2 and aime.count("<rect x=") == 2  # background + one PaCoRe square
    assert "mock/alpha · PaCoRe [2]: " in aime and "tokens/request" in aime
    # a replay saved no token counts: drawn at x = 0 it would be a point with no data, so it is named instead
    assert "replay:" not in aime
    assert re.search(r"<li>AIME 2025: not drawn: replay:aime_preds · SeRe \(no token counts saved; "
                     r"replayed predictions carry none\)\.</li>", html)


def test_a_task_whose_runs_saved_no_token_counts_gets_no_chart_and_says_why(demo):
    html = demo.read_text()
    svgs = re.findall(r"<svg .*?</svg>", html, re.DOTALL)
    assert len(svgs) == 1 and "AIME 2025" in svgs[0] and "MathVision" not in svgs[0]
    assert ("MathVision: no chart, as none of its 4 runs saved token counts; replayed predictions carry none."
            in html)


# ---- escaping -------------------------------------------------------------------------------------

def test_model_and_dataset_text_is_escaped_everywhere(report):
    html = report["html"].read_text()
    assert SCRIPT_PAYLOAD not in html and "<img src=x" not in html
    assert "Optics &lt;img src=x onerror=alert(1)&gt;" in html  # breakdown table, escaped by jinja2
    packed = re.findall(r'<script type="application/gzip" id="data-[\w-]+">(.*?)</script>', html, re.DOTALL)
    assert len(packed) == 5 and all(re.fullmatch(r"[A-Za-z0-9+/]*={0,2}", b) for b in packed)  # base64 only
    views = [unpack_json(b) for b in packed]
    assert any(SCRIPT_PAYLOAD in s["answer"] for v in views for s in v["samples"])  # kept whole, as data
    thumbs = re.findall(r'<script type="application/json" id="data-images">(.*?)</script>', html, re.DOTALL)
    assert len(thumbs) == 1 and "<" not in thumbs[0] and json.loads(thumbs[0]) is not None


@pytest.mark.parametrize("text", ["</script><script>alert(1)</script>", "<!--", "a & b > c", "\u2028line"])
def test_script_json_round_trips_without_markup_characters(text):
    blob = str(script_json({"t": text}))
    assert not set("<>&") & set(blob)
    assert json.loads(blob) == {"t": text}


# ---- sample explorer ----------------------------------------------------------------------------

def test_explorer_records_hold_verdicts_rules_categories_and_errors(fixture_runs):
    views, _ = explorer_views([fixture_runs["mcq_mock"], fixture_runs["mcq_replay"]])
    mock_view = views[results(fixture_runs["mcq_mock"])["run_id"]]
    by_id = {s["id"]: s for s in mock_view["samples"]}
    assert [s["id"] for s in mock_view["samples"]][:3] == ["q1", "q2", "q3"]  # natural order
    assert by_id["q8"]["verdict"] == "wrong" and by_id["q8"]["extracted"] == "A"
    assert by_id["q10"]["rule"] == "none" and by_id["q11"]["rule"] == "fallback"
    assert by_id["q2"]["cats"] == {"discipline": "Science", "subject": SUBJECT_PAYLOAD}
    assert mock_view["cats"]["discipline"] == ["Art", "Science"]
    assert set(mock_view["rules"]) == {"answer_format", "fallback", "none"}
    replay_view = views[results(fixture_runs["mcq_replay"])["run_id"]]
    errors = [s for s in replay_view["samples"] if s["verdict"] == "error"]
    assert [s["id"] for s in errors] == ["q11", "q12"] and "no prediction" in errors[0]["error"]


def test_prompts_are_stored_once_and_images_as_thumbnails(fixture_runs):
    views, thumbs = explorer_views([fixture_runs["aime_mock"], fixture_runs["mcq_mock"]])
    aime_view = views[results(fixture_runs["aime_mock"])["run_id"]]
    assert len(aime_view["samples"]) == 6 and len(aime_view["prompts"]) == 3  # k=2 repeats share a prompt
    file_thumbs = [t for d, t in thumbs.items() if d.startswith("path:") and t["src"]]
    assert len(file_thumbs) == 10
    img = PILImage.open(io.BytesIO(base64.b64decode(file_thumbs[0]["src"])))
    assert img.format == "JPEG" and max(img.size) <= 160
    missing = next(t for d, t in thumbs.items() if d.endswith("missing.png"))
    assert missing["src"] is None and "not readable" in missing["note"]
    inline = next(t for d, t in thumbs.items() if d.startswith("sha1:"))
    assert inline["src"]  # the runner saved its thumbnail under images/


def test_an_inline_image_without_a_saved_thumbnail_says_so(fixture_runs, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for name in ("results.json", "samples.jsonl"):
        (run_dir / name).write_text((fixture_runs["mcq_mock"] / name).read_text())
    _, thumbs = explorer_views([run_dir])  # copied without images/
    inline = next(t for d, t in thumbs.items() if d.startswith("sha1:"))
    assert inline["src"] is None and "saved no thumbnail" in inline["note"]


def test_long_texts_are_cut_to_head_and_tail_with_a_marker(fixture_runs):
    views, _ = explorer_views([fixture_runs["mcq_mock"]], max_chars=1000)
    q1 = next(s for s in next(iter(views.values()))["samples"] if s["id"] == "q1")
    assert "characters cut here" in q1["reasoning"] and len(q1["reasoning"]) < 1200
    views, _ = explorer_views([fixture_runs["mcq_mock"]], max_chars=0)
    q1 = next(s for s in next(iter(views.values()))["samples"] if s["id"] == "q1")
    assert q1["reasoning"] == LONG_REASONING.strip()
    assert cut_text("abcdefghij", 4) == "a\n[… 6 characters cut here; the full text is in samples.jsonl …]\nhij"


def test_pacore_trace_rounds_reach_the_explorer(fixture_runs):
    views, _ = explorer_views([fixture_runs["aime_pacore"]])
    sample = next(iter(views.values()))["samples"][0]
    assert [r["round"] for r in sample["trace"]] == [0, 1]
    assert len(sample["trace"][0]["replies"]) == 2 and sample["trace"][1]["width"] == 1


# ---- command line and bad input ---------------------------------------------------------------

def test_cli_report_accepts_a_folder_of_runs_and_writes_every_output(fixture_runs, tmp_path, capsys):
    runs_folder = fixture_runs["mcq_mock"].parent
    code = main(["report", str(runs_folder), "--html", str(tmp_path / "a.html"), "--csv", str(tmp_path / "a.csv"),
                 "--md", str(tmp_path / "a.md"), "--no-samples", "--title", "Nightly <CI>"])
    assert code == 0
    out = capsys.readouterr().out
    assert "wrote" in out and "report done in" in out
    html = (tmp_path / "a.html").read_text()
    assert "<title>Nightly &lt;CI&gt;</title>" in html and 'id="samples"' not in html
    assert len(pd.read_csv(tmp_path / "a.csv").query("source == 'run'").run_id.unique()) == 5


def corrupt_results(root: Path) -> Path:
    d = root / "corrupt"
    d.mkdir()
    (d / "results.json").write_text("{not json")
    return d


def list_results(root: Path) -> Path:
    d = root / "listy"
    d.mkdir()
    (d / "results.json").write_text("[1, 2]")
    return d


def torn_samples(root: Path, good: Path) -> Path:
    d = root / "torn"
    d.mkdir()
    (d / "results.json").write_text((good / "results.json").read_text())
    lines = (good / "samples.jsonl").read_text().splitlines()
    (d / "samples.jsonl").write_text("\n".join([lines[0], "{broken", *lines[1:]]) + "\n")
    return d


@pytest.mark.parametrize("make, message", [
    (lambda root, good: root / "nope", "does not exist"),
    (lambda root, good: write_json(root / "f.json", {}), "is a file"),
    (lambda root, good: (root / "empty").mkdir() or root / "empty", "holds no results.json"),
    (lambda root, good: corrupt_results(root), "unreadable results"),
    (lambda root, good: list_results(root), "unreadable results"),
    (lambda root, good: torn_samples(root, good), "corrupt record"),
])
def test_a_bad_run_dir_is_one_line_and_exit_2(make, message, fixture_runs, tmp_path, capsys):
    bad = make(tmp_path, fixture_runs["mcq_mock"])
    code = main(["report", str(fixture_runs["aime_mock"]), str(bad), "--html", str(tmp_path / "r.html")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1 and err.startswith("step3vl-eval: error:")
    assert not (tmp_path / "r.html").exists()


def test_report_without_an_output_is_a_usage_error(fixture_runs, capsys):
    assert main(["report", str(fixture_runs["aime_mock"])]) == 2
    assert "--html FILE" in capsys.readouterr().err


def test_real_mathvision_replay_shows_subjects_levels_and_every_image(tmp_path):
    from conftest import shared_data

    data = shared_data("mathvision", "data", "testmini.jsonl")
    preds = shared_data("mathvision", "outputs", "Gemini-Pro-CoT.jsonl")
    run_dir = run_spec(tmp_path, "mathvision", f"replay:{preds}", data)
    out = tmp_path / "r.html"
    build_report([str(run_dir)], html=str(out), with_samples=False)
    html = out.read_text()
    assert "<summary>subject <span class=\"count\">(16)</span>" in html
    assert "<summary>level <span class=\"count\">(5)</span>" in html
    _, thumbs = explorer_views([run_dir])
    assert len(thumbs) == 304 and all(t["src"] for t in thumbs.values())


def test_mmbench_en_cn_mean_column_is_derived_for_runs_and_published_rows(tmp_path):
    """The report's headline MMBench number is the mean of EN and CN: shown, never saved."""
    from test_mmbench import ANSWERS, build_rows, write_tsv

    from reports.leaderboard import board_rows, columns_for, load_published, published_rows
    from reports.runs import group_rows, load_runs

    script = tmp_path / "answers.json"  # one scripted model for both tasks: one leaderboard row
    script.write_text(json.dumps(ANSWERS))
    cn_rows = build_rows()
    cn_rows[0]["answer"] = "B"  # question 1's first pass is now answered wrong
    dirs = []
    for task, rows in (("mmbench_en", build_rows()), ("mmbench_cn", cn_rows)):
        tsv = write_tsv(tmp_path / f"{task}.tsv", rows)
        spec = RunSpec(task=task, model="mock", data=str(tsv), out=str(tmp_path / "runs"),
                       adapter_options={"mock_script": str(script)})
        dirs.append(str(runner.run(spec, show_progress=False)[0]))
    runs = load_runs(dirs)
    published = load_published()
    columns = columns_for(runs, published)
    at = [c.task for c in columns].index("mmbench_mean")
    assert [c.task for c in columns][at - 2:at] == ["mmbench_en", "mmbench_cn"]
    (row,) = board_rows(group_rows(runs), columns, published)
    assert row.cells[at].text == "30.00"  # (40 + 20) / 2
    step3_sere = next(r for r in published_rows(columns, published) if r.label == "STEP3-VL-10B · SeRe")
    assert step3_sere.cells[at].text == "91.80"  # (92.05 + 91.55) / 2
