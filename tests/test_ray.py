"""`--ray`: the hf adapter as a pool of Ray actors on a real local Ray cluster (`ray start --head`).

Two replicas of a tiny real VLM answer MMMU questions with images; the run's samples.jsonl must
equal the same run without Ray, answer for answer (seeded sampling per request), also when a replica
is killed (kill -9) mid-run. With every replica killed the run ends with exit 1 and the same
command finishes it. A PaCoRe run goes round by round over the pool, with the same replies as
without Ray. 85-105 s on the 2-core development machine at load average 2-4 (each run starts its
actors, and torch and the model load in each); about 4 minutes at load average 12.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import REPO, cli


# A throwaway cluster on this machine, without Ray's token authentication: with it, Ray reads (or
# writes) a token in ~/.ray, which another Ray cluster on the machine may have replaced.
ENV = {"OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1", "RAY_AUTH_MODE": "disabled"}
KILL_AFTER_RECORDS = 2


@dataclass
class Cluster:
    address: str
    session: int  # every process of the cluster (its actors included) is in this session


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[Cluster]:
    pytest.importorskip("ray", reason="ray is not installed (pip install 'step3vl-eval[ray]')")
    ray_bin = Path(sys.executable).with_name("ray")
    temp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths have a length limit
    env = {**os.environ, **ENV, "PYTHONPATH": str(REPO)}
    head = subprocess.Popen([str(ray_bin), "start", "--head", "--block", "--port", "0", "--num-cpus", "2",
                             "--node-ip-address", "127.0.0.1",  # loopback only: nothing leaves the machine
                             "--object-store-memory", str(100 * 2**20), "--include-dashboard", "false",
                             "--disable-usage-stats", "--temp-dir", temp],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO,
                            start_new_session=True)
    try:
        address = read_address(head)
        yield Cluster(address, head.pid)
    finally:  # the whole process group: ray start, the GCS, the raylet and every worker and actor
        try:
            os.killpg(head.pid, signal.SIGTERM)
            head.wait(3)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        try:
            os.killpg(head.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        head.wait(10)
        shutil.rmtree(temp, ignore_errors=True)


def read_address(head: subprocess.Popen[str]) -> str:
    assert head.stdout is not None
    seen = []
    for line in head.stdout:
        seen.append(line)
        if "ray start --address=" in line:
            address = line.split("--address=", 1)[1].strip().strip("'\"")
            address = "127.0.0.1:" + address.rsplit(":", 1)[1]  # Ray prints the host's own address: stay on loopback
            # keep draining the head's output so that it never blocks on a full pipe
            threading.Thread(target=lambda: [None for _ in head.stdout], daemon=True).start()  # type: ignore[union-attr]
            return address
    raise RuntimeError("ray start --head did not start:\n" + "".join(seen[-20:]))


def replica_pids(cluster: Cluster) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            if cmdline.startswith(b"ray::Replica") and os.getsid(int(entry.name)) == cluster.session:
                pids.append(int(entry.name))
        except (OSError, ProcessLookupError):
            continue
    return sorted(pids)


# ---- the model and the data ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def letter_vlm(tiny_qwen_vl: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random Qwen2.5-VL edited to say ` A`, ` B` or stop at every step, whatever the input:
    sampled answers differ per seed and extract to A, B or nothing, so verdicts are mixed."""
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    out = tmp_path_factory.mktemp("letter_vlm")
    model = AutoModelForImageTextToText.from_pretrained(tiny_qwen_vl)
    processor = AutoProcessor.from_pretrained(tiny_qwen_vl)
    a, b, stop = processor.tokenizer.convert_tokens_to_ids(["ĠA", "ĠB", "<|im_end|>"])
    with torch.no_grad():
        lm = model.model.language_model
        lm.embed_tokens.weight[:, 0] = 1000.0  # residual dim 0 dominates every position ...
        for layer in lm.layers:  # ... and no layer writes to it, so the logits ignore the input
            layer.self_attn.o_proj.weight[0, :] = 0
            layer.mlp.down_proj.weight[0, :] = 0
        lm.norm.weight[0] = 1.0
        model.lm_head.weight.zero_()
        model.lm_head.weight[a, 0] = model.lm_head.weight[b, 0] = 3.0
        model.lm_head.weight[stop, 0] = 3.0 - math.log(3) / 8
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def mmmu_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from PIL import Image as PILImage

    folder = tmp_path_factory.mktemp("mmmu")
    (folder / "pics").mkdir()
    rows = []
    for n, color in enumerate(["red", "blue", "green"]):
        PILImage.new("RGB", (28, 28), color).save(folder / "pics" / f"{n}.png")
        rows.append({"id": f"dev_Art_{n}", "question": f"Which colour is <image 1>? ({n})",
                     "options": "['red', 'blue', 'green']", "answer": "ABC"[n], "question_type": "multiple-choice",
                     "subfield": "sub", "topic_difficulty": "Easy", "image_1": f"pics/{n}.png"})
    path = folder / "mmmu.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def run_args(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return ["run", "mmmu", "--split", "dev", "--model", f"hf/{model}", "--data", str(data), "--out", str(out),
            "-k", "6", "--max-tokens", "12", "--quiet", *extra]


def outcomes(out: Path) -> dict[str, tuple]:
    """Per request key: the answer and its verdict (what a rerun with the same seed must reproduce)."""
    [run_dir] = [p for p in out.iterdir() if p.is_dir()]
    records = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    return {r["key"]: (r["response"]["text"], r["response"]["error"], r["scored"]["rule"], r["scored"]["extracted"],
                       r["scored"]["correct"]) for r in records}


@pytest.fixture(scope="module")
def plain_run(letter_vlm: Path, mmmu_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple]:
    out = tmp_path_factory.mktemp("plain")
    proc = cli(*run_args(letter_vlm, mmmu_data, out), env=ENV, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return outcomes(out)


def run_killing(args: list[str], cluster: Cluster, out: Path, kill: int) -> tuple[subprocess.CompletedProcess[str], list[int]]:
    """The CLI with `args`; once KILL_AFTER_RECORDS answers are on disk, kill -9 `kill` replicas."""
    env = {**os.environ, **ENV}
    proc = subprocess.Popen([sys.executable, "-m", "evals.cli", *args], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    killed: list[int] = []
    deadline = time.time() + 240
    while proc.poll() is None and time.time() < deadline and not killed:
        samples = list(out.glob("*/samples.jsonl"))
        if samples and samples[0].read_bytes().count(b"\n") >= KILL_AFTER_RECORDS:
            for pid in replica_pids(cluster)[:kill]:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        time.sleep(0.02)
    stdout, stderr = proc.communicate(timeout=max(1, deadline - time.time()))
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), killed


# ---- the tests ---------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.hf
@pytest.mark.ray
def test_two_replicas_give_the_plain_runs_answers_and_survive_a_killed_replica(
        ray_cluster: Cluster, letter_vlm: Path, mmmu_data: Path, plain_run: dict[str, tuple], tmp_path: Path) -> None:
    verdicts = Counter((v[2], v[4]) for v in plain_run.values())
    assert len(plain_run) == 18 and len(verdicts) >= 2, verdicts  # a mix, not one verdict everywhere
    out = tmp_path / "runs"
    args = run_args(letter_vlm, mmmu_data, out, "--ray", ray_cluster.address, "--replicas", "2", "-O", "ray_chunk=1")
    proc, killed = run_killing(args, ray_cluster, out, kill=1)
    assert proc.returncode == 0, proc.stderr
    assert len(killed) == 1
    assert f"a Ray replica died (pid {killed[0]}" in proc.stderr and "1 left take its requests" in proc.stderr
    assert outcomes(out) == plain_run
    [run_dir] = out.iterdir()
    result = json.loads((run_dir / "results.json").read_text())
    assert result["status"] == "complete" and result["spec"]["adapter_options"]["replicas"] == 2


@pytest.mark.slow
@pytest.mark.hf
@pytest.mark.ray
def test_with_no_replica_left_the_run_exits_1_and_the_same_command_finishes_it(
        ray_cluster: Cluster, letter_vlm: Path, mmmu_data: Path, plain_run: dict[str, tuple], tmp_path: Path) -> None:
    out = tmp_path / "runs"  # one replica, so that each run starts one actor only (CPU budget)
    args = run_args(letter_vlm, mmmu_data, out, "--ray", ray_cluster.address, "--replicas", "1", "-O", "ray_chunk=1")
    proc, killed = run_killing(args, ray_cluster, out, kill=1)
    assert len(killed) == 1
    assert proc.returncode == 1, proc.stderr
    first = outcomes(out)
    lost = [k for k, v in first.items() if v[1] is not None]
    assert lost and all("no Ray replica left" in first[k][1] for k in lost)
    assert {k: v for k, v in first.items() if v[1] is None} == {k: plain_run[k] for k in first if k not in lost}

    again = cli(*args, env=ENV, timeout=300)
    assert again.returncode == 0, again.stderr
    assert outcomes(out) == plain_run


@pytest.mark.slow
@pytest.mark.hf
@pytest.mark.ray
def test_pacore_rounds_over_the_pool_give_the_plain_runs_answers(
        ray_cluster: Cluster, letter_vlm: Path, mmmu_data: Path, tmp_path: Path) -> None:
    """PaCoRe's rounds (round 0 of width 2, then the synthesis round) each go out as one batch over
    the replicas; the records equal those of the same run without Ray."""
    pacore = ["-k", "2", "--mode", "pacore", "--pacore-widths", "2"]
    plain = cli(*run_args(letter_vlm, mmmu_data, tmp_path / "plain", *pacore), env=ENV, timeout=300)
    assert plain.returncode == 0, plain.stderr
    pooled = cli(*run_args(letter_vlm, mmmu_data, tmp_path / "ray", *pacore, "--ray", ray_cluster.address,
                           "--replicas", "2", "-O", "ray_chunk=1"), env=ENV, timeout=300)
    assert pooled.returncode == 0, pooled.stderr
    expected = outcomes(tmp_path / "plain")
    assert len(expected) == 6 and outcomes(tmp_path / "ray") == expected

    def replies(out: Path) -> dict[str, list]:
        [run_dir] = out.iterdir()
        records = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
        assert all(r["response"]["meta"]["pacore"]["calls"] == 3 for r in records)  # 2 parallel + 1 synthesis
        return {r["key"]: [[(x["seed"], x["text"]) for x in rnd["replies"]] for rnd in r["response"]["trace"]]
                for r in records}

    assert replies(tmp_path / "ray") == replies(tmp_path / "plain")  # every round's replies, not only the last
    [run_dir] = (tmp_path / "ray").iterdir()
    assert json.loads((run_dir / "results.json").read_text())["spec"]["adapter_options"]["replicas"] == 2

@pytest.mark.parametrize("args, message", [
    (["--model", "openai/m", "--base-url", "http://127.0.0.1:9/v1", "--ray"], "--ray runs the hf or vllm adapter, not openai"),
    (["--model", "mock", "--replicas", "2"], "--replicas needs --ray"),
])
def test_ray_flags_misused_are_one_line_exit_2(aime_data: Path, tmp_path: Path, args: list[str], message: str) -> None:
    proc = cli("run", "aime2025", "--data", str(aime_data), "--out", str(tmp_path / "runs"), *args)
    assert proc.returncode == 2
    [line] = proc.stderr.strip().splitlines()
    assert message in line
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("opts, cluster_gpus, gpus", [
    ({}, 0.0, 0.0),  # a CPU cluster: no GPU asked, whatever the parallelism
    ({"tensor_parallel_size": 4}, 0.0, 0.0),
    ({}, 8.0, 1.0),
    ({"tensor_parallel_size": 4}, 8.0, 4.0),  # each replica holds its tensor-parallel group
    ({"tensor_parallel_size": 2, "data_parallel_size": 2}, 8.0, 4.0),
    ({"tensor_parallel_size": 4, "ray_gpus": 0.5}, 8.0, 0.5),  # -O ray_gpus wins
    ({"ray_gpus": 0}, 8.0, 0.0),
])
def test_each_replica_asks_ray_for_the_gpus_its_parallelism_needs(opts: dict, cluster_gpus: float, gpus: float) -> None:
    from model_adapters.ray_pool import replica_gpus

    assert replica_gpus(opts, cluster_gpus) == gpus
