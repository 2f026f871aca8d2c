"""How long a big report takes to render, how large it is, and how fast a browser opens it.

Builds 3 runs x 4 tasks = 12 run dirs holding 10,000 samples in all (records made with the
runner's own `make_record`, 400 distinct 800x600 JPEG images, reasoning of 0.5-6k characters),
then times `build_report` (HTML + CSV + Markdown) and, where /usr/bin/chromium exists, how long a
headless Chromium takes from navigating to the page to the explorer's third page of wrong answers
drawn (best of 3, over the DevTools protocol; Chromium's own start, the same for any page, is not
counted). Reasoning texts are one sentence repeated
(`--text repeated`, the default, as first measured) or real released chains of thought
(`--text released`, from ../shared/data), which compress as real model output does.

    .venv/bin/python benchmarks/report_render.py [--samples 10000] [--images 400] [--text released] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from PIL import Image as PILImage
from PIL import ImageDraw

from evals import metrics, store
from evals.runner import make_record
from evals.types import (
    GenParams,
    Image,
    Message,
    Request,
    Response,
    RunResult,
    RunSpec,
    Sample,
    Scored,
    Text,
    Usage,
)
from reports import build_report

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # tests/headless_chromium.py

TASKS = ("mmbench_en", "mmmu", "mathvision", "aime2025")
MODELS = (("openai/step3-vl", "sere", 0.78), ("openai/step3-vl", "pacore", 0.82), ("openai/baseline-8b", "sere", 0.7))
SUBJECTS = ("Art", "Biology", "Chemistry", "Economics", "Geography", "History", "Math", "Physics")


def make_images(folder: Path, count: int) -> list[Path]:
    rng = random.Random(1)
    paths = []
    for i in range(count):
        im = PILImage.new("RGB", (800, 600), (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
        draw = ImageDraw.Draw(im)
        for _ in range(6):
            x, y = rng.randrange(700), rng.randrange(500)
            draw.ellipse((x, y, x + 90, y + 90), fill=(rng.randrange(256), 40, 90))
        path = folder / f"img{i}.jpg"
        im.save(path, quality=85)
        paths.append(path)
    return paths


def make_run(out: Path, task: str, model: str, mode: str, skill: float, n: int, images: list[Path],
             rng: random.Random, corpus: list[str] | None = None) -> None:
    spec = RunSpec(task=task, model=model, mode=mode, repeats=1, params=GenParams())
    run_dir = out / store.run_id_for(spec)
    run_dir.mkdir(parents=True)
    samples, scored, completion = {}, [], 0
    with open(run_dir / store.SAMPLES, "w", encoding="utf-8") as fh:
        for i in range(n):
            sid = f"{task}_{i}"
            parts = [] if task == "aime2025" else [Image(path=str(images[i % len(images)]))]
            question = f"Question {i} about the figure. " * rng.randint(2, 12) + "Final answer: [the option]"
            sample = Sample(sid, [Message("user", [*parts, Text(question)])], rng.choice("ABCD"),
                            metadata={"subject": SUBJECTS[i % len(SUBJECTS)], "level": i % 5 + 1})
            samples[sid] = sample
            correct = rng.random() < skill
            answer = sample.target if correct else "E"
            tokens = rng.randint(500, 6000) * (3 if mode == "pacore" else 1)
            response = Response(f"{sid}#0", f"So the answer is clear. Final answer: {answer}",
                                reasoning_text(rng, tokens, corpus), "stop", Usage(300, tokens), latency=rng.random() * 30)
            s = Scored(response.key, sid, 0, answer, "answer_format", correct, float(correct))
            scored.append(s)
            record = make_record(Request(response.key, sid, 0, sample.messages, spec.params), sample, response, s)
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            completion += tokens
    result = RunResult(run_dir.name, "complete", spec, {"accuracy": metrics.accuracy(scored)},
                       {g: metrics.group_by(scored, samples, metrics.metadata_field(g)) for g in ("subject", "level")},
                       {"requests": n, "answered": n, "errors": 0, "truncated": 0, "unparsed": 0, "fallback": 0,
                        "judge": 0, "prompt_tokens": 300 * n, "completion_tokens": completion},
                       {"started": 0.0, "finished": 3600.0})
    store.write_json_atomic(run_dir / store.RESULTS, asdict(result))


READY_PROBE = ("(function () { var l = document.getElementById('sample-list');"
               " var ms = l && l.getAttribute('data-ready-ms');"
               " return ms ? [Number(ms), document.querySelectorAll('article').length] : null; })()")


def browser_seconds(html: Path, profile: Path, tries: int = 3) -> tuple[float, float, int] | None:
    """Best of `tries` loads of the page in one headless Chromium, at the explorer's third page of
    wrong answers: (the page's own time from navigation to the explorer's first page drawn, its
    `data-ready-ms`; the same seen from here, navigation request to the mark polled every 20 ms;
    the sample cards on the page: a page that did not render would show none). Chromium's start is
    not counted: it is the same for any page."""
    from headless_chromium import CHROMIUM, Browser

    if not CHROMIUM.exists():
        return None
    best_ready, best_wall, shown = float("inf"), float("inf"), 0
    with Browser(profile, width=1200, height=900) as tools:
        for _ in range(tries):
            tools.open("about:blank")  # the same URL again would be a same-document (hash) navigation
            started = time.perf_counter()
            tools.navigate(html.as_uri() + "#samples:verdict=wrong&page=3")
            while time.perf_counter() - started < 120:
                value = tools.eval(READY_PROBE)
                if value:
                    best_wall = min(best_wall, time.perf_counter() - started)
                    best_ready, shown = min(best_ready, value[0] / 1000), value[1]
                    break
                time.sleep(0.02)
    return best_ready, best_wall, shown


def released_texts() -> list[str] | None:
    """Real chains of thought (the released Gemini-Pro-CoT MathVision answers), when ../shared has them."""
    path = Path(__file__).resolve().parents[2] / "shared" / "data" / "mathvision" / "outputs" / "Gemini-Pro-CoT.jsonl"
    if not path.exists():
        return None
    return [json.loads(line)["response"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def reasoning_text(rng: random.Random, chars: int, corpus: list[str] | None) -> str:
    """`chars` characters of reasoning: "Let me think. " repeated (the default, as first measured), or
    real chains of thought drawn at random and joined (`--text released`), which compress as real
    model output does (gzip about 4x, against more than 20x for the repeated sentence)."""
    if corpus is None:
        return "Let me think. " * (chars // 14)
    parts, size = [], 0
    while size < chars:
        parts.append(rng.choice(corpus))
        size += len(parts[-1]) + 1
    return "\n".join(parts)[:chars]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=10_000)
    ap.add_argument("--images", type=int, default=400)
    ap.add_argument("--keep", help="build in this folder and keep it")
    ap.add_argument("--text", choices=["repeated", "released"], default="repeated",
                    help="reasoning texts: one sentence repeated, or real released chains of thought")
    args = ap.parse_args()
    corpus = released_texts() if args.text == "released" else None
    if args.text == "released" and corpus is None:
        raise SystemExit("--text released needs ../shared/data/mathvision/outputs (not in this checkout)")
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="report_bench_"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        (root / "images").mkdir(exist_ok=True)
        images = make_images(root / "images", args.images)
        rng = random.Random(0)
        per_run = args.samples // (len(TASKS) * len(MODELS))
        for task in TASKS:
            for model, mode, skill in MODELS:
                make_run(root / "runs", task, model, mode, skill, per_run, images, rng, corpus)
        started = time.perf_counter()
        written = build_report([str(root / "runs")], str(root / "report.html"), str(root / "report.csv"),
                               str(root / "summary.md"))
        elapsed = time.perf_counter() - started
        print(f"runs: {len(TASKS) * len(MODELS)}, samples: {per_run * len(TASKS) * len(MODELS)}, "
              f"distinct images: {args.images}")
        print(f"render (html + csv + md): {elapsed:.2f} s")
        for path in written:
            print(f"  {path.name}: {path.stat().st_size / 1e6:.2f} MB")
        opened = browser_seconds(root / "report.html", root / "profile")
        print("headless chromium, best of 3: " + (
            f"navigation -> explorer page 3 drawn {opened[0]:.2f} s (in the page; {opened[1]:.2f} s seen from "
            f"outside); {opened[2]} sample cards shown" if opened else "skipped (no chromium)"))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
