"""Reading run dirs for reports, and deciding which runs share a leaderboard row.

A report is a pure function of what runs saved: `results.json` and `samples.jsonl`, nothing else.
A leaderboard row is one configuration (model x mode, plus the settings that tell runs apart);
a column is one task.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime, timezone
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from evals import store
from evals.store import is_scripted, short_model
from evals.types import RunResult, UserError

# Spec fields that define a row: the same model, mode and settings across tasks.
ROW_FIELDS = ("model", "mode", "adapter_options", "system_prompt", "judge", "pacore_widths", "pacore_pool")
# Spec fields that only tell two runs of the same task and configuration apart.
VARIANT_FIELDS = ("params", "repeats", "limit", "seed", "data", "split", "task_options")


@dataclass
class LoadedRun:
    path: Path
    result: RunResult
    records: list[dict[str, Any]] | None = None  # latest record per key; None until loaded
    label: str = ""  # its leaderboard row, once grouped
    anchor: str = ""  # its id in the HTML report

    @property
    def task(self) -> str:
        return self.result.spec.task

    @property
    def scripted(self) -> bool:
        return is_scripted(self.result.spec.model)

    def load_records(self) -> list[dict[str, Any]]:
        if self.records is None:
            raw = store.read_jsonl(self.path / store.SAMPLES)
            self.records = list(store.latest_records(raw).values())
        return self.records


@dataclass
class Row:
    """One leaderboard row: a configuration, with at most one run per task."""

    label: str
    model: str
    mode: str
    runs: dict[str, LoadedRun] = field(default_factory=dict)
    superseded: list[LoadedRun] = field(default_factory=list)  # same settings, an earlier finish

    @property
    def scripted(self) -> bool:
        return is_scripted(self.model)


def expand_run_dirs(paths: list[str]) -> list[Path]:
    """Run dirs as given; a folder that is not a run but holds runs (e.g. `runs/`) stands for them."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            raise UserError(f"not a run directory: {path} does not exist" if not path.exists()
                            else f"not a run directory: {path} is a file")
        if (path / store.RESULTS).exists():
            out.append(path)
            continue
        children = sorted(p.parent for p in path.glob(f"*/{store.RESULTS}"))
        if not children:
            raise UserError(f"not a run directory: {path} holds no {store.RESULTS} (nor run dirs that do)")
        out.extend(children)
    unique = list(dict.fromkeys(p.resolve() for p in out))
    return unique


def load_run(path: Path) -> LoadedRun:
    try:
        result = store.load_result(path)
    except (AttributeError, TypeError, KeyError) as exc:  # valid JSON of the wrong shape
        raise UserError(f"{path / store.RESULTS}: not a run result ({type(exc).__name__})") from None
    if not isinstance(result.metrics, dict) or not isinstance(result.counts, dict):
        raise UserError(f"{path / store.RESULTS}: not a run result (metrics/counts are not objects)")
    return LoadedRun(path, result)


def load_runs(paths: list[str]) -> list[LoadedRun]:
    runs = [load_run(p) for p in expand_run_dirs(paths)]
    if not runs:
        raise UserError("no run directories given")
    return runs


def spec_fields(run: LoadedRun) -> dict[str, Any]:
    spec = store.spec_identity(run.result.spec)
    spec["judge"] = spec.get("task_options", {}).get("judge")
    spec["task_options"] = {k: v for k, v in spec.get("task_options", {}).items() if k != "judge"}
    if spec.get("mode") != "pacore":
        spec["pacore_widths"] = spec["pacore_pool"] = None
    params = dict(spec.get("params") or {})
    params.pop("seed", None)  # per-request seeds derive from the run seed
    spec["params"] = params
    return spec


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def mode_label(mode: str, widths: list[int] | None) -> str:
    if mode == "pacore":
        return "PaCoRe" + (f" [{','.join(str(w) for w in widths)}]" if widths else "")
    return {"sere": "SeRe"}.get(mode, mode)


def format_setting(name: str, value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in sorted(value.items())) or f"{name}=default"
    return f"{name}={value}"


def varying(specs: list[dict[str, Any]], names: tuple[str, ...]) -> list[str]:
    """The names whose values differ among `specs`; for `params`, the single params that differ."""
    out: list[str] = []
    for name in names:
        if name == "params":
            keys = sorted({k for s in specs for k in s["params"]})
            out += [f"params.{k}" for k in keys if len({canonical(s["params"].get(k)) for s in specs}) > 1]
        elif len({canonical(s.get(name)) for s in specs}) > 1:
            out.append(name)
    return out


def lookup(spec: dict[str, Any], name: str) -> Any:
    if name.startswith("params."):
        return spec["params"].get(name.split(".", 1)[1])
    return spec.get(name)


def group_rows(runs: list[LoadedRun]) -> list[Row]:
    """Group runs into rows: one per configuration; two runs of one task in one row split it. Rows
    of real models come first, by label; a script's rows come last."""
    specs = {id(r): spec_fields(r) for r in runs}
    base: dict[str, list[LoadedRun]] = defaultdict(list)
    for r in runs:
        base[canonical({f: specs[id(r)].get(f) for f in ROW_FIELDS})].append(r)
    keyed: dict[str, list[tuple[LoadedRun, list[str]]]] = {}
    for key, members in base.items():
        by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in members:
            by_task[r.task].append(specs[id(r)])
        split_on = sorted({n for group in by_task.values() if len(group) > 1 for n in varying(group, VARIANT_FIELDS)})
        for r in members:
            extra = [format_setting(n, lookup(specs[id(r)], n)) for n in split_on]
            keyed.setdefault(key + canonical(extra), []).append((r, extra))
    rows = [make_row(items, specs, runs) for items in keyed.values()]
    tell_apart_same_stems(rows)
    rows.sort(key=lambda row: (row.scripted, row.label.lower()))  # real models first: they lead the report
    return rows


def make_row(items: list[tuple[LoadedRun, list[str]]], specs: dict[int, dict[str, Any]],
             all_runs: list[LoadedRun]) -> Row:
    first, extra = items[0]
    spec = specs[id(first)]
    same_mode = [specs[id(r)] for r in all_runs
                 if specs[id(r)]["model"] == spec["model"] and specs[id(r)]["mode"] == spec["mode"]]
    differs = [n for n in ("adapter_options", "judge", "pacore_pool") if n in varying(same_mode, ROW_FIELDS)]
    parts = [short_model(spec["model"]), mode_label(spec["mode"], spec.get("pacore_widths"))]
    parts += [format_setting(n, spec.get(n)) for n in differs] + extra
    row = Row(" · ".join(parts), spec["model"], spec["mode"])
    for r, _ in items:
        r.label = row.label
        held = row.runs.get(r.task)
        if held is None:
            row.runs[r.task] = r
            continue
        kept, left_out = sorted((held, r), key=preference, reverse=True)
        row.runs[r.task] = kept
        row.superseded.append(left_out)
    return row


def preference(run: LoadedRun) -> tuple[bool, bool, float]:
    """Which of two runs with the same settings a row shows: a complete run before one that stopped
    or has errors, then the later finish (an interrupted run has none)."""
    status = run.result.status
    return status == "complete", status not in store.UNFINISHED, finish_time(run)


def left_out_lines(rows: list[Row]) -> list[str]:
    """One line per run a report does not show, saying which run it shows instead and why."""
    lines = []
    for row in rows:
        for run in row.superseded:
            kept = row.runs[run.task]
            same = "the same run id" if kept.result.run_id == run.result.run_id else "the same settings"
            why = (f"is {kept.result.status}" if preference(kept)[:2] != preference(run)[:2] else "finished later")
            lines.append(f"left out {run.path} ({run.result.status}, {run.result.counts.get('requests', 0)} "
                         f"requests): {kept.path} has {same} and {why}")
    return lines


def tell_apart_same_stems(rows: list[Row]) -> None:
    """Two replay files with one stem (`a/preds.jsonl`, `b/preds.jsonl`) would share a label: name
    their folders too."""
    models_by_label: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        models_by_label[row.label].add(row.model)
    for row in rows:
        if len(models_by_label[row.label]) > 1 and row.model.startswith("replay:"):
            short = short_model(row.model)
            folder = Path(row.model.partition(":")[2].rstrip("/")).parent.name
            row.label = row.label.replace(short, f"replay:{folder}/{short.partition(':')[2]}", 1)
            for run in row.runs.values():
                run.label = row.label
            for run in row.superseded:
                run.label = row.label


def finish_time(run: LoadedRun) -> float:
    finished = run.result.provenance.get("finished")
    return float(finished) if isinstance(finished, (int, float)) else 0.0


def assign_anchors(rows: list[Row]) -> list[LoadedRun]:
    """The runs that the report shows (one per row and task), in row order, each with its anchor."""
    shown = [run for row in rows for run in row.runs.values()]
    for i, run in enumerate(shown):
        run.anchor = f"run-{i}"
    return shown


def settings_summary(run: LoadedRun) -> str:
    """A one-line description of what a run measured, for tooltips and the run table."""
    spec = run.result.spec
    p = asdict(spec.params)
    bits = [f"k={spec.repeats}", f"max_tokens={p.get('max_tokens')}", f"T={p.get('temperature')}",
            f"top_p={p.get('top_p')}", f"top_k={p.get('top_k')}", f"seed={spec.seed}"]
    if spec.limit:
        bits.append(f"limit={spec.limit}")
    if spec.split:
        bits.append(f"split={spec.split}")
    return " ".join(bits)


def select_run(folder: Path, task: str, runs: list[tuple[Path, RunResult]], strict: bool = False) -> tuple[Path, str]:
    """Which run of `task` a folder of run dirs stands for (`gate` and `compare` alike), and a line
    saying so when there was a choice ("" when the folder holds one run of the task).

    Among several: complete runs only; a script's runs (the mock) only when no real model ran the
    task; then they must all be one model in one mode (reruns, other settings), and the newest by the
    time it finished is taken. Runs of different models are ambiguous, so refused: name one run dir.
    `strict` refuses any choice."""
    if len(runs) == 1:
        return runs[0][0], ""
    listing = "; ".join(f"{d.name} ({r.status}, finished {finished_at(r)})" for d, r in runs)
    complete = [(d, r) for d, r in runs if r.status == "complete"]
    if strict or not complete:
        why = "--strict takes one run per task" if strict else "none of them is complete"
        raise UserError(f"{folder} holds {len(runs)} runs of {task} ({listing}): {why}; keep one, name its "
                        "run dir, or narrow with --tasks")
    real = [(d, r) for d, r in complete if not is_scripted(r.spec.model)]
    if not real and len(complete) < len(runs) and any(not is_scripted(r.spec.model) for _, r in runs):
        raise UserError(f"{folder} holds {len(runs)} runs of {task} ({listing}): no model's run of it is complete, "
                        "and a script's run is no stand-in; resume it, or name a run dir")
    candidates = real or complete
    models = sorted({f"{short_model(r.spec.model)} · {r.spec.mode}" for _, r in candidates})
    if len(models) > 1:
        raise UserError(f"{folder} holds {task} runs of {len(models)} models ({', '.join(models)}): which one is "
                        f"meant? name its run dir, e.g. {candidates[0][0]}")
    newest = max(candidates, key=lambda item: item[1].provenance.get("finished") or 0)[0]
    scripts = len(complete) - len(real) if real else 0
    left = f"; left out {scripts} run{'s' * (scripts > 1)} of a script" if scripts else ""
    return newest, (f"{folder} holds {len(runs)} runs of {task}; using the newest complete one, {newest.name}"
                    f" ({models[0]}){left}")


def finished_at(result: RunResult) -> str:
    stamp = result.provenance.get("finished")
    if not isinstance(stamp, (int, float)):
        return "never"
    return datetime.fromtimestamp(stamp, timezone.utc).isoformat(timespec="seconds")
