"""Shared fixtures: the local chat server, small data fixtures, the CLI in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/chat_server.py, tests/tiny_vlm.py

from chat_server import ChatServer, Reply  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
# benchmarks/gpu_check.sh may point elsewhere (a device machine without ../shared beside the repo)
STEP3VL_BUILD = Path(os.environ.get("STEP3VL_BUILD") or REPO.parent / "shared" / "step3vl" / "build.py")


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test (an outside contributor's clone has none)."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path} is absent (../shared/data ships only with the project)")
    return path


@pytest.fixture
def chat_server() -> Iterator[ChatServer]:
    server = ChatServer().start()
    yield server
    server.stop()


AIME_FIXTURE = [
    {"id": "p1", "problem": "What is $1+1$?", "answer": "2"},
    {"id": "p2", "problem": "What is $6 \\times 7$?", "answer": "42"},
    {"id": "p3", "problem": "Give $70$ written with a leading zero.", "answer": "70"},
]


@pytest.fixture
def aime_data(tmp_path: Path) -> Path:
    path = tmp_path / "aime.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in AIME_FIXTURE))
    return path


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `step3vl-eval ARGS` as a user would, in a subprocess."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "evals.cli", *args], capture_output=True, text=True,
                          env=full_env, cwd=cwd or REPO, timeout=timeout)


# ---- tiny real models (tests/tiny_vlm.py), built once per session ------------------------------

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub
# Nor a package registry: pip finds nothing, so MathVision never installs MATH-V's parser here. Its
# official engine (the default) is the oracle venv's Python where that exists (.ci/setup_oracle_venv.sh;
# CI has it), else the side install `step3vl-eval setup mathvision` made in the user cache.
os.environ["PIP_NO_INDEX"] = "1"
ORACLE_PYTHON = REPO / ".venv-oracle" / "bin" / "python"
if ORACLE_PYTHON.is_file():
    os.environ.setdefault("STEP3VL_LATEX2SYMPY_PYTHON", str(ORACLE_PYTHON))
NEEDS_PARSER = "setup mathvision"  # what MathVision's refusal names when the parser is absent
PARSER_ABSENT = ("MathVision's default engine, MATH-V's official parser, is not installed here: run "
                 "`step3vl-eval setup mathvision` once (or bash .ci/setup_oracle_venv.sh) for this test")


def official_parser_at_hand() -> bool:
    from tasks.latex2sympy_sidecar import ENV_VAR, side_install_ready

    return bool(os.environ.get(ENV_VAR)) or side_install_ready()


@pytest.fixture(scope="session")
def tiny_qwen_vl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight Qwen2.5-VL saved with save_pretrained (needs torch + transformers)."""
    pytest.importorskip("torch", reason="the hf extra is not installed (pip install 'step3vl-eval[hf]')")
    pytest.importorskip("transformers", reason="the hf extra is not installed (pip install 'step3vl-eval[hf]')")
    from tiny_vlm import build_tiny_qwen_vl

    return build_tiny_qwen_vl(tmp_path_factory.mktemp("tiny_qwen_vl"))


@pytest.fixture(scope="session")
def tiny_step3vl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random STEP3-VL-10B on the model's own remote code, built by ../shared/step3vl/build.py:
    `tiny-hub` (the hub's tensor names) and `tiny-internal` (transformers' re-saved names) below it."""
    pytest.importorskip("torch", reason="the hf extra is not installed (pip install 'step3vl-eval[hf]')")
    pytest.importorskip("transformers", reason="the hf extra is not installed (pip install 'step3vl-eval[hf]')")
    pytest.importorskip("einops", reason="Step3-VL's remote code needs einops (pip install 'step3vl-eval[hf]')")
    import transformers

    if not transformers.__version__.startswith("4.57."):
        pytest.skip(f"{STEP3VL_BUILD.name} and Step3-VL's remote code need transformers 4.57.x "
                    f"(installed: {transformers.__version__})")
    if not STEP3VL_BUILD.exists():
        pytest.skip(f"Step3-VL remote code not available: {STEP3VL_BUILD} is absent "
                    "(../shared/step3vl ships only with the project)")
    out = tmp_path_factory.mktemp("tiny_step3vl")
    proc = subprocess.run([sys.executable, str(STEP3VL_BUILD), str(out)], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    if proc.returncode != 0:
        pytest.fail(f"{STEP3VL_BUILD} failed:\n{proc.stderr[-3000:]}")
    return out


@pytest.fixture
def mathvision_images(tmp_path: Path) -> Path:
    """Three rows in the official layout (data/test.jsonl beside images/), one image each."""
    from PIL import Image as PILImage

    folder = tmp_path / "mathvision"
    (folder / "images").mkdir(parents=True)
    (folder / "data").mkdir()
    rows = [
        {"id": "1", "question": "<image1>\nWhat is the area of the square?", "options": [], "answer": "4",
         "level": 1, "subject": "metric geometry - area", "image": "images/1.png"},
        {"id": "2", "question": "Which shape is red?\n<image1>", "options": ["A", "B", "C", "D", "E"],
         "answer": "B", "level": 2, "subject": "combinatorics", "image": "images/2.png"},
        {"id": "3", "question": "How many dots? <image1>", "options": [], "answer": "7",
         "level": 3, "subject": "counting", "image": "images/3.png"},
    ]
    for row, color in zip(rows, ["red", "green", "blue"]):
        PILImage.new("RGB", (80, 60), color).save(folder / row["image"])
    data = folder / "data" / "test.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return data


def write_say_problems(path: Path, n: int) -> Path:
    """AIME-schema problems "Say i." with answer i, for runs whose answers the server scripts."""
    path.write_text("".join(json.dumps({"id": f"q{i}", "problem": f"Say {i}.", "answer": str(i)}) + "\n"
                            for i in range(n)))
    return path


def say_responder(body: dict) -> Reply:
    """Right unless the seed is a multiple of 3: the answer depends only on the request."""
    problem = int(body["messages"][0]["content"].split("Say ", 1)[1].split(".", 1)[0])
    return Reply(f"\\boxed{{{problem if body['seed'] % 3 else problem + 1}}}")


def aime_run_command(data: Path, out: Path, url: str, k: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "evals.cli", "run", "aime2025", "--model", "openai/test-model", "--base-url", url,
            "-k", str(k), "--data", str(data), "--out", str(out), "--quiet", *extra]


# ---- the oracle tier's agreement figures, shown at the end of every run ---------------------------

ORACLE_LINES: list[str] = []


def report_oracle(line: str) -> None:
    """One task's corpus size and disagreements with its official scorer (shown in the run's summary)."""
    ORACLE_LINES.append(line.strip())


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Without MATH-V's parser (the core test path before `setup mathvision`), a test that failed only
    because MathVision refused to score without it skips with that reason. With
    STEP3VL_REQUIRE_ORACLES=1 (.ci/run sets it where ../shared/oracles exists), an oracle test that
    skips fails instead: CI must not pass on an oracle tier that did not run."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and NEEDS_PARSER in report.longreprtext + "".join(text for _, text in report.sections) \
            and not official_parser_at_hand():
        # The core test path without the parser: MathVision refused to score, as it must; a tier that
        # lacks its tool skips with the reason, like the hf, vLLM and browser tiers.
        report.outcome = "skipped"
        report.longrepr = (str(item.path), item.location[1] or 0, f"Skipped: {PARSER_ABSENT}")
    if report.skipped and os.environ.get("STEP3VL_REQUIRE_ORACLES") == "1" and item.get_closest_marker("oracle"):
        report.outcome = "failed"
        report.longrepr = f"oracle tier required (STEP3VL_REQUIRE_ORACLES=1) but skipped: {report.longrepr}"


# ---- work started at collection for a test that runs last -------------------------------------------

EARLY_MODULES: list[Any] = []


@pytest.hookimpl(trylast=True)  # after -k / -m have deselected
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `starts_early` run last, and their module's `start_early()` begins their work now at
    the lowest CPU priority: the 100,000-answer MathVision fuzz (about 600 CPU-seconds) then runs on
    the cores the other tests leave idle while they wait on subprocesses and servers."""
    last = [item for item in items if item.get_closest_marker("starts_early")]
    if not last or config.option.collectonly:
        return
    items[:] = [item for item in items if not item.get_closest_marker("starts_early")] + last
    for module in dict.fromkeys(item.module for item in last):
        module.start_early()
        EARLY_MODULES.append(module)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    for module in EARLY_MODULES:
        module.stop_early()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if ORACLE_LINES:
        terminalreporter.section("agreement with the official scorers (oracle tier)")
        for line in ORACLE_LINES:
            terminalreporter.write_line(line)
