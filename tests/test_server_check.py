"""The up-front server check (model_adapters/openai.py `check_servers`): a wrong URL, path or model
name, or a server that does not answer within --timeout, is one line and exit 2 before any run dir
exists; a server whose listing omits a name it accepts, or that has no /models, still runs."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from chat_server import ChatServer
from conftest import cli


def one_line_exit_2(proc) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def run_args(aime_data: Path, out: Path, model: str, url: str, *extra: str) -> list[str]:
    return ["run", "aime2025", "--model", model, "--base-url", url, "--data", str(aime_data),
            "--out", str(out), "--quiet", *extra]


@pytest.mark.parametrize("model, url_of, expected", [
    ("openai/m", lambda s: s.url.removesuffix("/v1"),
     "no OpenAI API at http://127.0.0.1:{port} (HTTP 404 for /models and /chat/completions): check --base-url"),
    ("openai/m", lambda s: s.url + "/chat",
     "no OpenAI API at http://127.0.0.1:{port}/v1/chat (HTTP 404"),
    ("openai/Step3-VL", lambda s: s.url,
     "http://127.0.0.1:{port}/v1 does not serve model 'Step3-VL' (HTTP 404); it serves: test-model, m, judge-model"),
])
def test_a_wrong_path_or_model_name_is_one_line_before_any_run_dir(tmp_path: Path, aime_data: Path, model: str,
                                                                   url_of, expected: str) -> None:
    out = tmp_path / "runs"
    with ChatServer() as server:
        line = one_line_exit_2(cli(*run_args(aime_data, out, model, url_of(server))))
        assert server.completions == 0  # no generation was answered
    assert expected.format(port=server.port) in line
    assert not out.exists()


def test_a_server_that_does_not_answer_is_refused_within_the_timeout(tmp_path: Path, aime_data: Path) -> None:
    with socket.socket() as silent:  # accepts connections (the kernel's backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1"
        started = time.monotonic()
        proc = cli(*run_args(aime_data, tmp_path / "runs", "openai/m", url, "--timeout", "1"))
        elapsed = time.monotonic() - started
    assert f"cannot reach {url}: no answer within 1 s (--timeout)" in one_line_exit_2(proc)
    assert elapsed < 6, elapsed  # the check waited --timeout (1 s), not its 10 s cap
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("server_kwargs", [
    {"models": None},  # lists test-model only, serves any name (an alias, as Ollama's `llama3` for `llama3:latest`)
    {"models": ("alias",), "listing": False},  # no /models at all: the chat request decides
])
def test_a_name_the_listing_omits_but_the_server_accepts_runs(tmp_path: Path, aime_data: Path,
                                                             server_kwargs: dict) -> None:
    with ChatServer(**server_kwargs) as server:
        proc = cli(*run_args(aime_data, tmp_path / "runs", "openai/alias", server.url))
        assert proc.returncode == 0, proc.stderr
        probes = [b for b in server.received if b.get("max_tokens") == 1]
    assert len(probes) == 1  # one 1-token request checked the name
