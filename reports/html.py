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
from reports.runs import LoadedRun, Row, short_model

TEMPLATES = Path(__file__).with_name("templates")


def rate(x: float) -> str:
    """A question's outcome: right, wrong, or the share of its repeats that were right."""
    return f"{x:.0%}" if x not in (0.0, 1.0) else ("right" if x == 1.0 else "wrong")


def environment() -> Environment:
    return Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined)


def page_script() -> tuple[Markup, str]:
    """The inline script and its CSP source: only this exact script may run on the page."""
    text = (TEMPLATES / "report.js").read_text(encoding="utf-8")
    if "</script" in text.lower():
        raise ValueError("report.js must not contain '</script'")
    digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
    return Markup(text), f"sha256-{digest}"


def compute_charts(columns: list[Column], runs: list[LoadedRun]) -> list[Chart]:
    charts = []
    for col in columns:
        points = []
        for run in runs:
            m = run.result.metrics.get("accuracy")
            if run.task != col.task or not is_metric(m):
                continue
            lo, hi = (m.get("ci") or [m["value"], m["value"]])[:2]
            points.append(PointIn(short_model(run.result.spec.model), run.label, run.result.spec.mode,
                                  mean_tokens(run, "completion_tokens"), 100 * m["value"], 100 * lo, 100 * hi))
        if points:
            charts.append(build_chart(col.label, points))
    return charts


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
    context = {
        "title": title,
        "columns": columns,
        "board": board + published_rows(columns, published),
        "no_delta": [(r.label, col.label, cell.delta_note) for r in board for col, cell in zip(columns, r.cells)
                     if cell.delta_note],
        "published": published,
        "task_tables": task_tables(columns, runs),
        "charts": compute_charts(columns, runs),
        "rates": [run_rates(r) for r in runs],
        "superseded": [r for row in rows for r in row.superseded],
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
