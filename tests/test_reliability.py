"""Reliability: faults survived, crashes resumed, full disks reported, nothing lost (issue 8)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from chat_server import FAULTS, ChatServer, Reply
from conftest import REPO, aime_run_command as run_cmd, say_responder as responder, write_say_problems as write_problems

pytestmark = pytest.mark.slow


def load(run_root: Path) -> tuple[dict, list[dict]]:
    (run_dir,) = [p for p in run_root.iterdir() if p.is_dir()]
    results = json.loads((run_dir / "results.json").read_text())
    records = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    return results, records


def test_500_requests_at_20_percent_faults_lose_nothing(tmp_path: Path):
    data = write_problems(tmp_path / "q.jsonl", 100)
    rng = random.Random(7)
    kinds = [f for f in FAULTS]

    def faults(body: dict, attempt: int) -> str | None:
        return rng.choice(kinds) if rng.random() < 0.2 else None

    args = ("--timeout", "1", "--max-retries", "10", "-O", "backoff_base=0.01", "--concurrency", "64")
    with ChatServer(responder=responder, faults=faults, stall_seconds=2) as server:
        faulty = subprocess.run(run_cmd(data, tmp_path / "faulty", server.url, 5, *args), cwd=REPO,
                                capture_output=True, text=True, timeout=240)
        injected = len(server.received) - server.completions
        server.faults = None
        clean = subprocess.run(run_cmd(data, tmp_path / "clean", server.url, 5, *args), cwd=REPO,
                               capture_output=True, text=True, timeout=240)
    assert faulty.returncode == 0, faulty.stderr
    assert clean.returncode == 0, clean.stderr
    assert injected > 50  # the faults really happened
    res_faulty, rec_faulty = load(tmp_path / "faulty")
    res_clean, _ = load(tmp_path / "clean")
    assert len({r["key"] for r in rec_faulty}) == len(rec_faulty) == 500
    assert res_faulty["counts"]["errors"] == 0
    assert res_faulty["metrics"] == res_clean["metrics"]


def test_five_sigkills_then_resume_equals_an_uninterrupted_run(tmp_path: Path):
    data = write_problems(tmp_path / "q.jsonl", 20)
    k, total = 6, 120
    rng = random.Random(3)
    with ChatServer(responder=responder, latency=0.02) as server:
        out = tmp_path / "killed"
        for _ in range(5):
            proc = subprocess.Popen(run_cmd(data, out, server.url, k, "--concurrency", "4"), cwd=REPO,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0.4, 1.2))  # a random point: start-up, mid-run or writing
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        final = subprocess.run(run_cmd(data, out, server.url, k), cwd=REPO, capture_output=True, text=True)
        assert final.returncode == 0, final.stderr
        clean = subprocess.run(run_cmd(data, tmp_path / "clean", server.url, k), cwd=REPO, capture_output=True,
                               text=True)
        assert clean.returncode == 0, clean.stderr
    res_killed, records = load(out)
    res_clean, _ = load(tmp_path / "clean")
    keys = Counter(r["key"] for r in records)
    assert len(keys) == total and set(keys.values()) == {1}
    assert res_killed["metrics"] == res_clean["metrics"]
    assert res_killed["counts"] == res_clean["counts"]


def mount_tmpfs(path: Path, options: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here to simulate the disk ({proc.stderr.strip() or 'mount failed'})")


def test_a_full_disk_gives_one_clear_error_and_keeps_what_was_written(tmp_path: Path):
    data = write_problems(tmp_path / "q.jsonl", 200)
    disk = tmp_path / "disk"
    mount_tmpfs(disk, "size=48k")
    try:
        with ChatServer(responder=lambda body: Reply("x" * 400 + "\\boxed{1}")) as server:
            proc = subprocess.run(run_cmd(data, disk, server.url, 2), cwd=REPO, capture_output=True, text=True)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "No space left on device" in lines[0] and "Traceback" not in proc.stderr
        (run_dir,) = list(disk.iterdir())
        results = json.loads((run_dir / "results.json").read_text())  # still the whole, readable file
        assert results["status"] == "running"
        assert not list(run_dir.glob(".results.json.*"))  # no temporary file left behind
        kept = (run_dir / "samples.jsonl").read_text().splitlines()
        for line in kept[:-1]:
            json.loads(line)
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_a_read_only_output_dir_is_refused_with_one_line(tmp_path: Path):
    data = write_problems(tmp_path / "q.jsonl", 2)
    ro = tmp_path / "ro"
    mount_tmpfs(ro, "ro,size=16k")
    try:
        with ChatServer(responder=responder) as server:
            proc = subprocess.run(run_cmd(data, ro / "runs", server.url, 1), cwd=REPO, capture_output=True, text=True)
        assert proc.returncode == 2 and "Read-only file system" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
        assert server.completions == 0
    finally:
        subprocess.run(["umount", str(ro)], check=False)
