"""The self-contained HTML report: jinja2 templates in reports/templates, autoescape always on.

The only markup that bypasses escaping is the data of the sample explorer (gzip-compressed JSON as
base64 text, `packed_json`; the thumbnails as JSON that `script_json` makes safe for a <script>
element), and the template's own CSS and script. A Content-Security-Policy
admits that one script by its hash and no network at all, as a second line of defence.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from reports.compare import CHANGES, TaskComparison, compare_task
from reports.chart import Chart, PointIn, build_chart
from reports.explorer import explorer_data, packed_json, script_json
from reports.leaderboard import (
    Column,
    board_rows,
    columns_for,
    is_metric,
    mean_tokens,
    published_rows,
    run_rates,
    task_tables,
)
from reports.runs import LoadedRun, Row, left_out_lines, short_model

TEMPLATES = Path(__file__).with_name("templates")


def rate(x: float) -> str:
    """A question's outcome: right, wrong, or the share of its repeats that were right."""
    return f"{x:.0%}" if x not in (0.0, 1.0) else ("right" if x == 1.0 else "wrong")


def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined)
    env.filters["short_model"] = short_model
    return env


def page_script() -> tuple[Markup, str]:
    """The inline script and its CSP source: only this exact script may run on the page."""
    text = (TEMPLATES / "report.js").read_text(encoding="utf-8")
    if "</script" in text.lower():
        raise ValueError("report.js must not contain '</script'")
    digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
    return Markup(text), f"sha256-{digest}"


def compute_charts(columns: list[Column], runs: list[LoadedRun]) -> tuple[list[Chart], list[str]]:
    """One chart per task with a run that saved token counts, and why each other run is left off: a
    run without token counts would sit at x = 0, a point with no data."""
    charts, undrawn = [], []
    for col in columns:
        points, without = [], []
        for run in runs:
            m = run.result.metrics.get("accuracy")
            if run.task != col.task or not is_metric(m):
                continue
            tokens = mean_tokens(run, "completion_tokens")
            if tokens <= 0:
                without.append(run)
                continue
            lo, hi = (m.get("ci") or [m["value"], m["value"]])[:2]
            series = short_model(run.result.spec.model) + (" (a script)" if run.scripted else "")
            points.append(PointIn(series, run.label, run.result.spec.mode, tokens, 100 * m["value"],
                                  100 * lo, 100 * hi))
        if without:
            undrawn.append(undrawn_note(col.label, without, drawn=bool(points)))
        if points:
            charts.append(build_chart(col.label, points))
    return charts, undrawn


def undrawn_note(task: str, without: list[LoadedRun], drawn: bool) -> str:
    why = "; replayed predictions carry none" if all(r.result.spec.model.startswith("replay:") for r in without) else ""
    if drawn:
        return f"{task}: not drawn: {', '.join(r.label for r in without)} (no token counts saved{why})"
    runs = "its run" if len(without) == 1 else f"none of its {len(without)} runs"
    return f"{task}: no chart, as {runs} saved {'no ' if len(without) == 1 else ''}token counts{why}"


def run_pairs(runs: list[LoadedRun]) -> list[TaskComparison]:
    """What changed, for each task that the report shows exactly two runs of (A, B in row order)."""
    by_task: dict[str, list[LoadedRun]] = {}
    for run in runs:
        by_task.setdefault(run.task, []).append(run)
    return [compare_task(*((r.path, r.result, r.load_records()) for r in pair))
            for pair in by_task.values() if len(pair) == 2]


def render_html(rows: list[Row], runs: list[LoadedRun], published: dict[str, Any], title: str,
                with_samples: bool, max_chars: int) -> str:
    columns = columns_for(runs, published)
    views, thumbs = explorer_data(runs, max_chars) if with_samples else ([], {})
    board = board_rows(rows, columns, published)
    charts, undrawn = compute_charts(columns, runs)
    context = {
        "title": title,
        "columns": columns,
        # a script's rows (the mock tool) after the published ones: real models lead the page
        "board": ([r for r in board if not r.scripted] + published_rows(columns, published)
                  + [r for r in board if r.scripted]),
        "no_delta": [(r.label, col.label, cell.delta_note) for r in board for col, cell in zip(columns, r.cells)
                     if cell.delta_note],
        "rate_notes": [(r.label, col.label, note) for r in board for col, cell in zip(columns, r.cells)
                       if not col.parts for note in cell.rate_notes],
        "published": published,
        "task_tables": task_tables(columns, runs),
        "charts": charts,
        "undrawn": undrawn,
        "rates": [run_rates(r) for r in runs],
        "superseded": left_out_lines(rows),
        "views": [(v, packed_json(v)) for v in views],
        "images": script_json(thumbs),
        "with_samples": with_samples,
        "max_chars": max_chars,
        "comparisons": run_pairs(runs),
        "changes": CHANGES,
        "rate": rate,
    }
    context["script"], context["script_hash"] = page_script()
    return environment().get_template("report.html.j2").render(**context)
