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
