"""Scoring responses, one at a time or many at once in a process pool.

math-verify bounds its work with `signal.alarm`, which works only in a main thread, so parallel
scoring uses processes, never threads. A pool pays for itself only on many responses: workers
start in ~0.1 s (fork) to ~1 s (spawn, which re-imports sympy), so `score_many` scores fewer than
`MIN_POOL_ITEMS` responses, or any task with an LLM judge (its calls and its cache belong to the
main process), in this process. `rescore` (`step3vl-eval score`) and the PaCoRe round-0 agreement
use it; a live run scores each response as it arrives (docs/performance.md has the figures).

Workers get a copy of the task (tasks hold no state that scoring changes) and only what scoring
reads: samples without their prompt (no image bytes travel), responses without reasoning or trace.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

from evals.types import Response, Sample, Scored, Task

MIN_POOL_ITEMS = 200
CHUNKS_PER_WORKER = 4  # a few chunks each, so one slow chunk does not leave the others idle

Item = tuple[Sample, Response, int]  # (sample, response, repeat)


def score_response(task: Task, sample: Sample, response: Response, repeat: int) -> Scored:
    """Errors are counted, never scored as text; truncations are wrong and counted apart."""
    if response.error is not None:
        scored = Scored(response.key, sample.id, repeat, None, "error", False, error=True)
    elif response.truncated:
        scored = Scored(response.key, sample.id, repeat, None, "truncated", False, truncated=True)
    else:
        try:
            scored = task.score(sample, response)
        except Exception as exc:  # a scorer bug must not lose the run: the answer is saved, re-score later
            scored = Scored(response.key, sample.id, repeat, None, "scoring_error", False,
                            extra={"scoring_error": f"{type(exc).__name__}: {exc}"[:500]})
    scored.key, scored.sample_id, scored.repeat = response.key, sample.id, repeat
    return scored


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def score_many(task: Task, items: list[Item], workers: int | None = None) -> list[Scored]:
    """Score every (sample, response, repeat), in order; in a pool of `workers` processes when it pays."""
    workers = default_workers() if workers is None else workers
    if workers <= 1 or len(items) < MIN_POOL_ITEMS or getattr(task, "judge", None) is not None:
        return [score_response(task, sample, resp, repeat) for sample, resp, repeat in items]
    # Scoring the first item here imports what the scorer needs (math-verify: ~1 s); workers
    # started by fork inherit it instead of each importing it again.
    first = score_response(task, *items[0])
    light = [(scoring_view(sample), answer_view(resp), repeat) for sample, resp, repeat in items[1:]]
    size = max(1, -(-len(light) // (workers * CHUNKS_PER_WORKER)))
    chunks = [light[i:i + size] for i in range(0, len(light), size)]
    with ProcessPoolExecutor(workers, initializer=start_worker, initargs=(task,)) as pool:
        return [first, *(scored for chunk in pool.map(score_chunk, chunks) for scored in chunk)]


def scoring_view(sample: Sample) -> Sample:
    """The sample without its prompt: scorers read the target, choices and metadata only."""
    return replace(sample, messages=[])


SCORED_META = ("extraction",)  # meta a scorer reads: an extraction a replayed file carries (MathVista)


def answer_view(response: Response) -> Response:
    """The response without its reasoning and trace: scorers read the answer text (and SCORED_META)."""
    return replace(response, reasoning="", trace=[], meta={k: v for k, v in response.meta.items() if k in SCORED_META})


_worker_task: Task | None = None


def start_worker(task: Task) -> None:
    global _worker_task
    _worker_task = task


def score_chunk(chunk: list[Item]) -> list[Scored]:
    assert _worker_task is not None, "start_worker did not run"
    return [score_response(_worker_task, sample, resp, repeat) for sample, resp, repeat in chunk]
