"""The numbers of a report: leaderboard cells, published reference rows, breakdowns and run rates.

Everything here is plain data for the templates and the CSV/Markdown writers; nothing is HTML.
Values in results.json are fractions in [0, 1]; reports show percentages with two decimals.
"""

from __future__ import annotations

import json
from decimal import ROUND_HALF_UP, Decimal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

from reports.runs import LoadedRun, Row, settings_summary

PUBLISHED_FILE = Path(__file__).with_name("published.json")
# Table 3's rows, in the order the README and the issue name them (the report's own order differs).
TASK_ORDER = ("mmbench_en", "mmbench_cn", "mmmu", "mmmu_pro", "mmmu_pro_vision", "mathvision", "mathvista", "aime2025",
              "hmmt2025")
HEADLINE = "accuracy"
# Derived columns, never saved data: the report's headline MMBench number is the mean of EN and CN;
# its one MMMU-Pro figure is set beside the mean of the standard and vision settings, MMMU-Pro's own
# overall score (reports/published.json says so under `mmmu_pro_overall`).
MEAN_COLUMNS = {"mmbench_mean": ("MMBench EN+CN", ("mmbench_en", "mmbench_cn")),
                "mmmu_pro_overall": ("MMMU-Pro", ("mmmu_pro", "mmmu_pro_vision"))}
# A share of a run's requests at or above which a count changes how far its score can be trusted:
# the score's cell carries a flag, and the runs table marks the rate. (count, threshold, what it means)
RATE_FLAGS = (
    ("errors", 0.01, "failed after their retries and are not scored"),
    ("truncated", 0.05, "were cut off before an answer and are scored wrong"),
    ("unparsed", 0.10, "had no answer the task's rules could extract"),
    ("fallback", 0.10, "were read by the fallback rule, not the task's answer format"),
    ("judge", 0.10, "were decided by an LLM judge"),
)


@dataclass
class Column:
    task: str
    label: str
    note: str = ""  # split / metric / caveat of the published numbers
    parts: tuple[str, ...] = ()  # a derived column: the mean of these tasks' columns


@dataclass
class Cell:
    value: float | None  # percent, for sorting and charts
    text: str = "—"
    ci: str = ""
    n: str = ""
    title: str = ""
    flags: list[str] = field(default_factory=list)
    delta: str = ""
    delta_note: str = ""  # why no Δ is shown beside a published number
    rate_notes: list[str] = field(default_factory=list)  # what its rate flags mean, for the caveats
    anchor: str = ""  # id of the run in the report, for links


@dataclass
class BoardRow:
    label: str
    kind: str  # run | published
    mode: str | None
    cells: list[Cell]
    note: str = ""
    scripted: bool = False  # the mock tool's row: a pipeline check, not a model


@dataclass
class Table:
    """A breakdown or metrics table of one task: rows = categories, columns = runs."""

    task: str
    title: str
    columns: list[str]
    rows: list[tuple[str, list[Cell]]]


@dataclass
class RunRates:
    anchor: str
    run_id: str
    task: str
    label: str
    status: str
    settings: str
    requests: int
    rates: dict[str, str]  # name -> "1.23%"
    flagged: list[str]  # the names whose rate reaches RATE_FLAGS' threshold
    mean_prompt_tokens: float
    mean_completion_tokens: float
    duration: str
    scripted: bool = False


def load_published(path: Path = PUBLISHED_FILE) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def published_text(value: float) -> str:
    """A published number as the report prints it; a derived mean (92.315) rounds half up, as by hand."""
    return str(Decimal(str(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def pct(value: float) -> str:
    return f"{100 * value:.2f}"


def is_metric(m: Any) -> TypeGuard[dict[str, Any]]:
    return isinstance(m, dict) and isinstance(m.get("value"), (int, float))


def metric_cell(m: dict[str, Any], anchor: str = "") -> Cell:
    ci = m.get("ci") or []
    n = f"n={m.get('n', '?')}" + (f", k={m['k']}" if m.get("k") else "")
    ci_text = f"{pct(ci[0])}–{pct(ci[1])}" if len(ci) == 2 else ""
    title = f"{pct(m['value'])} (95% CI {ci_text}, {n}, {m.get('method', '')})"
    return Cell(100 * m["value"], pct(m["value"]), ci_text, n, title, anchor=anchor)


def columns_for(runs: list[LoadedRun], published: dict[str, Any]) -> list[Column]:
    """The tasks the runs cover, in Table 3's order (all twelve columns of a full Table 3 are wider than
    a page), each derived column after the last of its parts."""
    ran = {r.task for r in runs}
    tasks = [t for t in TASK_ORDER if t in ran] + sorted(ran - set(TASK_ORDER))
    columns = []
    for t in tasks:
        info = published["tasks"].get(t, {})
        note = "; ".join(x for x in (info.get("split") and f"published split: {info['split']}",
                                     info.get("metric"), info.get("caveat")) if x)
        columns.append(Column(t, info.get("label", t), note))
    for name, (label, parts) in MEAN_COLUMNS.items():
        if not ran & set(parts):
            continue
        at = max(i for i, c in enumerate(columns) if c.task in parts) + 1
        info = published["tasks"].get(name, {})
        note = "; ".join(x for x in (info.get("metric"), info.get("caveat")) if x)
        columns.insert(at, Column(name, info.get("label", label),
                                  note or f"the mean of {' and '.join(parts)}, as the report's headline", parts))
    return columns


def published_value(scores: dict[str, float], col: Column) -> float | None:
    """A model's published number for a column: its own, else (a derived column) the mean of its parts'."""
    if col.task in scores:
        return scores[col.task]
    return published_mean(scores, col.parts) if col.parts else None


# The split a task loads when a run names none (tasks/*.py `load`); runs saved it as null.
DEFAULT_SPLITS = {"mmbench_en": "dev", "mmbench_cn": "dev", "mmmu": "validation", "mathvision": "test",
                  "aime2025": "test", "mmmu_pro": "test", "mmmu_pro_vision": "test", "mathvista": "testmini",
                  "hmmt2025": "train"}


def disabled_top_k(value: Any) -> Any:
    return 0 if value is None or (isinstance(value, int) and value <= 0) else value


def published_mismatch(run: LoadedRun, published: dict[str, Any]) -> str:
    """Why this run's number is not comparable with the published one ('' when it is): its split, a
    --limit, a generation setting, the task's match fields (e.g. AIME's 64 repeats), PaCoRe widths."""
    spec = run.result.spec
    match = published["tasks"].get(run.task, {}).get("match") or {}
    protocol = published.get("protocol") or {}
    reasons = []
    split, want = spec.split or DEFAULT_SPLITS.get(run.task), match.get("split")
    if want and split != want:
        reasons.append(f"split {split} (published: {want}{', assumed' if match.get('split_assumed') else ''})")
    if spec.limit:
        reasons.append(f"limit {spec.limit} (published: the whole split)")
    for name, value in (match.get("task_options") or {}).items():
        if spec.task_options.get(name, value) != value:  # an unset option is the task's default, the published one
            reasons.append(f"{name} {spec.task_options[name]} (published: {value})")
    if "repeats" in match and spec.repeats != match["repeats"]:
        reasons.append(f"k={spec.repeats} (published: k={match['repeats']})")
    for name in ("temperature", "top_p", "top_k", "max_tokens"):
        have, want = getattr(spec.params, name), protocol.get(name)
        if name == "top_k":
            have, want = disabled_top_k(have), disabled_top_k(want)
        if name in protocol and have != want:
            reasons.append(f"{name} {have} (published: {want})")
    if spec.mode == "pacore" and "pacore_widths" in protocol and spec.pacore_widths != protocol["pacore_widths"]:
        reasons.append(f"PaCoRe widths {spec.pacore_widths} (published: {protocol['pacore_widths']})")
    if spec.mode == "pacore" and spec.pacore_pool:
        reasons.append("the PaCoRe pool shortcut (published: independent rounds)")
    if run.result.status != "complete":
        reasons.append(f"status {run.result.status}")
    return "; ".join(reasons)


def set_delta(cell: Cell, reference: float | None, mismatch: str) -> None:
    if reference is None or cell.value is None:
        return
    if mismatch:
        cell.delta_note = f"no Δ to the published {reference:.2f}: {mismatch}"
    else:
        cell.delta = f"{cell.value - reference:+.2f}"


def high_rates(run: LoadedRun) -> list[tuple[str, float, str]]:
    """(count, share of the run's requests, what it means) for each count that reaches its threshold."""
    c = run.result.counts
    n = int(c.get("requests") or 0)
    shares = [(name, int(c.get(name) or 0) / n if n else 0.0, threshold, meaning)
              for name, threshold, meaning in RATE_FLAGS]
    return [(name, share, meaning) for name, share, threshold, meaning in shares if share >= threshold]


def flag_rates(cell: Cell, runs: list[LoadedRun]) -> None:
    """Beside a score, the rates that qualify it (a 62% fallback rate), with why in its tooltip."""
    for run in runs:
        for name, share, meaning in high_rates(run):
            cell.flags.append(f"{name} {share:.0%}")
            cell.rate_notes.append(f"{share:.2%} of the requests {meaning}")
            cell.title += f"; {cell.rate_notes[-1]}"


def engine_note(run: LoadedRun) -> str:
    """Which engine valued the answers of a MathVision run (`provenance.equality_engine`); runs made
    before the engine was an option said `emulation (...)` or `latex2sympy2 1.9.1 sidecar (...)`."""
    engine = str(run.result.provenance.get("equality_engine") or "")
    if not engine:
        return ""
    if engine.startswith("emulat"):
        return "scored by the emulation of MATH-V's parser (-T equality=emulated)"
    return "scored by MATH-V's parser (latex2sympy2 1.9.1)"


def run_cell(run: LoadedRun, reference: float | None, mismatch: str = "") -> Cell:
    m = run.result.metrics.get(HEADLINE)
    if not is_metric(m):
        why = run.result.provenance.get("no_gold") or f"no headline metric (status {run.result.status})"
        return Cell(None, "no score", title=f"{run.result.run_id}: {why}",
                    flags=[run.result.status], anchor=run.anchor)
    cell = metric_cell(m, run.anchor)
    cell.title = f"{run.result.run_id}: {cell.title}; {settings_summary(run)}"
    if run.result.status != "complete":
        cell.flags.append(run.result.status)
    if run.result.spec.limit:
        cell.flags.append(f"limit {run.result.spec.limit}")
    engine = engine_note(run)
    if engine:
        cell.title += f"; {engine}"
        if "emulation" in engine:
            cell.flags.append("emulated")
    flag_rates(cell, [run])
    set_delta(cell, reference, mismatch)
    return cell


def reference_score(published: dict[str, Any], mode: str, task: str) -> float | None:
    """The published STEP3-VL-10B number of the same mode, which a reproduction aims at."""
    for m in published["models"]:
        if m["name"] == "STEP3-VL-10B" and m["mode"] == mode:
            return m["scores"].get(task)
    return None


def mean_of_runs(runs: list[LoadedRun | None], reference: float | None, mismatch: str = "") -> Cell:
    """Mean of the parts' headlines; its CI from theirs as independent normal estimates."""
    ms = [r.result.metrics.get(HEADLINE) if r else None for r in runs]
    if not all(is_metric(m) for m in ms):
        return Cell(None)
    value = sum(m["value"] for m in ms) / len(ms)  # type: ignore[index]
    half = sum(((m["ci"][1] - m["ci"][0]) / 2) ** 2 for m in ms) ** 0.5 / len(ms)  # type: ignore[index]
    n = sum(int(m["n"]) for m in ms)  # type: ignore[index]
    cell = metric_cell({"value": value, "ci": [max(0.0, value - half), min(1.0, value + half)], "n": n,
                        "method": "mean of the parts, normal approximation"})
    flag_rates(cell, [r for r in runs if r])
    set_delta(cell, reference, mismatch)
    return cell


def published_mean(scores: dict[str, float], parts: tuple[str, ...]) -> float | None:
    values = [scores.get(p) for p in parts]
    return round(sum(values) / len(values), 3) if all(v is not None for v in values) else None  # type: ignore[misc]


def board_rows(rows: list[Row], columns: list[Column], published: dict[str, Any]) -> list[BoardRow]:
    out = []
    for row in rows:
        cells = []
        for col in columns:
            if col.parts:
                reference = next((published_value(m["scores"], col) for m in published["models"]
                                  if m["name"] == "STEP3-VL-10B" and m["mode"] == row.mode), None)
                parts = [row.runs.get(p) for p in col.parts]
                mismatch = "; ".join(f"{p.task}: {why}" for p in parts if p and (why := published_mismatch(p, published)))
                cells.append(mean_of_runs(parts, reference, mismatch))
                continue
            run = row.runs.get(col.task)
            cells.append(run_cell(run, reference_score(published, row.mode, col.task), published_mismatch(run, published))
                         if run else Cell(None))
        out.append(BoardRow(row.label, "run", row.mode, cells, scripted=row.scripted))
    return out


def published_rows(columns: list[Column], published: dict[str, Any]) -> list[BoardRow]:
    out = []
    for m in published["models"]:
        mode = {"sere": "SeRe", "pacore": "PaCoRe"}.get(m["mode"] or "", "as reported")
        cells = []
        for col in columns:
            v = published_value(m["scores"], col)
            copied = f"; {published.get('copied_note')}" if col.task in m.get("copied", ()) else ""
            title = f"published: {m['name']} {mode}, {m['table']}{copied}"
            cells.append(Cell(v, published_text(v) + ("*" if copied else ""), title=title) if v is not None else Cell(None))
        out.append(BoardRow(f"{m['name']} · {mode}", "published", m["mode"], cells, m["table"]))
    return out


def ordered_runs(runs: list[LoadedRun], task: str) -> list[LoadedRun]:
    return sorted((r for r in runs if r.task == task), key=lambda r: (r.scripted, r.label.lower()))  # a script last


def metric_table(task: str, runs: list[LoadedRun]) -> Table:
    names: list[str] = []
    for r in runs:
        names += [n for n, m in r.result.metrics.items() if is_metric(m) and n not in names]
    rows = [(n, [metric_cell(r.result.metrics[n], r.anchor) if is_metric(r.result.metrics.get(n))
                 else Cell(None) for r in runs]) for n in names]
    return Table(task, "metrics", [r.label for r in runs], rows)


def breakdown_tables(task: str, runs: list[LoadedRun]) -> list[Table]:
    groups: list[str] = []
    for r in runs:
        groups += [g for g in (r.result.breakdowns or {}) if g not in groups]
    tables = []
    for g in groups:
        cats: list[str] = []
        for r in runs:
            cats += [c for c in (r.result.breakdowns.get(g) or {}) if c not in cats]
        rows = []
        for c in cats:
            cells = []
            for r in runs:
                m = (r.result.breakdowns.get(g) or {}).get(c)
                cells.append(metric_cell(m, r.anchor) if is_metric(m) else Cell(None))
            rows.append((c, cells))
        tables.append(Table(task, g, [r.label for r in runs], rows))
    return tables


def task_tables(columns: list[Column], runs: list[LoadedRun]) -> list[tuple[Column, list[Table]]]:
    out = []
    for col in columns:
        task_runs = ordered_runs(runs, col.task)
        if task_runs:
            out.append((col, [metric_table(col.task, task_runs), *breakdown_tables(col.task, task_runs)]))
    return out


def rate(part: int, whole: int) -> str:
    return f"{100 * part / whole:.2f}%" if whole else "—"


def mean_tokens(run: LoadedRun, kind: str) -> float:
    c = run.result.counts
    return c.get(kind, 0) / c["requests"] if c.get("requests") else 0.0


def duration(run: LoadedRun) -> str:
    p = run.result.provenance
    if not isinstance(p.get("started"), (int, float)) or not isinstance(p.get("finished"), (int, float)):
        return "—"
    seconds = max(0.0, p["finished"] - p["started"])
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def run_rates(run: LoadedRun) -> RunRates:
    c = run.result.counts
    n = int(c.get("requests", 0))
    rates = {name: rate(int(c.get(key, 0)), n) for name, key in
             (("errors", "errors"), ("truncated", "truncated"), ("unparsed", "unparsed"),
              ("fallback", "fallback"), ("judge", "judge"))}
    flagged = [name for name, _, _ in high_rates(run)]
    return RunRates(run.anchor, run.result.run_id, run.task, run.label, run.result.status, settings_summary(run), n, rates,
                    flagged, mean_tokens(run, "prompt_tokens"), mean_tokens(run, "completion_tokens"), duration(run),
                    run.scripted)
