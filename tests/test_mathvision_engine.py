"""MathVision's equality engine (issue 20): MATH-V's own parser by default, the emulation when asked.

- the engine is part of what a run measures: in the run id (a rerun with another engine is another
  run), named in results.json, shown beside the number in the leaderboard;
- `score RUN_DIR -T equality=...` re-scores into a new run dir and leaves the original as it was;
- without the official parser and without the registry a run stops with one line naming
  `step3vl-eval setup mathvision` (exit 2, no run dir), unless `-T equality=emulated` is asked;
- the side install runs the parser with the project's own interpreter, its ANTLR 4.7.2 ahead of
  math-verify's 4.13.2 (marked `side_install`: built from the oracle venv's packages, no registry).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import ORACLE_PYTHON, REPO, cli

from tasks.latex2sympy_sidecar import COMPLETE, SIDE_INSTALL, on_one_stack_block

BUNDLED = REPO / "tasks" / "bundled" / "mathvision"
REPLAY = f"replay:{BUNDLED / 'outputs' / 'Qwen-VL-Plus.jsonl'}"
OFFICIAL_HITS = sum(json.loads(line)["correct"] for line in (BUNDLED / "outputs" / "Qwen-VL-Plus.jsonl").open())
SETUP_LINE = "run `step3vl-eval setup mathvision`"


def needs_official_parser() -> None:
    if not os.environ.get("STEP3VL_LATEX2SYMPY_PYTHON"):
        pytest.skip(f"no official parser for the default engine: {ORACLE_PYTHON} is absent (.ci/setup_oracle_venv.sh)")


def run_dirs(out: Path) -> list[Path]:
    return sorted(p for p in out.iterdir() if p.is_dir())


def results(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def replay(out: Path, *extra: str, env: dict[str, str] | None = None):
    return cli("run", "mathvision", "--data", "bundled", "--model", REPLAY, "--out", str(out), "--quiet", *extra, env=env)


def test_the_engine_is_part_of_the_run_and_results_name_it(tmp_path: Path):
    needs_official_parser()
    out = tmp_path / "runs"
    assert replay(out).returncode == 0
    (official,) = run_dirs(out)
    assert replay(out).returncode == 0 and run_dirs(out) == [official]  # the same command resumes it
    proc = replay(out, "-T", "equality=emulated")
    assert proc.returncode == 0, proc.stderr
    (emulated,) = set(run_dirs(out)) - {official}  # another engine: another run, nothing resumed
    first, second = results(official), results(emulated)
    assert first["spec"]["task_options"] == {"equality": "official"}
    assert first["provenance"]["equality_engine"].startswith("official: latex2sympy2 1.9.1, MATH-V's parser")
    assert second["spec"]["task_options"] == {"equality": "emulated"}
    assert second["provenance"]["equality_engine"].startswith("emulated: ")
    # each run sent (replayed) and scored all 304 itself, and both give the official count
    assert first["counts"]["requests"] == second["counts"]["requests"] == 304
    hits = {round(r["metrics"]["accuracy"]["value"] * 304) for r in (first, second)}
    assert hits == {OFFICIAL_HITS}


def test_score_with_another_engine_writes_a_new_run_and_keeps_the_original(tmp_path: Path):
    needs_official_parser()
    out = tmp_path / "runs"
    assert replay(out).returncode == 0
    (original,) = run_dirs(out)
    before = {name: (original / name).read_bytes() for name in ("results.json", "samples.jsonl")}
    proc = cli("score", str(original), "-T", "equality=emulated")
    assert proc.returncode == 0, proc.stderr
    (rescored,) = set(run_dirs(out)) - {original}
    assert {name: (original / name).read_bytes() for name in before} == before
    found = results(rescored)
    assert found["run_id"] == rescored.name and found["provenance"]["rescored_from"] == original.name
    assert found["spec"]["task_options"] == {"equality": "emulated"}
    assert found["provenance"]["equality_engine"].startswith("emulated: ")
    assert round(found["metrics"]["accuracy"]["value"] * 304) == OFFICIAL_HITS
    records = [json.loads(line) for line in (rescored / "samples.jsonl").read_text().splitlines()]
    assert len(records) == 304
    # again: that run exists now; one line, nothing changed
    again = cli("score", str(original), "-T", "equality=emulated")
    assert again.returncode == 2 and len(again.stderr.strip().splitlines()) == 1
    assert f"{rescored} already exists" in again.stderr
    # a rerun of the emulated command finds the re-scored run (same identity) and sends nothing
    assert replay(out, "-T", "equality=emulated").returncode == 0 and len(run_dirs(out)) == 2
    # the report says which engine scored each MathVision number
    html = tmp_path / "board.html"
    assert cli("report", str(out), "--html", str(html), "--no-samples").returncode == 0
    page = html.read_text()
    assert "scored by MATH-V&#39;s parser (latex2sympy2 1.9.1)" in page and "scored by the emulation" in page


def test_offline_without_the_parser_stops_with_one_line_naming_the_setup_command(tmp_path: Path):
    env = {"STEP3VL_LATEX2SYMPY_PYTHON": "", "STEP3VL_CACHE": str(tmp_path / "cache"), "PIP_NO_INDEX": "1"}
    out = tmp_path / "runs"
    proc = replay(out, env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    announce, error = proc.stderr.strip().splitlines()  # what it tried, then why it stops
    assert announce.startswith("step3vl-eval: installing MATH-V's official parser")
    assert error.startswith("step3vl-eval: error: mathvision: the official parser could not be installed")
    assert SETUP_LINE in error and "-T equality=emulated" in error
    assert not out.exists()
    assert not list((tmp_path / "cache").iterdir())  # no half-made side install left
    setup = cli("setup", "mathvision", env=env)
    assert setup.returncode == 2 and SETUP_LINE in setup.stderr.strip().splitlines()[-1]
    # the emulation, asked for explicitly, needs nothing installed
    proc = replay(out, "-T", "equality=emulated", env=env)
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = run_dirs(out)
    assert results(run_dir)["provenance"]["equality_engine"].startswith("emulated: ")


def test_an_unknown_engine_is_one_line(tmp_path: Path):
    proc = replay(tmp_path, "-T", "equality=sympy")
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "step3vl-eval: error: mathvision: -T equality must be one of official, emulated, not 'sympy'"]


def side_install_from_the_oracle_venv(cache: Path) -> Path:
    """A side install as `pip install --target` lays it out, from the packages the oracle venv holds
    (latex2sympy2 1.9.1, ANTLR 4.7.2, sympy, mpmath): the registry is not reached in tests."""
    if not ORACLE_PYTHON.is_file():
        pytest.skip(f"the oracle venv is not set up: {ORACLE_PYTHON} is absent (.ci/setup_oracle_venv.sh)")
    (site,) = (REPO / ".venv-oracle" / "lib").glob("python3*/site-packages")
    target = cache / SIDE_INSTALL
    target.mkdir(parents=True)
    for name in ("latex2sympy2.py", "gen", "antlr4", "sympy", "mpmath"):
        (target / name).symlink_to((site / name).resolve())
    (target / COMPLETE).write_text("from the oracle venv\n")
    return target


@pytest.mark.side_install
def test_the_side_install_scores_with_the_projects_own_interpreter(tmp_path: Path):
    target = side_install_from_the_oracle_venv(tmp_path / "cache")
    env = {"STEP3VL_LATEX2SYMPY_PYTHON": "", "STEP3VL_CACHE": str(tmp_path / "cache"), "PIP_NO_INDEX": "1"}
    setup = cli("setup", "mathvision", env=env)
    assert setup.returncode == 0, setup.stderr
    assert setup.stdout.strip() == (f"mathvision: MATH-V's official parser (latex2sympy2 1.9.1) was already installed "
                                    f"in {target}; runs score with it by default")
    out = tmp_path / "runs"
    proc = replay(out, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "installing" not in proc.stderr  # reused, not installed again
    (run_dir,) = run_dirs(out)
    found = results(run_dir)
    assert found["provenance"]["equality_engine"] == (f"official: latex2sympy2 1.9.1, MATH-V's parser "
                                                      f"(side install {target})")
    assert round(found["metrics"]["accuracy"]["value"] * 304) == OFFICIAL_HITS


@pytest.mark.side_install
def test_the_side_install_is_the_original_parser_not_math_verifys(tmp_path: Path):
    """Run by the project's interpreter, whose site-packages hold ANTLR 4.13.2 and math-verify's fork:
    the side install must win (the original's prefix reading, its lexer errors)."""
    import sys

    from tasks.latex2sympy_sidecar import OriginalParser

    target = side_install_from_the_oracle_venv(tmp_path / "cache")
    parser = OriginalParser(sys.executable, path=str(target))
    try:
        assert parser.printed_many(["\\frac{1}{4}}x", "\\cfrac{150}{2}", "\\{6\\}", "12 !!", "e^{0}"]) == [
            "1/4", None, "6", "factorial(factorial(12))", "1"]
    finally:
        parser.stop()


def depth(n: int) -> int:
    return 0 if n == 0 else 1 + depth(n - 1)


def test_one_stack_block_returns_raises_and_recurses_as_the_plain_call():
    # the sidecar, the emulation and the oracle worker run the parsers inside it (docs/tasks.md, Speed)
    assert on_one_stack_block(lambda: 41 + 1) == 42
    assert on_one_stack_block(lambda: on_one_stack_block(lambda: depth(600))) == 600  # nested, deep
    with pytest.raises(ZeroDivisionError):
        on_one_stack_block(lambda: 1 / 0)
    with pytest.raises(RecursionError):
        on_one_stack_block(lambda: depth(10**6))
    assert on_one_stack_block(lambda: depth(100)) == 100  # and the interpreter is fine after it
