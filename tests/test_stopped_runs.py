"""Runs stopped before the end: Ctrl-C, SIGKILL and a bad image mid-run are labelled, never left
`running`, and resume to the same result as an uninterrupted run (CLI end to end)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from chat_server import ChatServer
from conftest import REPO, aime_run_command, cli, say_responder, write_say_problems

from evals import store

N_PROBLEMS, K = 6, 10


def lines_of(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def start_and_stop_halfway(data: Path, out: Path, server: ChatServer, sig: signal.Signals) -> tuple[int, str, Path]:
    """Start a run, wait until it saved a third of its records (the server answers no more until the
    run is stopped), check a live run reads `running`, send `sig`."""
    server.answer_at_most = N_PROBLEMS * K // 3
    # A signal ignored here stays ignored in the child across exec, and a background job of a
    # non-interactive shell starts with SIGINT ignored: the run must take Ctrl-C however pytest began.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(aime_run_command(data, out, server.url, K, "--concurrency", "2"), cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    deadline = time.time() + 60
    while time.time() < deadline:
        found = list(out.glob("*/samples.jsonl"))
        if found and lines_of(found[0]) >= N_PROBLEMS * K // 3:
            break
        time.sleep(0.02)
    else:
        proc.kill()
        raise AssertionError("the run never saved a third of its requests")
    run_dir = found[0].parent
    assert store.load_result(run_dir).status == "running"  # its process is alive: not stale
    os.kill(proc.pid, sig)
    _, stderr = proc.communicate(timeout=60)
    server.answer_at_most = None
    return proc.returncode, stderr, run_dir


def uninterrupted(data: Path, out: Path) -> dict:
    with ChatServer(responder=say_responder) as server:
        proc = subprocess.run(aime_run_command(data, out, server.url, K), cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return json.loads(next(out.glob("*/results.json")).read_text())


def resume_and_check(data: Path, run_dir: Path, url: str, clean: dict) -> None:
    proc = subprocess.run(aime_run_command(data, run_dir.parent, url, K), cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    resumed = json.loads((run_dir / "results.json").read_text())
    assert resumed["status"] == "complete"
    assert resumed["metrics"] == clean["metrics"] and resumed["counts"] == clean["counts"]


def test_ctrl_c_writes_interrupted_with_a_partial_score_logs_it_and_resumes(tmp_path: Path):
    data = write_say_problems(tmp_path / "q.jsonl", N_PROBLEMS)
    clean = uninterrupted(data, tmp_path / "clean")
    with ChatServer(responder=say_responder, latency=0.05) as server:
        returncode, stderr, run_dir = start_and_stop_halfway(data, tmp_path / "runs", server, signal.SIGINT)
        assert returncode == 130
        assert stderr.strip().splitlines() == ["step3vl-eval: interrupted; run the same command again to resume"]
        result = json.loads((run_dir / "results.json").read_text())
        saved = lines_of(run_dir / "samples.jsonl")
        assert result["status"] == "interrupted"
        assert result["counts"]["requests"] == saved and 0 < saved < N_PROBLEMS * K
        assert result["metrics"]["accuracy"]["responses"] == saved  # the partial score of what was saved
        prov = result["provenance"]
        assert "finished" not in prov and prov["stopped"] >= prov["started"]  # never taken for a finished run
        assert "stopped: interrupted (Ctrl-C)" in (run_dir / "run.log").read_text()

        report = cli("report", str(run_dir), "--md", str(tmp_path / "report.md"))
        assert report.returncode == 0, report.stderr
        assert "(interrupted)" in (tmp_path / "report.md").read_text()
        gate = cli("gate", "--write-baseline", str(run_dir), str(tmp_path / "baseline.json"))
        assert gate.returncode == 2 and len(gate.stderr.strip().splitlines()) == 1, gate.stderr
        assert "the run is interrupted" in gate.stderr and not (tmp_path / "baseline.json").exists()
        compare = cli("compare", str(run_dir), str(next((tmp_path / "clean").iterdir())))
        assert compare.returncode == 0, compare.stderr
        assert f"run A ({run_dir.name}) is interrupted" in " ".join(compare.stdout.split())

        resume_and_check(data, run_dir, server.url, clean)


def test_sigkill_leaves_running_that_readers_label_stopped_and_resume_completes(tmp_path: Path):
    data = write_say_problems(tmp_path / "q.jsonl", N_PROBLEMS)
    clean = uninterrupted(data, tmp_path / "clean")
    with ChatServer(responder=say_responder, latency=0.05) as server:
        *_, run_dir = start_and_stop_halfway(data, tmp_path / "runs", server, signal.SIGKILL)
        saved = json.loads((run_dir / "results.json").read_text())
        assert saved["status"] == "running" and isinstance(saved["provenance"]["pid"], int)  # nothing could be written

        report = cli("report", str(run_dir), "--md", str(tmp_path / "report.md"))
        assert report.returncode == 0, report.stderr
        assert "no score (stopped)" in (tmp_path / "report.md").read_text()
        gate = cli("gate", "--write-baseline", str(run_dir), str(tmp_path / "baseline.json"))
        assert gate.returncode == 2 and "the run is stopped" in gate.stderr, gate.stderr

        resume_and_check(data, run_dir, server.url, clean)


def mathvision_command(data: Path, out: Path, url: str) -> list[str]:
    return ["run", "mathvision", "--model", "openai/test-model", "--base-url", url, "--data", str(data),
            "--out", str(out), "--concurrency", "1", "--quiet"]


def test_a_bad_image_first_leaves_no_run_dir_and_mid_run_an_interrupted_resumable_one(tmp_path: Path,
                                                                                    mathvision_images: Path):
    images = mathvision_images.parents[1] / "images"
    good = {name: (images / name).read_bytes() for name in ("1.png", "2.png")}
    out = tmp_path / "runs"
    with ChatServer() as server:
        (images / "1.png").unlink()  # the first request's image is missing: nothing to keep
        proc = cli(*mathvision_command(mathvision_images, out, server.url))
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "cannot read image" in proc.stderr
        assert not out.exists() or list(out.iterdir()) == []

        (images / "1.png").write_bytes(good["1.png"])
        (images / "2.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")  # corrupt, second in line
        proc = cli(*mathvision_command(mathvision_images, out, server.url))
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "not a readable image" in proc.stderr
        [run_dir] = out.iterdir()
        result = json.loads((run_dir / "results.json").read_text())
        assert result["status"] == "interrupted" and result["counts"]["requests"] == 1
        [stopped] = [line for line in (run_dir / "run.log").read_text().splitlines() if " stopped: " in line]
        assert "not a readable image" in stopped

        samples = (run_dir / "samples.jsonl").read_bytes()
        proc = cli(*mathvision_command(mathvision_images, out, server.url))  # still corrupt: the run is kept
        assert proc.returncode == 2 and (run_dir / "samples.jsonl").read_bytes() == samples

        (images / "2.png").write_bytes(good["2.png"])
        proc = cli(*mathvision_command(mathvision_images, out, server.url))
        assert proc.returncode == 0, proc.stderr
        proc = cli(*mathvision_command(mathvision_images, tmp_path / "clean", server.url))
        assert proc.returncode == 0, proc.stderr
    resumed = json.loads((run_dir / "results.json").read_text())
    clean = json.loads(next((tmp_path / "clean").glob("*/results.json")).read_text())
    assert resumed["status"] == clean["status"] == "complete"
    assert resumed["metrics"] == clean["metrics"] and resumed["counts"] == clean["counts"]




def test_a_stopped_run_marks_its_mlflow_run_killed_and_the_resume_finishes_it(tmp_path: Path, mathvision_images: Path,
                                                                              monkeypatch):
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed (pip install 'step3vl-eval[mlflow]')")
    from mlflow.tracking import MlflowClient

    mlruns = tmp_path / "mlruns"
    env = {"MLFLOW_TRACKING_URI": f"file:{mlruns}", "MLFLOW_ALLOW_FILE_STORE": "true",
           "MLFLOW_EXPERIMENT_NAME": "step3vl-test"}
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(f"file:{mlruns}")
    image = mathvision_images.parents[1] / "images" / "2.png"
    good = image.read_bytes()
    image.write_bytes(b"not an image at all")
    with ChatServer() as server:
        args = [*mathvision_command(mathvision_images, tmp_path / "runs", server.url), "--log-to", "mlflow"]
        first = cli(*args, env=env)
        assert first.returncode == 2 and len(first.stderr.strip().splitlines()) == 1, first.stderr
        [run_dir] = (tmp_path / "runs").iterdir()
        run_id = json.loads((run_dir / "trackers.json").read_text())["mlflow"]
        stopped = client.get_run(run_id)
        assert stopped.info.status == "KILLED" and stopped.data.tags["step3vl_eval.status"] == "interrupted"
        image.write_bytes(good)
        second = cli(*args, env=env)
        assert second.returncode == 0, second.stderr
    finished = client.get_run(run_id)
    assert finished.info.status == "FINISHED" and finished.data.tags["step3vl_eval.status"] == "complete"


def test_a_stopped_run_marks_its_wandb_run_interrupted_and_failed(tmp_path: Path, mathvision_images: Path):
    pytest.importorskip("wandb", reason="the wandb extra is not installed (pip install 'step3vl-eval[wandb]')")
    from test_trackers import wandb_records

    wandb_dir = tmp_path / "wandb_dir"
    wandb_dir.mkdir()
    env = {"WANDB_MODE": "offline", "WANDB_DIR": str(wandb_dir), "WANDB_PROJECT": "step3vl-test",
           "WANDB_SILENT": "true", "WANDB_DISABLE_GIT": "true"}
    (mathvision_images.parents[1] / "images" / "2.png").write_bytes(b"not an image at all")
    with ChatServer() as server:
        proc = cli(*mathvision_command(mathvision_images, tmp_path / "runs", server.url), "--log-to", "wandb", env=env)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    [run_dir] = (tmp_path / "runs").iterdir()
    run_id = json.loads((run_dir / "trackers.json").read_text())["wandb"]
    [offline] = (wandb_dir / "wandb").glob(f"offline-run-*-{run_id}")
    records = wandb_records(offline / f"run-{run_id}.wandb")
    summary = {u.key: json.loads(u.value_json) for r in records if r.WhichOneof("record_type") == "summary"
               for u in r.summary.update if u.key}
    assert summary["status"] == "interrupted"
    assert [r.exit.exit_code for r in records if r.WhichOneof("record_type") == "exit"] == [1]
