"""MathVision against the official scorer itself (oracle tier): zero disagreements.

The official MATH-V `evaluate.py` / `utils.py` (../shared/oracles/mathv, mathllm/MATH-V @ a1f5cc3)
run unchanged in their own venv (`.ci/setup_oracle_venv.sh`: latex2sympy2 1.9.1, ANTLR 4.7.2) through
`tests/oracle_mathvision.py`, two worker processes at a time. The project scores the same responses
and must give the same extracted answer and the same verdict on every one, over two corpora:
- released: every response of the four released MATH-V prediction files (4 x 3,040);
- generated: 20,000 responses built at test time over the real golds and options of `test.jsonl`
  (`tests/mathvision_corpus.py`, seeded).
Both equality engines are held to it: MATH-V's parser in its sidecar (the default, here the oracle
venv's Python) and the emulation; they score while the oracle works, and the test prints one summary
line per engine. tests/test_fuzz_mathvision.py adds 100,000 fuzzed answers.
"""

from __future__ import annotations

import json
import math
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, shared_data, report_oracle
from mathvision_corpus import generated_responses
from test_mathvision import ORIGINAL_PARSER_CASES, PREFIX_VALUES

from evals.types import Response
from tasks.mathvision import MathVision

pytestmark = [pytest.mark.oracle, pytest.mark.slow, pytest.mark.timeout(900)]

ORACLE_PYTHON = REPO / ".venv-oracle" / "bin" / "python"
ORACLE_WORKER = Path(__file__).parent / "oracle_mathvision.py"
RELEASED = ("Gemini-Pro-CoT", "Qwen-VL-Plus", "LLaVA-v1.5-7B", "Random-Chance")
GENERATED, SEED = 20_000, 20261201
WORKERS = 2


def oracle_dir() -> Path:
    path = REPO.parent / "shared" / "oracles" / "mathv"
    if not (path / "evaluate.py").is_file():
        pytest.skip(f"the official MATH-V scorer is not available: {path} is absent")
    if not ORACLE_PYTHON.is_file():
        pytest.skip(f"the oracle venv is not set up: {ORACLE_PYTHON} is absent (run .ci/setup_oracle_venv.sh)")
    return path


class Oracle:
    """The official scorer on a batch of `{"id", "response"}`, running in the background (at the lowest
    CPU priority with `lowest_priority`: it then uses only what the rest of the test run leaves idle)."""

    def __init__(self, rows: list[dict[str, Any]], test_jsonl: Path, work: Path, lowest_priority: bool = False):
        size = -(-len(rows) // WORKERS)
        self.batches = [work / f"batch{i}.jsonl" for i in range(WORKERS)]
        # stderr to a file: evaluate.py's progress bars would fill a pipe that nobody reads for minutes
        self.errors = [work / f"batch{i}.err" for i in range(WORKERS)]
        nice = ["nice", "-n", "19"] if lowest_priority else []
        for i, batch in enumerate(self.batches):
            batch.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows[i * size:(i + 1) * size]))
        self.procs = []
        for batch, errors in zip(self.batches, self.errors):
            with errors.open("w") as err:
                self.procs.append(subprocess.Popen([*nice, str(ORACLE_PYTHON), str(ORACLE_WORKER), str(oracle_dir()),
                                                    str(test_jsonl), str(batch)], stdout=subprocess.DEVNULL, stderr=err))
        self.rows: list[dict[str, Any]] | None = None

    def verdicts(self, timeout: float = 900) -> list[dict[str, Any]]:
        """Each row with the official `model_answer` and `correct`, in order (waits for the workers)."""
        if self.rows is None:
            for proc, errors in zip(self.procs, self.errors):
                proc.wait(timeout=timeout)
                assert proc.returncode == 0, errors.read_text()[-2000:]
            self.rows = [json.loads(line) for b in self.batches for line in b.read_text().splitlines()]
        return self.rows

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def corpora(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, list[dict[str, Any]]], Oracle]]:
    """({corpus: [{"id", "response"}]}, the oracle already working on all of them)."""
    oracle_dir()
    root = shared_data("mathvision")
    test_jsonl = root / "data" / "test.jsonl"
    items = [json.loads(line) for line in test_jsonl.read_text().splitlines()]
    released = [{"id": r["id"], "response": r["response"]} for model in RELEASED
                for r in map(json.loads, (root / "outputs" / f"{model}.jsonl").read_text().splitlines())]
    generated = generated_responses(items, GENERATED, SEED)
    oracle = Oracle(released + generated, test_jsonl, tmp_path_factory.mktemp("oracle_mathvision"))
    yield {"released": released, "generated": generated}, oracle
    oracle.stop()


@pytest.fixture(scope="module")
def samples() -> dict[str, Any]:
    data = shared_data("mathvision", "data", "test.jsonl")
    return {s.id: s for s in MathVision().load(str(data), None, None)}


def project_answers(rows: list[dict[str, Any]], samples: dict[str, Any],
                    engine: str) -> tuple[list[tuple[str, bool]], float]:
    """(the project's (extracted answer, verdict) per row with this equality engine, items/s)."""
    task, found = MathVision(equality=engine), []
    started = time.perf_counter()
    for row in rows:
        scored = task.score(samples[row["id"]], Response(key=row["id"], text=row["response"]))
        found.append((scored.extracted or "", scored.correct))
    return found, len(rows) / (time.perf_counter() - started)


def test_project_agrees_with_the_official_scorer(corpora: tuple[dict[str, list[dict[str, Any]]], Oracle],
                                                 samples: dict[str, Any]):
    """Both engines score both corpora (while the oracle works), then every answer and verdict is compared."""
    rows, oracle = corpora
    ours = {engine: {name: project_answers(corpus, samples, engine) for name, corpus in rows.items()}
            for engine in ("official", "emulated")}
    verdicts = oracle.verdicts()
    official = {"released": verdicts[:len(rows["released"])], "generated": verdicts[len(rows["released"]):]}
    assert len(official["released"]) == 4 * 3040 and len(official["generated"]) == GENERATED

    failures = []
    for engine, by_corpus in ours.items():
        parts = []
        for name, (answers, rate) in by_corpus.items():
            differing = [{"id": row["id"], "response": row["response"][-300:], "ours": answer, "our_verdict": correct,
                          "official": row["model_answer"], "official_verdict": row["correct"]}
                         for row, (answer, correct) in zip(official[name], answers)
                         if (answer, correct) != (row["model_answer"], row["correct"])]
            parts.append(f"{name} {len(answers)} responses, {len(differing)} disagreements ({rate:.0f}/s)")
            if differing:
                failures.append(f"{engine} / {name}: {len(differing)} disagreements, first: "
                                + json.dumps(differing[:5], indent=1, ensure_ascii=False))
        report_oracle(f"oracle mathvision [{engine}]: " + "; ".join(parts))
    assert failures == []


def test_the_released_files_keep_their_official_verdicts(corpora: tuple[dict[str, list[dict[str, Any]]], Oracle]):
    # The oracle as run gives the counts the official _result.json files state (218/259/326/436).
    root = shared_data("mathvision", "outputs")
    rows = iter(corpora[1].verdicts())
    for model in RELEASED:
        hits = sum(next(rows)["correct"] for _ in range(3040))
        assert f"{hits}/3040" == json.loads((root / f"{model}_result.json").read_text())["-all"].split("=")[0]


def test_rule_tables_agree_with_the_oracle(tmp_path: Path):
    """Each case of the new rules' table (prefix semantics, `\\%`, `\\!`) through the official scorer."""
    oracle_dir()
    items = [{"id": str(i), "answer": gold, "options": options, "question": "", "level": 1, "subject": "s"}
             for i, (gold, options, *_rest) in enumerate(ORIGINAL_PARSER_CASES)]
    test_jsonl = tmp_path / "test.jsonl"
    test_jsonl.write_text("".join(json.dumps(item) + "\n" for item in items))
    rows = [{"id": str(i), "response": case[2]} for i, case in enumerate(ORIGINAL_PARSER_CASES)]
    got = [(v["model_answer"], v["correct"]) for v in Oracle(rows, test_jsonl, tmp_path).verdicts()]
    assert got == [(answer, correct) for _, _, _, answer, correct, _ in ORIGINAL_PARSER_CASES]


def test_sidecar_never_runs_an_answer_and_bounds_each_parse(tmp_path: Path):
    """Hostile answers through the official engine (the sidecar): nothing executed, each verdict within the limit."""
    from test_untrusted_text import PER_ANSWER_SECONDS, payloads

    oracle_dir()
    marker = tmp_path / "PWNED"
    task = MathVision(equality="official")
    sample = task.load(str(shared_data("mathvision", "data", "testmini.jsonl")), None, 1)[0]
    for text in payloads(marker):
        started = time.perf_counter()
        scored = task.score(sample, Response(key="1", text=text))
        seconds = time.perf_counter() - started
        assert seconds < PER_ANSWER_SECONDS, f"{text[:60]!r} took {seconds:.1f} s"
        assert scored.correct is False
    assert not marker.exists(), "a model answer was executed"


def test_value_table_agrees_with_the_original_parser():
    """Each value of the table as the original parser itself gives it (no fast path), valued by eval as
    the official scorer does: this is the test tier, and the table is ours."""
    from tasks.latex2sympy_sidecar import OriginalParser

    oracle_dir()
    parser = OriginalParser(str(ORACLE_PYTHON))
    found = []
    for text, _, _ in PREFIX_VALUES:
        printed = parser.printed(text)
        try:
            found.append(round(eval(printed, dict(vars(math))), 2))  # noqa: S307 - our own table, test tier only
        except Exception:
            found.append(None)
    parser.stop()
    assert [(v, type(v)) for v in found] == [(v, type(v)) for _, v, _ in PREFIX_VALUES]
