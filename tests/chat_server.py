"""A real OpenAI-compatible chat-completions server on 127.0.0.1, for tests and benchmarks.

asyncio streams with a minimal HTTP/1.1 (keep-alive) implementation, so one thread serves
hundreds of concurrent slow calls. The test decides every answer (`responder`) and every fault
(`faults`), and the server counts what it receives. Run it standalone for benchmarks:
    python tests/chat_server.py --latency 0.2      (prints its base URL, serves until killed)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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


@dataclass
class ChatServer:
    responder: Callable[[dict[str, Any]], Reply] = default_responder
    # (body, attempt number for this (seed, prompt)) -> fault name or None
    faults: Callable[[dict[str, Any], int], str | None] | None = None
    latency: float = 0.0
    stall_seconds: float = 30.0
    api_key: str | None = None
    host: str = "127.0.0.1"
    port: int = 0
    received: list[dict[str, Any]] = field(default_factory=list)
    attempts: Counter = field(default_factory=Counter)
    completions: int = 0  # successful answers sent

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
        if method == "GET" and path.endswith("/models"):
            await self._send(writer, 200, b'{"object": "list", "data": [{"id": "test-model"}]}')
            return True
        if method != "POST" or not path.endswith("/chat/completions"):
            await self._send(writer, 404, b'{"error": "not found"}')
            return True
        body = json.loads(raw)
        ident = json.dumps([body.get("seed"), body.get("messages")], sort_keys=True)
        self.attempts[ident] += 1
        self.received.append(body)
        fault = self.faults(body, self.attempts[ident]) if self.faults else None
        if self.latency:
            await asyncio.sleep(self.latency)
        if fault:
            return await self._fault(fault, writer)
        reply = self.responder(body)
        self.completions += 1
        message = {"role": "assistant", "content": reply.content}
        if reply.reasoning_content is not None:
            message["reasoning_content"] = reply.reasoning_content
        payload = {"id": "cmpl-test", "object": "chat.completion", "model": body.get("model"),
                   "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason}],
                   "usage": {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
                             "total_tokens": reply.prompt_tokens + reply.completion_tokens}}
        await self._send(writer, 200, json.dumps(payload).encode())
        return True

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
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args()
    server = ChatServer(latency=args.latency, port=args.port).start()
    print(server.url, flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
