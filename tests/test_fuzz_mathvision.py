"""MathVision's equality fuzzed against the official scorer (oracle tier, issue 20): 100,000
answers from `tests/mathvision_fuzz.py` (distinct reply and gold pairs, 4 per generated answer;
STEP3VL_FUZZ_N / STEP3VL_FUZZ_PER_ANSWER for other sizes), scored by MATH-V's `evaluate.py` itself
(its own venv, latex2sympy2 1.9.1) and by the project with each engine.

- the default engine (MATH-V's parser in its sidecar) gives the official extracted answer and verdict
  on every one: 0 disagreements;
- the emulation (`-T equality=emulated`) agrees except for the deliberate deviations that
  docs/tasks.md counts, class by class: the counts here must be the documented ones;
- the answers that make the official scorer run for ever (HANGS) get a verdict within the
  per-answer time limit from both engines (wrong), and are counted.

The work starts when the test is collected (tests/conftest.py, `starts_early`), at the lowest CPU
priority, and the test runs last: the official scorer in two worker processes, the project in another
(the default engine through the scoring pool `evals.scoring.score_many`, two processes with a sidecar
each; then the emulation). The test prints its corpus size, disagreements and runtime in the oracle
summary.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, report_oracle
from mathvision_fuzz import HANGS, fuzz_items, oracle_test_lines
from test_oracle_mathvision import ORACLE_PYTHON, ORACLE_WORKER, Oracle, oracle_dir

from evals.scoring import score_many
from evals.types import Response, Sample
from tasks.mathvision import MathVision
from tasks.mathvision_rules import official_extract

pytestmark = [pytest.mark.oracle, pytest.mark.slow, pytest.mark.timeout(1200)]

DEFAULT_FUZZED, SEED = 100_000, 20261203
DEFAULT_PER_ANSWER = 4  # items per generated answer (fuzz_items)
PER_ANSWER = int(os.environ.get("STEP3VL_FUZZ_PER_ANSWER") or DEFAULT_PER_ANSWER)
# Another size for another run (`STEP3VL_FUZZ_N`); the emulation's class counts are the documented
# ones for the default corpus only.
FUZZED = int(os.environ.get("STEP3VL_FUZZ_N") or DEFAULT_FUZZED)
BATCH = 4000
HANG_WAIT_S = 3.0  # the official scorer is still at work on each hang after this long
PER_ANSWER_SECONDS = 10.0  # the product's limit (the sidecar's 5 s parse limit, and the process restart)
DOCS = REPO / "docs" / "tasks.md"

# The emulation's deliberate deviations, by class: (name, the official model_answer matches). The
# first class that matches names a disagreement; docs/tasks.md gives the count of each.
DEVIATIONS: list[tuple[str, re.Pattern[str]]] = [
    # `\operatorname{floor}(x)`: the original reads a function there; the emulation refuses it
    ("operatorname", re.compile(r"\\operatorname")),
    # a group inside `\{ \}` / `\lbrace \rbrace` (`\{{80}\}`), or an unmatched `\}` / `\rbrace` the
    # original stops before: the emulation refuses them
    ("escaped_braces", re.compile(r"\\\{\{|\\lbrace\{|\\rbrace|\\\}")),
    # `\exp{\ln{x}}` (braced) times something: the fork reads the product into the exponent
    ("exp_ln_product", re.compile(r"\\exp\{\\ln\{.*\}\}(\\times|\\cdot)")),
    # text after a complete expression (`_`, `…`, `)`, `.}`, `^1^1`, a thin space) that the original's
    # longest-prefix reading skips or rejects and the emulation judges the other way
    ("prefix_reading", re.compile(r"[_…)}\u2009]|\^1\^1")),
]


def deviation_class(official_answer: str) -> str:
    for name, pattern in DEVIATIONS:
        if pattern.search(official_answer):
            return name
    return "unclassified"


def documented_counts() -> dict[str, int]:
    """The `| class | count |` rows of docs/tasks.md's table of the emulation's deviations."""
    section = DOCS.read_text().split("<!-- emulation-deviations -->")
    assert len(section) == 3, "docs/tasks.md must hold the deviations table between two <!-- emulation-deviations --> marks"
    rows = re.findall(r"^\| `?([a-z_]+)`? \| (\d+) \|", section[1], flags=re.MULTILINE)
    return {name: int(count) for name, count in rows}


def score_all(task: MathVision, items: list[dict[str, Any]], samples: dict[str, Sample]) -> list[tuple[str, bool]]:
    """(extracted answer, verdict) per item; the sidecar's texts sent in batches first."""
    found = []
    for start in range(0, len(items), BATCH):
        chunk = items[start:start + BATCH]
        task.prefetch([(samples[i["id"]], official_extract(i["response"])[0]) for i in chunk])
        for item in chunk:
            scored = task.score(samples[item["id"]], Response(key=item["id"], text=item["response"]))
            found.append((scored.extracted or "", scored.correct))
    return found


def score_in_pool(task: MathVision, items: list[dict[str, Any]], samples: dict[str, Sample]) -> list[tuple[str, bool]]:
    """(extracted answer, verdict) per item, scored as `step3vl-eval score` scores a run."""
    scored = score_many(task, [(samples[i["id"]], Response(key=i["id"], text=i["response"]), 0) for i in items],
                        workers=2)
    return [(s.extracted or "", s.correct) for s in scored]


def sample_of(line: dict[str, Any]) -> Sample:
    return Sample(id=line["id"], messages=[], target=str(line["answer"]), choices=None, metadata={})


# ---- the work, started at collection (tests/conftest.py) and checked by the last test of the run ----
# The corpus costs about 600 CPU-seconds (every distinct text parsed by the official scorer and by the
# sidecar), while the rest of the suite leaves about as much of a 2-core machine idle (it waits on
# subprocesses and servers). So the work starts when the test is collected, at the lowest CPU priority,
# and the test runs last: it then waits only for what is left.

@dataclass
class FuzzWork:
    items: list[dict[str, Any]]
    oracle: Oracle
    # score_project_side in its own process group (not a session of its own: a new session is a new
    # scheduler autogroup, where nice 19 would count against nothing)
    project: subprocess.Popen[bytes]
    project_out: Path
    project_err: Path
    started: float

    def project_verdicts(self, timeout: float) -> dict[str, list[tuple[str, bool]]]:
        self.project.wait(timeout=timeout)
        assert self.project.returncode == 0, self.project_err.read_text()[-3000:]
        return {engine: [tuple(pair) for pair in found]
                for engine, found in json.loads(self.project_out.read_text()).items()}

    def stop(self) -> None:
        self.oracle.stop()
        if self.project.poll() is None:
            os.killpg(self.project.pid, signal.SIGKILL)  # its scoring pool and sidecars with it
            self.project.wait()


def start_work(work: Path) -> FuzzWork:
    """The corpus written, the official scorer and the project's scoring started, all at nice 19."""
    started = time.perf_counter()
    items = fuzz_items(FUZZED, SEED, PER_ANSWER)
    assert len({(i["response"], i["gold"]) for i in items}) == FUZZED
    test_jsonl, items_json = work / "test.jsonl", work / "items.json"
    test_jsonl.write_text("".join(json.dumps(line) + "\n" for line in oracle_test_lines(items)))
    items_json.write_text(json.dumps(items))
    oracle = Oracle([{"id": i["id"], "response": i["response"]} for i in items], test_jsonl, work, lowest_priority=True)
    project_out, project_err = work / "project.json", work / "project.err"
    with project_err.open("w") as err:
        project = subprocess.Popen(["nice", "-n", "19", sys.executable, __file__, str(items_json), str(project_out)],
                                   stdout=subprocess.DEVNULL, stderr=err, preexec_fn=os.setpgrp)
    return FuzzWork(items, oracle, project, project_out, project_err, started)


def score_project_side(items_json: Path, out: Path) -> None:
    """Both engines' (extracted answer, verdict) per item, as JSON in `out`: the default engine through
    the scoring pool of `step3vl-eval score` (two processes, each with its own sidecar), the emulation
    in batches in this process."""
    items = json.loads(items_json.read_text())
    samples = {line["id"]: sample_of(line) for line in oracle_test_lines(items)}
    ours = {"official": score_in_pool(MathVision(equality="official"), items, samples),
            "emulated": score_all(MathVision(equality="emulated"), items, samples)}
    partial = out.with_suffix(".partial")
    partial.write_text(json.dumps(ours))
    partial.replace(out)


EARLY: list[FuzzWork] = []


def start_early() -> None:
    """Called by tests/conftest.py at collection: the work begins if the official scorer is at hand
    (the test itself skips, or fails under STEP3VL_REQUIRE_ORACLES, when it is not)."""
    try:
        oracle_dir()
    except pytest.skip.Exception:
        return
    EARLY.append(start_work(Path(tempfile.mkdtemp(prefix="step3vl-fuzz-"))))


def stop_early() -> None:
    """Called by tests/conftest.py when the session ends: nothing of the work outlives it."""
    for work in EARLY:
        work.stop()
        shutil.rmtree(work.oracle.batches[0].parent, ignore_errors=True)


@pytest.mark.starts_early
def test_fuzzed_answers_get_the_official_verdict(tmp_path: Path):
    oracle_dir()
    work = EARLY[0] if EARLY else start_work(tmp_path)
    waited = time.perf_counter()
    ours = work.project_verdicts(timeout=1100)
    official = work.oracle.verdicts(timeout=1100)
    seconds, waited = time.perf_counter() - work.started, time.perf_counter() - waited
    items = work.items
    distinct_answers = len({row["model_answer"] for row in official})

    disagreements: dict[str, list[dict[str, Any]]] = {}
    for engine, found in ours.items():
        disagreements[engine] = [
            {"gold": item["gold"], "response": item["response"], "ours": answer, "our_verdict": correct,
             "official": row["model_answer"], "official_verdict": row["correct"]}
            for item, row, (answer, correct) in zip(items, official, found)
            if (answer, correct) != (row["model_answer"], row["correct"])]
    assert [len(found) for found in ours.values()] == [len(items)] * 2 == [len(official)] * 2
    by_class = Counter(deviation_class(d["official"]) for d in disagreements["emulated"])
    report_oracle(f"oracle mathvision fuzz: {FUZZED} answers, each a distinct reply and gold ({len({i['response'] for i in items})} "
                  f"distinct replies of {len({i['answer'] for i in items})} generated answers; {distinct_answers} distinct extracted), "
                  f"official engine {len(disagreements['official'])} disagreements, emulation "
                  f"{len(disagreements['emulated'])} (deliberate, by class: {dict(sorted(by_class.items()))}), "
                  f"{seconds:.0f} s at the lowest priority beside the other tests, {waited:.0f} s of it waited for at the end")
    if os.environ.get("STEP3VL_FUZZ_DUMP"):  # every disagreement, for whoever classifies them
        Path(os.environ["STEP3VL_FUZZ_DUMP"]).write_text(json.dumps(disagreements, indent=1, ensure_ascii=False))
    assert disagreements["official"] == [], json.dumps(disagreements["official"][:5], indent=1, ensure_ascii=False)
    unclassified = [d for d in disagreements["emulated"] if deviation_class(d["official"]) == "unclassified"]
    assert unclassified == [], json.dumps(unclassified[:8], indent=1, ensure_ascii=False)
    if FUZZED == DEFAULT_FUZZED and PER_ANSWER == DEFAULT_PER_ANSWER:
        assert dict(by_class) == {k: v for k, v in documented_counts().items() if v}


def test_answers_that_hang_the_official_scorer_are_scored_in_time_and_counted(tmp_path: Path):
    oracle_dir()
    lines = [{"id": str(i), "answer": "12", "options": [], "question": "", "level": 1, "subject": "fuzz"}
             for i in range(len(HANGS))]
    test_jsonl = tmp_path / "test.jsonl"
    test_jsonl.write_text("".join(json.dumps(line) + "\n" for line in lines))
    procs = []
    for i, answer in enumerate(HANGS):  # the official scorer on each, all at once
        batch = tmp_path / f"hang{i}.jsonl"
        batch.write_text(json.dumps({"id": str(i), "response": f"\\boxed{{{answer}}}"}) + "\n")
        procs.append(subprocess.Popen([str(ORACLE_PYTHON), str(ORACLE_WORKER), str(oracle_dir()), str(test_jsonl),
                                       str(batch)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    time.sleep(HANG_WAIT_S)
    still_running = [proc.poll() is None for proc in procs]
    for proc in procs:
        proc.kill()
        proc.wait()
    assert all(still_running), [a for a, running in zip(HANGS, still_running) if not running]

    sample = sample_of(lines[0])
    timings = {}
    for engine in ("official", "emulated"):
        task = MathVision(equality=engine)
        task.score(sample, Response(key="warm", text="\\boxed{12}"))  # the sidecar started
        for answer in HANGS:
            began = time.perf_counter()
            scored = task.score(sample, Response(key="1", text=f"\\boxed{{{answer}}}"))
            timings[engine, answer] = time.perf_counter() - began
            assert scored.correct is False and timings[engine, answer] < PER_ANSWER_SECONDS, (engine, answer)
    report_oracle(f"oracle mathvision hangs: {len(HANGS)} answers the official scorer does not finish "
                  f"({HANG_WAIT_S:.0f} s and counting), scored wrong by both engines in at most "
                  f"{max(timings.values()):.1f} s each")


if __name__ == "__main__":  # the project's side of the work (start_work): ITEMS_JSON OUT_JSON
    score_project_side(Path(sys.argv[1]), Path(sys.argv[2]))
