"""Every command in the README's code blocks, run as a newcomer would run it.

The rule (stated in the README's "Development and tests"): a command in a ```bash block runs, in
README order, in one temporary folder with the hub off, and must exit 0, unless its line ends in a
`# needs: ...` comment naming what this machine lacks (network, hub, server, gpu, file, ci). Every
`step3vl-eval` command in the README, in a code block or inline, tagged or not, must also parse
with the real argument parser, so that no example drifts from the flags.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from evals.cli import build_parser

README = REPO / "README.md"
NEEDS = re.compile(r"#\s*needs:\s*([a-z, ]+)")
KNOWN_NEEDS = {"network", "hub", "server", "gpu", "file", "ci"}


def code_block_commands(text: str) -> list[str]:
    """The command lines of the ```bash blocks (a trailing backslash joins the next line)."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                commands.append(line.strip())
    return commands


def needs_of(command: str) -> set[str]:
    found = NEEDS.search(command)
    return {n.strip() for n in found.group(1).split(",") if n.strip()} if found else set()


def inline_cli_commands(text: str) -> list[str]:
    return [m for m in re.findall(r"`(step3vl-eval [^`]+)`", text)]


COMMANDS = code_block_commands(README.read_text(encoding="utf-8"))
OFFLINE = [c for c in COMMANDS if not needs_of(c)]


def test_the_readme_has_the_three_first_commands_and_tags_only_known_needs():
    first = [c.split("#")[0].strip() for c in COMMANDS[:3]]
    assert first == ["pip install -e .", "step3vl-eval demo", "bash .ci/run"]  # install, first run, tests
    assert COMMANDS[1] in OFFLINE and len(OFFLINE) >= 6
    for command in COMMANDS:
        assert needs_of(command) <= KNOWN_NEEDS, command


def test_every_step3vl_eval_command_in_the_readme_parses():
    text = README.read_text(encoding="utf-8")
    commands = [c.split("#")[0] for c in COMMANDS if c.startswith("step3vl-eval")] + inline_cli_commands(text)
    assert len(commands) >= 20
    parser = build_parser()
    for command in commands:
        argv = shlex.split(command.replace("...", "x").replace("$GITHUB_STEP_SUMMARY", "summary.md"))[1:]
        if {"--help", "--version", "-h"} & set(argv) or argv[-1:] == ["COMMAND"]:
            continue
        parser.parse_args(argv)  # a UserError (exit 2) here names the drifted flag


@pytest.mark.slow
def test_every_offline_readme_command_runs(tmp_path: Path):
    """In order, in one folder: `demo` writes step3vl-demo/, the next commands read it."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO), "PY": sys.executable}
    shim = 'step3vl-eval() { "$PY" -m evals.cli "$@"; }\n'  # the console script, from this checkout
    outputs = {}
    for command in OFFLINE:
        proc = subprocess.run(["bash", "-c", shim + command], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, f"{command}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        outputs[command] = proc.stdout
    assert (tmp_path / "step3vl-demo" / "leaderboard.html").is_file()
    assert (tmp_path / "report.html").is_file() and (tmp_path / "baseline.json").is_file()
    check_the_gate_example_gates_real_models(tmp_path, outputs)


def check_the_gate_example_gates_real_models(folder: Path, outputs: dict[str, str]) -> None:
    """The demo's folder holds MathVision runs of four models, the newest being the random baseline: the
    example must name the runs it gates (a real model's as the baseline), not teach gating against chance."""
    baseline = json.loads((folder / "baseline.json").read_text(encoding="utf-8"))["tasks"]
    assert list(baseline) == ["mathvision"] and Path(baseline["mathvision"]["source"]).name.startswith(
        "mathvision-Gemini-Pro-CoT-sere-")
    (gate,) = [out for command, out in outputs.items() if "gate --baseline baseline.json" in command]
    (current,) = [c for c in OFFLINE if "gate --baseline baseline.json" in c]
    assert "--current step3vl-demo/runs/mathvision-Qwen-VL-Plus-sere-" in current
    # Gemini-Pro-CoT 44 of 304 right, Qwen-VL-Plus 32: the drop the README describes, not significant
    assert "| mathvision | 1 | 14.47 | 10.53 | -3.95 |" in gate and "| inconclusive |" in gate
    runs = folder / "step3vl-demo" / "runs"
    proc = subprocess.run([sys.executable, "-m", "evals.cli", "gate", "--write-baseline", str(runs), "b.json"],
                          cwd=folder, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True)
    assert proc.returncode == 2 and "holds mathvision runs of 4 models" in proc.stderr  # the README says why


def test_every_test_and_file_the_docs_cite_exists():
    """docs/reliability.md (and the others) prove promises by naming tests: a renamed test must not
    leave a citation pointing at nothing."""
    texts = {p.name: p.read_text(encoding="utf-8") for p in [README, *sorted((REPO / "docs").glob("*.md"))]}
    missing = []
    for name, text in texts.items():
        for path, test in re.findall(r"(tests/[\w/]+\.py)(?:::(\w+))?", text):
            source = REPO / path
            if not source.is_file() or (test and not re.search(rf"def {test}\b", source.read_text(encoding="utf-8"))):
                missing.append(f"{name}: {path}{'::' + test if test else ''}")
    every_test = "\n".join(p.read_text(encoding="utf-8") for p in (REPO / "tests").glob("*.py"))
    for name, text in texts.items():  # a bare `test_name` beside a full citation
        missing += [f"{name}: {test}" for test in re.findall(r"`(test_\w+)`", text)
                    if not re.search(rf"def {test}\b", every_test)]
    assert not missing
