"""What the speed work promises, checked as behaviour (never as timings: benchmarks/ measures those).

An API run imports no torch; resuming a finished run calls nothing; the adapter keeps at most
`--concurrency` requests in flight over reused connections, and backs off when throttled; a scoring
pool gives the verdicts one process gives; memory held per request stays bounded.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from chat_server import ChatServer, Reply
from conftest import REPO, cli

from evals import runner
from evals.scoring import MIN_POOL_ITEMS, score_many
from evals.types import GenParams, Image, Message, Request, Response, RunSpec, Sample, Scored, Text, Usage
from model_adapters import openai as openai_adapter
from model_adapters.openai import AdaptiveLimit, OpenAIAdapter

HEAVY = ("torch", "transformers", "vllm")


def problems(path: Path, n: int) -> Path:
    path.write_text("".join(json.dumps({"id": f"q{i}", "problem": f"Say {i}.", "answer": str(i)}) + "\n"
                            for i in range(n)))
    return path


def imported_modules(importtime_stderr: str) -> set[str]:
    return {line.rsplit("|", 1)[-1].strip() for line in importtime_stderr.splitlines()
            if line.startswith("import time:")}


# ---- start-up and resume -------------------------------------------------------------------------

def test_an_api_run_imports_neither_torch_nor_transformers(tmp_path: Path):
    data = problems(tmp_path / "q.jsonl", 3)
    with ChatServer() as server:
        proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "evals.cli", "run", "aime2025", "--model",
                               "openai/m", "--base-url", server.url, "--data", str(data), "-k", "2", "--out",
                               str(tmp_path / "runs"), "--quiet"],
                              capture_output=True, text=True, cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                              check=False)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert len(server.received) == 6
    modules = imported_modules(proc.stderr)
    assert "aiohttp" in modules  # the check sees the imports at all
    assert not [m for m in modules if m.split(".")[0] in HEAVY]


def test_resume_of_a_finished_run_dir_makes_no_model_call(tmp_path: Path):
    data = problems(tmp_path / "q.jsonl", 4)
    with ChatServer() as server:
        first = cli("run", "aime2025", "--model", "openai/m", "--base-url", server.url, "--data", str(data),
                    "-k", "3", "--out", str(tmp_path / "runs"), "--quiet")
        assert first.returncode == 0, first.stderr
        sent = len(server.received)
        (run_dir,) = list((tmp_path / "runs").iterdir())
        before = (run_dir / "samples.jsonl").read_bytes()
        again = cli("run", "--resume", str(run_dir), "--base-url", server.url, "--quiet")
        assert again.returncode == 0, again.stderr
        assert len(server.received) == sent == 12
    assert (run_dir / "samples.jsonl").read_bytes() == before


# ---- the OpenAI-compatible adapter ---------------------------------------------------------------

class InFlight:
    """Counts requests between their arrival (the faults hook) and their answer (the responder)."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0

    def arrived(self, body: dict[str, Any], attempt: int) -> None:
        self.now += 1
        self.most = max(self.most, self.now)

    def answered(self, body: dict[str, Any]) -> Reply:
        self.now -= 1
        return Reply("\\boxed{1}")


def text_requests(n: int) -> list[Request]:
    return [Request(f"q{i}#0", f"q{i}", 0, [Message("user", [Text(f"Say {i}.")])], GenParams(max_tokens=8, seed=i))
            for i in range(n)]


def counting_connections(server: ChatServer) -> list[int]:
    """Patch the server (before it starts) to count the TCP connections it accepts."""
    opened: list[int] = []
    handle = server._handle

    async def counted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        opened.append(1)
        await handle(reader, writer)

    server._handle = counted  # type: ignore[method-assign]
    return opened


def test_adapter_keeps_at_most_concurrency_in_flight_over_reused_connections():
    flight = InFlight()
    server = ChatServer(responder=flight.answered, faults=flight.arrived, latency=0.02)
    opened = counting_connections(server)
    with server:
        spec = RunSpec(task="aime2025", model="openai/m", base_urls=[server.url], concurrency=8)
        done: list[str] = []
        responses = OpenAIAdapter("m", spec).generate(text_requests(120), lambda r: done.append(r.key))
    assert [r.key for r in responses] == [f"q{i}#0" for i in range(120)]  # in request order
    assert sorted(done) == sorted(r.key for r in responses) and all(r.error is None for r in responses)
    assert flight.most == 8  # the limit is reached and never passed
    assert len(opened) <= 8 + 2  # keep-alive: one connection per worker (+2: the /models check, the context look-up)


def test_429s_halve_the_limit_once_per_burst_then_successes_raise_it_back():
    async def scenario() -> list[int]:
        limit = AdaptiveLimit(16)
        seen = [limit.limit]
        limit.throttled()
        limit.throttled()  # the same burst: no second cut
        seen.append(limit.limit)
        limit.last_cut -= openai_adapter.THROTTLE_COOLDOWN  # a later burst
        limit.throttled()
        seen.append(limit.limit)
        for _ in range(1000):
            limit.succeeded()
        seen.append(limit.limit)
        return seen

    assert asyncio.run(scenario()) == [16, 8, 4, 16]


def test_a_throttled_run_still_answers_every_request():
    throttled = set(range(0, 40, 3))

    def faults(body: dict[str, Any], attempt: int) -> str | None:
        return "429-no-retry-after" if body["seed"] in throttled and attempt == 1 else None

    with ChatServer(faults=faults) as server:
        spec = RunSpec(task="aime2025", model="openai/m", base_urls=[server.url], concurrency=8,
                       adapter_options={"backoff_base": 0.01})
        adapter = OpenAIAdapter("m", spec)
        responses = adapter.generate(text_requests(40))
    assert all(r.error is None for r in responses)
    assert adapter.throttles >= 1  # the 429s were seen as throttling, not only retried


def test_an_image_is_encoded_once_per_run_and_the_cache_stays_bounded_in_bytes(tmp_path):
    from PIL import Image as PILImage

    PILImage.new("RGB", (40, 30), "red").save(tmp_path / "fig.png")
    literals = openai_adapter.ImageLiterals(max_bytes=4000, probation_bytes=1000)
    figure = Image(path=str(tmp_path / "fig.png"), mime="image/png")
    sent = [literals.literal(figure) for _ in range(5)]  # repeats of one problem
    assert literals.encoded == 1 and len(set(sent)) == 1
    assert json.loads(sent[0]) == "data:image/png;base64," + figure.as_b64()
    once = [Image(b64=f"{i:08d}".encode().hex() * 8, mime="image/png") for i in range(100)]
    for image in once:  # sent once each (MMBench): only the small probation segment holds any
        literals.literal(image)
    assert literals.probation.size <= 1000 and literals.kept.size == len(sent[0])
    cycle = once[:20]
    for _ in range(3):  # avg@k: every problem, then every problem again
        for image in cycle:
            literals.literal(image)
    assert 0 < literals.kept.size <= 4000 and literals.size <= 5000
    assert literals.kept.size == sum(len(v) for _, v in literals.kept.entries.values())


def test_an_adapter_run_encodes_each_figure_once_whatever_its_repeats(tmp_path, monkeypatch):
    """Through the adapter, as a run sends them: 2 figures x 4 repeats reach the server as their data
    URLs, but each file is read and encoded once (the cache lives as long as the adapter, not a request)."""
    from PIL import Image as PILImage

    figures = []
    for n, color in enumerate(["red", "blue"]):
        PILImage.new("RGB", (40, 30), color).save(tmp_path / f"fig{n}.png")
        figures.append(Image(path=str(tmp_path / f"fig{n}.png"), mime="image/png"))
    encoded: list[str | None] = []
    real = openai_adapter.encode_image
    monkeypatch.setattr(openai_adapter, "encode_image", lambda image: encoded.append(image.path) or real(image))
    requests = [Request(f"q{n}#{r}", f"q{n}", r, [Message("user", [figures[n], Text(f"Which colour? {n}")])],
                        GenParams(max_tokens=8, seed=r)) for r in range(4) for n in range(2)]
    with ChatServer(responder=lambda body: Reply("\\boxed{1}")) as server:
        spec = RunSpec(task="mathvision", model="openai/m", base_urls=[server.url], concurrency=3)
        responses = OpenAIAdapter("m", spec).generate(requests)
    assert all(r.error is None for r in responses) and len(server.received) == 8
    assert sorted(encoded) == sorted(f.path for f in figures)
    urls = {body["messages"][0]["content"][0]["image_url"]["url"] for body in server.received}
    assert urls == {"data:image/png;base64," + f.as_b64() for f in figures}

def test_a_request_body_splices_each_image_where_json_would_put_it(tmp_path):
    from model_adapters.openai import ImageLiterals, encode_body, to_openai_message

    images = [Image(b64="aGVsbG8=", mime="image/png"), Image(b64="d29ybGQ=", mime="image/jpeg")]
    message = Message("user", [images[0], Text('two "images" \u0000 and a slot-like \x00image-0\x00'), images[1]])
    slot, found = "\x00image-1234\x00", []
    body = {"model": "m", "messages": [to_openai_message(message, slot, found)], "max_tokens": 4}
    sent = json.loads(encode_body(body, slot, found, ImageLiterals()))
    parts = sent["messages"][0]["content"]
    assert [p.get("image_url", {}).get("url") for p in parts] == [
        "data:image/png;base64,aGVsbG8=", None, "data:image/jpeg;base64,d29ybGQ="]
    assert parts[1]["text"] == message.content[1].text


# ---- records and scoring -------------------------------------------------------------------------

def test_a_record_serialises_exactly_as_dataclasses_asdict_would():
    response = Response("q1#0", text="\\boxed{1}", reasoning="think", finish_reason="stop", usage=Usage(3, 4),
                        trace=[{"round": 0, "replies": [{"text": "a", "usage": {"prompt_tokens": 1}}]}],
                        meta={"attempts": 2})
    scored = Scored("q1#0", "q1", 0, "1", "answer_format", True, 1.0, extra={"official": {"rule": "x"}})
    assert json.dumps(runner.plain(response)) == json.dumps(asdict(response))
    assert json.dumps(runner.plain(scored)) == json.dumps(asdict(scored))


def test_a_run_keeps_no_answer_text_in_memory_once_it_is_recorded(tmp_path: Path, monkeypatch):
    data = problems(tmp_path / "q.jsonl", 3)
    kept: list[Response] = []

    class Keeping(OpenAIAdapter):
        def generate(self, requests: list[Request], on_response: Any = None) -> list[Response]:
            kept.extend(super().generate(requests, on_response))
            return kept

    with ChatServer(responder=lambda body: Reply("\\boxed{1}", reasoning_content="x" * 10_000)) as server:
        spec = RunSpec(task="aime2025", model="openai/m", base_urls=[server.url], data=str(data), repeats=2,
                       out=str(tmp_path / "runs"))
        monkeypatch.setattr(runner, "load_adapter", lambda s: Keeping("m", s))
        run_dir, result = runner.run(spec, show_progress=False)
    assert len(kept) == 6 and not any(r.reasoning or r.text for r in kept)
    records = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert all(len(r["response"]["reasoning"]) == 10_000 for r in records)  # what was written is whole
    assert result.counts["answered"] == 6


class PidTask:
    """A picklable task whose verdict says which process scored it."""

    name = "pid"
    judge: object | None = None

    def score(self, sample: Sample, response: Response) -> Scored:
        return Scored(response.key, sample.id, 0, response.text, "answer_format", True, extra={"pid": os.getpid()})


def pid_items(n: int) -> list[tuple[Sample, Response, int]]:
    return [(Sample(f"s{i}", [Message("user", [Image(b64="aGVsbG8=")])], "1"),
             Response(f"s{i}#0", text=str(i), reasoning="long", finish_reason="stop"), 0) for i in range(n)]


def test_score_many_uses_worker_processes_for_many_answers_and_keeps_their_order():
    scored = score_many(PidTask(), pid_items(MIN_POOL_ITEMS + 10), workers=2)
    assert [s.extracted for s in scored] == [str(i) for i in range(MIN_POOL_ITEMS + 10)]
    assert {s.extra["pid"] for s in scored[1:]} - {os.getpid()}  # the pool did the work


def test_score_many_keeps_a_task_with_a_judge_in_this_process():
    task = PidTask()
    task.judge = object()  # its calls and its cache belong to the main process
    scored = score_many(task, pid_items(MIN_POOL_ITEMS + 10), workers=2)
    assert {s.extra["pid"] for s in scored} == {os.getpid()}


def test_a_scoring_pool_gives_the_verdicts_of_one_process_with_math_verify():
    from tasks import get_task

    task = get_task("aime2025")
    pairs = [("\\frac{1}{2}", "0.5"), ("2\\sqrt{3}", "\\sqrt{12}"), ("\\frac{3}{4}", "0.7"), ("x^2", "x*x")]
    items = [(Sample(f"s{i}", [], gold), Response(f"s{i}#0", text=f"\\boxed{{{answer}}}", finish_reason="stop"), 0)
             for i, (gold, answer) in enumerate(pairs * (MIN_POOL_ITEMS // len(pairs) + 1))]
    one = score_many(task, items, workers=1)
    pool = score_many(task, items, workers=2)
    assert [asdict(s) for s in pool] == [asdict(s) for s in one]
    assert {s.correct for s in one} == {True, False}


@pytest.mark.parametrize("workers", [1, 2])
def test_rescoring_gives_the_same_results_with_or_without_a_pool(tmp_path: Path, workers: int, monkeypatch):
    data = problems(tmp_path / "q.jsonl", 70)
    with ChatServer(responder=lambda body: Reply("\\boxed{3}")) as server:
        proc = cli("run", "aime2025", "--model", "openai/m", "--base-url", server.url, "--data", str(data),
                   "-k", "3", "--out", str(tmp_path / "runs"), "--quiet")
        assert proc.returncode == 0, proc.stderr
    (run_dir,) = list((tmp_path / "runs").iterdir())
    before = json.loads((run_dir / "results.json").read_text())
    monkeypatch.setattr("evals.scoring.default_workers", lambda: workers)
    after = runner.rescore(run_dir)
    assert after.metrics == before["metrics"] and after.counts == before["counts"]
