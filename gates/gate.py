"""The CI regression gate: fail a build only on a regression that noise cannot explain (DESIGN §9).

Per task, the headline metric (`metrics["accuracy"]`) of a baseline and a current run is compared:

- Paired, on the samples both sides hold (error records excluded, counted):
  - one 0/1 outcome per sample (k = 1): exact McNemar test on the discordant pairs, one-sided
    mid-p (P(X > losses) + P(X = losses) / 2 with X ~ Bin(discordant, 1/2)); the 95% CI of the
    difference is Newcombe's hybrid score interval for paired proportions (method 10);
  - avg@k (or any fractional score): paired bootstrap over problems of the mean per-problem
    difference (10,000 resamples, seed 0); 95% percentile CI; one-sided p = share of resampled
    means on the other side of zero, (1 + count) / (1 + resamples).
- Unpaired, when one side has no per-sample outcomes (a summary-only baseline, or a metric the
  per-sample scores do not reproduce, e.g. MMBench CircularEval): one-sided two-proportion z-test
  (pooled) with Newcombe's independent-samples interval for 0/1 metrics; otherwise a z-test with
  each side's standard error read off its 95% CI.
- Family-wise control: with several tasks in one call, their p-values (of a drop, and apart of a gain)
  are Holm-adjusted (`--correction holm`, the default), so a call with no real change fails at most
  alpha of the time; `--correction none` tests each task at alpha.
- The table shows the interval that matches the one-sided test: the same methods at z[1 - alpha]
  (Newcombe) or the alpha / 1 - alpha percentile (bootstrap), one bound on the side the test looks at
  (Δ <= bound for a drop: below 0 when the drop is significant). The two-sided 95% CI stays in the JSON.
- Verdict, with the drop in points: regression = drop > tolerance and adjusted p < alpha; inconclusive =
  |change| > tolerance but not significant; improvement = the mirror of regression; pass = otherwise.
- Minimum detectable effect: (z[1 - alpha] + z[0.80]) x the standard error of the difference (paired:
  sd of per-problem differences / sqrt(n)), floored at one flipped response (1 / (n k)).

Exit codes: 0 pass (inconclusive included), 1 a significant regression beyond tolerance, 2 usage or
input error. A protocol change (task, split, mode, k, prompt template, scorer, generation settings,
PaCoRe widths) is refused, naming the fields, unless `allow_protocol_change`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np

from evals import store
from evals.metrics import Z95, wilson_interval
from evals.types import RunResult, UserError
from reports.runs import select_run

BASELINE_FORMAT = "step3vl-eval-baseline/1"
HEADLINE = "accuracy"
POWER = 0.80
RESAMPLES = 10_000
SEED = 0
PROTOCOL_FIELDS = ("task", "split", "mode", "k", "prompt_template_hash", "scorer", "generation", "pacore")


@dataclass
class TaskRun:
    """One side of a comparison for one task: a run dir's result, or a baseline file's entry."""

    task: str
    value: float
    n: int
    k: int
    method: str  # how the metric's CI was made: wilson (0/1 outcomes) or bootstrap
    ci: list[float]
    protocol: dict[str, Any]
    dataset_fingerprint: str | None
    outcomes: dict[str, float] | None  # sample id -> mean score over its answered repeats
    errors: int = 0
    source: str = ""


@dataclass
class Comparison:
    task: str
    k: int
    baseline: float
    current: float
    diff: float
    ci: list[float]
    test: str
    p: float  # one-sided, in the direction of the observed change
    mde: float
    n: int
    verdict: str
    notes: list[str] = field(default_factory=list)
    p_drop: float = 0.5  # raw one-sided p-values, both directions
    p_gain: float = 0.5
    p_adjusted: float = 0.5  # p after the family-wise correction, in the direction of the change
    correction: str = "none"
    # The interval that matches the one-sided test: with (1 - alpha) confidence diff <= bound (a drop,
    # side "upper": a regression's bound is below 0) or diff >= bound (a gain, side "lower").
    bound: float = 0.0
    bound_side: str = "upper"


# ---- reading both sides ------------------------------------------------------------------------

def protocol_of(result: RunResult) -> dict[str, Any]:
    spec, params = result.spec, result.spec.params
    return {
        "task": spec.task, "split": spec.split, "mode": spec.mode, "k": spec.repeats,
        "prompt_template_hash": result.provenance.get("prompt_template_hash"),
        "scorer": dict(sorted(spec.task_options.items())),
        "generation": {"max_tokens": params.max_tokens, "temperature": params.temperature,
                       "top_p": params.top_p, "top_k": params.top_k},
        "pacore": {"widths": spec.pacore_widths, "pool": spec.pacore_pool} if spec.mode == "pacore" else None,
    }


def protocol_fingerprint(protocol: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(protocol, sort_keys=True).encode()).hexdigest()[:16]


def outcomes_of(run_dir: Path) -> tuple[dict[str, float], int]:
    """Per-sample mean score over answered repeats, and the number of error records left out."""
    records = store.latest_records(store.read_jsonl(run_dir / store.SAMPLES)).values()
    scores: dict[str, list[float]] = {}
    errors = 0
    for r in records:
        if r["scored"].get("error"):
            errors += 1
        else:
            scores.setdefault(str(r["sample_id"]), []).append(float(r["scored"].get("score", 0.0)))
    return {sid: sum(v) / len(v) for sid, v in scores.items()}, errors


def read_run(run_dir: Path) -> TaskRun:
    result = store.load_result(run_dir)
    if result.status in store.UNFINISHED:  # an interrupted run's partial score is no measurement
        raise UserError(f"{run_dir}: the run is {result.status} ({result.counts.get('requests', 0)} requests "
                        "saved); resume it (the same command, or run --resume) before gating")
    headline = result.metrics.get(HEADLINE)
    if result.provenance.get("no_gold"):
        raise UserError(f"{run_dir}: nothing to gate: {result.provenance['no_gold']}")
    if not isinstance(headline, dict) or "value" not in headline:
        raise UserError(f"{run_dir}: results.json has no '{HEADLINE}' metric (unfinished run?)")
    try:
        outcomes, errors = outcomes_of(run_dir)
        if isinstance(headline.get("outcomes"), dict):  # the task's own units (MMBench: one per question)
            outcomes = {str(k): float(v) for k, v in headline["outcomes"].items()}
        if not outcomes or abs(sum(outcomes.values()) / len(outcomes) - headline["value"]) > 1e-6:
            outcomes = None  # the per-sample scores do not make this metric
        return TaskRun(result.spec.task, float(headline["value"]), int(headline["n"]), result.spec.repeats,
                       str(headline.get("method", "")), [float(x) for x in headline.get("ci", [0.0, 0.0])],
                       protocol_of(result), result.provenance.get("dataset_fingerprint"), outcomes, errors,
                       str(run_dir))
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{run_dir}: damaged run dir ({type(exc).__name__}: {exc})") from None


def read_runs(path: Path, tasks: list[str] | None = None, strict: bool = False) -> dict[str, TaskRun]:
    """A run dir, or a folder of run dirs, as {task: TaskRun}: one run per task (`select_runs`)."""
    if (path / store.RESULTS).is_file():
        run = read_run(path)
        return {run.task: run}
    run_dirs = sorted(p for p in path.iterdir() if (p / store.RESULTS).is_file())
    if not run_dirs:
        raise UserError(f"{path} is neither a run dir nor a folder of run dirs")
    return {task: read_run(run_dir) for task, run_dir in select_runs(path, run_dirs, tasks, strict).items()}


def select_runs(path: Path, run_dirs: list[Path], tasks: list[str] | None, strict: bool) -> dict[str, Path]:
    """One run dir per task, among those of `tasks` (all when None), by `reports.runs.select_run` (the rule
    `compare` follows too); the choice is said on stderr."""
    found: dict[str, list[tuple[Path, RunResult]]] = {}
    for run_dir in run_dirs:
        result = store.load_result(run_dir)
        if tasks is None or result.spec.task in tasks:
            found.setdefault(result.spec.task, []).append((run_dir, result))
    chosen = {}
    for task, runs in sorted(found.items()):
        chosen[task], note = select_run(path, task, runs, strict)
        if note:
            print(f"gate: {note}; --strict refuses instead", file=sys.stderr)
    return chosen


def read_side(path_text: str, tasks: list[str] | None = None, strict: bool = False) -> dict[str, TaskRun]:
    path = Path(path_text)
    if path.name == store.RESULTS and path.is_file():  # a run's results.json stands for its run dir
        path = path.parent
    if path.is_dir():
        return read_runs(path, tasks, strict)
    if path.is_file():
        return read_baseline_file(path)
    raise UserError(f"{path} does not exist (expected a run dir, a folder of run dirs or a baseline JSON)")


# ---- the baseline file -------------------------------------------------------------------------

def baseline_entry(run: TaskRun) -> dict[str, Any]:
    entry = {"metric": HEADLINE, "value": run.value, "ci": run.ci, "n": run.n, "k": run.k, "method": run.method,
             "protocol": run.protocol, "protocol_fingerprint": protocol_fingerprint(run.protocol),
             "dataset_fingerprint": run.dataset_fingerprint, "errors": run.errors, "source": run.source}
    if run.outcomes is not None:
        entry["outcomes"] = run.outcomes
    return entry


def write_baseline(run_path: str, out: Path) -> dict[str, TaskRun]:
    if not Path(run_path).is_dir():
        raise UserError(f"--write-baseline needs a run dir or a folder of run dirs, got {run_path}")
    runs = read_runs(Path(run_path))
    doc = {"format": BASELINE_FORMAT, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "tasks": {task: baseline_entry(run) for task, run in sorted(runs.items())}}
    store.write_json_atomic(out, doc)
    return runs


def _need(cond: bool, where: str, what: str) -> None:
    if not cond:
        raise UserError(f"malformed baseline {where}: {what}")


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def baseline_run(task: str, e: Any, where: str) -> TaskRun:
    _need(isinstance(e, dict), where, "must be an object")
    _need(e.get("metric", HEADLINE) == HEADLINE, where, f"metric must be '{HEADLINE}' (the headline)")
    _need(_is_number(e.get("value")) and 0 <= e["value"] <= 1, where, "'value' must be a fraction in [0, 1]")
    _need(isinstance(e.get("n"), int) and e["n"] > 0, where, "'n' must be a positive integer")
    _need(isinstance(e.get("k", 1), int) and e.get("k", 1) > 0, where, "'k' must be a positive integer")
    _need(isinstance(e.get("protocol"), dict) or isinstance(e.get("protocol_fingerprint"), str), where,
          "needs 'protocol' (an object) or 'protocol_fingerprint'")
    ci = e.get("ci", [e["value"], e["value"]])
    _need(isinstance(ci, list) and len(ci) == 2 and all(_is_number(x) for x in ci), where, "'ci' must be [lo, hi]")
    outcomes = e.get("outcomes")
    _need(outcomes is None or (isinstance(outcomes, dict) and all(_is_number(v) and 0 <= v <= 1
                                                                   for v in outcomes.values())),
          where, "'outcomes' must map sample ids to scores in [0, 1]")
    protocol = e.get("protocol") or {"fingerprint": e["protocol_fingerprint"]}
    k = e.get("k", 1)
    method = e.get("method") or ("wilson" if k == 1 and outcomes is None else "bootstrap")
    return TaskRun(task, float(e["value"]), e["n"], k, method, [float(x) for x in ci], protocol,
                   e.get("dataset_fingerprint"), outcomes, int(e.get("errors", 0)), where)


def read_baseline_file(path: Path) -> dict[str, TaskRun]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"malformed baseline {path}: not readable JSON ({exc})") from None
    _need(isinstance(doc, dict) and isinstance(doc.get("tasks"), dict) and doc["tasks"], str(path),
          "expected {\"format\": ..., \"tasks\": {task: {metric, value, n, k, protocol, ...}}}")
    _need(doc.get("format", BASELINE_FORMAT) == BASELINE_FORMAT, str(path), f"unknown format {doc.get('format')!r}")
    return {task: baseline_run(task, e, f"{path} (task {task})") for task, e in doc["tasks"].items()}


# ---- the protocol guard ------------------------------------------------------------------------

def protocol_changes(base: TaskRun, cur: TaskRun) -> list[str]:
    """Names (with old -> new) of the protocol fields that differ; a fingerprint-only baseline compares hashes."""
    if set(base.protocol) == {"fingerprint"}:
        old, new = base.protocol["fingerprint"], protocol_fingerprint(cur.protocol)
        return [] if old == new else [f"protocol fingerprint ({old} -> {new})"]
    changed = [f"{name} ({base.protocol.get(name)!r} -> {cur.protocol.get(name)!r})" for name in PROTOCOL_FIELDS
               if base.protocol.get(name) != cur.protocol.get(name)]
    datasets = base.dataset_fingerprint, cur.dataset_fingerprint
    if None not in datasets and datasets[0] != datasets[1] and not shared_ids(base, cur):
        changed.append(f"dataset ({datasets[0]} -> {datasets[1]}, no shared samples to pair)")
    return changed


def shared_ids(base: TaskRun, cur: TaskRun) -> list[str]:
    if base.outcomes is None or cur.outcomes is None:
        return []
    return sorted(set(base.outcomes) & set(cur.outcomes))


# ---- statistics --------------------------------------------------------------------------------

@dataclass
class DiffEstimate:
    name: str
    diff: float
    ci: tuple[float, float]
    p_drop: float  # one-sided p that current < baseline
    p_gain: float  # one-sided p that current > baseline
    se: float
    bounds: tuple[float, float] = (-1.0, 1.0)  # one-sided (1 - alpha) bounds: diff >= [0], diff <= [1]


def binomial_mid_p(x: int, n: int) -> float:
    """P(X > x) + P(X = x) / 2 for X ~ Bin(n, 1/2), summed in log space (exact for any n)."""
    def pmf(i: int) -> float:
        return math.exp(math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) - n * math.log(2))
    return min(1.0, sum(pmf(i) for i in range(x + 1, n + 1)) + pmf(x) / 2)


def newcombe_interval(p1: float, n1: int, p0: float, n0: int, phi: float = 0.0,
                      z: float = Z95) -> tuple[float, float]:
    """95% CI of p1 - p0 from the two Wilson intervals (Newcombe 1998; phi = 0 for independent samples);
    with z = z[1 - alpha], each end is a one-sided (1 - alpha) bound."""
    l1, u1 = wilson_interval(p1 * n1, n1, z)
    l0, u0 = wilson_interval(p0 * n0, n0, z)
    d = p1 - p0
    lower = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u0 - p0) + (u0 - p0) ** 2))
    upper = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p0 - l0) + (p0 - l0) ** 2))
    return (d - lower, d + upper)


def one_sided_z(alpha: float) -> float:
    return NormalDist().inv_cdf(1 - alpha)


def mcnemar_test(base: list[float], cur: list[float], alpha: float = 0.05) -> DiffEstimate:
    n = len(base)
    losses = sum(1 for b, c in zip(base, cur) if b > c)
    gains = sum(1 for b, c in zip(base, cur) if c > b)
    both = sum(1 for b, c in zip(base, cur) if b and c)
    neither = n - losses - gains - both
    denom = math.sqrt((both + gains) * (losses + neither) * (both + losses) * (gains + neither))
    phi = (both * neither - gains * losses) / denom if denom else 0.0
    p1, p0 = sum(cur) / n, sum(base) / n
    discordant = losses + gains
    sd = math.sqrt(max(0.0, discordant / n - ((gains - losses) / n) ** 2))  # of the per-sample differences
    return DiffEstimate("McNemar exact mid-p", p1 - p0, newcombe_interval(p1, n, p0, n, phi),
                        binomial_mid_p(losses, discordant), binomial_mid_p(gains, discordant), sd / math.sqrt(n),
                        newcombe_interval(p1, n, p0, n, phi, one_sided_z(alpha)))


def paired_bootstrap_test(base: list[float], cur: list[float], alpha: float = 0.05) -> DiffEstimate:
    d = np.asarray(cur, dtype=float) - np.asarray(base, dtype=float)
    rng = np.random.default_rng(SEED)
    rows = max(1, min(RESAMPLES, 1_000_000 // len(d)))  # resample in blocks of ~1M draws to bound memory
    means = np.concatenate([d[rng.integers(0, len(d), size=(min(rows, RESAMPLES - done), len(d)))].mean(axis=1)
                            for done in range(0, RESAMPLES, rows)])
    p_drop = (1 + int((means >= 0).sum())) / (1 + RESAMPLES)
    p_gain = (1 + int((means <= 0).sum())) / (1 + RESAMPLES)
    ci = (float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5)))
    se = float(d.std(ddof=1)) / math.sqrt(len(d)) if len(d) > 1 else 0.0
    bounds = (float(np.percentile(means, 100 * alpha)), float(np.percentile(means, 100 * (1 - alpha))))
    return DiffEstimate("paired bootstrap", float(d.mean()), ci, p_drop, p_gain, se, bounds)


def paired_test(base: list[float], cur: list[float], one_sample_each: bool, alpha: float = 0.05) -> DiffEstimate:
    """The paired test of cur - base over the same questions: McNemar when every outcome is 0/1 from
    one sample per question, else the paired bootstrap (avg@k rates)."""
    binary = one_sample_each and all(v in (0.0, 1.0) for v in base + cur)
    return mcnemar_test(base, cur, alpha) if binary else paired_bootstrap_test(base, cur, alpha)


def unpaired_test(base: TaskRun, cur: TaskRun, alpha: float = 0.05) -> DiffEstimate:
    diff = cur.value - base.value
    if base.method == cur.method == "wilson":
        pooled = (base.value * base.n + cur.value * cur.n) / (base.n + cur.n)
        se0 = math.sqrt(pooled * (1 - pooled) * (1 / base.n + 1 / cur.n))
        se = math.sqrt(base.value * (1 - base.value) / base.n + cur.value * (1 - cur.value) / cur.n)
        name, ci = "two-proportion z (unpaired)", newcombe_interval(cur.value, cur.n, base.value, base.n)
        bounds = newcombe_interval(cur.value, cur.n, base.value, base.n, z=one_sided_z(alpha))
    else:
        se0 = se = math.hypot((base.ci[1] - base.ci[0]) / (2 * Z95), (cur.ci[1] - cur.ci[0]) / (2 * Z95))
        name, ci = "z from CIs (unpaired)", (diff - Z95 * se, diff + Z95 * se)
        bounds = (diff - one_sided_z(alpha) * se, diff + one_sided_z(alpha) * se)
    return DiffEstimate(name, diff, ci, *normal_one_sided_p(diff, se0), se, bounds)


def normal_one_sided_p(diff: float, se: float) -> tuple[float, float]:
    """(p of a drop, p of a gain) from a z statistic; with no spread, the sign alone decides."""
    if se == 0:
        return (0.5, 0.5) if diff == 0 else (float(diff > 0), float(diff < 0))
    p_drop = NormalDist().cdf(diff / se)
    return p_drop, 1 - p_drop


def minimum_detectable_effect(se: float, n: int, k: int, alpha: float) -> float:
    z = NormalDist().inv_cdf(1 - alpha) + NormalDist().inv_cdf(POWER)
    return z * max(se, 1 / (n * k))


def verdict(diff: float, p_drop: float, p_gain: float, tolerance: float, alpha: float) -> str:
    points = round(100 * diff, 9)  # 0.7 - 0.65 is 4.999... points in floating point
    if points < -tolerance:
        return "regression" if p_drop < alpha else "inconclusive"
    if points > tolerance:
        return "improvement" if p_gain < alpha else "inconclusive"
    return "pass"


# ---- comparing ---------------------------------------------------------------------------------

def compare_task(base: TaskRun, cur: TaskRun, tolerance: float, alpha: float) -> Comparison:
    """Paired on the shared samples when both sides have outcomes (the row then shows their means there)."""
    ids = shared_ids(base, cur)
    if ids:
        b = [base.outcomes[i] for i in ids]  # type: ignore[index]
        c = [cur.outcomes[i] for i in ids]  # type: ignore[index]
        est = paired_test(b, c, base.k == cur.k == 1, alpha)
        values, n = (sum(b) / len(b), sum(c) / len(c)), len(ids)
    else:
        est, values, n = unpaired_test(base, cur, alpha), (base.value, cur.value), min(base.n, cur.n)
    p = est.p_drop if est.diff < 0 else est.p_gain
    return Comparison(cur.task, cur.k, values[0], values[1], est.diff, list(est.ci), est.name, p,
                      minimum_detectable_effect(est.se, n, cur.k, alpha), n,
                      verdict(est.diff, est.p_drop, est.p_gain, tolerance, alpha), comparison_notes(base, cur, ids),
                      est.p_drop, est.p_gain, p, bound=est.bounds[1] if est.diff <= 0 else est.bounds[0],
                      bound_side="upper" if est.diff <= 0 else "lower")


def comparison_notes(base: TaskRun, cur: TaskRun, ids: list[str]) -> list[str]:
    notes = []
    if ids and len(ids) < max(base.n, cur.n):
        notes.append(f"compared on the {len(ids)} samples both runs answered; on all their samples: baseline "
                     f"{points(base.value)} (n {base.n}), current {points(cur.value)} (n {cur.n})")
    if not ids:
        missing = [name for name, side in (("baseline", base), ("current", cur)) if side.outcomes is None]
        notes.append(f"unpaired: no per-sample outcomes that make the headline metric in {' and '.join(missing)}"
                     if missing
                     else "unpaired: the runs share no samples")
    fingerprints = base.dataset_fingerprint, cur.dataset_fingerprint
    if ids and None not in fingerprints and fingerprints[0] != fingerprints[1]:
        notes.append(f"the data differ (fingerprint {fingerprints[0]} -> {fingerprints[1]}): paired by sample id")
    notes += [f"{side.errors} error records in the {name} left out"
              for name, side in (("baseline", base), ("current", cur)) if side.errors]
    return notes


def compare(baseline: dict[str, TaskRun], current: dict[str, TaskRun], tolerance: float, alpha: float,
            tasks: list[str] | None = None, allow_protocol_change: bool = False) -> list[Comparison]:
    for task in tasks or []:
        for name, side in (("baseline", baseline), ("current", current)):
            if task not in side:
                raise UserError(f"task {task} is not in the {name} (it holds: {', '.join(sorted(side)) or 'nothing'})")
    names = sorted(tasks or set(baseline) & set(current))
    if not names:
        raise UserError(f"no task in both: baseline has {', '.join(sorted(baseline))}; "
                        f"current has {', '.join(sorted(current))}")
    dropped = sorted(set(baseline) - set(current)) if not tasks else []
    if dropped:  # a CI job whose run of a task went missing must not pass in silence
        print(f"gate: not compared, in the baseline but not in the current runs: {', '.join(dropped)} "
              "(--tasks names the tasks that must be there)", file=sys.stderr)
    changes = {t: protocol_changes(baseline[t], current[t]) for t in names}
    refused = [f"{t}: {', '.join(c)}" for t, c in changes.items() if c]
    if refused and not allow_protocol_change:
        raise UserError(f"protocol differs ({'; '.join(refused)}); rerun with the baseline's protocol, "
                        "or pass --allow-protocol-change")
    comparisons = []
    for t in names:
        comparison = compare_task(baseline[t], current[t], tolerance, alpha)
        if changes[t]:
            comparison.notes.insert(0, f"protocol changed (allowed): {', '.join(changes[t])}")
        comparisons.append(comparison)
    return comparisons


# ---- family-wise control -----------------------------------------------------------------------

CORRECTIONS = ("holm", "none")


def holm_adjust(p: Any) -> np.ndarray:
    """Holm's step-down adjusted p-values along the last axis (one row per gate call, one column per task).

    Sorted ascending, the i-th smallest of m p-values (i from 1) is multiplied by m - i + 1, made non-decreasing,
    capped at 1; rejecting where the adjusted p < alpha keeps the family-wise error rate at alpha
    for any dependence between the tasks' tests."""
    p = np.asarray(p, dtype=float)
    m = p.shape[-1]
    order = np.argsort(p, axis=-1, kind="stable")
    stepped = np.take_along_axis(p, order, axis=-1) * (m - np.arange(m))
    adjusted_sorted = np.minimum(1.0, np.maximum.accumulate(stepped, axis=-1))
    adjusted = np.empty_like(adjusted_sorted)
    np.put_along_axis(adjusted, order, adjusted_sorted, axis=-1)
    return adjusted


def adjust(p: Any, correction: str) -> np.ndarray:
    if correction == "none":
        return np.asarray(p, dtype=float)
    if correction == "holm":
        return holm_adjust(p)
    raise UserError(f"--correction must be one of {', '.join(CORRECTIONS)}, not {correction!r}")


def regressions(diff: Any, p_drop: Any, tolerance: float, alpha: float, correction: str) -> np.ndarray:
    """Which tasks the gate fails, for many simulated gate calls at once (rows: calls, columns: tasks);
    the same rule as `verdict` after `apply_correction`."""
    return (np.round(100 * np.asarray(diff, dtype=float), 9) < -tolerance) & (adjust(p_drop, correction) < alpha)


def apply_correction(comparisons: list[Comparison], correction: str, tolerance: float,
                     alpha: float) -> list[Comparison]:
    """Adjust the tasks' p-values as one family (drops and gains apart) and redo the verdicts."""
    drops = adjust([c.p_drop for c in comparisons], correction)
    gains = adjust([c.p_gain for c in comparisons], correction)
    for c, p_drop, p_gain in zip(comparisons, drops, gains):
        c.correction = correction
        c.p_adjusted = float(p_drop if c.diff < 0 else p_gain)
        c.verdict = verdict(c.diff, float(p_drop), float(p_gain), tolerance, alpha)
    return comparisons


def exit_code(comparisons: list[Comparison]) -> int:
    return 1 if any(c.verdict == "regression" for c in comparisons) else 0


# ---- output ------------------------------------------------------------------------------------

def points(x: float, sign: bool = False) -> str:
    return f"{100 * x:+.2f}" if sign else f"{100 * x:.2f}"


def p_value(p: float) -> str:
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def family_line(comparisons: list[Comparison], alpha: float) -> str:
    correction = comparisons[0].correction if comparisons else "none"
    if correction == "none" or len(comparisons) < 2:
        return f"alpha {alpha:g} (one-sided) per task"
    return f"alpha {alpha:g} (one-sided) family-wise over {len(comparisons)} tasks ({correction.title()}-adjusted p)"


def bound_text(c: Comparison) -> str:
    return f"{'≤' if c.bound_side == 'upper' else '≥'} {points(c.bound, True)}"


def bound_notes(c: Comparison, tolerance: float) -> list[str]:
    """The bound is the interval's end, not the test inverted: where the two part (near alpha), say
    which one decides."""
    excludes = c.bound < 0 if c.bound_side == "upper" else c.bound > 0
    significant = c.verdict in ("regression", "improvement")
    if significant and not excludes:
        return [f"the test's p ({p_value(c.p_adjusted)}) is below alpha, but the one-sided bound, from another "
                "approximation, reaches 0: the verdict follows the test"]
    if excludes and not significant and abs(100 * c.diff) > tolerance:
        why = f"its {c.correction.title()}-adjusted p" if c.p_adjusted > c.p else "the test's p"
        return [f"the one-sided bound excludes 0, but {why} ({p_value(c.p_adjusted)}) is not below alpha: the "
                "verdict follows the test"]
    return []


def markdown_report(comparisons: list[Comparison], tolerance: float, alpha: float) -> str:
    failed = sum(c.verdict == "regression" for c in comparisons)
    head = f"FAIL: {failed} significant regression{'s' if failed > 1 else ''}" if failed else "PASS"
    adjusted_name = f"p ({comparisons[0].correction.title()})" if comparisons else "p"
    level = f"{1 - alpha:.0%}" if round(100 * (1 - alpha), 6).is_integer() else f"{100 * (1 - alpha):g}%"
    lines = [f"### step3vl-eval gate: {head}", "",
             f"Tolerance {tolerance:g} points · {family_line(comparisons, alpha)} · bound of Δ: one-sided {level}, "
             f"the side the test looks at (≤ for a drop: a significant drop's is below 0) · MDE at {POWER:.0%} power · "
             "scores in points (0-100)", "",
             f"| task | k | baseline | current | Δ | one-sided {level} bound of Δ | test | p | {adjusted_name} | MDE | n "
             "| verdict |",
             "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|"]
    for c in comparisons:
        shown = f"**{c.verdict}**" if c.verdict == "regression" else c.verdict
        lines.append(f"| {c.task} | {c.k} | {points(c.baseline)} | {points(c.current)} | {points(c.diff, True)} | "
                     f"{bound_text(c)} | {c.test} | {p_value(c.p)} | "
                     f"{p_value(c.p_adjusted)} | {points(c.mde)} | {c.n} | {shown} |")
    notes = [f"- {c.task}: {note}" for c in comparisons for note in c.notes + bound_notes(c, tolerance)]
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"


def json_report(comparisons: list[Comparison], tolerance: float, alpha: float) -> dict[str, Any]:
    return {"result": "fail" if exit_code(comparisons) else "pass", "exit_code": exit_code(comparisons),
            "tolerance_points": tolerance, "alpha": alpha, "power": POWER,
            "correction": comparisons[0].correction if comparisons else "none",
            "tasks": [asdict(c) for c in comparisons]}


# ---- the command -------------------------------------------------------------------------------

def append_step_summary(markdown: str) -> None:
    """GitHub Actions shows what a step appends to $GITHUB_STEP_SUMMARY on the run's page."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if path:
        try:
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(markdown + "\n")
        except OSError as exc:
            raise UserError(f"cannot append to GITHUB_STEP_SUMMARY {path}: {exc.strerror}") from None


def check_levels(tolerance: float, alpha: float) -> None:
    if tolerance < 0 or not 0 < alpha < 1:
        raise UserError("--tolerance must be >= 0 points and --alpha in (0, 1)")


def command_gate(args: Any) -> int:
    """`gate --write-baseline` and `gate --baseline --current` (`gate --plan` is gates.power's)."""
    if args.write_baseline:
        run_dir, out = args.write_baseline
        runs = write_baseline(run_dir, Path(out))
        print(f"wrote baseline {out}: {', '.join(f'{t} {points(r.value)} (n {r.n}, k {r.k})' for t, r in runs.items())}")
        return 0
    check_levels(args.tolerance, args.alpha)
    if not (args.baseline and args.current):
        raise UserError("gate needs --baseline and --current (or --write-baseline RUN_DIR FILE, or --plan)")
    strict = getattr(args, "strict", False)
    comparisons = compare(read_side(args.baseline, args.tasks, strict), read_side(args.current, args.tasks, strict),
                          args.tolerance, args.alpha,
                          args.tasks, args.allow_protocol_change)
    comparisons = apply_correction(comparisons, args.correction, args.tolerance, args.alpha)
    markdown = markdown_report(comparisons, args.tolerance, args.alpha)
    append_step_summary(markdown)
    report = json_report(comparisons, args.tolerance, args.alpha)
    if args.json == "-":
        print(json.dumps(report, indent=2))
    else:
        if args.json:
            store.write_json_atomic(Path(args.json), report)
        print(markdown, end="")
    return exit_code(comparisons)
