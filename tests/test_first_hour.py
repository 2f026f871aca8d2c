"""The first hour (issue 23): the documented paths work as the README says.

- appending --resume RUN_DIR to the command that started a run resumes it; only flags that would
  change the saved settings are refused, each change named;
- the README's Tasks table says what the MMBench task does without --data;
- an unreachable hub is one line within seconds, saying how to go offline;
- the dev extra can build the plugin test's package offline (tests/test_plugins.py);
- the README says which torch .ci/run installs, and what it costs.
"""

from __future__ import annotations

import json
import re
import socket
import time
from pathlib import Path

import pytest

from conftest import REPO, cli


def one_line_exit_2(proc) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_the_starting_command_with_resume_appended_resumes(tmp_path: Path, aime_data: Path) -> None:
    out = tmp_path / "runs"
    start = ["run", "aime2025", "--model", "mock", "-k", "2", "--data", str(aime_data), "--out", str(out), "--quiet"]
    assert cli(*start).returncode == 0
    (run_dir,) = out.iterdir()
    results = json.loads((run_dir / "results.json").read_text())
    results["status"] = "interrupted"  # as after Ctrl-C: --resume finishes it
    (run_dir / "results.json").write_text(json.dumps(results))

    again = cli(*start, "--resume", str(run_dir), "--timeout", "5")
    assert again.returncode == 0, again.stderr
    assert [p.name for p in out.iterdir()] == [run_dir.name]
    assert json.loads((run_dir / "results.json").read_text())["status"] == "complete"
    assert "start: 0 requests to send" in (run_dir / "run.log").read_text()  # nothing sent twice

    before = (run_dir / "results.json").read_text()
    for extra, change in [(["-k", "3"], "--samples cannot change them (repeats: 2 -> 3)"),
                          (["--max-tokens", "512"], "--max-tokens cannot change them (params.max_tokens: 65536 -> 512)"),
                          (["--model", "replay:x.jsonl"], "--model cannot change them ("),
                          (["mmmu"], "a task name cannot change them (task: aime2025 -> mmmu)")]:
        args = [a for a in start if a not in ("aime2025", "-k", "2")] + extra
        if extra != ["mmmu"]:
            args.insert(1, "aime2025")
        line = one_line_exit_2(cli(*args, "--resume", str(run_dir)))
        assert change in line, line
    assert (run_dir / "results.json").read_text() == before


def test_readme_tasks_table_says_what_mmbench_does_without_data(tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text()
    tasks_table = readme[readme.index("## Tasks"):]
    (row,) = [line for line in tasks_table.splitlines() if line.startswith("| `mmbench_en`")]
    default_data = row.split("|")[2]
    # v1.1 (the report's) is the official TSV, given with --data; the hub copy is v1.0 only
    assert "MMBench_DEV_EN_V11.tsv" in default_data and "--data" in default_data
    assert re.search(r"hub `lmms-lab/MMBench`[^|]*v1\.0[^|]*-T version=v1\.0", default_data), default_data
    line = one_line_exit_2(cli("run", "mmbench_en", "--model", "mock", "--out", str(tmp_path / "runs")))
    assert "MMBench v1.1 is only in the official TSV (MMBench_DEV_EN_V11.tsv): pass --data PATH" in line
    assert "-T version=v1.0 for the hub copy (lmms-lab/MMBench, v1.0)" in line
    assert not (tmp_path / "runs").exists()


def test_the_dev_extra_builds_the_plugin_test_package_offline() -> None:
    """tests/test_plugins.py builds a wheel with --no-build-isolation: this venv's setuptools must do it
    alone (>= 70.1; a stock Python 3.11 venv has 65, which needs the `wheel` package)."""
    import setuptools

    pyproject = (REPO / "pyproject.toml").read_text()
    dev = re.search(r"^dev = \[(.*?)\]", pyproject, re.S | re.M).group(1)
    assert '"setuptools>=70.1"' in dev
    assert tuple(int(x) for x in setuptools.__version__.split(".")[:2]) >= (70, 1), setuptools.__version__


def test_an_unreachable_hub_is_one_line_within_seconds_saying_how_to_go_offline(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on: the hub's connection is refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"HF_HUB_OFFLINE": "", "HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_HOME": str(tmp_path / "hf")}
    started = time.monotonic()
    line = one_line_exit_2(cli("run", "mathvision", "--model", "mock", "--limit", "1", "--out", str(tmp_path / "runs"),
                               env=env))
    assert time.monotonic() - started < 12  # the hub client alone retried for ~25 s
    assert line.startswith("step3vl-eval: error: cannot reach the hub (127.0.0.1: Connection refused) and "
                           "MathLLMs/MathVision (default, test) is not in its local cache; pass --data PATH"), line
    assert "--data bundled" in line and "HF_HUB_OFFLINE=1" in line
    assert not (tmp_path / "runs").exists()


def test_readme_names_the_torch_ci_installs_and_its_size() -> None:
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    (pins,) = re.findall(r"^pip install --quiet (torch==\S+ torchvision==\S+)$", ci, re.M)
    torch_pin, vision_pin = pins.split()
    section = readme[readme.index("**`bash .ci/run`**"):readme.index("## Run your model")]
    assert f"`{torch_pin}`" in section and f"`{vision_pin}`" in section
    assert "CPU torch" not in section and "CUDA build" in section  # PyPI's torch is not a CPU build
    assert re.search(r"\d+(\.\d)? GB the first time", section)
    pyproject = (REPO / "pyproject.toml").read_text()
    assert "torch is pinned to builds that install without pulling a CUDA stack" not in pyproject
