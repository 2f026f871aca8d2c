"""`step3vl-eval demo`: the main job end to end, offline, in seconds, on the data the package ships.

1. MathVision `testmini` (bundled, MIT): the MATH-V authors' released predictions of four models,
   replayed and scored here; every verdict must equal the official evaluator's (the `correct` flag
   each released line carries). These are real models' answers, made by their authors, not now.
2. AIME 2025 (bundled answer key): the `mock` tool, 4 repeats, as a pipeline check of avg@k, pass@k
   and maj@k with their CIs. The mock is a script, not a model: its score means nothing.
3. A leaderboard of these runs in HTML and CSV, and the next steps.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable

from evals import runner, store
from evals.types import RunResult, RunSpec

RELEASED = ("Gemini-Pro-CoT", "Qwen-VL-Plus", "LLaVA-v1.5-7B", "Random-Chance")  # MATH-V's released files
MOCK_REPEATS = 4
DEMO_ENGINE = {"equality": "emulated"}  # offline and install-free; labelled as such where it prints


def released_file(model: str) -> Path:
    from tasks.data import bundled_dir

    return bundled_dir("mathvision") / "outputs" / f"{model}.jsonl"


def official_agreement(run_dir: Path, predictions: Path) -> tuple[int, int, int]:
    """(our verdicts equal to the official ones, items, official hits) over the replayed file."""
    official = {str(r["id"]): bool(r["correct"]) for r in map(json.loads, predictions.read_text().splitlines())}
    records = store.latest_records(store.read_jsonl(run_dir / store.SAMPLES)).values()
    same = sum(r["scored"]["correct"] == official.get(r["sample_id"]) for r in records)
    return same, len(official), sum(official.values())


SpecFor = Callable[[str, dict[str, Any]], RunSpec]


def demo_run(spec_for: SpecFor, task: str, model: str, out: Path,
             samples: int | None = None, task_options: dict[str, str] | None = None) -> tuple[Path, RunResult, str]:
    """One run through the same path as `step3vl-eval run` (the CLI's spec_for, runner); also its command line."""
    opts: dict[str, Any] = {"model": model, "data": "bundled", "tasks": [task], "adapter_options": {},
                            "task_options": dict(task_options or {}), "out": str(out)}
    argv = ["step3vl-eval", "run", task, "--data", "bundled", "--model", model, "--out", str(out)]
    argv += [a for k, v in (task_options or {}).items() for a in ("-T", f"{k}={v}")]
    if samples is not None:
        opts["samples"] = samples
        argv += ["--samples", str(samples)]
    run_dir, result = runner.run(spec_for(task, opts), show_progress=False)
    return run_dir, result, shlex.join(argv)


def run_demo(out: Path, spec_for: SpecFor) -> int:
    """`spec_for`: evals.cli.spec_for, which turns `run`'s options into a RunSpec."""
    import reports

    started = time.perf_counter()
    print("step3vl-eval demo: offline, on the data bundled with the package (no hub, no model server, no GPU)\n")
    runs = out / "runs"
    mismatches = 0
    commands = []
    made = []  # the leaderboard shows these, not whatever else `runs/` holds (an earlier demo's runs, yours)
    print("MathVision testmini (bundled: 304 problems) · accuracy [95% CI] · check against the official evaluator\n"
          "  scored by the emulation of MATH-V's parser (-T equality=emulated: offline, nothing to install); a real\n"
          "  run scores with MATH-V's own parser, installed once by `step3vl-eval setup mathvision`")
    for model in RELEASED:
        predictions = released_file(model)
        run_dir, result, command = demo_run(spec_for, "mathvision", f"replay:{predictions}", runs, task_options=DEMO_ENGINE)
        made.append(run_dir)
        same, total, hits = official_agreement(run_dir, predictions)
        mismatches += total - same
        check = f"same verdict on all {total} ({hits} right)" if same == total else f"{total - same} verdicts DIFFER"
        print(f"  {model + ' (1)':<20} {score(result.metrics['accuracy'])}   {check}")
        commands.append(command)
    print(f"AIME 2025 (bundled answer key: 30 problems) · {MOCK_REPEATS} repeats")
    run_dir, result, command = demo_run(spec_for, "aime2025", "mock", runs, samples=MOCK_REPEATS)
    made.append(run_dir)
    metrics = " · ".join(f"{name} {score(result.metrics[key])}"
                         for name, key in ((f"avg@{MOCK_REPEATS}", "accuracy"), (f"pass@{MOCK_REPEATS}", f"pass@{MOCK_REPEATS}"),
                                           (f"maj@{MOCK_REPEATS}", f"maj@{MOCK_REPEATS}")))
    print(f"  {'mock (2)':<20} {metrics}")
    commands.append(command)
    print("\n(1) not run now: the answers the MATH-V authors released for this model, replayed and scored here;\n"
          "    'same verdict': item by item, our scorer agrees with the official evaluator's released verdicts.\n"
          "(2) the mock tool is a script that answers \\boxed{0} to everything, not a model: its score means\n"
          "    nothing; it checks the pipeline (repeats, avg@k / pass@k / maj@k, confidence intervals, reports).")
    html, csv = out / "leaderboard.html", out / "leaderboard.csv"
    reports.build_report([str(d) for d in made], html=str(html), csv=str(csv),
                         title="step3vl-eval demo: released MathVision predictions replayed, and a mock pipeline check")
    print(f"\nruns:        {runs}/  (each: results.json, samples.jsonl, run.log)")
    print(f"leaderboard: {html}  and  {csv}")
    print("the same runs, one command each:")
    for command in commands:
        print(f"  {command}")
    print(NEXT_STEPS)
    print(f"demo done in {time.perf_counter() - started:.1f} s")
    if mismatches:
        print(f"step3vl-eval: {mismatches} MathVision verdicts differ from the official evaluator's: a scorer bug, "
              "please report it", file=sys.stderr)
        return 1
    return 0


def score(metric: dict[str, Any]) -> str:
    lo, hi = metric["ci"]
    return f"{100 * metric['value']:5.2f} [{100 * lo:5.2f}, {100 * hi:5.2f}]"


NEXT_STEPS = """
next steps
  your model behind an OpenAI-compatible server (vLLM, SGLang, ...), offline data, no hub:
    step3vl-eval run mathvision --data bundled --model openai/NAME --base-url http://127.0.0.1:8000/v1
  the full benchmarks from the hub (report settings: AIME 64 samples, 65,536 max tokens):
    step3vl-eval run aime2025 mmmu mathvision --model openai/NAME --base-url http://127.0.0.1:8000/v1
  predictions another tool made:  step3vl-eval run mathvision --data bundled --model replay:preds.jsonl
  a local model:  pip install -e ".[hf]"  then  --model hf/ID_OR_DIR  (see README.md)
  compare runs:   step3vl-eval report runs/ --html leaderboard.html --csv leaderboard.csv"""
