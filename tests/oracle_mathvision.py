"""The official MATH-V scorer, run as released: a worker for the oracle test tier.

Run with the oracle venv's Python (`.ci/setup_oracle_venv.sh`), never the project's:

    .venv-oracle/bin/python tests/oracle_mathvision.py ORACLE_DIR TEST_JSONL ANSWERS_JSONL

ORACLE_DIR is ../shared/oracles/mathv (the official `evaluate.py` and `utils.py` at
mathllm/MATH-V @ a1f5cc3); TEST_JSONL the official `data/test.jsonl`; ANSWERS_JSONL a JSON lines
batch of `{"id": ..., "response": ...}`. The official `evaluate(ANSWERS_JSONL, regen_answer=True)`
runs on it unchanged and writes each line's `model_answer` and `correct` back into the file, as it
does for a released prediction file (its `latex2sympy` remembered per text, each text read as in a
fresh process: see `remembered` and `fresh`).
`utils.py` evaluates text with `eval`: this runs only on the
test corpus, in the test tier.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def main(oracle_dir: Path, test_jsonl: Path, answers: Path) -> None:
    answers = answers.resolve()
    with tempfile.TemporaryDirectory() as cwd:
        # evaluate.py reads "./data/test.jsonl" when it is imported.
        (Path(cwd) / "data").mkdir()
        (Path(cwd) / "data" / "test.jsonl").symlink_to(test_jsonl.resolve())
        os.chdir(cwd)
        sys.path.insert(0, str(oracle_dir.resolve()))
        import evaluate  # the official module, from ORACLE_DIR
        import utils

        # The official is_equal parses the same gold (and often the same answer) many times over;
        # latex2sympy is a pure function of its text, so each distinct text is parsed once.
        utils.latex2sympy = remembered(fresh(utils.latex2sympy))
        # the same frame-stack block as the product's sidecar (half the parser's time; no verdict changes)
        stack_block_of_the_sidecar()(lambda: evaluate.evaluate(str(answers), regen_answer=True))


def stack_block_of_the_sidecar() -> Callable[[Callable[[], Any]], Any]:
    """`on_one_stack_block` from tasks/latex2sympy_sidecar.py, loaded by path (it imports only the
    standard library; nothing else of the project is imported here)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "tasks" / "latex2sympy_sidecar.py"
    spec = importlib.util.spec_from_file_location("step3vl_latex2sympy_sidecar", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.on_one_stack_block


def fresh(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """`parse` as a fresh process runs it. latex2sympy2 1.9.1 keeps module state across texts: a
    differential atom (`d` and a letter, e.g. in `rounded`) rebinds its global `var` to a Symbol, and
    every later text with a letter then raises, so a verdict would depend on the answers scored
    before it in the file. The project scores each answer alone (docs/tasks.md counts this)."""
    import latex2sympy2

    def parse_fresh(text: str) -> Any:
        latex2sympy2.var, latex2sympy2.variances = {}, {}
        return parse(text)

    return parse_fresh


def remembered(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """`parse` with its results and its exceptions kept per text."""
    seen: dict[str, tuple[bool, Any]] = {}

    def parse_once(text: str) -> Any:
        if text not in seen:
            try:
                seen[text] = (True, parse(text))
            except Exception as exc:
                seen[text] = (False, exc)
        ok, result = seen[text]
        if not ok:
            raise result
        return result

    return parse_once


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: oracle_mathvision.py ORACLE_DIR TEST_JSONL ANSWERS_JSONL")
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
