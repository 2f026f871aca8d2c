"""`step3vl-eval compare` and its rendering: a terminal table, a tidy CSV (one row per paired question) and
HTML (a standalone page, and the same section in the report when it shows two runs of a task).

All text a model or a dataset wrote reaches HTML through jinja2 with autoescape on, and the terminal
through rich `Text` objects (never parsed as rich markup).
"""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path
from typing import Any

from evals import store
from evals.store import short_model
from reports.compare import CHANGES, TaskComparison, compare_runs
from reports.html import environment, rate

CSV_COLUMNS = ("task", "question", "category", "change", "outcome_a", "outcome_b", "target", "extracted_a",
               "extracted_b", "answer_a", "answer_b", "prompt", "run_a", "run_b")
TERMINAL_CHARS = 70


def counts_line(c: TaskComparison) -> str:
    shown = [f"{name} {c.counts[name]}" for name in CHANGES if c.counts[name] or name != "same"]
    extra = [f"only in A {c.only_a}"] * bool(c.only_a) + [f"only in B {c.only_b}"] * bool(c.only_b)
    return " · ".join(shown + extra)


def print_compare(comparisons: list[TaskComparison], all_questions: bool = False) -> None:
    """The counts as a table, then each changed question as a short block (answers side by side)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(highlight=False)
    summary = Table(title="paired questions, A -> B")
    for col in ("task", *CHANGES, "only A", "only B"):
        summary.add_column(col, justify="left" if col == "task" else "right")
    for c in comparisons:
        summary.add_row(Text(c.task), *(str(c.counts[n]) for n in CHANGES), str(c.only_a), str(c.only_b))
    console.print(summary)
    for c in comparisons:
        heading = f"\n{c.task}: A {c.run_a} ({short_model(c.model_a)}) -> B {c.run_b} ({short_model(c.model_b)})"
        console.print(Text(heading, style="bold"))
        console.print(Text(f"{counts_line(c)}" + (f"; sorted by {c.category_field}" if c.category_field else "")))
        console.print(Text(c.test_line()))
        for note in c.notes:
            console.print(Text(f"note: {note}"))
        for q in c.questions if all_questions else c.changed:
            where = f"  [{q.category}]" if q.category else ""
            console.print(Text(f"  {q.change:<6} {q.unit}{where}: {rate(q.a.outcome)} -> {rate(q.b.outcome)}"
                               f" · target {q.target[:TERMINAL_CHARS]}", style="red" if q.change == "lost"
                               else "green" if q.change == "gained" else ""))
            console.print(Text(f"         A: {q.a.extracted[:TERMINAL_CHARS]}   {q.a.answer[-TERMINAL_CHARS:]}"))
            console.print(Text(f"         B: {q.b.extracted[:TERMINAL_CHARS]}   {q.b.answer[-TERMINAL_CHARS:]}"))
            console.print(Text(f"         prompt: {q.prompt[:TERMINAL_CHARS]}"))


def csv_rows(comparisons: list[TaskComparison]) -> list[dict[str, Any]]:
    return [{"task": c.task, "question": q.unit, "category": q.category, "change": q.change,
             "outcome_a": q.a.outcome, "outcome_b": q.b.outcome, "target": q.target,
             "extracted_a": q.a.extracted, "extracted_b": q.b.extracted, "answer_a": q.a.answer,
             "answer_b": q.b.answer, "prompt": q.prompt, "run_a": c.run_a, "run_b": c.run_b}
            for c in comparisons for q in c.questions]


def render_compare_csv(comparisons: list[TaskComparison]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(csv_rows(comparisons))
    return out.getvalue()


def render_compare_html(comparisons: list[TaskComparison], title: str | None = None) -> str:
    title = title or "step3vl-eval compare: " + ", ".join(f"{c.task}" for c in comparisons)
    return environment().get_template("compare.html.j2").render(title=title, comparisons=comparisons,
                                                                 changes=CHANGES, rate=rate)


def write_report(path: str, text: str) -> Path:
    out = Path(path)
    store.write_text_atomic(out, [text])  # a reader never sees half a page
    return out


def command_compare(args: argparse.Namespace) -> int:
    comparisons = compare_runs(args.run_a, args.run_b, args.tasks)
    # The files first: a reader that closes the terminal output early (`| head`) must not cost them.
    written = []
    if args.csv:
        written.append(write_report(args.csv, render_compare_csv(comparisons)))
    if args.html:
        written.append(write_report(args.html, render_compare_html(comparisons, args.title)))
    print_compare(comparisons, all_questions=args.all)
    for path in written:
        print(f"wrote {path}")
    return 0
