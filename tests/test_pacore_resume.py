"""Resume inside PaCoRe: a run killed between rounds does not generate its round-0 replies again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from chat_server import ChatServer, Reply
from conftest import REPO

SYNTHESIS_HEAD = "You are given a problem and a list of reference responses."
N_PROBLEMS, K, WIDTH = 3, 2, 4
ROUND0_CALLS = N_PROBLEMS * K * WIDTH


def write_problems(path: Path) -> Path:
    path.write_text("".join(json.dumps({"id": f"q{i}", "problem": f"Say {i}.", "answer": str(i)}) + "\n"
                            for i in range(N_PROBLEMS)))
    return path


def is_synthesis(body: dict) -> bool:
    return body["messages"][-1]["content"].startswith(SYNTHESIS_HEAD)


def responder(body: dict) -> Reply:
    text = body["messages"][-1]["content"]
    problem = int(text.split("Say ", 1)[1].split(".", 1)[0])
    if is_synthesis(body):
        return Reply(f"\\boxed{{{problem}}}")
    return Reply(f"\\boxed{{{problem if body['seed'] % 3 else problem + 1}}}")


def run_args(data: Path, out: Path, url: str) -> list[str]:
    return [sys.executable, "-m", "evals.cli", "run", "aime2025", "--model", "openai/test-model", "--base-url", url,
            "--mode", "pacore", "--pacore-widths", str(WIDTH), "-k", str(K), "--data", str(data), "--out", str(out),
            "--quiet"]


def round0_lines(calls: Path) -> int:
    if not calls.exists():
        return 0
    return sum(1 for line in calls.read_text().splitlines() if line.endswith("}") and '"round": 0' in line)


def test_resume_after_sigkill_between_rounds_generates_no_round0_reply_twice(tmp_path: Path):
    data = write_problems(tmp_path / "q.jsonl")
    # Synthesis calls stall in the first run: the kill lands after round 0, before any final answer.
    stall_synthesis = {"on": True}

    def faults(body: dict, attempt: int) -> str | None:
        return "stall" if stall_synthesis["on"] and is_synthesis(body) else None

    with ChatServer(responder=responder, faults=faults, latency=0.01, stall_seconds=30) as server:
        proc = subprocess.Popen(run_args(data, tmp_path / "runs", server.url), cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        calls = None
        while time.time() < deadline:
            found = list((tmp_path / "runs").glob("*/calls.jsonl"))
            if found and round0_lines(found[0]) == ROUND0_CALLS and any(map(is_synthesis, server.received)):
                calls = found[0]
                break
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert calls is not None, "round 0 never finished"
        run_dir = calls.parent
        assert not (run_dir / "samples.jsonl").read_text().strip()  # no final answer yet
        first = list(server.received)

        stall_synthesis["on"] = False
        second = subprocess.run(run_args(data, tmp_path / "runs", server.url), cwd=REPO, capture_output=True,
                                text=True, timeout=120)
        assert second.returncode == 0, second.stderr
        resent = server.received[len(first):]

    round0_seeds = Counter(b["seed"] for b in first + resent if not is_synthesis(b))
    assert len(round0_seeds) == ROUND0_CALLS and set(round0_seeds.values()) == {1}  # none generated twice
    assert len(resent) == N_PROBLEMS * K and all(map(is_synthesis, resent))  # only the synthesis round
    res = json.loads((run_dir / "results.json").read_text())
    assert res["status"] == "complete" and res["metrics"]["accuracy"]["value"] == 1.0
    records = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert len(records) == N_PROBLEMS * K
    assert all(r["cached"] for rec in records for r in rec["response"]["trace"][0]["replies"])
