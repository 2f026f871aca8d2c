"""Tidy CSV (one row per run x task x metric x category) and a Markdown summary for CI job pages.

CSV values are fractions in [0, 1] exactly as results.json holds them (published numbers are
divided by 100), so `pandas.read_csv` gives numbers that compare with results.json directly.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict
from typing import Any

from reports.leaderboard import (Column, is_metric, mean_of_runs, mean_tokens, pct, published_text, published_value,
                                 rate)
from reports.runs import LoadedRun, Row, mode_label

CSV_COLUMNS = (
    "source", "run_id", "row", "task", "model", "mode", "pacore_widths", "status", "repeats", "limit", "split",
    "seed", "max_tokens", "temperature", "top_p", "top_k", "requests", "errors", "truncated", "unparsed",
    "fallback", "judge", "prompt_tokens", "completion_tokens", "metric", "group", "category", "value",
    "ci_lo", "ci_hi", "n", "k", "method", "note",
)
COUNT_COLUMNS = ("requests", "errors", "truncated", "unparsed", "fallback", "judge", "prompt_tokens",
                 "completion_tokens")


def run_columns(run: LoadedRun, row_label: str) -> dict[str, Any]:
    spec = run.result.spec
    params = asdict(spec.params)
    out: dict[str, Any] = {
        "source": "run", "run_id": run.result.run_id, "row": row_label, "task": spec.task, "model": spec.model,
        "mode": spec.mode, "pacore_widths": ",".join(map(str, spec.pacore_widths)) if spec.mode == "pacore" else "",
        "status": run.result.status, "repeats": spec.repeats, "limit": spec.limit, "split": spec.split,
        "seed": spec.seed, **{k: params.get(k) for k in ("max_tokens", "temperature", "top_p", "top_k")},
    }
    out.update({k: run.result.counts.get(k, 0) for k in COUNT_COLUMNS})
    return out


def metric_columns(name: str, group: str, category: str, m: dict[str, Any]) -> dict[str, Any]:
    ci = m.get("ci") or [None, None]
    return {"metric": name, "group": group, "category": category, "value": m["value"], "ci_lo": ci[0],
            "ci_hi": ci[1], "n": m.get("n"), "k": m.get("k"), "method": m.get("method")}


def run_csv_rows(run: LoadedRun, row_label: str) -> list[dict[str, Any]]:
    base = run_columns(run, row_label)
    out = [{**base, **metric_columns(name, "", "", m)} for name, m in run.result.metrics.items() if is_metric(m)]
    for group, cats in (run.result.breakdowns or {}).items():
        for cat, m in (cats or {}).items():
            if is_metric(m):
                out.append({**base, **metric_columns("accuracy", group, cat, m)})
    return out


def published_csv_rows(published: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for m in published["models"]:
        for task, value in m["scores"].items():
            info = published["tasks"].get(task, {})
            note = "; ".join(x for x in (m["table"], info.get("metric"), info.get("caveat")) if x)
            out.append({"source": "published", "row": f"{m['name']} (published)", "task": task, "model": m["name"],
                        "mode": m["mode"] or "", "metric": "accuracy", "value": value / 100, "split": info.get("split"),
                        "note": note})
    return out


def render_csv(rows: list[Row], published: dict[str, Any]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        for run in row.runs.values():
            writer.writerows(run_csv_rows(run, row.label))
    writer.writerows(published_csv_rows(published))
    return buf.getvalue()


def md_text(text: str) -> str:
    """Safe in a Markdown table cell: no pipes, no line breaks, no HTML."""
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")
            .replace("\r", " ").replace("\n", " "))


def md_cell(run: LoadedRun | None) -> str:
    if run is None:
        return ""
    m = run.result.metrics.get("accuracy")
    if not is_metric(m):
        return f"no score ({md_text(run.result.status)})"
    ci = m.get("ci") or []
    text = f"**{pct(m['value'])}**" + (f" [{pct(ci[0])}, {pct(ci[1])}]" if len(ci) == 2 else "")
    text += f" n={m.get('n')}" + (f" k={m['k']}" if m.get("k") else "")
    return text + ("" if run.result.status == "complete" else f" ({md_text(run.result.status)})")


def md_mean_cell(row: Row, col: Column) -> str:
    """A derived column (MMBench EN+CN, MMMU-Pro): the mean of the parts, once every part has run."""
    cell = mean_of_runs([row.runs.get(p) for p in col.parts], None)
    return f"**{cell.text}** [{cell.ci.replace('–', ', ')}] {cell.n}" if cell.value is not None else ""


def md_table(header: list[str], lines: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(line) + " |" for line in lines]


def render_markdown(rows: list[Row], columns: list[Column], published: dict[str, Any], title: str) -> str:
    used = [c for c in columns if any(t in r.runs for r in rows for t in (c.parts or (c.task,)))]
    lines = [f"## {md_text(title)}", "", "Accuracy in percent, [95% CI], n questions (k samples each).", ""]
    body = [[md_text(r.label)] + [md_mean_cell(r, c) if c.parts else md_cell(r.runs.get(c.task)) for c in used]
            for r in rows]
    for m in published["models"]:
        if m["name"] == "STEP3-VL-10B":
            cells = [published_text(v) if (v := published_value(m["scores"], c)) is not None else "" for c in used]
            body.append([f"*{md_text(m['name'])} · {mode_label(m['mode'], None)} (published)*"] + cells)
    lines += md_table(["configuration"] + [md_text(c.label) for c in used], body)
    lines += ["", "| run | task | status | requests | errors | truncated | unparsed | fallback | tokens/request |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for run in r.runs.values():
            c = run.result.counts
            n = int(c.get("requests", 0))
            lines.append(f"| {md_text(run.result.run_id)} | {md_text(run.task)} | {md_text(run.result.status)} | {n} | "
                         + " | ".join(rate(int(c.get(k, 0)), n) for k in ("errors", "truncated", "unparsed", "fallback"))
                         + f" | {mean_tokens(run, 'completion_tokens'):,.0f} |")
    caveats = [published["tasks"].get(c.task, {}).get("caveat") for c in used]
    lines += [""] + [f"- {md_text(c.label)}: {md_text(cav)}" for c, cav in zip(used, caveats) if cav]
    lines.append(f"- Published numbers: {md_text(published['source'])}.")
    return "\n".join(lines) + "\n"
