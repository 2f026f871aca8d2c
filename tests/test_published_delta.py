"""The leaderboard's Δ to a published number (issue 17): shown only when the run's split and protocol
are the published ones (a testmini run is not set beside the test-set number); otherwise it says why."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from conftest import cli

from evals import runner
from evals.types import GenParams, RunSpec
from reports.leaderboard import board_rows, columns_for, load_published, published_mismatch
from reports.runs import group_rows, load_runs

PUBLISHED = load_published()
REPORT_PARAMS = GenParams(max_tokens=65536, temperature=1.0, top_p=1.0, top_k=0)


def mathvision_run(tmp_path: Path, data: Path, name: str, **spec_fields) -> Path:
    replay = tmp_path / f"{name}.jsonl"
    replay.write_text("".join(json.dumps({"id": i, "response": f"\\boxed{{{a}}}"}) + "\n"
                              for i, a in (("1", "4"), ("2", "B"), ("3", "6"))))
    spec = RunSpec(task="mathvision", model=f"replay:{replay}", data=str(data), params=REPORT_PARAMS,
                   out=str(tmp_path / "runs"), **spec_fields)
    return runner.run(spec, show_progress=False)[0]


def test_testmini_run_gets_no_delta_to_the_test_set_number_and_says_why(tmp_path, mathvision_images):
    folder = mathvision_images.parents[1]
    shutil.copy(mathvision_images, folder / "data" / "testmini.jsonl")
    test_run = mathvision_run(tmp_path, folder, "full")
    mini_run = mathvision_run(tmp_path, folder, "mini", split="testmini")
    runs = load_runs([str(test_run), str(mini_run)])
    assert [published_mismatch(r, PUBLISHED) for r in runs] == ["", "split testmini (published: test, assumed)"]
    columns = columns_for(runs, PUBLISHED)
    at = [c.task for c in columns].index("mathvision")
    rows = group_rows(runs)
    cells = {row.runs["mathvision"].result.spec.split: cell
             for row, cell in zip(rows, (r.cells[at] for r in board_rows(rows, columns, PUBLISHED)))}
    assert cells[None].delta == f"{cells[None].value - 70.81:+.2f}" and not cells[None].delta_note
    assert cells["testmini"].delta == ""
    assert cells["testmini"].delta_note == "no Δ to the published 70.81: split testmini (published: test, assumed)"
    page = tmp_path / "report.html"
    assert cli("report", str(test_run), str(mini_run), "--html", str(page), "--no-samples").returncode == 0
    html = page.read_text(encoding="utf-8")
    assert 'title="no Δ to the published 70.81: split testmini (published: test, assumed)">no Δ</span>' in html
    assert "MathVision: no Δ to the published 70.81: split testmini (published: test, assumed).</li>" in html


def test_each_protocol_difference_is_named(tmp_path):
    data = tmp_path / "aime.jsonl"
    data.write_text("".join(json.dumps({"id": f"q{i}", "problem": f"{i}?", "answer": str(i)}) + "\n" for i in range(2)))
    replay = tmp_path / "r.jsonl"
    replay.write_text("".join(json.dumps({"id": f"q{i}", "response": f"\\boxed{{{i}}}"}) + "\n" for i in range(2)))

    def mismatch(**fields) -> str:
        spec = RunSpec(task="aime2025", model=f"replay:{replay}", data=str(data), out=str(tmp_path / "runs"),
                       **{"params": REPORT_PARAMS, "repeats": 64, **fields})
        (run,) = load_runs([str(runner.run(spec, show_progress=False)[0])])
        return published_mismatch(run, PUBLISHED)

    def pacore_mismatch(widths: list[int]) -> str:  # replay cannot run PaCoRe: the saved spec says so instead
        (run,) = load_runs([str(runner.run(RunSpec(task="aime2025", model=f"replay:{replay}", data=str(data),
                                                   out=str(tmp_path / "p"), params=REPORT_PARAMS, repeats=64),
                                           show_progress=False)[0])])
        run.result.spec.mode, run.result.spec.pacore_widths = "pacore", widths
        return published_mismatch(run, PUBLISHED)

    assert mismatch() == ""  # the report's protocol: avg@64, T 1, top-p 1, top-k off, 65,536 tokens
    assert mismatch(repeats=8) == "k=8 (published: k=64)"
    assert mismatch(params=GenParams(max_tokens=32768)) == "max_tokens 32768 (published: 65536)"
    assert mismatch(params=GenParams(temperature=0.6, top_k=-1)) == "temperature 0.6 (published: 1.0)"
    assert mismatch(limit=1) == "limit 1 (published: the whole split)"
    assert pacore_mismatch([16]) == ""
    assert pacore_mismatch([4]) == "PaCoRe widths [4] (published: [16])"


def pro_runs(tmp_path: Path, **spec_fields) -> list:
    """mmmu_pro and mmmu_pro_vision replayed on the hub-schema fixture (right on the first question)."""
    from fixtures_table3 import PRO_ROWS, write_mmmu_pro

    data = write_mmmu_pro(tmp_path / "MMMU_Pro")
    replay = tmp_path / "pro.jsonl"
    replay.write_text("".join(json.dumps({"id": r[0], "response": f"Answer: {r[3] if i == 0 else 'J'}"}) + "\n"
                              for i, r in enumerate(PRO_ROWS)))
    dirs = [str(runner.run(RunSpec(task=task, model=f"replay:{replay}", data=str(data), params=REPORT_PARAMS,
                                   out=str(tmp_path / "runs"), **spec_fields), show_progress=False)[0])
            for task in ("mmmu_pro", "mmmu_pro_vision")]
    return load_runs(dirs)


def mean_cell(runs: list):
    columns = columns_for(runs, PUBLISHED)
    at = [c.task for c in columns].index("mmmu_pro_overall")
    assert [c.task for c in columns][at - 2:at] == ["mmmu_pro", "mmmu_pro_vision"]
    (row,) = board_rows(group_rows(runs), columns, PUBLISHED)
    return row, at


def test_mmmu_pros_published_figure_sits_beside_the_mean_of_standard_and_vision(tmp_path):
    row, at = mean_cell(pro_runs(tmp_path))
    assert row.cells[at].text == f"{100 / 3:.2f}"  # (1/3 + 1/3) / 2
    assert row.cells[at].delta == f"{100 / 3 - 64.08:+.2f}" and not row.cells[at].delta_note
    assert row.cells[at - 2].delta == row.cells[at - 1].delta == ""  # no published number per setting
    assert not row.cells[at - 2].delta_note


def test_mmmu_pro_mean_gets_no_delta_when_a_setting_is_not_the_published_protocol(tmp_path):
    row, at = mean_cell(pro_runs(tmp_path, limit=2))
    assert row.cells[at].delta == ""
    assert row.cells[at].delta_note == ("no Δ to the published 64.08: mmmu_pro: limit 2 (published: the whole split); "
                                        "mmmu_pro_vision: limit 2 (published: the whole split)")


def test_mathvista_and_hmmt_match_their_assumed_settings(tmp_path):
    from fixtures_table3 import write_hmmt
    from test_mathvista import PROBLEMS, write_folder

    vista = write_folder(tmp_path / "mathvista" / "data", PROBLEMS)
    hmmt = write_hmmt(tmp_path / "hmmt.jsonl")

    def mismatch(task: str, data: Path, **fields) -> str:
        (run,) = load_runs([str(runner.run(RunSpec(task=task, model="mock", data=str(data), params=REPORT_PARAMS,
                                                   out=str(tmp_path / "runs"), **fields), show_progress=False)[0])])
        return published_mismatch(run, PUBLISHED)

    assert mismatch("mathvista", vista) == ""  # testmini: the split papers report, assumed
    assert mismatch("hmmt2025", hmmt, repeats=64) == ""
    assert mismatch("hmmt2025", hmmt, repeats=2) == "k=2 (published: k=64)"
    assert [m["scores"].get("mathvista") for m in PUBLISHED["models"][:2]] == [83.97, 85.50]
    assert [m["scores"].get("hmmt2025") for m in PUBLISHED["models"][:2]] == [78.18, 92.14]
