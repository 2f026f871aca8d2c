"""What changed between two runs (`step3vl-eval compare RUN_A RUN_B`): per task the paired counts
(both right, gained, lost, both wrong) and every question whose outcome changed, with its prompt,
target and both runs' answers.

A question's outcome is the gate's unit: the share of its answered repeats that were right (AIME's
k samples as a rate; 0 or 1 with one sample). A task that saves per-question outcomes with its
headline is compared on those: MMBench's CircularEval, where a question counts only if every
circular pass is right, its passes gathered by their `group`. A question with only error records,
or only in one run, is not paired (counted apart). Everything comes from the saved run dirs.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evals import store
from gates.gate import DiffEstimate, paired_test
from evals.types import RunResult, UserError
from reports.runs import select_run

HEADLINE = "accuracy"
CHANGES = ("both right", "gained", "lost", "both wrong", "same")  # `same`: an equal rate strictly inside (0, 1)
ORDER = {"lost": 0, "gained": 1, "same": 2, "both right": 3, "both wrong": 4}
PROMPT_CHARS = 200
SHARED_INSTRUCTION_CHARS = 20  # a prefix or suffix all prompts share, this long or longer, is the task's instruction
ANSWER_CHARS = 160
ALPHA = 0.05


@dataclass
class Side:
    """One run's view of one question."""

    outcome: float
    extracted: str  # e.g. "B", or "42 ×5 ✓ · 41 ×3" over repeats, or "A ✓ · C ✗" over MMBench's passes
    answer: str  # an excerpt of the answer text (its end, where the final answer is)


@dataclass
class Question:
    unit: str
    category: str
    change: str
    prompt: str
    target: str
    a: Side
    b: Side


@dataclass
class TaskComparison:
    task: str
    run_a: str
    run_b: str
    model_a: str
    model_b: str
    category_field: str
    counts: dict[str, int]
    questions: list[Question]  # every paired question, changed ones first within each category
    only_a: int = 0
    only_b: int = 0
    notes: list[str] = field(default_factory=list)
    test: DiffEstimate | None = None  # the gate's paired test of B - A over the paired questions

    @property
    def changed(self) -> list[Question]:
        return [q for q in self.questions if q.change in ("gained", "lost")]

    @property
    def p_two_sided(self) -> float:
        """Twice the smaller one-sided p (the gate tests one side; a comparison asks about either)."""
        return min(1.0, 2 * min(self.test.p_drop, self.test.p_gain)) if self.test else 1.0

    def test_line(self) -> str:
        """The difference with its paired test, in words: what the gained/lost counts amount to."""
        if self.test is None:
            return "no paired question: no test"
        t, p = self.test, self.p_two_sided
        verdict = "significant" if p < ALPHA else "not significant"
        return (f"B − A: {100 * t.diff:+.2f} points (95% CI {100 * t.ci[0]:+.2f} to {100 * t.ci[1]:+.2f}) over "
                f"{len(self.questions)} paired questions; {t.name}, two-sided p = {p:.3g}: {verdict} at the "
                f"{ALPHA:.0%} level")


# ---- reading -----------------------------------------------------------------------------------

def natural_key(text: str) -> list[Any]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]


def squash(text: str) -> str:
    return " ".join(text.split())


def head(text: str, limit: int) -> str:
    text = squash(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def tail(text: str, limit: int) -> str:
    text = squash(text)
    return text if len(text) <= limit else "…" + text[-(limit - 1):]


def prompt_text(record: dict[str, Any]) -> str:
    parts = [p.get("text", "") if p.get("type") == "text" else "[image]"
             for m in record.get("prompt") or [] for p in m.get("content") or []]
    return " ".join(parts)


def question_texts(prompts: dict[str, str]) -> dict[str, str]:
    """Each prompt without the instruction every prompt of the task shares (MathVision's comes first,
    MMMU's last), so that an excerpt shows the question itself."""
    texts = list(prompts.values())
    if len(texts) < 2:
        return prompts
    prefix = len(os.path.commonprefix(texts))
    suffix = len(os.path.commonprefix([t[prefix:][::-1] for t in texts]))
    prefix, suffix = (prefix if prefix >= SHARED_INSTRUCTION_CHARS else 0), (suffix if suffix >= SHARED_INSTRUCTION_CHARS else 0)
    return {k: (t[prefix:len(t) - suffix] or t).strip() for k, t in prompts.items()}


def target_text(target: Any) -> str:
    return target if isinstance(target, str) else json.dumps(target, ensure_ascii=False)


def answers_summary(records: list[dict[str, Any]]) -> str:
    """The extracted answers: per sample (MMBench pass) in order; repeats of one sample as counts."""
    by_sample: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_sample.setdefault(str(r["sample_id"]), []).append(r)
    parts = []
    for rs in by_sample.values():
        seen: Counter[str] = Counter()
        right: set[str] = set()
        for r in rs:
            s = r.get("scored") or {}
            value = "error" if s.get("error") else ("∅" if s.get("extracted") is None else str(s["extracted"]))
            seen[value] += 1
            if s.get("correct"):
                right.add(value)
        parts.append(" · ".join(f"{v}{f' ×{n}' if len(rs) > 1 else ''} {'✓' if v in right else '✗'}"
                                for v, n in sorted(seen.items(), key=lambda vn: (-vn[1], vn[0] not in right, vn[0]))))
    return " | ".join(parts)


def run_questions(run_dir: Path, result: RunResult, records: list[dict[str, Any]]
                  ) -> dict[str, tuple[float, list[dict[str, Any]]]]:
    """{question: (outcome, its records in order)} for the questions this run answered."""
    headline = result.metrics.get(HEADLINE)
    saved = headline.get("outcomes") if isinstance(headline, dict) else None
    grouped: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        meta = r.get("metadata") or {}
        unit = str(meta["group"]) if isinstance(saved, dict) and "group" in meta else str(r["sample_id"])
        grouped.setdefault(unit, []).append(r)
    out = {}
    for unit, rs in grouped.items():
        rs.sort(key=lambda r: (natural_key(str(r["sample_id"])), r.get("repeat", 0)))
        if isinstance(saved, dict):
            if unit in saved:
                out[unit] = (float(saved[unit]), rs)
            continue
        scores = [float((r.get("scored") or {}).get("score") or 0.0) for r in rs if not (r.get("scored") or {}).get("error")]
        if scores:
            out[unit] = (sum(scores) / len(scores), rs)
    return out


def category_field(result: RunResult, records: list[dict[str, Any]]) -> str:
    """The task's first breakdown group that its records carry (MMBench l2, MathVision subject, ...)."""
    fields = set().union(*((r.get("metadata") or {}).keys() for r in records)) if records else set()
    return next((g for g in (result.breakdowns or {}) if g in fields), "")


def change_of(a: float, b: float) -> str:
    if b > a:
        return "gained"
    if b < a:
        return "lost"
    return "both right" if a == 1 else "both wrong" if a == 0 else "same"


def side(outcome: float, records: list[dict[str, Any]]) -> Side:
    first = next((r for r in records if not (r.get("scored") or {}).get("error")), records[0])
    text = (first.get("response") or {}).get("text") or (first.get("response") or {}).get("error") or ""
    return Side(outcome, answers_summary(records), tail(text, ANSWER_CHARS))


def compare_task(run_a: tuple[Path, RunResult, list[dict[str, Any]]],
                 run_b: tuple[Path, RunResult, list[dict[str, Any]]]) -> TaskComparison:
    """Pair two runs of one task question by question (each given as its dir, result and latest records)."""
    (path_a, result_a, records_a), (path_b, result_b, records_b) = run_a, run_b
    qa, qb = run_questions(path_a, result_a, records_a), run_questions(path_b, result_b, records_b)
    cat = category_field(result_a, records_a) or category_field(result_b, records_b)
    questions = []
    shared = set(qa) & set(qb)
    prompts = question_texts({unit: prompt_text(qa[unit][1][0]) for unit in shared})
    for unit in shared:
        (a, recs_a), (b, recs_b) = qa[unit], qb[unit]
        first = recs_a[0]
        questions.append(Question(unit, str((first.get("metadata") or {}).get(cat, "")) if cat else "",
                                  change_of(a, b), head(prompts[unit], PROMPT_CHARS),
                                  target_text(first.get("target")), side(a, recs_a), side(b, recs_b)))
    questions.sort(key=lambda q: (natural_key(q.category), ORDER[q.change], natural_key(q.unit)))
    counts = {c: sum(q.change == c for q in questions) for c in CHANGES}
    units = sorted(shared)
    test = paired_test([qa[u][0] for u in units], [qb[u][0] for u in units],
                       result_a.spec.repeats == result_b.spec.repeats == 1) if units else None
    notes = []
    if result_a.spec.repeats != result_b.spec.repeats:
        notes.append(f"repeats differ (k {result_a.spec.repeats} vs {result_b.spec.repeats}): rates are compared")
    if result_a.provenance.get("dataset_fingerprint") != result_b.provenance.get("dataset_fingerprint"):
        notes.append("the data differ: questions are paired by id")
    for name, result in (("A", result_a), ("B", result_b)):
        if result.status in store.UNFINISHED:
            notes.append(f"run {name} ({result.run_id}) is {result.status}: only the requests it saved are compared")
    return TaskComparison(result_a.spec.task, result_a.run_id, result_b.run_id, result_a.spec.model,
                          result_b.spec.model, cat, counts, questions, len(set(qa) - set(qb)),
                          len(set(qb) - set(qa)), notes, test)


def load_result(run_dir: Path) -> RunResult:
    try:
        return store.load_result(run_dir)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{run_dir}: damaged run dir ({type(exc).__name__}: {exc})") from None


def load(run_dir: Path) -> tuple[Path, RunResult, list[dict[str, Any]]]:
    result = load_result(run_dir)
    try:
        records = list(store.latest_records(store.read_jsonl(run_dir / store.SAMPLES)).values())
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{run_dir}: damaged samples ({type(exc).__name__}: {exc})") from None
    return run_dir, result, records


def runs_by_task(path_text: str) -> dict[str, list[tuple[Path, RunResult]]]:
    """A run dir, or a folder of run dirs, as its runs by task."""
    path = Path(path_text)
    if (path / store.RESULTS).is_file():
        result = load_result(path)
        return {result.spec.task: [(path, result)]}
    if not path.is_dir():
        raise UserError(f"{path} does not exist" if not path.exists() else f"{path} is not a run dir")
    found: dict[str, list[tuple[Path, RunResult]]] = {}
    for run_dir in sorted(p.parent for p in path.glob(f"*/{store.RESULTS}")):
        result = load_result(run_dir)
        found.setdefault(result.spec.task, []).append((run_dir, result))
    if not found:
        raise UserError(f"{path} is neither a run dir nor a folder of run dirs")
    return found


def chosen_run(path_text: str, task: str, runs: list[tuple[Path, RunResult]]) -> Path:
    """The gate's rule for a folder with several runs of a task (`reports.runs.select_run`), said on stderr."""
    run_dir, note = select_run(Path(path_text), task, runs)
    if note:
        print(f"compare: {note}", file=sys.stderr)
    return run_dir


def compare_runs(path_a: str, path_b: str, tasks: list[str] | None = None) -> list[TaskComparison]:
    a, b = runs_by_task(path_a), runs_by_task(path_b)
    names = sorted(tasks or set(a) & set(b))
    for t in names:
        if t not in a or t not in b:
            raise UserError(f"task {t} is not in both runs (A: {', '.join(sorted(a))}; B: {', '.join(sorted(b))})")
    if not names:
        raise UserError(f"no task in both: A has {', '.join(sorted(a))}; B has {', '.join(sorted(b))}")
    return [compare_task(load(chosen_run(path_a, t, a[t])), load(chosen_run(path_b, t, b[t]))) for t in names]
