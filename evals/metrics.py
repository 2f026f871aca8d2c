"""Shared metrics: mean with a 95% CI, avg@k, unbiased pass@k, maj@k, group-by.

Confidence intervals: Wilson score interval when each sample has one 0/1 outcome; otherwise a
percentile bootstrap over samples (1,000 resamples, fixed seed) of the per-sample mean, which keeps
the repeats of one problem together (they are not independent draws of the benchmark).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from evals.types import Sample, Scored

Z95 = 1.959963984540054
BOOTSTRAP_ITERS = 1000


def metric(value: float, ci: tuple[float, float], n: int, method: str, **extra: Any) -> dict[str, Any]:
    return {"value": value, "ci": [ci[0], ci[1]], "n": n, "method": method, **extra}


def wilson_interval(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    if n == 0:
        return (0.0, 0.0)
    p = successes / n
    denom = 1 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def bootstrap_interval(values: list[float], seed: int = 0) -> tuple[float, float]:
    if not values:
        return (0.0, 0.0)
    arr = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(arr), size=(BOOTSTRAP_ITERS, len(arr)))
    means = arr[idx].mean(axis=1)
    return (float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5)))


def mean_metric(per_sample: list[float], binary: bool) -> dict[str, Any]:
    """Mean of per-sample values with its CI (Wilson for 0/1 outcomes, else bootstrap)."""
    n = len(per_sample)
    value = sum(per_sample) / n if n else 0.0
    if binary:
        return metric(value, wilson_interval(sum(per_sample), n), n, "wilson")
    return metric(value, bootstrap_interval(per_sample), n, "bootstrap")


def by_sample(scored: Iterable[Scored]) -> dict[str, list[Scored]]:
    groups: dict[str, list[Scored]] = defaultdict(list)
    for s in scored:
        groups[s.sample_id].append(s)
    for g in groups.values():
        g.sort(key=lambda s: s.repeat)
    return dict(groups)


def accuracy(scored: list[Scored], value: Callable[[Scored], float] = lambda s: s.score) -> dict[str, Any]:
    """Micro accuracy over samples; with repeats this is avg@k (mean over samples of the mean over repeats)."""
    groups = by_sample(scored)
    per_sample = [sum(value(s) for s in g) / len(g) for g in groups.values()]
    single = all(len(g) == 1 for g in groups.values())
    binary = single and all(v in (0.0, 1.0) for v in per_sample)
    m = mean_metric(per_sample, binary)
    m["responses"] = sum(len(g) for g in groups.values())
    return m


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimator 1 - C(n-c, k) / C(n, k) (Chen et al., 2021)."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


Equivalence = Callable[[str, str], bool]


def majority_correct(group: list[Scored], canonical: Callable[[str], str] = str.strip,
                     equivalent: Equivalence | None = None) -> float:
    """maj@k for one problem: the answer given most often decides; 1.0 when it is right.

    Votes are grouped into answers with the check that scored them, so `\\boxed{70}`,
    `\\boxed{070}` and `\\boxed{70.}` are one answer:
    - every vote judged right is one answer (each equals the gold by the task's check);
    - the others are grouped by `canonical` form; then, in order of first vote, each form joins the
      first earlier answer whose first form `equivalent` finds equal to it (only distinct forms are
      compared, each with one form per answer), else it starts an answer of its own.
    A right vote never joins a wrong one. Votes without an extracted answer do not vote; a problem
    with none scores 0. Ties go to the answer whose first vote came first (lowest repeat).
    """
    answers: list[tuple[str | None, list[Scored]]] = []  # (first canonical form or None for right, votes)
    joined: dict[str, int] = {}  # canonical form -> index in answers
    for vote in group:
        if vote.extracted is None:
            continue
        if vote.correct:
            at = next((i for i, (form, _) in enumerate(answers) if form is None), None)
            if at is None:
                answers.append((None, []))
                at = len(answers) - 1
        else:
            form = canonical(str(vote.extracted))
            if form not in joined:
                joined[form] = first_equal(form, answers, equivalent)
                if joined[form] == len(answers):
                    answers.append((form, []))
            at = joined[form]
        answers[at][1].append(vote)
    if not answers:
        return 0.0
    top = max(len(votes) for _, votes in answers)
    winner = next(form for form, votes in answers if len(votes) == top)  # first seen among the tied
    return 1.0 if winner is None else 0.0


def first_equal(form: str, answers: list[tuple[str | None, list[Scored]]], equivalent: Equivalence | None) -> int:
    """Index of the first wrong answer whose first form is equivalent to `form`; len(answers) if none."""
    if equivalent is not None:
        for i, (first, _) in enumerate(answers):
            if first is not None and equivalent(first, form):
                return i
    return len(answers)


def repeat_metrics(scored: list[Scored], k: int, canonical: Callable[[str], str] = str.strip,
                   equivalent: Equivalence | None = None) -> dict[str, dict[str, Any]]:
    """avg@k, pass@k and maj@k over samples that each have (up to) k scored repeats.

    maj@k groups votes with the task's `canonical` form and `equivalent` check (`majority_correct`).
    """
    groups = by_sample(scored)
    out: dict[str, dict[str, Any]] = {f"avg@{k}": accuracy(scored)}
    pass_vals = []
    for g in groups.values():
        n, c = len(g), sum(1 for s in g if s.correct)
        pass_vals.append(pass_at_k(n, c, min(k, n)))
    out[f"pass@{k}"] = mean_metric(pass_vals, binary=False)
    majority = [majority_correct(g, canonical, equivalent) for g in groups.values()]
    out[f"maj@{k}"] = mean_metric(majority, binary=k == 1)
    for m in out.values():
        m["k"] = k
    return out


def group_by(
    scored: list[Scored],
    samples: dict[str, Sample],
    category: Callable[[Sample], str | None],
    value: Callable[[Scored], float] = lambda s: s.score,
) -> dict[str, dict[str, Any]]:
    """Accuracy per category; samples whose category is None are left out."""
    buckets: dict[str, list[Scored]] = defaultdict(list)
    for s in scored:
        cat = category(samples[s.sample_id])
        if cat is not None:
            buckets[cat].append(s)
    return {cat: accuracy(items, value) for cat, items in sorted(buckets.items())}


def metadata_field(name: str) -> Callable[[Sample], str | None]:
    def get(sample: Sample) -> str | None:
        v = sample.metadata.get(name)
        return None if v is None else str(v)

    return get
