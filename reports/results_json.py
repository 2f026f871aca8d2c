"""`report --json`: the runs' results in a documented, versioned schema that other tools can read.

The schema is `step3vl-eval/results`, version `SCHEMA_VERSION` (docs/reports.md describes every
field). Within one version, fields are only ever added; a field that changes meaning or goes away
bumps the version. Values are fractions in [0, 1] exactly as in results.json.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from evals import store

SCHEMA = "step3vl-eval/results"
SCHEMA_VERSION = 1
METRIC_FIELDS = ("value", "ci", "n", "method", "k")
PROVENANCE_FIELDS = ("dataset_fingerprint", "prompt_template_hash", "n_samples", "git_commit", "packages",
                     "host", "started", "finished")


def generator() -> str:
    try:
        return f"step3vl-eval {metadata.version('step3vl-eval')}"
    except metadata.PackageNotFoundError:
        return "step3vl-eval"


def metric_entry(m: dict[str, Any]) -> dict[str, Any]:
    return {k: m[k] for k in METRIC_FIELDS if k in m}


def metric_table(metrics: Any) -> dict[str, Any]:
    if not isinstance(metrics, dict):
        return {}
    return {name: metric_entry(m) for name, m in metrics.items() if isinstance(m, dict) and "value" in m}


def run_entry(run: Any) -> dict[str, Any]:
    result = run.result
    spec = result.spec
    return {
        "run_id": result.run_id,
        "path": str(run.path),
        "task": spec.task,
        "model": spec.model,
        "mode": spec.mode,
        "status": result.status,
        "headline": "accuracy",
        "metrics": metric_table(result.metrics),
        "breakdowns": {group: metric_table(table) for group, table in result.breakdowns.items()},
        "counts": dict(result.counts),
        "spec": asdict(spec),
        "spec_hash": store.run_id_for(spec).rsplit("-", 1)[-1],
        "provenance": {k: result.provenance[k] for k in PROVENANCE_FIELDS if k in result.provenance},
    }


def results_document(run_dirs: list[str]) -> dict[str, Any]:
    from reports.runs import load_runs

    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "generator": generator(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "runs": [run_entry(run) for run in load_runs(run_dirs)],
    }


def write_results_json(run_dirs: list[str], path: str) -> str:
    """Write the document to `path` (`-`: stdout); returns the text."""
    text = json.dumps(results_document(run_dirs), indent=2, ensure_ascii=False, default=str) + "\n"
    if path == "-":
        sys.stdout.write(text)
    else:
        store.write_text_atomic(Path(path), [text])
    return text
