"""Reports: leaderboards (HTML, CSV, Markdown) and a per-sample explorer, from saved run dirs only.

    step3vl-eval report RUN_DIR... --html leaderboard.html --csv leaderboard.csv [--md summary.md]

A report is a pure function of the run dirs' results.json and samples.jsonl (and the image files
their prompts point to, for thumbnails), set beside the STEP3-VL-10B report's published numbers
(reports/published.json).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from evals import store
from evals.types import UserError

DEFAULT_TITLE = "step3vl-eval report"
DEFAULT_MAX_CHARS = 8000


def write_output(path: str, text: str) -> Path:
    out = Path(path)
    store.write_text_atomic(out, [text])  # a reader never sees half a report
    return out


def build_report(run_dirs: list[str], html: str | None = None, csv: str | None = None, md: str | None = None,
                 title: str = DEFAULT_TITLE, with_samples: bool = True,
                 max_chars: int = DEFAULT_MAX_CHARS, json_out: str | None = None) -> list[Path]:
    """Read the run dirs and write the outputs asked for; returns the paths written."""
    from reports.csv_md import render_csv, render_markdown
    from reports.leaderboard import columns_for, load_published
    from reports.runs import assign_anchors, group_rows, left_out_lines, load_runs

    if not (html or csv or md or json_out):
        raise UserError("say what to write: --html FILE, --csv FILE, --md FILE and/or --json FILE")
    runs = load_runs(run_dirs)
    rows = group_rows(runs)
    for line in left_out_lines(rows):  # also in the HTML; the CSV and Markdown have no place for it
        print(f"report: {line}", file=sys.stderr)
    shown = assign_anchors(rows)
    published = load_published()
    written = []
    if html:
        from reports.html import render_html

        written.append(write_output(html, render_html(rows, shown, published, title, with_samples, max_chars)))
    if csv:
        written.append(write_output(csv, render_csv(rows, published)))
    if md:
        written.append(write_output(md, render_markdown(rows, columns_for(shown, published), published, title)))
    if json_out:
        from reports.results_json import write_results_json

        write_results_json(run_dirs, json_out)
        if json_out != "-":
            written.append(Path(json_out))
    return written


def cli_command(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    max_chars = DEFAULT_MAX_CHARS if args.max_chars is None else args.max_chars
    if max_chars < 0:
        raise UserError("--max-chars must be 0 (no cut) or more")
    json_out = getattr(args, "json", None)
    written = build_report(args.run_dirs, args.html, args.csv, args.md, args.title or DEFAULT_TITLE,
                           not args.no_samples, max_chars, json_out)
    elapsed = time.perf_counter() - started
    log = sys.stderr if json_out == "-" else sys.stdout  # stdout holds the JSON document
    for path in written:
        print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)", file=log)
    print(f"report done in {elapsed:.2f} s", file=log)
    return 0
