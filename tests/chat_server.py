"""A real OpenAI-compatible chat-completions server on 127.0.0.1, for tests and benchmarks.

asyncio streams with a minimal HTTP/1.1 (keep-alive) implementation, so one thread serves
hundreds of concurrent slow calls. The test decides every answer (`responder`) and every fault
(`faults`), and the server counts what it receives. Run it standalone for benchmarks:
    python tests/chat_server.py --latency 0.2      (prints its base URL, serves until killed)
    python tests/chat_server.py --latency 0.4 --sigma 1.0 --pad-reasoning 262144
                                                   (heavy-tailed latencies, long replies; GET /v1/stats)

As vLLM does, it serves its API under `/v1` only, lists its model names in `/v1/models` and answers
404 to a request for another model (`models`; None: any name, as for the standalone benchmarks).

With `max_model_len` it behaves as SGLang does about its context: `/models` reports it, prompts are
counted (`prompt_tokens`: one token per `bytes_per_token` UTF-8 bytes of text, 4 per message, 100 per
image) and a request whose prompt plus max_tokens exceeds it gets SGLang's HTTP 400 (or older vLLM's
wording, `context_error="vllm"`); `tokenize=True` adds vLLM's `/tokenize`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

SYNTHESIS_HEAD = "You are given a problem and a list of reference responses."
SGLANG_CONTEXT_ERROR = ("Requested token count exceeds the model's maximum context length of {n} tokens. You requested "
                        "a total of {t} tokens: {p} tokens from the input messages and {m} tokens for the completion. "
                        "Please reduce the number of tokens in the input messages or the completion to fit within the "
                        "limit.")
VLLM_CONTEXT_ERROR = ("This model's maximum context length is {n} tokens. However, you requested {t} tokens ({p} in the "
                      "messages, {m} in the completion). Please reduce the length of the messages or completion.")
TEST_MODELS = ("test-model", "m", "judge-model")  # the names the tests call the served model
FAULTS = ("500", "502", "429", "429-no-retry-after", "reset", "stall", "malformed", "empty_choices",
          "truncated_body")


@dataclass
class Reply:
    content: str | None = "\\boxed{0}"
    reasoning_content: str | None = None
    finish_reason: str = "stop"
    prompt_tokens: int = 10
    completion_tokens: int = 5


def default_responder(body: dict[str, Any]) -> Reply:
    return Reply()


def is_synthesis(body: dict[str, Any]) -> bool:
    """A PaCoRe synthesis call: its last turn opens with the synthesis prompt."""
    content = body["messages"][-1]["content"]
    first = content if isinstance(content, str) else next((p["text"] for p in content if p["type"] == "text"), "")
    return first.startswith(SYNTHESIS_HEAD)


@dataclass
class ChatServer:
    responder: Callable[[dict[str, Any]], Reply] = default_responder
    # (body, attempt number for this (seed, prompt)) -> fault name or None
    faults: Callable[[dict[str, Any], int], str | None] | None = None
    latency: float = 0.0
    sigma: float = 0.0  # > 0: each call's latency is lognormal with median `latency` (a seeded draw)
    pad_reasoning: int = 0  # characters of reasoning_content added to every reply
    max_model_len: int | None = None
    bytes_per_token: int = 4
    context_error: str = "sglang"
    tokenize: bool = False
    report_context: bool = True  # max_model_len in /models
    models: tuple[str, ...] | None = TEST_MODELS
    listing: bool = True  # False: no /v1/models (404), as some proxies have none
    stall_seconds: float = 30.0
    # answers beyond this many wait until it is set back to None: a run is then surely mid-way when a
    # test stops it, however slowly the test itself was scheduled
    answer_at_most: int | None = None
    api_key: str | None = None
    host: str = "127.0.0.1"
    port: int = 0
    received: list[dict[str, Any]] = field(default_factory=list)
    attempts: Counter = field(default_factory=Counter)
    completions: int = 0  # successful answers sent
    context_rejections: int = 0
    calls: list[tuple[float, float, bool]] = field(default_factory=list)  # (start, end, synthesis?) answered
    rng: random.Random = field(default_factory=lambda: random.Random(0))

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> ChatServer:
        ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self.thread.start()
        ready.wait(10)
        return self

    def _serve(self, ready: threading.Event) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(
            asyncio.start_server(self._handle, self.host, self.port, backlog=1024))
        self.port = self.server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()

    def stop(self) -> None:
        async def shutdown() -> None:
            self.server.close()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in others:
                t.cancel()
            await asyncio.gather(*others, return_exceptions=True)
            self.loop.stop()
        asyncio.run_coroutine_threadsafe(shutdown(), self.loop)
        self.thread.join(5)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def __enter__(self) -> ChatServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ---- HTTP ------------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:] if h)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                if not await self._route(method, path, headers, body, writer):
                    return
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    async def _send(self, writer: asyncio.StreamWriter, status: int, payload: bytes,
                    extra: dict[str, str] | None = None, length: int | None = None) -> None:
        reason = {200: "OK", 401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests",
                  500: "Internal Server Error", 502: "Bad Gateway"}.get(status, "Error")
        hdrs = {"Content-Type": "application/json", "Content-Length": str(len(payload) if length is None else length),
                **(extra or {})}
        head = f"HTTP/1.1 {status} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
        writer.write(head.encode() + payload)
        await writer.drain()

    async def _route(self, method: str, path: str, headers: dict[str, str], raw: bytes,
                     writer: asyncio.StreamWriter) -> bool:
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            await self._send(writer, 401, b'{"error": {"message": "bad key"}}')
            return True
        if method == "GET" and path == "/v1/models" and self.listing:
            listed = [{"id": name} for name in (self.models or TEST_MODELS[:1])]
            for model in listed:
                if self.max_model_len and self.report_context:
                    model["max_model_len"] = self.max_model_len
            await self._send(writer, 200, json.dumps({"object": "list", "data": listed}).encode())
            return True
        if method == "GET" and path == "/v1/stats":
            await self._send(writer, 200, json.dumps(self.stats()).encode())
            return True
        if method == "POST" and path == "/tokenize" and self.tokenize:
            count = self.prompt_tokens(json.loads(raw))
            await self._send(writer, 200, json.dumps({"count": count, "max_model_len": self.max_model_len}).encode())
            return True
        if method != "POST" or path != "/v1/chat/completions":
            await self._send(writer, 404, b'{"detail": "Not Found"}')
            return True
        body = json.loads(raw)
        if self.models is not None and body.get("model") not in self.models:
            error = {"object": "error", "message": f"The model `{body.get('model')}` does not exist.",
                     "type": "NotFoundError", "param": None, "code": 404}
            await self._send(writer, 404, json.dumps(error).encode())
            return True
        if self.max_model_len and self.over_context(body):
            self.context_rejections += 1
            p, m = self.prompt_tokens(body), body.get("max_tokens") or 0
            words = SGLANG_CONTEXT_ERROR if self.context_error == "sglang" else VLLM_CONTEXT_ERROR
            error = {"object": "error", "message": words.format(n=self.max_model_len, t=p + m, p=p, m=m),
                     "type": "BadRequestError", "param": None, "code": 400}
            await self._send(writer, 400, json.dumps(error).encode())
            return True
        started = time.time()
        ident = json.dumps([body.get("seed"), body.get("messages")], sort_keys=True)
        self.attempts[ident] += 1
        self.received.append(body)
        fault = self.faults(body, self.attempts[ident]) if self.faults else None
        if self.latency:
            await asyncio.sleep(self.latency * math.exp(self.sigma * self.rng.gauss(0, 1)) if self.sigma else self.latency)
        while self.answer_at_most is not None and self.completions >= self.answer_at_most:
            await asyncio.sleep(0.01)
        if fault:
            return await self._fault(fault, writer)
        reply = self.responder(body)
        self.completions += 1
        if self.max_model_len:
            reply.prompt_tokens = self.prompt_tokens(body)
        message = {"role": "assistant", "content": reply.content}
        if reply.reasoning_content is not None or self.pad_reasoning:
            message["reasoning_content"] = (reply.reasoning_content or "") + "r" * self.pad_reasoning
        payload = {"id": "cmpl-test", "object": "chat.completion", "model": body.get("model"),
                   "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason}],
                   "usage": {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
                             "total_tokens": reply.prompt_tokens + reply.completion_tokens}}
        await self._send(writer, 200, json.dumps(payload).encode())
        self.calls.append((started, time.time(), is_synthesis(body)))
        return True

    # ---- the context, as SGLang keeps it ----------------------------------------------------
    def prompt_tokens(self, body: dict[str, Any]) -> int:
        total = 0
        for m in body.get("messages", []):
            parts = m["content"] if isinstance(m["content"], list) else [{"type": "text", "text": m["content"]}]
            text = sum(len(p["text"].encode()) for p in parts if p.get("type") == "text")
            total += -(-text // self.bytes_per_token) + 4 + 100 * sum(p.get("type") == "image_url" for p in parts)
        return total

    def over_context(self, body: dict[str, Any]) -> bool:
        assert self.max_model_len
        return self.prompt_tokens(body) + (body.get("max_tokens") or 0) > self.max_model_len

    # ---- what a benchmark reads ---------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Answered calls: seconds spent serving them, the window from the first arrival to the last
        answer, and when the last plain call and the first synthesis ended (wall clock)."""
        if not self.calls:
            return {"calls": 0}
        plain = [end for _, end, synthesis in self.calls if not synthesis]
        synth = [end for _, end, synthesis in self.calls if synthesis]
        return {"calls": len(self.calls), "busy_seconds": sum(end - start for start, end, _ in self.calls),
                "first_arrival": min(start for start, _, _ in self.calls),
                "last_answer": max(end for _, end, _ in self.calls),
                "last_plain_answer": max(plain, default=None), "first_synthesis_answer": min(synth, default=None)}

    async def _fault(self, fault: str, writer: asyncio.StreamWriter) -> bool:
        if fault in ("500", "502"):
            await self._send(writer, int(fault), b'{"error": {"message": "injected"}}')
        elif fault == "429":
            await self._send(writer, 429, b'{"error": "slow down"}', {"Retry-After": "1"})
        elif fault == "429-no-retry-after":
            await self._send(writer, 429, b'{"error": "slow down"}')
        elif fault == "reset":
            writer.transport.abort()
            return False
        elif fault == "stall":
            await asyncio.sleep(self.stall_seconds)
            return False
        elif fault == "malformed":
            await self._send(writer, 200, b'{"choices": [{"message": ')
        elif fault == "empty_choices":
            await self._send(writer, 200, b'{"choices": []}')
        elif fault == "truncated_body":
            await self._send(writer, 200, b'{"choices": [', length=400)
            return False
        else:
            raise ValueError(f"unknown fault {fault}")
        return True


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--latency", type=float, default=0.0)
    p.add_argument("--sigma", type=float, default=0.0, help="lognormal sigma of the latency (median --latency)")
    p.add_argument("--pad-reasoning", type=int, default=0, help="characters of reasoning added to every reply")
    p.add_argument("--seed", type=int, default=0, help="seed of the latency draws")
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args()
    server = ChatServer(latency=args.latency, sigma=args.sigma, pad_reasoning=args.pad_reasoning,
                        port=args.port, models=None, rng=random.Random(args.seed)).start()
    print(server.url, flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
