"""Experiment trackers: `--log-to mlflow` and `--log-to wandb` (optional extras; docs/trackers.md).

A tracker run is opened when the run dir is ready (before any request) with the run's spec as its
parameters, and closed when the run ends with its metrics (value, CI bounds, n), per-category
breakdowns, counts, and as artifacts `results.json`, the HTML report and the results JSON of
docs/reports.md. The tracker run's id is kept in the run dir (`trackers.json`), so a resumed run
(`--resume`, or the same command again) continues the same tracker run, and logs to it even
without `--log-to`.

Where they log is theirs to say: MLflow reads `MLFLOW_TRACKING_URI` (unset: MLflow 3's `./mlflow.db`,
which the extra's SQLAlchemy opens) and `MLFLOW_EXPERIMENT_NAME` (default experiment `step3vl-eval`), W&B reads `WANDB_PROJECT` (default `step3vl-eval`),
`WANDB_MODE` (`offline` writes under `WANDB_DIR` only) and its own login. Nothing here reads a key.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from evals import store
from evals.types import RunResult, RunSpec, UserError

TRACKERS_FILE = "trackers.json"  # {tracker name: its run id}
DEFAULT_PROJECT = "step3vl-eval"
PARAM_MAX_CHARS = 500  # longer values (a system prompt) are cut; results.json, an artifact, has all


def flat_params(spec: RunSpec) -> dict[str, str]:
    """The spec as `a.b` keys with string values (JSON for lists and dicts inside options)."""
    out: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and prefix in ("", "params"):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        else:
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            out[prefix] = text[:PARAM_MAX_CHARS]

    walk("", asdict(spec))
    return out


def flat_metrics(result: RunResult) -> dict[str, float]:
    """Metrics (`accuracy`, `accuracy.ci_lo`, `accuracy.ci_hi`, `accuracy.n`), breakdowns
    (`discipline/Science`, with the same suffixes) and counts (`counts/errors`), as fractions."""
    out: dict[str, float] = {}

    def add(name: str, m: Any) -> None:
        if not isinstance(m, dict) or not isinstance(m.get("value"), (int, float)):
            return
        out[name] = float(m["value"])
        ci = m.get("ci") or []
        if len(ci) == 2 and all(isinstance(x, (int, float)) for x in ci):
            out[f"{name}.ci_lo"], out[f"{name}.ci_hi"] = float(ci[0]), float(ci[1])
        if isinstance(m.get("n"), int):
            out[f"{name}.n"] = float(m["n"])

    for name, m in result.metrics.items():
        add(name, m)
    for group, table in result.breakdowns.items():
        if isinstance(table, dict):
            for category, m in table.items():
                add(f"{group}/{category}", m)
    for name, count in result.counts.items():
        if isinstance(count, (int, float)):
            out[f"counts/{name}"] = float(count)
    return {safe_key(k): v for k, v in out.items()}


def safe_key(name: str) -> str:
    """Characters both trackers accept in a key: letters, digits, `_ - . / :` and spaces."""
    return re.sub(r"[^A-Za-z0-9_\-./: ]", "_", name)


def report_files(run_dir: Path, folder: Path) -> list[Path]:
    """results.json, plus the HTML report and the results JSON rendered into `folder`."""
    import reports
    from reports.results_json import write_results_json

    html = folder / "report.html"
    reports.build_report([str(run_dir)], html=str(html), title=f"step3vl-eval · {run_dir.name}")
    schema = folder / "results.schema.json"
    write_results_json([str(run_dir)], str(schema))
    return [run_dir / store.RESULTS, html, schema]


class MLflowTracker:
    name = "mlflow"

    def __init__(self) -> None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise UserError("--log-to mlflow needs MLflow: pip install 'step3vl-eval[mlflow]'") from None
        try:
            self.client = MlflowClient()  # MLFLOW_TRACKING_URI
        except Exception as exc:  # e.g. MLflow 3's default sqlite:///mlflow.db without SQLAlchemy (not the extra)
            why = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise UserError(f"--log-to mlflow: cannot open the tracking store ({why}); set MLFLOW_TRACKING_URI "
                            "(docs/trackers.md)") from None
        self.run_id = ""

    def start(self, run_dir: Path, spec: RunSpec, run_id: str | None) -> str:
        from mlflow.entities import Param
        from mlflow.exceptions import MlflowException

        if run_id:
            try:
                self.client.get_run(run_id)
                self.client.update_run(run_id, status="RUNNING")
                self.run_id = run_id
                return run_id
            except MlflowException:
                store.log(run_dir, f"mlflow: run {run_id} is gone from the tracking store; starting a new one")
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_PROJECT
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(name)
        run = self.client.create_run(experiment_id, run_name=run_dir.name, tags={
            "step3vl_eval.run_dir": str(run_dir.resolve()), "step3vl_eval.task": spec.task,
            "step3vl_eval.model": spec.model, "step3vl_eval.mode": spec.mode})
        self.run_id = run.info.run_id
        params = [Param(k, v) for k, v in flat_params(spec).items()]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=params[i:i + 100])
        return self.run_id

    def finish(self, result: RunResult, files: list[Path]) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        metrics = [Metric(k, v, stamp, 0) for k, v in flat_metrics(result).items()]
        for i in range(0, len(metrics), 1000):  # MLflow takes at most 1000 metrics per batch
            self.client.log_batch(self.run_id, metrics=metrics[i:i + 1000])
        self.client.set_tag(self.run_id, "step3vl_eval.status", result.status)
        for path in files:
            self.client.log_artifact(self.run_id, str(path))
        self.client.set_terminated(self.run_id, "FINISHED" if result.status == "complete" else "FAILED")

    def stop(self) -> None:
        if self.run_id:
            self.client.set_tag(self.run_id, "step3vl_eval.status", "interrupted")
            self.client.set_terminated(self.run_id, "KILLED")


class WandbTracker:
    name = "wandb"

    def __init__(self) -> None:
        try:
            import wandb
        except ImportError:
            raise UserError("--log-to wandb needs wandb: pip install 'step3vl-eval[wandb]'") from None
        self.wandb = wandb
        self.run: Any = None

    def start(self, run_dir: Path, spec: RunSpec, run_id: str | None) -> str:
        settings = self.wandb.Settings(console="off", silent=True, x_save_requirements=False, save_code=False)
        self.run = self.wandb.init(project=os.environ.get("WANDB_PROJECT") or DEFAULT_PROJECT, name=run_dir.name,
                                   id=run_id or None, resume="allow" if run_id else None,
                                   config=flat_params(spec), settings=settings)
        return str(self.run.id)

    def finish(self, result: RunResult, files: list[Path]) -> None:
        self.run.summary.update({**flat_metrics(result), "status": result.status})
        for path in files:  # copied into the run's folder: W&B links saved files, and ours are temporary
            copy = Path(self.run.dir) / path.name
            shutil.copyfile(path, copy)
            self.run.save(str(copy), base_path=self.run.dir, policy="now")
        self.run.finish(exit_code=0 if result.status == "complete" else 1)

    def stop(self) -> None:
        if self.run is not None:
            self.run.summary.update({"status": "interrupted"})
            self.run.finish(exit_code=1)


TRACKERS = {"mlflow": MLflowTracker, "wandb": WandbTracker}


def read_ids(run_dir: Path) -> dict[str, str]:
    path = run_dir / TRACKERS_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: unreadable ({exc}); delete it to start new tracker runs") from None
    return {k: str(v) for k, v in data.items() if k in TRACKERS} if isinstance(data, dict) else {}


class Tracking:
    """The trackers of one run: opened by `start(run_dir)`, closed by `finish(run_dir, result)`, or by
    `stop()` when the run stops mid-way."""

    def __init__(self, spec: RunSpec, names: list[str]):
        self.spec = spec
        self.names = list(dict.fromkeys(names))
        self.active: list[Any] = [TRACKERS[n]() for n in self.names]  # a missing extra fails before the run

    def start(self, run_dir: Path) -> None:
        ids = read_ids(run_dir)
        for name in ids:  # a run dir that was logged keeps being logged
            if name not in self.names:
                self.names.append(name)
                self.active.append(TRACKERS[name]())
        for tracker in self.active:
            try:
                ids[tracker.name] = tracker.start(run_dir, self.spec, ids.get(tracker.name))
            except UserError:
                raise
            except Exception as exc:  # the tracker's own failure (server down, bad URI): one line
                raise UserError(f"--log-to {tracker.name}: cannot start a tracker run: {type(exc).__name__}: {exc}") from None
        if self.active:
            store.write_json_atomic(run_dir / TRACKERS_FILE, ids)
            store.log(run_dir, "trackers: " + ", ".join(f"{k} {v}" for k, v in ids.items()))

    def finish(self, run_dir: Path, result: RunResult) -> None:
        if not self.active:
            return
        with tempfile.TemporaryDirectory(prefix="step3vl-report-") as tmp:
            files = report_files(run_dir, Path(tmp))
            for tracker in self.active:
                try:
                    tracker.finish(result, files)
                except Exception as exc:
                    raise UserError(f"the run is saved in {run_dir}, but logging it to {tracker.name} failed: "
                                    f"{type(exc).__name__}: {exc}; run the same command again to log it") from None

    def stop(self) -> None:
        """The run stopped mid-way (Ctrl-C, an error): its tracker runs say so instead of staying running.
        Best effort: the error that stopped the run is the one to show; the resume continues them."""
        for tracker in self.active:
            try:
                tracker.stop()
            except Exception:
                pass
