"""Scoring throughput of math-verify answers: one process against a pool (evals/scoring.py).

    python benchmarks/scoring_pool.py [--pairs 1000] [--workers 2]
    python benchmarks/scoring_pool.py timeline --pairs 600     (when each chunk ran, in which worker)

Each variant runs in a fresh interpreter that imports math-verify (sympy, ~1 s, paid once by any
scoring command) before the clock starts; the pool's time includes starting its workers, as in
`step3vl-eval score`. The answers are equivalent but
differently written expressions (fractions, radicals, polynomials, multiples of pi), all distinct,
so that math-verify parses and compares every one and no cache helps; integer answers take a
shortcut that never reaches math-verify and would measure nothing.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def gold_and_answer(i: int) -> tuple[str, str]:
    a, b = i + 2, 2 * i + 3
    forms = [
        (f"\\frac{{{a}}}{{{b}}}", f"\\frac{{{2 * a}}}{{{2 * b}}}"),
        (f"{a}\\sqrt{{{b}}}", f"\\sqrt{{{a * a * b}}}"),
        (f"x^2+{2 * a}x+{a * a}", f"(x+{a})^2"),
        (f"\\frac{{{a}\\pi}}{{{b}}}", f"{a}\\pi/{b}"),
    ]
    return forms[i % len(forms)]


def measure(pairs: int, workers: int) -> dict[str, Any]:
    """Score `pairs` responses with `workers` processes (1 = this process); wall and CPU seconds."""
    from evals.scoring import score_many
    from evals.types import Response, Sample
    from tasks import get_task

    task = get_task("aime2025")
    items = []
    for i in range(pairs):
        gold, answer = gold_and_answer(i)
        items.append((Sample(f"s{i}", [], gold), Response(f"s{i}#0", text=f"So \\boxed{{{answer}}}.",
                                                          finish_reason="stop"), 0))
    import math_verify  # noqa: F401  (once per process, ~1 s: a cost of start-up, not of throughput)

    own_before = cpu_seconds(resource.RUSAGE_SELF)
    started = time.perf_counter()
    scored = score_many(task, items, workers)
    wall = time.perf_counter() - started
    own, children = cpu_seconds(resource.RUSAGE_SELF) - own_before, cpu_seconds(resource.RUSAGE_CHILDREN)
    return {"workers": workers, "pairs": pairs, "wall": wall, "cpu": own + children, "cpu_main": own,
            "cpu_workers": children, "per_second": pairs / wall, "correct": sum(s.correct for s in scored)}


def cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def spin(n: int) -> float:
    started = time.perf_counter()
    total = 0
    for i in range(n):
        total += i
    return time.perf_counter() - started


def parallel_ceiling(workers: int, n: int = 5_000_000) -> float:
    """The speed-up the machine gives `workers` busy processes right now (workers on an idle machine,
    ~1 when other work already takes every core): the ceiling of any pool measured at this moment."""
    from concurrent.futures import ProcessPoolExecutor

    one = spin(n)
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(spin, [1000] * workers))  # start the workers first
        started = time.perf_counter()
        list(pool.map(spin, [n] * workers))
        return workers * one / (time.perf_counter() - started)


def timed_chunk(chunk: list[Any]) -> tuple[int, float, float, float]:
    """Score one chunk in a worker: (pid, start, end, CPU seconds)."""
    import os

    from evals.scoring import score_chunk

    started, cpu = time.time(), time.process_time()
    score_chunk(chunk)
    return os.getpid(), started, time.time(), time.process_time() - cpu


def timeline(pairs: int, workers: int) -> None:
    """When each chunk ran in which worker: overlapping chunks whose CPU time equals their wall time
    mean the workers really ran side by side (this is how to tell a pool's limit from the machine's)."""
    from concurrent.futures import ProcessPoolExecutor

    import math_verify  # noqa: F401

    from evals import scoring
    from evals.types import Response, Sample
    from tasks import get_task

    task = get_task("aime2025")
    items = [(Sample(f"s{i}", [], gold), Response(f"s{i}#0", text=f"So \\boxed{{{answer}}}.", finish_reason="stop"),
              0) for i, (gold, answer) in ((i, gold_and_answer(i)) for i in range(pairs))]
    light = [(scoring.scoring_view(a), scoring.answer_view(b), c) for a, b, c in items]
    size = -(-len(light) // (workers * scoring.CHUNKS_PER_WORKER))
    started = time.time()
    with ProcessPoolExecutor(workers, initializer=scoring.start_worker, initargs=(task,)) as pool:
        for pid, begin, end, cpu in pool.map(timed_chunk, [light[i:i + size] for i in range(0, len(light), size)]):
            print(f"worker {pid}: {begin - started:6.2f} -> {end - started:6.2f} s, CPU {cpu:.2f} s")
    print(f"{pairs} answers in {time.time() - started:.2f} s on {workers} workers")


def run_variant(pairs: int, workers: int) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "one", "--pairs", str(pairs), "--workers", str(workers)],
                         capture_output=True, text=True, cwd=ROOT, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def scoring_figures(pairs: int, workers: int, rounds: int = 3) -> dict[str, Any]:
    """The variants alternated `rounds` times, each judged by its fastest round (other work on the
    machine only ever slows a round down); the machine's parallel ceiling, measured before each
    pair of rounds (its best); and the speed-up that CPU seconds imply on `workers` idle cores (the
    one-process CPU time over the pool's critical path: its main process plus an even share of its
    workers' CPU time)."""
    ceilings, ones, pools = [], [], []
    for _ in range(rounds):
        ceilings.append(parallel_ceiling(workers))
        ones.append(run_variant(pairs, 1))
        pools.append(run_variant(pairs, workers))
    one = min(ones, key=lambda r: r["wall"])
    pool = min(pools, key=lambda r: r["wall"])
    return {"pairs": pairs, "workers": workers, "rounds": rounds, "one_per_s": one["per_second"],
            "pool_per_s": pool["per_second"], "speedup": one["wall"] / pool["wall"], "one_cpu": one["cpu"],
            "pool_cpu": pool["cpu"], "ceiling": max(ceilings),
            "idle_estimate": one["cpu"] / (pool["cpu_main"] + pool["cpu_workers"] / workers),
            "same_verdicts": len({r["correct"] for r in ones + pools}) == 1}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", nargs="?", choices=["one", "both", "timeline"], default="both")
    p.add_argument("--pairs", type=int, default=1000)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    if args.what == "one":
        print(json.dumps(measure(args.pairs, args.workers)))
    elif args.what == "timeline":
        timeline(args.pairs, args.workers)
    else:
        print(json.dumps(scoring_figures(args.pairs, args.workers), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
