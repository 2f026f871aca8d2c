"""The gate on a folder holding several runs of a task (issues 14, 23): runs of one model, the newest
complete one, said on stderr; runs of several models, refused (which one is meant?); a script's run
only when no model ran the task; `compare` follows the same rule; `--strict` refuses, listing them;
`--tasks` narrows the folder before that check.
Also: every file the tool writes gets the umask's mode, atomic writes included."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import pytest

from evals import store
from evals.cli import main


def mock_run(out: Path, task: str, *extra: str) -> Path:
    before = set(out.iterdir()) if out.exists() else set()
    if task == "mathvision":  # the mock's answers are nonsense: the engine that scores them is beside the point
        extra = ("-T", "equality=emulated", *extra)
    assert main(["run", task, "--data", "bundled", "--model", "mock", "--out", str(out), "--quiet", *extra]) == 0
    (new,) = set(out.iterdir()) - before
    return new


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("gate_sel")
    runs = root / "runs"
    older = mock_run(runs, "aime2025", "--samples", "1", "--limit", "10")
    newer = mock_run(runs, "aime2025", "--samples", "1", "--limit", "10", "--seed", "1")
    mathvision = mock_run(runs, "mathvision", "--limit", "20")
    (older / "results.json").touch()  # mtime must not decide: the time the run finished does
    baseline = root / "baseline.json"
    assert main(["gate", "--write-baseline", str(older), str(baseline)]) == 0
    return {"runs": runs, "older": older, "newer": newer, "mathvision": mathvision, "baseline": baseline}


def test_several_runs_of_a_task_pick_the_newest_complete_and_say_so(folder, tmp_path: Path, capsys):
    report = tmp_path / "gate.json"
    code = main(["gate", "--baseline", str(folder["baseline"]), "--current", str(folder["runs"]),
                 "--json", str(report)])
    err = capsys.readouterr().err
    assert code == 0
    assert f"holds 2 runs of aime2025; using the newest complete one, {folder['newer'].name}" in err
    assert json.loads(report.read_text())["tasks"][0]["task"] == "aime2025"


def replay_run(out: Path, model: str, *extra: str) -> Path:
    from tasks.data import bundled_dir

    return mock_run(out, "mathvision", "--model", f"replay:{bundled_dir('mathvision') / 'outputs' / model}.jsonl",
                    *extra)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two models' MathVision runs and a mock run of MathVision in one folder."""
    runs = tmp_path_factory.mktemp("models") / "runs"
    found = {"mock": mock_run(runs, "mathvision")}
    for model in ("Gemini-Pro-CoT", "Random-Chance"):
        found[model] = replay_run(runs, model)
    return {"runs": runs, **found}


def test_runs_of_several_models_are_refused_by_gate_and_compare_naming_them(models, capsys):
    for argv in (["gate", "--write-baseline", str(models["runs"]), str(models["runs"].parent / "b.json")],
                 ["compare", str(models["runs"]), str(models["Gemini-Pro-CoT"])]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "holds mathvision runs of 2 models" in err, err
        assert "replay:Gemini-Pro-CoT · sere" in err and "replay:Random-Chance · sere" in err and "name its run dir" in err
        assert "mock" not in err  # a script is no candidate beside a model
    assert not (models["runs"].parent / "b.json").exists()


def test_a_script_run_gives_way_to_a_model_run_and_the_choice_is_said(models, tmp_path: Path, capsys):
    runs = tmp_path / "runs"
    runs.mkdir()
    for name in ("mock", "Gemini-Pro-CoT"):
        (runs / models[name].name).symlink_to(models[name])
    baseline = tmp_path / "b.json"
    assert main(["gate", "--write-baseline", str(runs), str(baseline)]) == 0
    err = capsys.readouterr().err
    assert f"using the newest complete one, {models['Gemini-Pro-CoT'].name} (replay:Gemini-Pro-CoT · sere); " \
           "left out 1 run of a script" in err
    assert json.loads(baseline.read_text())["tasks"]["mathvision"]["source"].endswith(models["Gemini-Pro-CoT"].name)
    assert main(["compare", str(runs), str(models["Random-Chance"])]) == 0
    out, err = capsys.readouterr()
    assert err.startswith(f"compare: {runs} holds 2 runs of mathvision; using the newest complete one, "
                          f"{models['Gemini-Pro-CoT'].name}") and models["Gemini-Pro-CoT"].name in out


def test_a_script_run_is_no_stand_in_for_a_model_run_that_is_not_complete(models, tmp_path: Path, capsys):
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / models["mock"].name).symlink_to(models["mock"])
    stopped = runs / models["Gemini-Pro-CoT"].name
    stopped.mkdir()
    result = json.loads((models["Gemini-Pro-CoT"] / "results.json").read_text())
    (stopped / "results.json").write_text(json.dumps({**result, "status": "incomplete"}))
    assert main(["gate", "--write-baseline", str(runs), str(tmp_path / "b.json")]) == 2
    assert "no model's run of it is complete, and a script's run is no stand-in" in capsys.readouterr().err


def test_compare_takes_the_newest_run_of_one_model_like_the_gate(folder, capsys):
    assert main(["compare", str(folder["runs"]), str(folder["older"]), "--tasks", "aime2025"]) == 0
    out, err = capsys.readouterr()
    assert f"holds 2 runs of aime2025; using the newest complete one, {folder['newer'].name}" in err
    assert f"A {folder['newer'].name}" in out


def test_strict_refuses_and_lists_the_runs(folder, capsys):
    code = main(["gate", "--baseline", str(folder["baseline"]), "--current", str(folder["runs"]), "--strict"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "holds 2 runs of aime2025" in err and folder["older"].name in err and folder["newer"].name in err


def test_tasks_narrows_before_the_check(folder, tmp_path: Path, capsys):
    base = tmp_path / "mv.json"
    assert main(["gate", "--write-baseline", str(folder["mathvision"]), str(base)]) == 0
    code = main(["gate", "--baseline", str(base), "--current", str(folder["runs"]), "--tasks", "mathvision",
                 "--strict"])
    out, err = capsys.readouterr()
    assert code == 0 and "aime2025" not in err and "| mathvision |" in out


def test_no_complete_run_of_a_task_is_refused(folder, tmp_path: Path, capsys):
    runs = tmp_path / "runs"
    runs.mkdir()
    for name in ("older", "newer"):
        copy = runs / folder[name].name
        copy.mkdir()
        result = json.loads((folder[name] / "results.json").read_text())
        result["status"] = "incomplete"
        (copy / "results.json").write_text(json.dumps(result))
    assert main(["gate", "--baseline", str(folder["baseline"]), "--current", str(runs)]) == 2
    assert "none of them is complete" in capsys.readouterr().err


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077])
def test_atomic_writes_take_the_umask(mask: int, tmp_path: Path):
    old = os.umask(mask)
    try:
        store.write_json_atomic(tmp_path / "a.json", {"x": 1})
        (tmp_path / "plain.txt").write_text("x")  # what open() gives under this umask
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o666 & ~mask
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)


def test_run_report_baseline_and_gate_files_are_0644_under_umask_022(folder, tmp_path: Path):
    old = os.umask(0o022)
    try:
        run_dir = mock_run(tmp_path / "runs", "aime2025", "--samples", "1", "--limit", "3")
        assert main(["report", str(run_dir), "--html", str(tmp_path / "r.html"), "--csv", str(tmp_path / "r.csv"),
                     "--md", str(tmp_path / "r.md")]) == 0
        assert main(["gate", "--write-baseline", str(run_dir), str(tmp_path / "b.json")]) == 0
        assert main(["gate", "--baseline", str(tmp_path / "b.json"), "--current", str(run_dir),
                     "--json", str(tmp_path / "gate.json")]) == 0
    finally:
        os.umask(old)
    written = [run_dir / "results.json", run_dir / "samples.jsonl", run_dir / "run.log", tmp_path / "r.html",
               tmp_path / "r.csv", tmp_path / "r.md", tmp_path / "b.json", tmp_path / "gate.json"]
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in written} == {p.name: "0o644" for p in written}


def test_outputs_to_a_pipe_or_through_a_link_keep_what_they_point_at(folder, tmp_path: Path):
    """`--md /dev/stdout` once renamed a regular file over the /dev/stdout link: a path that is not a
    regular file is written in place, and a symlink to a file is followed (the link stays a link)."""
    fifo, to_null, to_file, target = (tmp_path / "fifo", tmp_path / "null.md", tmp_path / "link.json",
                                      tmp_path / "target.json")
    os.mkfifo(fifo)
    to_null.symlink_to(os.devnull)
    target.write_text("old")
    to_file.symlink_to(target)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    run_dir = folder["mathvision"]
    assert main(["report", str(run_dir), "--md", str(fifo), "--json", str(to_file)]) == 0
    reader.join(timeout=10)
    assert got and b"| configuration |" in got[0] and stat.S_ISFIFO(fifo.lstat().st_mode)
    assert to_file.is_symlink() and json.loads(target.read_text())["runs"][0]["task"] == "mathvision"
    assert main(["report", str(run_dir), "--md", str(to_null)]) == 0
    assert to_null.is_symlink() and os.readlink(to_null) == os.devnull
    assert not list(tmp_path.glob(".*.tmp")) and not list(Path(os.devnull).parent.glob(".null.*"))
