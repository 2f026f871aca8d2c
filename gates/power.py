"""Power planning for the CI gate (`step3vl-eval gate --plan`): how many questions, or how many
repeats, catch a given drop at 80% power, and what the baseline's own size catches.

Simulated, not a textbook formula. The true per-question rates are the baseline's own: with repeats
(k > 1) each question's share of right answers; with k = 1 a single run cannot tell a question that
is always right from one right by luck, so every question is taken to be right at the task's accuracy,
independently in each run (the least favourable case for a paired test: the plan errs on the large
side). A drop of D points is planted by scaling every rate down by D / accuracy, which keeps rates in
[0, 1] and lowers the mean by exactly D. Each simulated CI run draws a fresh baseline and a fresh
current run at the size tried (k repeats per question: Binomial(k, rate) / k; more questions than the
baseline holds are drawn from its rates with replacement), and gates them as `gate` does:
exact McNemar mid-p for k = 1; for k > 1 the paired bootstrap's p, read off the normal
approximation of the bootstrap distribution (10,000 resamples per simulated run would be too slow).
The drop is caught when the gate says `regression`: the observed drop exceeds the tolerance and p is
below alpha (alpha / tasks under Holm, the level one task's drop must reach when the others are null).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from statistics import NormalDist
from pathlib import Path
from typing import Any

import numpy as np

from evals import store
from gates.gate import POWER, SEED, TaskRun, check_levels, points, read_side
from evals.types import UserError

SIMULATIONS = 2000
MAX_QUESTIONS = 100_000
MAX_QUESTIONS_WITH_REPEATS = 5_000  # each simulated question is drawn: bounds the time of one plan
MAX_REPEATS = 1024
EXACT_MID_P_LIMIT = 2000  # above this many discordant pairs the normal approximation is used
CELLS_PER_BATCH = 2_000_000
_phi = np.frompyfunc(NormalDist().cdf, 1, 1)


def normal_cdf(x: np.ndarray) -> np.ndarray:
    return _phi(np.asarray(x, dtype=float)).astype(float)


def mid_p_many(losses: Any, discordant: Any) -> np.ndarray:
    """`gate.binomial_mid_p` for many (losses, discordant) pairs at once."""
    losses, discordant = np.asarray(losses, dtype=np.int64), np.asarray(discordant, dtype=np.int64)
    out = np.empty(losses.shape, dtype=float)
    for d in np.unique(discordant):
        at = discordant == d
        x = losses[at]
        if d == 0:
            out[at] = 0.5
        elif d > EXACT_MID_P_LIMIT:
            out[at] = 1 - normal_cdf((x - d / 2) / math.sqrt(d / 4))
        else:
            i = np.arange(1, d + 1)
            log_choose = np.concatenate([[0.0], np.cumsum(np.log(d - i + 1) - np.log(i))])
            pmf = np.exp(log_choose - d * math.log(2))
            above = np.concatenate([np.cumsum(pmf[::-1])[::-1][1:], [0.0]])  # P(X > i)
            out[at] = np.minimum(1.0, above[x] + pmf[x] / 2)
    return out


def bootstrap_p_drop(d: np.ndarray) -> np.ndarray:
    """The paired bootstrap's p of a drop, rows = simulated runs: P(resampled mean >= 0) under the normal
    approximation of the resampled means (centred on the mean, spread sd / sqrt(n) with ddof 0)."""
    mean, se = d.mean(axis=1), d.std(axis=1) / math.sqrt(d.shape[1])
    safe = np.where(se > 0, se, 1.0)
    spread = normal_cdf(mean / safe)
    flat = np.where(mean == 0, 0.5, (mean > 0).astype(float))
    return np.where(se > 0, spread, flat)


def lowered(rates: np.ndarray, drop: float) -> np.ndarray:
    """The rates with `drop` (a fraction) planted: all scaled down alike, mean lowered by exactly `drop`."""
    mean = float(rates.mean())
    return rates * (1 - min(1.0, drop / mean)) if mean > 0 else rates


def simulate(rates: np.ndarray, n: int, k: int, drop: float, sims: int, rng: np.random.Generator
             ) -> tuple[np.ndarray, np.ndarray]:
    """(observed difference, one-sided p of a drop) of `sims` simulated gate calls at n questions x k repeats."""
    base, cur = rates, lowered(rates, drop)
    resample = n != len(rates)
    if k == 1 and (resample or np.ptp(rates) == 0):
        # Questions drawn independently: the (loss, gain, tie) counts are exactly multinomial.
        p_loss, p_gain = float(np.mean(base * (1 - cur))), float(np.mean((1 - base) * cur))
        counts = rng.multinomial(n, [p_loss, p_gain, max(0.0, 1 - p_loss - p_gain)], size=sims)
        losses, gains = counts[:, 0], counts[:, 1]
        return (gains - losses) / n, mid_p_many(losses, losses + gains)
    diffs, ps = [], []
    batch = max(1, CELLS_PER_BATCH // n)
    for start in range(0, sims, batch):
        rows = min(batch, sims - start)
        idx = rng.integers(0, len(rates), size=(rows, n)) if resample else np.broadcast_to(np.arange(n), (rows, n))
        b = rng.binomial(k, base[idx]) / k
        c = rng.binomial(k, cur[idx]) / k
        if k == 1:
            losses, gains = (b > c).sum(axis=1), (c > b).sum(axis=1)
            diffs.append((gains - losses) / n)
            ps.append(mid_p_many(losses, losses + gains))
        else:
            d = c - b
            diffs.append(d.mean(axis=1))
            ps.append(bootstrap_p_drop(d))
    return np.concatenate(diffs), np.concatenate(ps)


def power(rates: np.ndarray, n: int, k: int, drop: float, tolerance: float, alpha: float,
          sims: int = SIMULATIONS, seed: int = SEED) -> float:
    """The share of simulated gate calls that fail on the planted drop (the same seed for every size)."""
    diff, p_drop = simulate(rates, n, k, drop, sims, np.random.default_rng(seed))
    caught = (np.round(100 * diff, 9) < -tolerance) & (p_drop < alpha)
    return float(caught.mean())


def smallest(ok: Callable[[int], bool], start: int, cap: int) -> int | None:
    """The smallest size in [start, cap] where `ok` holds, searched by doubling then bisection."""
    lo, hi = start - 1, start
    while not ok(hi):
        if hi >= cap:
            return None
        lo, hi = hi, min(cap, 2 * hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi


def detectable_drop(rates: np.ndarray, n: int, k: int, tolerance: float, alpha: float) -> float | None:
    """The smallest drop (a fraction, to 0.05 points) caught at 80% power at this size, None if none is."""
    top = float(rates.mean())
    if top * 100 <= tolerance or power(rates, n, k, top, tolerance, alpha) < POWER:
        return None
    lo, hi = tolerance / 100, top
    while hi - lo > 0.0005:
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if power(rates, n, k, mid, tolerance, alpha) >= POWER else (mid, hi)
    return hi


@dataclass
class TaskPlan:
    task: str
    n: int
    k: int
    accuracy: float
    alpha: float  # the level one task's drop must reach
    detect: float  # the drop to catch, a fraction
    detectable_now: float | None  # the drop the baseline's size catches at 80% power
    questions_needed: int | None  # at the baseline's k
    repeats_needed: int | None  # at the baseline's n
    power_now: float  # of the `detect` drop at the baseline's size
    notes: list[str] = field(default_factory=list)


def question_rates(run: TaskRun) -> tuple[np.ndarray, str]:
    if run.outcomes and run.k > 1:
        return (np.array(sorted(run.outcomes.values()), dtype=float),
                f"per-question rates over the baseline's {run.k} repeats")
    why = "k = 1" if run.k == 1 else "no per-question outcomes in the baseline"
    return (np.full(run.n, run.value, dtype=float),
            f"{why}: per-question consistency unknown, each question assumed right at the task's accuracy "
            "independently in each run (conservative; a baseline with repeats gives per-question rates)")


def unplannable(detect: float, accuracy: float) -> str:
    return f"cannot plant a {points(detect)}-point drop in an accuracy of {points(accuracy)} points"


def plan_task(run: TaskRun, detect: float, tolerance: float, alpha: float) -> TaskPlan:
    rates, how = question_rates(run)
    n, k = len(rates), run.k
    notes = [how]
    if detect > rates.mean():  # no drop that large can happen: nothing to size (the other tasks still are)
        return TaskPlan(run.task, n, k, float(rates.mean()), alpha, detect, None, None, None, 0.0,
                        [unplannable(detect, float(rates.mean()))])

    def caught(size_n: int, size_k: int) -> bool:
        return power(rates, size_n, size_k, detect, tolerance, alpha) >= POWER

    cap = MAX_QUESTIONS if k == 1 else MAX_QUESTIONS_WITH_REPEATS
    questions = smallest(lambda m: caught(m, k), 2, cap)
    if questions is None:
        notes.append(f"more than {cap:,} questions would be needed at k = {k}")
    repeats = smallest(lambda r: caught(n, r), 1, MAX_REPEATS)
    if repeats is None:
        notes.append(f"no number of repeats up to {MAX_REPEATS} is enough with {n} questions")
    return TaskPlan(run.task, n, k, float(rates.mean()), alpha, detect,
                    detectable_drop(rates, n, k, tolerance, alpha), questions, repeats,
                    power(rates, n, k, detect, tolerance, alpha), notes)


def plan(baseline: dict[str, TaskRun], detect_points: float, tolerance: float, alpha: float,
         correction: str, tasks: list[str] | None = None) -> list[TaskPlan]:
    if detect_points <= tolerance:
        raise UserError(f"--detect ({detect_points:g} points) must exceed --tolerance ({tolerance:g}): "
                        "a drop within the tolerance passes by design")
    for task in tasks or []:
        if task not in baseline:
            raise UserError(f"task {task} is not in the baseline (it holds: {', '.join(sorted(baseline))})")
    names = sorted(tasks or baseline)
    level = alpha / len(names) if correction == "holm" else alpha
    plans = [plan_task(baseline[t], detect_points / 100, tolerance, level) for t in names]
    if all(p.detect > p.accuracy for p in plans):
        raise UserError("; ".join(f"{p.task}: {unplannable(p.detect, p.accuracy)}" for p in plans))
    return plans


def size_text(value: int | None, other: str) -> str:
    return f"{value:,} ({other})" if value is not None else "—"


def markdown_plan(plans: list[TaskPlan], detect_points: float, tolerance: float, alpha: float,
                  correction: str) -> str:
    level = plans[0].alpha
    family = (f"Holm over {len(plans)} tasks: one task's drop must reach p < {level:.4g}"
              if correction == "holm" and len(plans) > 1 else "per task")
    lines = [f"### step3vl-eval gate plan: catching a {detect_points:g}-point drop at {POWER:.0%} power", "",
             f"alpha {alpha:g} one-sided ({family}) · tolerance {tolerance:g} points · {SIMULATIONS:,} simulated "
             "CI runs per size, both runs drawn afresh from the baseline's per-question rates", "",
             f"| task | n | k | accuracy | power now at -{detect_points:g} | catches now | "
             f"questions for -{detect_points:g} | repeats for -{detect_points:g} |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for p in plans:
        now = f"-{points(p.detectable_now)}" if p.detectable_now is not None else "—"
        power_now = f"{p.power_now:.0%}" if p.detect <= p.accuracy else "—"
        lines.append(f"| {p.task} | {p.n} | {p.k} | {points(p.accuracy)} | {power_now} | {now} | "
                     f"{size_text(p.questions_needed, f'k={p.k}')} | {size_text(p.repeats_needed, f'n={p.n}')} |")
    lines.append("")
    lines += [f"- {p.task}: {note}" for p in plans for note in p.notes]
    return "\n".join(lines) + "\n"


def command_plan(args: Any) -> int:
    check_levels(args.tolerance, args.alpha)
    if not args.baseline:
        raise UserError("gate --plan needs --baseline (a run dir, a folder of run dirs, or a baseline JSON)")
    plans = plan(read_side(args.baseline), args.detect, args.tolerance, args.alpha, args.correction, args.tasks)
    report = {"detect_points": args.detect, "tolerance_points": args.tolerance, "alpha": args.alpha,
              "correction": args.correction, "power": POWER, "simulations": SIMULATIONS,
              "tasks": [asdict(p) for p in plans]}
    if args.json == "-":
        print(json.dumps(report, indent=2))
        return 0
    if args.json:
        store.write_json_atomic(Path(args.json), report)
    print(markdown_plan(plans, args.detect, args.tolerance, args.alpha, args.correction), end="")
    return 0
