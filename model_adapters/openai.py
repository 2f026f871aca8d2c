"""OpenAI-compatible chat completions over HTTP (vLLM, SGLang, hosted APIs).

Built on httpx's asyncio client rather than the `openai` SDK: one pooled client with keep-alive
connections sized to the concurrency, and retry logic we control (the SDK retries on its own
schedule, and its import alone costs more than our whole start-up budget).

- Bounded concurrency (default 64: long reasoning calls need many in flight, not 1).
- Retries with exponential backoff and full jitter on 429, 5xx, timeouts, dropped connections
  and malformed bodies; `Retry-After` (seconds or an HTTP date) is honoured.
- Several base URLs share the load (least in flight first): a fleet serving one model.
- The API key comes from the environment (`OPENAI_API_KEY` or `--api-key-env NAME`) and is only
  ever put in a request header; a loopback or private server needs none.
- Reasoning from `reasoning_content` / `reasoning`, or split at the last `</think>`.
"""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import json
import os
import random
import time
from typing import Any
from urllib.parse import urlparse

import httpx

from evals.extract import split_output
from evals.types import Image, Message, Request, Response, RunSpec, Text, Usage, UserError

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"
RETRY_STATUSES = {408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524}
BACKOFF_BASE = 0.5
BACKOFF_CAP = 60.0
RETRY_AFTER_CAP = 300.0


class RetryableError(Exception):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class FatalServerError(Exception):
    """An answer that retrying cannot fix (a 4xx other than 429): an error record for this request."""


def is_local(url: str) -> bool:
    host = urlparse(url).hostname or ""
    if host in ("localhost", ""):
        return True
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return False
    return addr.is_loopback or addr.is_private or addr.is_link_local


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return min(max(float(value), 0.0), RETRY_AFTER_CAP)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return min(max(when.timestamp() - time.time(), 0.0), RETRY_AFTER_CAP)


def backoff_delay(attempt: int, retry_after: float | None, base: float = BACKOFF_BASE) -> float:
    if retry_after is not None:
        return retry_after
    return random.uniform(0, min(BACKOFF_CAP, base * 2**attempt))


def to_openai_message(message: Message, image_cache: dict[str, str]) -> dict[str, Any]:
    if all(isinstance(p, Text) for p in message.content):
        return {"role": message.role, "content": message.text()}
    parts: list[dict[str, Any]] = []
    for p in message.content:
        if isinstance(p, Text):
            parts.append({"type": "text", "text": p.text})
        else:
            parts.append({"type": "image_url", "image_url": {"url": data_url(p, image_cache)}})
    return {"role": message.role, "content": parts}


def data_url(image: Image, cache: dict[str, str]) -> str:
    key = image.digest()
    if key not in cache:  # PaCoRe sends one image many times: encode it once
        cache[key] = f"data:{image.mime};base64,{image.as_b64()}"
    return cache[key]


def parse_completion(body: bytes, key: str) -> Response:
    try:
        data = json.loads(body)
        choice = data["choices"][0]
        message = choice["message"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise RetryableError("malformed response body (no choices[0].message)") from None
    content = message.get("content") or ""
    reasoning = message.get("reasoning_content") or message.get("reasoning") or ""
    finish = choice.get("finish_reason")
    if not reasoning:
        reasoning, content = split_output(content, finish)
    elif "</think>" in content:
        extra, content = split_output(content, finish)
        reasoning = f"{reasoning}\n{extra}".strip()
    usage = data.get("usage") or {}
    return Response(
        key=key, text=content.strip(), reasoning=reasoning.strip(), finish_reason=finish,
        usage=Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)),
    )


class OpenAIAdapter:
    def __init__(self, name: str, spec: RunSpec):
        if not name:
            raise UserError("--model openai/NAME needs the served model's name")
        self.model = name
        self.base_urls = [u.rstrip("/") for u in (spec.base_urls or [os.environ.get("OPENAI_BASE_URL", DEFAULT_BASE_URL)])]
        self.concurrency = max(1, spec.concurrency)
        self.timeout = spec.timeout
        self.max_retries = spec.max_retries
        self.options = spec.adapter_options
        self.backoff_base = float(self.options.get("backoff_base", BACKOFF_BASE))
        self.api_key = os.environ.get(spec.api_key_env) or None
        if self.api_key is None and not all(is_local(u) for u in self.base_urls):
            raise UserError(f"no API key for {self.base_urls[0]}: set {spec.api_key_env} "
                            "(or name another variable with --api-key-env)")
        self.in_flight = {u: 0 for u in self.base_urls}
        self.image_cache: dict[str, str] = {}
        self.calls = 0
        self.check_servers()

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def check_servers(self) -> None:
        """Fail fast, with one line, on a server that cannot be reached or rejects the key."""
        for url in self.base_urls:
            try:
                r = httpx.get(f"{url}/models", headers=self.headers(), timeout=10.0)
            except httpx.HTTPError as exc:
                raise UserError(f"cannot reach {url}: {type(exc).__name__}") from None
            if r.status_code in (401, 403):
                raise UserError(f"{url} refused the API key (HTTP {r.status_code})")

    def body(self, req: Request) -> dict[str, Any]:
        p = req.params
        token_field = str(self.options.get("max_tokens_field", "max_tokens"))
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [to_openai_message(m, self.image_cache) for m in req.messages],
            token_field: p.max_tokens,
            "temperature": p.temperature,
            "top_p": p.top_p,
        }
        if p.seed is not None:
            body["seed"] = p.seed
        if p.top_k and p.top_k > 0:
            body["top_k"] = p.top_k  # a vLLM/SGLang extension; hosted APIs reject it
        return body

    def pick_url(self) -> str:
        return min(self.base_urls, key=lambda u: self.in_flight[u])

    async def post_once(self, client: httpx.AsyncClient, req: Request, body: dict[str, Any]) -> Response:
        url = self.pick_url()
        self.in_flight[url] += 1
        self.calls += 1
        try:
            r = await client.post(f"{url}/chat/completions", json=body, headers=self.headers())
        except httpx.TimeoutException:
            raise RetryableError(f"timed out after {self.timeout:g} s") from None
        except httpx.TransportError as exc:
            raise RetryableError(f"connection failed: {type(exc).__name__}") from None
        finally:
            self.in_flight[url] -= 1
        if r.status_code in RETRY_STATUSES:
            raise RetryableError(f"HTTP {r.status_code}", parse_retry_after(r.headers.get("retry-after")))
        if r.status_code >= 400:
            raise FatalServerError(f"HTTP {r.status_code}: {r.text[:300]}")
        return parse_completion(r.content, req.key)

    async def send(self, client: httpx.AsyncClient, sem: asyncio.Semaphore, req: Request) -> Response:
        body = self.body(req)
        start = time.perf_counter()
        last = ""
        for attempt in range(self.max_retries + 1):
            try:
                async with sem:
                    resp = await self.post_once(client, req, body)
                resp.latency = time.perf_counter() - start
                resp.meta["attempts"] = attempt + 1
                return resp
            except RetryableError as exc:
                last = str(exc)
                if attempt < self.max_retries:
                    await asyncio.sleep(backoff_delay(attempt, exc.retry_after, self.backoff_base))
            except FatalServerError as exc:
                last = str(exc)
                break
        return Response(key=req.key, error=f"{last} (after {attempt + 1} attempts)",
                        latency=time.perf_counter() - start)

    async def run_all(self, requests: list[Request], on_response: Any) -> list[Response]:
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        timeout = httpx.Timeout(self.timeout, connect=min(30.0, self.timeout))
        sem = asyncio.Semaphore(self.concurrency)
        results: dict[str, Response] = {}
        async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
            tasks = [asyncio.ensure_future(self.send(client, sem, r)) for r in requests]
            try:
                for fut in asyncio.as_completed(tasks):
                    resp = await fut
                    results[resp.key] = resp
                    if on_response:
                        on_response(resp)
            finally:
                for t in tasks:
                    t.cancel()
        return [results[r.key] for r in requests]

    def generate(self, requests: list[Request], on_response: Any = None) -> list[Response]:
        if not requests:
            return []
        return asyncio.run(self.run_all(requests, on_response))

    def close(self) -> None:
        pass
