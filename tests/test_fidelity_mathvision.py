"""MathVision fidelity: the released MATH-V prediction files, replayed through our runner and scorer,
must give the official evaluator's counts exactly: overall, per subject (16) and per level (5).

The data lives in ../shared/data/mathvision (test.jsonl without most images: replaying needs none).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import cli, shared_data

from evals.runner import run
from evals.types import RunSpec

# The official `_result.json` overall counts of the four released files (out of 3,040).
OFFICIAL_HITS = {"Gemini-Pro-CoT": 436, "Qwen-VL-Plus": 326, "LLaVA-v1.5-7B": 259, "Random-Chance": 218}


def official_counts(result_file: Path) -> dict[str, str]:
    """`{"-all": "436/3040=14.34%", ...}` -> `{"-all": "436/3040", ...}`."""
    return {key: value.split("=")[0] for key, value in json.loads(result_file.read_text()).items()}


def our_counts(metric: dict) -> str:
    return f"{round(metric['value'] * metric['n'])}/{metric['n']}"


@pytest.mark.parametrize("model", list(OFFICIAL_HITS))
def test_replayed_release_matches_the_official_counts(model: str, tmp_path: Path):
    root = shared_data("mathvision")
    predictions = root / "outputs" / f"{model}.jsonl"
    spec = RunSpec(task="mathvision", model=f"replay:{predictions}", data=str(root / "data" / "test.jsonl"),
                   out=str(tmp_path))
    run_dir, result = run(spec, show_progress=False)
    official = official_counts(root / "outputs" / f"{model}_result.json")

    assert our_counts(result.metrics["accuracy"]) == official["-all"] == f"{OFFICIAL_HITS[model]}/3040"
    subjects = {name: our_counts(m) for name, m in result.breakdowns["subject"].items()}
    assert len(subjects) == 16 and subjects == {name: official[name] for name in subjects}
    levels = {f"-level{name}": our_counts(m) for name, m in result.breakdowns["level"].items()}
    assert len(levels) == 5 and levels == {name: official[name] for name in levels}

    # Item by item, too: the released files carry the official verdict of each prediction.
    released = {r["id"]: r["correct"] for r in map(json.loads, predictions.read_text().splitlines())}
    records = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    differing = [r["sample_id"] for r in records if r["scored"]["correct"] != released[r["sample_id"]]]
    assert differing == []


@pytest.mark.parametrize("engine", ["default", "emulated"])
def test_cli_replays_the_released_file_without_any_image(engine: str, tmp_path: Path):
    """By default MATH-V's own parser scores (here the oracle venv's, the override conftest sets);
    `-T equality=emulated` asks for the emulation. results.json names the engine that scored."""
    root = shared_data("mathvision")
    option = ["-T", "equality=emulated"] if engine == "emulated" else []
    proc = cli("run", "mathvision", "--model", f"replay:{root / 'outputs' / 'Random-Chance.jsonl'}",
               "--data", str(root), "--out", str(tmp_path), "--quiet", *option)
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    result = json.loads((run_dir / "results.json").read_text())
    assert our_counts(result["metrics"]["accuracy"]) == "218/3040"
    assert result["status"] == "complete" and result["counts"]["errors"] == 0
    assert result["spec"]["task_options"] == {"equality": "official" if engine == "default" else "emulated"}
    assert result["provenance"]["equality_engine"].startswith(
        "official: latex2sympy2 1.9.1, MATH-V's parser" if engine == "default" else "emulated: ")


def test_a_sidecar_that_does_not_run_stops_the_run_before_scoring(tmp_path: Path):
    root = shared_data("mathvision")
    proc = cli("run", "mathvision", "--model", f"replay:{root / 'outputs' / 'Random-Chance.jsonl'}",
               "--data", str(root), "--out", str(tmp_path), "--quiet",
               env={"STEP3VL_LATEX2SYMPY_PYTHON": str(tmp_path / "no-such-python")})
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().endswith("not a Python that runs latex2sympy2 1.9.1 (create one with .ci/"
                                        "setup_oracle_venv.sh, or unset STEP3VL_LATEX2SYMPY_PYTHON to use the side install)")
    assert len(proc.stderr.strip().splitlines()) == 1 and not list(tmp_path.iterdir())
