"""Resume inside PaCoRe: a run killed between rounds, or mid-pipeline, generates no finished call again;
and the pipeline writes the records the barrier (`-O pacore_schedule=rounds`) writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zlib
from collections import Counter
from pathlib import Path

import pytest
from chat_server import ChatServer, Reply, is_synthesis
from conftest import REPO

N_PROBLEMS, K, WIDTH = 3, 2, 4
ROUND0_CALLS = N_PROBLEMS * K * WIDTH


def write_problems(path: Path) -> Path:
    path.write_text("".join(json.dumps({"id": f"q{i}", "problem": f"Say {i}.", "answer": str(i)}) + "\n"
                            for i in range(N_PROBLEMS)))
    return path


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


# ---- the pipeline (issue 22): the barrier's records, and a kill mid-pipeline --------------------

def deterministic(body: dict) -> Reply:
    """A reply that depends only on the request: its seed, or for a synthesis the prompt it got
    (so a synthesis that listed its references in another order would answer differently)."""
    if is_synthesis(body):
        digest = zlib.crc32(body["messages"][-1]["content"].encode())
        return Reply(f"\\boxed{{{digest % 10}}}", reasoning_content=f"weighed {digest}", prompt_tokens=50 + digest % 9)
    seed = body["seed"]
    return Reply(f"\\boxed{{{seed % 7}}}" + " because" * (seed % 5), reasoning_content="t" * (seed % 11),
                 finish_reason="length" if seed % 13 == 0 else "stop")


def comparable(run_dir: Path) -> list[dict]:
    """samples.jsonl by key, without what timing decides (latencies, replies taken from calls.jsonl)."""
    records = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    for r in records:
        r["response"].pop("latency")
        for entry in r["response"]["trace"]:
            for reply in entry["replies"]:
                reply.pop("latency"), reply.pop("cached")
        r["response"]["meta"]["pacore"].pop("cached_calls")
    return sorted(records, key=lambda r: r["key"])


@pytest.mark.parametrize("extra", [[], ["--pacore-pool", "6"]], ids=["independent", "pool"])
def test_pipelined_and_barrier_pacore_write_the_same_records_over_http(tmp_path: Path, extra: list[str]):
    data = write_problems(tmp_path / "q.jsonl")
    runs = {}
    with ChatServer(responder=deterministic, latency=0.002, sigma=1.0) as server:
        for schedule in ("rounds", "pipeline"):
            out = tmp_path / schedule
            proc = subprocess.run([*run_args(data, out, server.url), "--concurrency", "5", *extra,
                                   "-O", f"pacore_schedule={schedule}"], cwd=REPO, capture_output=True, text=True,
                                  timeout=120)
            assert proc.returncode == 0, proc.stderr
            (runs[schedule],) = out.iterdir()
    assert runs["rounds"].name == runs["pipeline"].name  # the schedule is not part of the run's identity
    assert comparable(runs["pipeline"]) == comparable(runs["rounds"])
    assert len(comparable(runs["pipeline"])) == N_PROBLEMS * K


def test_first_final_record_is_written_before_the_last_round0_reply(tmp_path: Path):
    data = write_problems(tmp_path / "q.jsonl")
    with ChatServer(responder=responder, latency=0.01) as server:
        proc = subprocess.run([*run_args(data, tmp_path / "runs", server.url), "--concurrency", "4"], cwd=REPO,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    calls = [json.loads(line) for line in (run_dir / "calls.jsonl").read_text().splitlines()]
    first_final = next(i for i, c in enumerate(calls) if c["round"] == 1)  # its synthesis: the record follows
    assert first_final < max(i for i, c in enumerate(calls) if c["round"] == 0)
    first_key = calls[first_final]["call"].split("/")[0]
    records = [json.loads(line)["key"] for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert records[0] == first_key


def test_resume_after_sigkill_mid_pipeline_regenerates_no_finished_call(tmp_path: Path):
    data = write_problems(tmp_path / "q.jsonl")
    with ChatServer(responder=deterministic, latency=0.05) as server:
        proc = subprocess.Popen([*run_args(data, tmp_path / "runs", server.url), "--concurrency", "3"], cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        samples = None
        while time.time() < deadline and proc.poll() is None:
            found = list((tmp_path / "runs").glob("*/samples.jsonl"))
            if found and found[0].read_text().count("\n") >= 2:  # finals written, round-0 calls still going
                samples = found[0]
                break
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert samples is not None, "no final record before the run ended"
        run_dir = samples.parent
        finished_calls = {json.loads(line)["cache_key"] for line in (run_dir / "calls.jsonl").read_text().splitlines()
                          if line.endswith("}")}
        finished_records = samples.read_text().count("\n")
        assert 2 <= finished_records < N_PROBLEMS * K
        first = len(server.received)

        second = subprocess.run(run_args(data, tmp_path / "runs", server.url), cwd=REPO, capture_output=True,
                                text=True, timeout=120)
        assert second.returncode == 0, second.stderr
        resent = server.received[first:]
        with ChatServer(responder=deterministic) as fresh:  # the same run, never interrupted
            whole = subprocess.run(run_args(data, tmp_path / "whole", fresh.url), cwd=REPO, capture_output=True,
                                   text=True, timeout=120)
            assert whole.returncode == 0, whole.stderr

    calls = [json.loads(line) for line in (run_dir / "calls.jsonl").read_text().splitlines()]
    sent_again = [c for c in calls[len(finished_calls):] if c["cache_key"] in finished_calls]
    assert not sent_again  # no finished call was generated again
    assert len(resent) == len(calls) - len(finished_calls) < N_PROBLEMS * K * (WIDTH + 1)
    (whole_dir,) = (tmp_path / "whole").iterdir()
    assert comparable(run_dir) == comparable(whole_dir)
