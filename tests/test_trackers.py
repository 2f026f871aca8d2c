"""`--log-to mlflow` / `--log-to wandb`, offline: MLflow's local file store, W&B's offline mode.

Each test runs a MathVision run against the local chat server whose first attempt at one sample
fails (exit 1), then the same command again (the resume), and reads the tracker's own store back:
MLflow through its client API, W&B from the records of its offline run file (`run-<id>.wandb`, a
LevelDB-style log of protobuf records, the file `wandb sync` uploads).
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest

from chat_server import ChatServer, Reply
from conftest import cli


def answer_four(body: dict) -> Reply:
    return Reply("<think>count</think>\\boxed{4}")


def first_attempt_fails_for_dots(body: dict, attempt: int) -> str | None:
    text = json.dumps(body["messages"])
    return "500" if "dots" in text and attempt == 1 else None


def run_twice(tmp_path: Path, data: Path, tracker: str, env: dict[str, str]) -> Path:
    out = tmp_path / "runs"
    with ChatServer(responder=answer_four, faults=first_attempt_fails_for_dots) as server:
        args = ["run", "mathvision", "--model", "openai/test-model", "--base-url", server.url, "--data", str(data),
                "--out", str(out), "--max-retries", "0", "--quiet", "--log-to", tracker]
        first = cli(*args, env=env)
        assert first.returncode == 1, first.stderr  # one request failed: the run is incomplete
        (run_dir,) = out.iterdir()
        ids = json.loads((run_dir / "trackers.json").read_text())
        second = cli(*args[:-2], env=env)  # the same command, even without --log-to, continues the tracker run
        assert second.returncode == 0, second.stderr
    assert json.loads((run_dir / "trackers.json").read_text()) == ids
    assert json.loads((run_dir / "results.json").read_text())["status"] == "complete"
    return run_dir


def test_mlflow_file_store_holds_spec_metrics_breakdowns_and_report(tmp_path: Path, mathvision_images: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed (pip install 'step3vl-eval[mlflow]')")
    from mlflow.tracking import MlflowClient

    store = tmp_path / "mlruns"
    env = {"MLFLOW_TRACKING_URI": f"file:{store}", "MLFLOW_ALLOW_FILE_STORE": "true",
           "MLFLOW_EXPERIMENT_NAME": "step3vl-test"}
    run_dir = run_twice(tmp_path, mathvision_images, "mlflow", env)
    results = json.loads((run_dir / "results.json").read_text())
    run_id = json.loads((run_dir / "trackers.json").read_text())["mlflow"]

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store behind this switch
    client = MlflowClient(f"file:{store}")
    experiment = client.get_experiment_by_name("step3vl-test")
    runs = client.search_runs([experiment.experiment_id])
    assert [r.info.run_id for r in runs] == [run_id]  # the resume continued it, no second run
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == run_dir.name
    assert run.data.params["task"] == "mathvision" and run.data.params["model"] == "openai/test-model"
    assert run.data.params["params.max_tokens"] == str(results["spec"]["params"]["max_tokens"])
    metrics = run.data.metrics
    accuracy = results["metrics"]["accuracy"]
    assert metrics["accuracy"] == pytest.approx(accuracy["value"])
    assert (metrics["accuracy.ci_lo"], metrics["accuracy.ci_hi"]) == pytest.approx(tuple(accuracy["ci"]))
    assert metrics["accuracy.n"] == 3 and metrics["counts/errors"] == 0
    for group, table in results["breakdowns"].items():
        for category, m in table.items():
            assert metrics[f"{group}/{category}"] == pytest.approx(m["value"])
    # the first, incomplete attempt had logged its own metrics: the history shows both
    assert [m.value for m in client.get_metric_history(run_id, "counts/errors")] == [1.0, 0.0]
    names = {a.path for a in client.list_artifacts(run_id)}
    assert {"results.json", "report.html", "results.schema.json"} <= names
    local = Path(client.download_artifacts(run_id, "report.html", str(tmp_path / "dl")))
    assert run_dir.name in local.read_text(encoding="utf-8")


def test_an_mlflow_store_the_client_cannot_open_is_one_line_exit_2(tmp_path: Path) -> None:
    """MLflow 3's default store (sqlite:///mlflow.db) needs the full `mlflow` package: with
    mlflow-skinny, `--log-to mlflow` without MLFLOW_TRACKING_URI once ended in a traceback."""
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed (pip install 'step3vl-eval[mlflow]')")
    out = tmp_path / "runs"
    done = cli("run", "aime2025", "--data", "bundled", "--model", "mock", "--samples", "1", "--out", str(out),
               "--quiet", "--log-to", "mlflow", env={"MLFLOW_TRACKING_URI": "bogus://nowhere"}, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "--log-to mlflow: cannot open the tracking store" in done.stderr and "MLFLOW_TRACKING_URI" in done.stderr
    assert not out.exists()

def test_the_mlflow_extra_logs_with_no_variable_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`pip install -e ".[mlflow]"` then `--log-to mlflow`, nothing configured: MLflow 3's default
    store (./mlflow.db, sqlite; artifacts in ./mlruns) in the current folder takes the run."""
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed (pip install 'step3vl-eval[mlflow]')")
    pytest.importorskip("sqlalchemy", reason="the mlflow extra's SQLAlchemy is not installed (pip install -e '.[mlflow]')")
    from mlflow.tracking import MlflowClient

    for name in [n for n in os.environ if n.startswith("MLFLOW_")]:
        monkeypatch.delenv(name)
    done = cli("run", "aime2025", "--data", "bundled", "--model", "mock", "--samples", "1", "--quiet",
               "--log-to", "mlflow", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    run_id = json.loads((run_dir / "trackers.json").read_text())["mlflow"]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == run_dir.name
    assert client.get_experiment(run.info.experiment_id).name == "step3vl-eval"
    assert run.data.metrics["accuracy.n"] == 30
    assert list(tmp_path.glob(f"mlruns/*/{run_id}/artifacts/results.json"))


# ---- W&B offline ------------------------------------------------------------------------------

def wandb_records(path: Path) -> list:
    """Every record of an offline run file: a 7-byte header (`:W&B`, magic, version), then 32 KiB
    blocks of chunks, each `crc32 (4) | length (2) | type (1: full, 2: first, 3: middle, 4: last)`."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    block, pos, pending, records = 32768, 7, b"", []
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a chunk header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if length == 0 and kind == 0:
            pos += left
            continue
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def test_wandb_offline_run_holds_config_summary_and_report(tmp_path: Path, mathvision_images: Path) -> None:
    pytest.importorskip("wandb", reason="the wandb extra is not installed (pip install 'step3vl-eval[wandb]')")
    wandb_dir = tmp_path / "wandb_dir"
    wandb_dir.mkdir()
    env = {"WANDB_MODE": "offline", "WANDB_DIR": str(wandb_dir), "WANDB_PROJECT": "step3vl-test",
           "WANDB_SILENT": "true", "WANDB_DISABLE_GIT": "true"}
    run_dir = run_twice(tmp_path, mathvision_images, "wandb", env)
    results = json.loads((run_dir / "results.json").read_text())
    run_id = json.loads((run_dir / "trackers.json").read_text())["wandb"]

    offline = sorted((wandb_dir / "wandb").glob(f"offline-run-*-{run_id}"))
    assert len(offline) == 2  # one per invocation, both the same W&B run (`wandb sync` joins them)
    records = wandb_records(offline[-1] / f"run-{run_id}.wandb")
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert run.run_id == run_id and run.display_name == run_dir.name and run.project == "step3vl-test"
    first_run = [r.run for r in wandb_records(offline[0] / f"run-{run_id}.wandb") if r.WhichOneof("record_type") == "run"]
    assert [r.run_id for r in first_run] == [run_id]
    config = {u.key: json.loads(u.value_json) for u in run.config.update}
    assert config["task"] == "mathvision" and config["model"] == "openai/test-model"
    summary = {u.key: json.loads(u.value_json) for r in records if r.WhichOneof("record_type") == "summary"
               for u in r.summary.update if u.key}
    accuracy = results["metrics"]["accuracy"]
    assert summary["accuracy"] == pytest.approx(accuracy["value"])
    assert [summary["accuracy.ci_lo"], summary["accuracy.ci_hi"]] == pytest.approx(accuracy["ci"])
    assert summary["counts/errors"] == 0 and summary["status"] == "complete"
    for group, table in results["breakdowns"].items():
        for category, m in table.items():
            assert summary[f"{group}/{category}"] == pytest.approx(m["value"])
    saved = {f.path for r in records if r.WhichOneof("record_type") == "files" for f in r.files.files}
    assert {"report.html", "results.json", "results.schema.json"} <= saved
    assert run_dir.name in (offline[-1] / "files" / "report.html").read_text(encoding="utf-8")
