"""Model outputs are data, never code: hostile answers through every extractor and scorer.

Each (task, payload) is scored in a worker process with a timeout, so a scorer that hung or
blew up would fail the test rather than the suite; a marker file shows nothing was executed.
"""

from __future__ import annotations

import base64
import io
import json
import time
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache
from pathlib import Path

import pytest

PER_ANSWER_SECONDS = 30  # generous for a loaded 2-core machine; math-verify bounds itself at 5 s


def payloads(marker: Path) -> list[str]:
    touch = f"__import__('os').system('touch {marker}')"
    return [
        touch,
        f"\\boxed{{{touch}}}",
        f"The answer is {touch}",
        f"Final answer: A; exec(\"open('{marker}', 'w')\")",
        f"$eval(\"open('{marker}', 'w')\")$",
        "\\boxed{Symbol('x').__class__.__mro__[1].__subclasses__()}",
        "\\boxed{\\frac{__import__('os')}{2}}",
        f"\\boxed{{lambda: open('{marker}', 'w')}}",
        "\\boxed{" + "(" * 3000 + "1" + ")" * 3000 + "}",
        "\\boxed{" + "\\frac{1}{" * 500 + "1" + "}" * 500 + "}",
        "\\boxed{" + "\\sqrt{" * 500 + "2" + "}" * 500 + "}",
        "\\boxed{9^{9^{9^{9^{9^{9}}}}}}",
        "\\boxed{100000!}",
        "\\boxed{" + "9" * 100000 + "x}",
        "\\boxed{10**10**10**10}",
        "\\boxed{" + "1+" * 20000 + "1}",
        "\\boxed{" + "9" * 100000 + "}",
        "x" * 1_000_000,
        "\\boxed{\\begin{pmatrix}" + "1&" * 2000 + "1\\end{pmatrix}}",
        "\\boxed{\x00\ud800}".encode("utf-8", "replace").decode("utf-8"),
        "(A) (B) (C) (D) " * 5000,
        "最终答案：" + "甲" * 10000,
    ]


def png_b64() -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def write_fixtures(root: Path) -> dict[str, Path]:
    aime = root / "aime.jsonl"
    aime.write_text(json.dumps({"id": "a1", "problem": "2+2?", "answer": "4"}) + "\n")
    mathvision = root / "mathvision.jsonl"
    mathvision.write_text("".join(json.dumps(r) + "\n" for r in [
        {"id": "1", "question": "How many? <image1>", "options": [], "answer": "6", "solution": None, "level": 1,
         "subject": "counting", "image": "images/1.jpg"},
        {"id": "2", "question": "Which? <image1>", "options": ["1", "2", "3", "4", "5"], "answer": "C",
         "solution": None, "level": 2, "subject": "logic", "image": "images/2.jpg"},
    ]))
    mmmu = root / "mmmu.jsonl"
    mmmu.write_text("".join(json.dumps(r) + "\n" for r in [
        {"id": "validation_Math_1", "question": "<image 1> Which value?", "options": "['1', '2', '3', '4']",
         "answer": "B", "question_type": "multiple-choice", "subfield": "Algebra", "topic_difficulty": "Easy",
         "image_1": "img.png"},
        {"id": "validation_Math_2", "question": "How much?", "options": "[]", "answer": "3.5",
         "question_type": "open", "subfield": "Algebra", "topic_difficulty": "Easy"},
    ]))
    mmbench = root / "mmbench.tsv"
    header = ["index", "question", "hint", "A", "B", "C", "D", "answer", "category", "l2-category", "image", "split"]
    row = ["0", "What colour?", "", "red", "blue", "", "", "A", "color", "perception", png_b64(), "dev"]
    mmbench.write_text("\t".join(header) + "\n" + "\t".join(row) + "\n")
    return {"aime2025": aime, "mathvision": mathvision, "mmmu": mmmu, "mmbench_en": mmbench}


@lru_cache(maxsize=None)
def _task_and_samples(name: str, data: str):
    from tasks import get_task

    task = get_task(name)
    return task, task.load(data, None, None)


def score_in_worker(name: str, data: str, text: str) -> list[tuple[str | None, float]]:
    """Score one answer against every sample of a task; (extracted, seconds) per sample."""
    from evals.types import Response

    task, samples = _task_and_samples(name, data)
    out = []
    for sample in samples:
        start = time.perf_counter()
        scored = task.score(sample, Response(key=f"{sample.id}#0", text=text, finish_reason="stop"))
        task.aggregate({sample.id: sample}, [scored])
        out.append((scored.extracted if scored.extracted is None else str(scored.extracted)[:50],
                    time.perf_counter() - start))
    return out


@pytest.mark.slow
def test_hostile_answers_are_never_executed_and_score_in_bounded_time(tmp_path: Path):
    marker = tmp_path / "PWNED"
    fixtures = write_fixtures(tmp_path)
    jobs = [(name, str(path), text) for name, path in fixtures.items() for text in payloads(marker)]
    with ProcessPoolExecutor(max_workers=2) as pool:
        futures = [(job, pool.submit(score_in_worker, *job)) for job in jobs]
        for (name, _, text), fut in futures:
            results = fut.result(timeout=PER_ANSWER_SECONDS * 4)
            for _, seconds in results:
                assert seconds < PER_ANSWER_SECONDS, f"{name}: {text[:60]!r} took {seconds:.1f} s"
    assert not marker.exists(), "a model answer was executed"


def test_code_in_an_answer_is_parsed_as_math_never_run(tmp_path: Path):
    from tasks.mathcheck import math_equal

    marker = tmp_path / "PWNED"
    for text in payloads(marker)[:8]:
        math_equal("0", text)
    assert not marker.exists()
