"""Resume after SIGKILL, retries through server faults, and errors kept as data."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from chat_server import ChatServer
from conftest import REPO, aime_run_command, say_responder as responder, write_say_problems

from evals.runner import request_seed

N_PROBLEMS, K = 6, 10


def write_problems(path: Path) -> Path:
    return write_say_problems(path, N_PROBLEMS)


def run_args(data: Path, out: Path, url: str, *extra: str) -> list[str]:
    return aime_run_command(data, out, url, K, *extra)


def lines_of(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def test_resume_after_sigkill_sends_only_missing_requests(tmp_path: Path):
    data = write_problems(tmp_path / "q.jsonl")
    total = N_PROBLEMS * K
    with ChatServer(responder=responder, latency=0.05) as server:
        proc = subprocess.Popen(run_args(data, tmp_path / "runs", server.url, "--concurrency", "2"), cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        samples = None
        while time.time() < deadline:
            found = list((tmp_path / "runs").glob("*/samples.jsonl"))
            if found and lines_of(found[0]) >= total // 2:
                samples = found[0]
                break
            time.sleep(0.02)
        assert samples is not None, "the run never got halfway"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kept = lines_of(samples)
        assert 0 < kept < total
        sent_before = len(server.received)
        second = subprocess.run(run_args(data, tmp_path / "runs", server.url), cwd=REPO, capture_output=True, text=True)
        assert second.returncode == 0, second.stderr
        resent = len(server.received) - sent_before
    assert resent == total - kept  # only what was not recorded (in-flight ones included)
    records = [json.loads(line) for line in samples.read_text().splitlines()]  # no torn line
    keys = Counter(r["key"] for r in records)
    assert len(keys) == total and set(keys.values()) == {1}

    with ChatServer(responder=responder) as server:  # an uninterrupted run gives the same metrics
        clean = subprocess.run(run_args(data, tmp_path / "clean", server.url), cwd=REPO, capture_output=True, text=True)
        assert clean.returncode == 0, clean.stderr
    resumed = json.loads((samples.parent / "results.json").read_text())
    uninterrupted = json.loads(next((tmp_path / "clean").glob("*/results.json")).read_text())
    assert resumed["metrics"] == uninterrupted["metrics"]
    assert resumed["counts"] == uninterrupted["counts"]


def test_torn_last_line_is_repaired_on_resume(tmp_path: Path):
    data = write_problems(tmp_path / "q.jsonl")
    with ChatServer(responder=responder) as server:
        assert subprocess.run(run_args(data, tmp_path / "runs", server.url), cwd=REPO).returncode == 0
        samples = next((tmp_path / "runs").glob("*/samples.jsonl"))
        lines = samples.read_text().splitlines(keepends=True)
        samples.write_text("".join(lines[:-3]) + lines[-3][: len(lines[-3]) // 2])  # a crash mid-write
        before = len(server.received)
        assert subprocess.run(run_args(data, tmp_path / "runs", server.url), cwd=REPO).returncode == 0
        assert len(server.received) - before == 3
    records = [json.loads(line) for line in samples.read_text().splitlines()]
    assert len({r["key"] for r in records}) == len(records) == N_PROBLEMS * K


FAULT_PLAN = ["500", "502", "429", "429-no-retry-after", "reset", "stall", "malformed", "empty_choices",
              "truncated_body"]


def test_retries_survive_every_fault_kind_and_persistent_failures_become_error_records(tmp_path: Path):
    data = write_problems(tmp_path / "q.jsonl")
    doomed = request_seed(0, "q0", 0)
    # Seed -> fault on its first attempt; one request fails every time.
    first_fault = {request_seed(0, f"q{i % N_PROBLEMS}", i // N_PROBLEMS): f for i, f in enumerate(FAULT_PLAN, 1)}

    def faults(body: dict, attempt: int) -> str | None:
        if body["seed"] == doomed:
            return "500"
        return first_fault.get(body["seed"]) if attempt == 1 else None

    with ChatServer(responder=responder, faults=faults, stall_seconds=3) as server:
        args = run_args(data, tmp_path / "runs", server.url, "--timeout", "1", "--max-retries", "2",
                        "-O", "backoff_base=0.01")
        proc = subprocess.run(args, cwd=REPO, capture_output=True, text=True)
        assert proc.returncode == 1, proc.stderr  # finished, with one failed request
        assert "rerun the same command" in proc.stderr
        run_dir = next((tmp_path / "runs").iterdir())
        res = json.loads((run_dir / "results.json").read_text())
        assert res["counts"]["errors"] == 1 and res["status"] == "incomplete"
        assert res["counts"]["answered"] == N_PROBLEMS * K - 1
        records = {json.loads(x)["key"]: json.loads(x) for x in (run_dir / "samples.jsonl").read_text().splitlines()}
        err = records["q0#0"]
        assert err["scored"]["rule"] == "error" and err["scored"]["error"] and "HTTP 500" in err["response"]["error"]
        # the error is not counted as a wrong answer: avg@k averages each problem over its answered repeats
        per_problem: dict[str, list[bool]] = {}
        for r in records.values():
            if not r["scored"]["error"]:
                per_problem.setdefault(r["sample_id"], []).append(r["scored"]["correct"])
        acc = sum(sum(v) / len(v) for v in per_problem.values()) / len(per_problem)
        assert len(per_problem["q0"]) == K - 1
        assert res["metrics"]["accuracy"]["value"] == pytest.approx(acc)

        server.faults = None  # the server recovers: rerunning retries only the error record
        before = len(server.received)
        again = subprocess.run(args, cwd=REPO, capture_output=True, text=True)  # the same command again
        assert again.returncode == 0, again.stderr
        assert len(server.received) - before == 1
    res = json.loads((run_dir / "results.json").read_text())
    assert res["counts"]["errors"] == 0 and res["status"] == "complete"
    keys = Counter(json.loads(x)["key"] for x in (run_dir / "samples.jsonl").read_text().splitlines())
    assert set(keys.values()) == {1}
