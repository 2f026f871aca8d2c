"""The first run (issue 14): `step3vl-eval demo` offline on the bundled data, what it writes and how
its HTML renders in a real browser; the bundled data itself (package data, sources, refusals); and
the CLI's first-contact items (--version, --help examples, unknown -O / -T options, install hint)."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, cli

from evals.cli import main
from tasks.data import BUNDLED_ROOT, data_source

CHROMIUM = Path("/usr/bin/chromium")
RELEASED_HITS = {"Gemini-Pro-CoT": 44, "Qwen-VL-Plus": 32, "LLaVA-v1.5-7B": 31, "Random-Chance": 30}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """`step3vl-eval demo` once, as a user runs it: a subprocess, umask 022, the hub unreachable."""
    root = tmp_path_factory.mktemp("demo")
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}  # must not need the flag to be offline
    env.update(HF_ENDPOINT="http://127.0.0.1:9", PYTHONPATH=str(REPO))  # a hub that refuses at once, if asked
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "evals.cli", "demo"], cwd=root, env=env, capture_output=True,
                          text=True, timeout=120, preexec_fn=lambda: os.umask(0o022))
    return {"proc": proc, "seconds": time.perf_counter() - started, "out": root / "step3vl-demo"}


def test_demo_runs_offline_in_seconds_and_says_who_answered(demo):
    proc = demo["proc"]
    assert proc.returncode == 0, proc.stderr
    assert demo["seconds"] < 60
    out = proc.stdout
    for model, hits in RELEASED_HITS.items():
        assert re.search(rf"{re.escape(model)} \(1\) .* same verdict on all 304 \({hits} right\)", out), model
    assert "not run now: the answers the MATH-V authors released" in out
    assert "mock (2)" in out and "not a model" in out and "score means" in out
    assert "next steps" in out and "--base-url http://127.0.0.1:8000/v1" in out
    assert "leaderboard.html" in out and "leaderboard.csv" in out


def test_demo_results_record_the_bundled_source_and_are_world_readable(demo):
    runs = sorted((demo["out"] / "runs").iterdir())
    assert len(runs) == 5
    for run_dir in runs:
        result = json.loads((run_dir / "results.json").read_text())
        assert result["status"] == "complete"
        assert result["provenance"]["data_source"]["kind"] == "bundled"
        assert re.fullmatch(r"[0-9a-f]{16}", result["provenance"]["dataset_fingerprint"])
        if result["spec"]["task"] == "mathvision":
            assert result["spec"]["split"] == "testmini" and result["metrics"]["accuracy"]["n"] == 304
        else:
            assert result["spec"]["model"] == "mock" and result["spec"]["repeats"] == 4
    for path in [demo["out"] / "leaderboard.html", demo["out"] / "leaderboard.csv", runs[0] / "results.json",
                 runs[0] / "samples.jsonl"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    rows = (demo["out"] / "leaderboard.csv").read_text().splitlines()
    assert any(",replay:Qwen-VL-Plus · SeRe,mathvision," in r for r in rows)  # labels use the file stem


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install -y chromium)")
def test_demo_leaderboard_renders_in_headless_chromium(demo, tmp_path: Path):
    html = demo["out"] / "leaderboard.html"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'p'}"]
    proc = subprocess.run([str(CHROMIUM), *flags, "--dump-dom", html.as_uri()], capture_output=True, text=True,
                          timeout=90)
    assert proc.returncode == 0, proc.stderr[-2000:]
    board = re.search(r'<table class="board sortable" id="board">.*?</table>', proc.stdout, re.DOTALL).group(0)
    for model in RELEASED_HITS:
        assert f"replay:{model} · SeRe" in board
    assert "mock" in board
    assert ">14.47<" in board or ">14.47</a>" in board  # Gemini-Pro-CoT: 44/304, rendered by the page script


# ---- the bundled data ------------------------------------------------------------------------------

def test_every_bundled_file_is_declared_package_data_and_has_its_terms():
    text = (REPO / "pyproject.toml").read_text()
    globs = re.findall(r'"(bundled/[^"]+)"', text.split("[tool.setuptools.package-data]")[1].split("[tool.")[0])
    files = [p.relative_to(REPO / "tasks").as_posix() for p in BUNDLED_ROOT.rglob("*") if p.is_file()]
    assert len(files) == 304 + 9  # figures; 2 READMEs, LICENSE, testmini.jsonl, 4 outputs, answers.jsonl
    assert [f for f in files if not any(fnmatch.fnmatch(f, g) for g in globs)] == []
    assert len(list((BUNDLED_ROOT / "mathvision" / "images").glob("*.jpg"))) == 304
    assert "MIT License" in (BUNDLED_ROOT / "mathvision" / "LICENSE").read_text()
    terms = (BUNDLED_ROOT / "aime2025" / "README.md").read_text()
    assert "not bundled" in terms and "opencompass/AIME2025" in terms
    keys = [json.loads(line) for line in (BUNDLED_ROOT / "aime2025" / "answers.jsonl").read_text().splitlines()]
    assert len(keys) == 30 and all(set(k) == {"id", "answer"} for k in keys)  # no problem statement shipped


def test_a_second_demo_shows_only_its_own_runs(demo, tmp_path: Path, capsys):
    """An earlier demo's runs (e.g. the package then installed elsewhere: the replay path is in the run id)
    or the user's own stay in runs/, but the leaderboard is of the runs this demo made."""
    from evals.cli import spec_for
    from tasks.demo import run_demo

    out = tmp_path / "step3vl-demo"
    shutil.copytree(demo["out"], out)
    aime = next((out / "runs").glob("aime2025-mock-*"))
    stale = out / "runs" / "aime2025-mock-sere-0123456789"
    shutil.copytree(aime, stale)
    result = json.loads((stale / "results.json").read_text())
    result["run_id"], result["spec"]["seed"] = stale.name, 99
    (stale / "results.json").write_text(json.dumps(result))
    assert run_demo(out, spec_for) == 0
    capsys.readouterr()
    leaderboard = (out / "leaderboard.csv").read_text(encoding="utf-8")
    assert aime.name in leaderboard and stale.name not in leaderboard


@pytest.mark.parametrize("args, message", [
    (["run", "mmmu", "--data", "bundled", "--model", "mock"], "no bundled data for mmmu"),
    (["run", "aime2025", "mmmu", "--data", "bundled", "--model", "mock"], "no bundled data for mmmu"),
    (["run", "mathvision", "--data", "bundled", "--split", "test", "--model", "mock"], "testmini"),
    (["run", "aime2025", "--data", "bundled", "--model", "openai/m", "--base-url", "http://127.0.0.1:9/v1"],
     "answer key without problem statements"),
    (["run", "aime2025", "--model", "mock", "-O", "foo=1"], "unknown mock adapter option 'foo'"),
    (["run", "aime2025", "--model", "openai/m", "-O", "backof_base=1"], "valid: backoff_base"),
    (["run", "aime2025", "--model", "mock", "-T", "verison=1"], "aime2025 takes no task options"),
    (["run", "mmbench_en", "--model", "mock", "-T", "verison=1"], "valid: version, judge"),
])
def test_bad_choices_are_one_line_exit_2_and_write_nothing(args, message, tmp_path: Path, capsys):
    assert main([*args, "--out", str(tmp_path / "runs"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "runs").exists()


def test_one_data_bundled_serves_every_task_named(tmp_path: Path, capsys):
    """`bundled` is no path: with several tasks it means each task's own data (no TASK=PATH needed)."""
    assert main(["run", "aime2025", "mathvision", "--data", "bundled", "--model", "mock", "--limit", "2", "-k", "1",
                 "--out", str(tmp_path / "runs"), "--quiet"]) == 0
    sources = {json.loads(p.read_text())["spec"]["task"]: json.loads(p.read_text())["provenance"]["data_source"]["kind"]
               for p in (tmp_path / "runs").glob("*/results.json")}
    assert sources == {"aime2025": "bundled", "mathvision": "bundled"}


def test_data_source_names_bundled_local_and_hub(tmp_path: Path):
    assert data_source("aime2025", "bundled", "opencompass/AIME2025")["kind"] == "bundled"
    assert data_source("aime2025", str(tmp_path), "x") == {"kind": "local", "location": str(tmp_path.resolve())}
    assert data_source("aime2025", None, "opencompass/AIME2025") == {"kind": "hub", "location": "opencompass/AIME2025"}


# ---- first contact with the CLI --------------------------------------------------------------------

def test_version_and_top_level_help_with_examples():
    version = cli("--version")
    assert version.returncode == 0 and re.fullmatch(r"step3vl-eval \S+\n", version.stdout)
    helped = cli("--help")
    assert helped.returncode == 0
    assert "examples:" in helped.stdout and "step3vl-eval demo" in helped.stdout and "exit codes" in helped.stdout


def test_the_missing_vllm_hint_is_the_readmes_install_command():
    code = ("import sys; sys.modules['vllm'] = None\n"
            "from evals.types import RunSpec, UserError\n"
            "from model_adapters import load_adapter\n"
            "try:\n    load_adapter(RunSpec(task='t', model='vllm/x/y'))\n"
            "except UserError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert 'pip install -e ".[vllm]"' in out.stdout
    assert 'pip install -e ".[vllm]"' in (REPO / "README.md").read_text()


def test_the_summary_explains_the_fallback_count(tmp_path: Path, capsys):
    preds = BUNDLED_ROOT / "mathvision" / "outputs" / "Qwen-VL-Plus.jsonl"  # bare answers: the whole reply is read
    assert main(["run", "mathvision", "--data", "bundled", "--model", f"replay:{preds}", "--out", str(tmp_path),
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    count = int(re.search(r"fallback (\d+)", out).group(1))
    assert count > 0 and f"fallback: {count} answers were read by the scorer's last-resort rule" in out
