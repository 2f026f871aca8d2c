"""Request options of the openai adapter: extra_body, --system-prompt, the reasoning split.

Against the local chat server (tests/chat_server.py), which records every body it receives; the
real vLLM server test is in tests/test_vllm_server.py (`chat_template_kwargs` reaching its template).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chat_server import ChatServer, Reply
from conftest import cli
from evals.types import UserError
from model_adapters.openai import extra_body_option, parse_completion

THINKING = {"chat_template_kwargs": {"enable_thinking": True}, "top_k": 20}


def thinking_responder(body: dict) -> Reply:
    """Right only when the request asked for thinking: the score depends on extra_body arriving."""
    thinking = (body.get("chat_template_kwargs") or {}).get("enable_thinking") is True
    return Reply("<think>hm</think>\\boxed{2}" if thinking else "\\boxed{0}")


def run_dir_of(out: Path, before: set[Path]) -> Path:
    (new,) = set(out.iterdir()) - before
    return new


def test_extra_body_and_system_prompt_reach_the_server_and_the_run_id(tmp_path: Path) -> None:
    data = tmp_path / "aime.jsonl"
    data.write_text(json.dumps({"id": "p1", "problem": "What is $1+1$?", "answer": "2"}) + "\n")
    out = tmp_path / "runs"
    with ChatServer(responder=thinking_responder) as server:
        base = ["run", "aime2025", "--model", "openai/test-model", "--base-url", server.url, "-k", "3",
                "--data", str(data), "--out", str(out), "--quiet"]
        plain = cli(*base)
        assert plain.returncode == 0, plain.stderr
        plain_dir = run_dir_of(out, set())
        plain_bodies, server.received = server.received, []

        done = cli(*base, "-O", "extra_body=" + json.dumps(THINKING), "--system-prompt", "You are careful.")
        assert done.returncode == 0, done.stderr
        thinking_dir = run_dir_of(out, {plain_dir})
        bodies = server.received

        # the same options from a config file land in the same run dir (no new requests)
        config = tmp_path / "eval.toml"
        config.write_text('system_prompt = "You are careful."\n'
                          '[adapter_options]\nextra_body = {chat_template_kwargs = {enable_thinking = true}, top_k = 20}\n')
        server.received = []
        again = cli(*base, "--config", str(config))
        assert again.returncode == 0, again.stderr
        assert server.received == [] and set(out.iterdir()) == {plain_dir, thinking_dir}

    assert len(bodies) == 3
    for body in bodies:
        assert body["chat_template_kwargs"] == {"enable_thinking": True}
        assert body["top_k"] == 20  # extra_body wins over the adapter's own fields (top_k 0 is not sent)
        assert body["messages"][0] == {"role": "system", "content": "You are careful."}
        assert body["messages"][1]["role"] == "user"
    assert all("chat_template_kwargs" not in b and b["messages"][0]["role"] == "user" for b in plain_bodies)

    assert plain_dir.name != thinking_dir.name  # a different request is a different run
    thinking = json.loads((thinking_dir / "results.json").read_text())
    assert thinking["spec"]["adapter_options"]["extra_body"] == THINKING
    assert thinking["spec"]["system_prompt"] == "You are careful."
    assert thinking["metrics"]["accuracy"]["value"] == 1.0
    assert json.loads((plain_dir / "results.json").read_text())["metrics"]["accuracy"]["value"] == 0.0
    record = json.loads((thinking_dir / "samples.jsonl").read_text().splitlines()[0])
    assert record["prompt"][0]["content"][0]["text"] == "You are careful."
    assert (record["response"]["reasoning"], record["response"]["text"]) == ("hm", "\\boxed{2}")


def test_think_end_splits_at_another_marker_over_http(tmp_path: Path) -> None:
    data = tmp_path / "aime.jsonl"
    data.write_text(json.dumps({"id": "p1", "problem": "x", "answer": "2"}) + "\n")
    reply = Reply("let me see </think> not yet<|end_of_thought|>The answer is \\boxed{2}")
    with ChatServer(responder=lambda body: reply) as server:
        done = cli("run", "aime2025", "--model", "openai/test-model", "--base-url", server.url, "-k", "1",
                   "--data", str(data), "--out", str(tmp_path / "runs"), "--quiet", "-O", "think_end=<|end_of_thought|>")
    assert done.returncode == 0, done.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    response = json.loads((run_dir / "samples.jsonl").read_text())["response"]
    assert response["reasoning"] == "let me see </think> not yet"
    assert response["text"] == "The answer is \\boxed{2}"


def completion(message: dict, finish: str = "stop") -> bytes:
    return json.dumps({"choices": [{"message": message, "finish_reason": finish}]}).encode()


@pytest.mark.parametrize("message, finish, think_end, field, expected", [
    ({"content": "<think>a</think>b"}, "stop", "</think>", None, ("a", "b")),
    ({"content": "b", "reasoning_content": "a"}, "stop", "</think>", None, ("a", "b")),
    ({"content": "b", "reasoning": "a"}, "stop", "</think>", None, ("a", "b")),  # newer vLLM
    ({"content": "b", "thinking": "a"}, "stop", "</think>", "thinking", ("a", "b")),
    ({"content": "b", "reasoning_content": "x", "thinking": "a"}, "stop", "</think>", "thinking", ("a", "b")),
    ({"content": "<think>a</think>b", "thinking": None}, "stop", "</think>", "thinking", ("a", "b")),
    ({"content": "a<|end_of_thought|>b"}, "stop", "<|end_of_thought|>", None, ("a", "b")),
    ({"content": "<reasoning>a</reasoning>b"}, "stop", "</reasoning>", None, ("a", "b")),
    ({"content": "analysis<|channel|>final<|message|>b"}, "stop", "<|channel|>final<|message|>", None,
     ("analysis", "b")),
    ({"content": "still thinking"}, "length", "<|end_of_thought|>", None, ("still thinking", "")),
    ({"content": "a</think>b"}, "stop", "<|end_of_thought|>", None, ("", "a</think>b")),  # the old marker is text
])
def test_reasoning_split_options(message: dict, finish: str, think_end: str, field: str | None,
                                 expected: tuple[str, str]) -> None:
    resp = parse_completion(completion(message, finish), "k", think_end, field)
    assert (resp.reasoning, resp.text) == expected


@pytest.mark.parametrize("value, error", [
    ("[1, 2]", "must be a JSON object"),
    ("not json", "must be a JSON object"),
    ({"messages": []}, "may not replace"),
])
def test_bad_extra_body_is_refused(value: object, error: str) -> None:
    with pytest.raises(UserError, match=error):
        extra_body_option(value)
    assert extra_body_option('{"a": 1}') == {"a": 1}


def test_bad_extra_body_on_the_command_line_is_one_line_exit_2(tmp_path: Path) -> None:
    data = tmp_path / "aime.jsonl"
    data.write_text(json.dumps({"id": "p1", "problem": "x", "answer": "2"}) + "\n")
    with ChatServer() as server:
        for value, error in [("{oops", "must be a JSON object, got '{oops'"), ("[1]", "must be a JSON object, got [1]")]:
            done = cli("run", "aime2025", "--model", "openai/m", "--base-url", server.url, "--data",
                       str(data), "--out", str(tmp_path / "runs"), "-O", f"extra_body={value}")
            assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
            assert error in done.stderr
        assert server.received == []
    assert not (tmp_path / "runs").exists()
