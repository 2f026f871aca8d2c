"""The server's context (issue 22): learned from `/models` or `-O max_model_len`, max_tokens fitted to
it, and a 400 naming the context retried once with the budget it allows, against a server that
rejects over-long requests as SGLang does (tests/chat_server.py). No request may be lost."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from chat_server import SGLANG_CONTEXT_ERROR, VLLM_CONTEXT_ERROR, ChatServer, Reply, is_synthesis
from conftest import cli

from evals.types import GenParams, Message, Request, RunSpec, Text
from model_adapters.openai import OpenAIAdapter, context_limit_error

CONTEXT = 32768
PROBLEMS = 30


@pytest.mark.parametrize("status,text,expected,why", [
    (400, SGLANG_CONTEXT_ERROR.format(n=32768, t=37232, p=4464, m=32768), (32768, 4464), "SGLang's words"),
    (400, VLLM_CONTEXT_ERROR.format(n=4096, t=5000, p=904, m=4096), (4096, 904), "older vLLM's words"),
    (400, "This model's maximum context length is 2048 tokens. However, your prompt contains 3000 input tokens, "
          "which exceeds this limit even without any output tokens.", (2048, 3000), "vLLM 0.32: the prompt alone"),
    (400, "max_tokens=65536 cannot be greater than max_model_len=2048. Please request fewer output tokens.",
     (2048, None), "vLLM 0.32: max_tokens alone over the context, no prompt count"),
    (400, '{"error": "messages must not be empty"}', None, "another 400"),
    (500, SGLANG_CONTEXT_ERROR.format(n=1, t=2, p=1, m=1), None, "not a 400: retried as a server error"),
])
def test_context_errors_are_read_from_sglang_and_vllm_wording(status, text, expected, why):
    error = context_limit_error(status, json.dumps({"object": "error", "message": text}).encode())
    assert (None if error is None else (error.context, error.prompt_tokens)) == expected, why


def write_problems(path: Path, n: int = PROBLEMS) -> Path:
    path.write_text("".join(json.dumps({"id": f"q{i}", "problem": f"What is {i} + {i}? " * (i + 1),
                                        "answer": str(2 * i)}) + "\n" for i in range(n)))
    return path


def answer(body: dict) -> Reply:
    if is_synthesis(body):
        return Reply("\\boxed{1}")
    return Reply("\\boxed{1}", reasoning_content="thinking")


def fits(server: ChatServer) -> bool:
    return all(server.prompt_tokens(b) + b["max_tokens"] <= CONTEXT for b in server.received
               if not server.over_context(b))


def run(server: ChatServer, data: Path, out: Path, *extra: str) -> list[dict]:
    proc = cli("run", "aime2025", "--model", "openai/test-model", "--base-url", server.url, "--data", str(data),
               "--out", str(out), "--quiet", *extra)
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = out.iterdir()
    assert json.loads((run_dir / "results.json").read_text())["status"] == "complete"
    return [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("bytes_per_token,rejected,why", [
    (4, 0, "the client's estimate (3 bytes a token) is over the server's count: every request fits at once"),
    (1, 60, "the server counts more than the estimate: each request is rejected once, then fits"),
])
def test_sere_against_an_sglang_like_server_loses_no_request(tmp_path: Path, bytes_per_token: int, rejected: int,
                                                             why: str):
    data = write_problems(tmp_path / "q.jsonl")
    with ChatServer(responder=answer, max_model_len=CONTEXT, bytes_per_token=bytes_per_token) as server:
        records = run(server, data, tmp_path / "runs", "-k", "2")  # max_tokens 65,536, the task's default
        assert server.context_rejections == rejected, why
        assert server.completions == 2 * PROBLEMS and fits(server)
    assert len(records) == 2 * PROBLEMS and all(r["response"]["error"] is None for r in records)
    for r in records:  # what was asked for is recorded, and it is all the context left
        meta = r["response"]["meta"]
        assert meta["max_tokens"] == CONTEXT - r["response"]["usage"]["prompt_tokens"] or bytes_per_token == 4
        assert meta["max_tokens"] + r["response"]["usage"]["prompt_tokens"] <= CONTEXT


def test_pacore_against_an_sglang_like_server_loses_no_request(tmp_path: Path):
    data = write_problems(tmp_path / "q.jsonl")
    with ChatServer(responder=answer, max_model_len=CONTEXT, bytes_per_token=1) as server:
        records = run(server, data, tmp_path / "runs", "-k", "1", "--mode", "pacore", "--pacore-widths", "4")
        synthesis = [b for b in server.received if is_synthesis(b) and not server.over_context(b)]
        assert len(synthesis) == PROBLEMS and fits(server)
    assert len(records) == PROBLEMS and all(r["response"]["error"] is None for r in records)
    assert all(r["response"]["meta"]["pacore"]["failed_calls"] == 0 for r in records)


def test_a_server_that_does_not_report_its_context_teaches_it_with_its_first_400(tmp_path: Path):
    data = write_problems(tmp_path / "q.jsonl", 4)
    with ChatServer(responder=answer, max_model_len=CONTEXT, report_context=False) as server:
        records = run(server, data, tmp_path / "runs", "-k", "1", "--concurrency", "1")
        assert server.context_rejections == 1  # the first request; the others are fitted up front
    assert all(r["response"]["error"] is None for r in records)


def test_max_model_len_option_fits_requests_for_a_server_that_reports_nothing(tmp_path: Path):
    data = write_problems(tmp_path / "q.jsonl", 4)
    with ChatServer(responder=answer, max_model_len=CONTEXT, report_context=False) as server:
        run(server, data, tmp_path / "runs", "-k", "1", "-O", f"max_model_len={CONTEXT}")
        assert server.context_rejections == 0 and fits(server)


def test_the_tokenize_endpoint_gives_the_exact_prompt_length(tmp_path: Path):
    data = write_problems(tmp_path / "q.jsonl", 4)
    with ChatServer(responder=answer, max_model_len=CONTEXT, bytes_per_token=1, tokenize=True) as server:
        records = run(server, data, tmp_path / "runs", "-k", "1")
        assert server.context_rejections == 0  # counted by the server before sending, so nothing is rejected
    for r in records:
        assert r["response"]["meta"]["max_tokens"] == CONTEXT - r["response"]["usage"]["prompt_tokens"]


def test_a_prompt_that_fills_the_context_is_an_error_record_that_says_so():
    with ChatServer(responder=answer, max_model_len=50, bytes_per_token=1) as server:
        spec = RunSpec(task="t", model="openai/test-model", base_urls=[server.url], max_retries=0)
        adapter = OpenAIAdapter("test-model", spec)
        request = Request("long", "long", 0, [Message("user", [Text("x" * 400)])], GenParams(max_tokens=10))
        (resp,) = adapter.generate([request])
    assert resp.error is not None and "leaves no room in the server's context of 50 tokens" in resp.error
